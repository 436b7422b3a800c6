//! Per-address budgets: what one address (an IPv4 address or an IPv6 /64, see
//! [`AddrKey`]) may do per unit of time, so that no single address can fill a global cap
//! or keep the others out.
//!
//! The defaults are sized so that a household or an office behind one NAT never meets
//! them in normal use (a hundred people signing in at nine o'clock, each joining a few
//! rooms), while a flood from one address is refused within its first seconds.
//!
//! Wrong access codes earn a growing back-off: the first few are free (typos), then each
//! one doubles the wait before the next attempt is even compared, up to a lock-out. Guessing
//! a code is then a matter of years, not of the 200,000 tries a second it was.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::addr::AddrKey;
use super::rate::TokenBucket;

/// What one address may do. Each rate is sustained; each burst is what it may do at once.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressLimits {
    /// Open connections (HTTP and WebSocket) at once.
    pub connections: usize,
    /// Sessions created per minute.
    pub sessions_per_minute: f64,
    pub sessions_burst: f64,
    /// WebSocket joins per second.
    pub joins_per_second: f64,
    pub joins_burst: f64,
    /// Rooms created per hour.
    pub rooms_per_hour: f64,
    pub rooms_burst: f64,
    /// Wrong access codes before the back-off starts.
    pub free_code_failures: u32,
    /// The longest an address is locked out after wrong access codes.
    pub code_lockout: Duration,
}

impl Default for AddressLimits {
    fn default() -> Self {
        Self {
            connections: 512,
            sessions_per_minute: 60.0,
            sessions_burst: 200.0,
            joins_per_second: 20.0,
            joins_burst: 200.0,
            rooms_per_hour: 30.0,
            rooms_burst: 10.0,
            free_code_failures: 5,
            code_lockout: Duration::from_secs(15 * 60),
        }
    }
}

/// A budget one address spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    Session,
    Join,
    Room,
}

/// The answer to an access-code attempt that may not even be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedOut {
    pub retry_after: Duration,
}

/// Every address's budgets.
pub struct Budgets {
    limits: AddressLimits,
    by_addr: Mutex<HashMap<AddrKey, AddrState>>,
}

/// Addresses remembered at most; past this the longest-unseen are forgotten first. Each is
/// about 200 bytes, so this is tens of MB at worst, reached only by an attacker holding
/// hundreds of thousands of addresses, whom forgetting favours little (fresh budgets are
/// still bounded per address).
const MAX_ADDRESSES: usize = 200_000;

struct AddrState {
    sessions: TokenBucket,
    joins: TokenBucket,
    rooms: TokenBucket,
    code: CodeFailures,
    last_seen: Instant,
}

#[derive(Default)]
struct CodeFailures {
    /// Wrong codes in a row (a right one resets it).
    count: u32,
    last: Option<Instant>,
    blocked_until: Option<Instant>,
    /// Wrong codes since the burst was first logged; None when no burst is open.
    burst: Option<u64>,
}

/// A burst of wrong access codes from one address that has ended, for one log line.
#[derive(Debug, PartialEq, Eq)]
pub struct FailureBurst {
    pub addr: AddrKey,
    pub attempts: u64,
}

impl Budgets {
    pub fn new(limits: AddressLimits) -> Self {
        Self {
            limits,
            by_addr: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, addr: AddrKey, now: Instant, f: impl FnOnce(&mut AddrState) -> T) -> T {
        let mut map = match self.by_addr.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&addr) {
            forget_longest_unseen(&mut map, MAX_ADDRESSES / 10);
        }
        let l = &self.limits;
        let state = map.entry(addr).or_insert_with(|| AddrState {
            sessions: TokenBucket::new(l.sessions_per_minute / 60.0, l.sessions_burst),
            joins: TokenBucket::new(l.joins_per_second, l.joins_burst),
            rooms: TokenBucket::new(l.rooms_per_hour / 3600.0, l.rooms_burst),
            code: CodeFailures::default(),
            last_seen: now,
        });
        state.last_seen = now;
        f(state)
    }

    /// Spends one of `what` from `addr`'s budget; false when it has none left.
    pub fn try_spend(&self, addr: AddrKey, what: Spend) -> bool {
        let now = Instant::now();
        self.with(addr, now, |s| match what {
            Spend::Session => s.sessions.try_take(),
            Spend::Join => s.joins.try_take(),
            Spend::Room => s.rooms.try_take(),
        })
    }

    /// Whether `addr` may try an access code now.
    pub fn code_allowed(&self, addr: AddrKey) -> Result<(), LockedOut> {
        let now = Instant::now();
        self.with(addr, now, |s| match s.code.blocked_until {
            Some(until) if until > now => Err(LockedOut {
                retry_after: until - now,
            }),
            _ => Ok(()),
        })
    }

    /// Records an access-code attempt. Returns true when this wrong code opened a burst
    /// (the one to log at once; the rest of the burst is logged when it ends).
    pub fn code_attempt(&self, addr: AddrKey, right: bool) -> bool {
        let now = Instant::now();
        let limits = &self.limits;
        self.with(addr, now, |s| {
            let code = &mut s.code;
            if right {
                code.count = 0;
                code.blocked_until = None;
                return false;
            }
            // Wrong codes long apart are typos on different days, not a guessing run.
            if code
                .last
                .is_some_and(|last| now.saturating_duration_since(last) > limits.code_lockout)
            {
                code.count = 0;
            }
            code.count += 1;
            code.last = Some(now);
            if code.count > limits.free_code_failures {
                let doublings = (code.count - limits.free_code_failures - 1).min(20);
                let wait = Duration::from_secs(1u64 << doublings).min(limits.code_lockout);
                code.blocked_until = Some(now + wait);
            }
            match &mut code.burst {
                Some(n) => {
                    *n += 1;
                    false
                }
                None => {
                    code.burst = Some(1);
                    true
                }
            }
        })
    }

    /// Forgets addresses unseen for `idle`, and closes failure bursts quiet for `quiet`;
    /// returns the closed bursts, to log.
    pub fn sweep(&self, idle: Duration, quiet: Duration) -> Vec<FailureBurst> {
        let now = Instant::now();
        let mut ended = Vec::new();
        let Ok(mut map) = self.by_addr.lock() else {
            return ended;
        };
        map.retain(|addr, s| {
            let quiet_for = s
                .code
                .last
                .map_or(Duration::MAX, |last| now.saturating_duration_since(last));
            if quiet_for > quiet
                && let Some(attempts) = s.code.burst.take()
            {
                ended.push(FailureBurst {
                    addr: *addr,
                    attempts,
                });
            }
            let locked = s.code.blocked_until.is_some_and(|until| until > now);
            locked || now.saturating_duration_since(s.last_seen) <= idle
        });
        ended
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_addr.lock().map(|m| m.len()).unwrap_or(0)
    }
}

fn forget_longest_unseen(map: &mut HashMap<AddrKey, AddrState>, how_many: usize) {
    let mut seen: Vec<(Instant, AddrKey)> = map.iter().map(|(k, s)| (s.last_seen, *k)).collect();
    seen.sort_unstable_by_key(|(at, _)| *at);
    for (_, key) in seen.into_iter().take(how_many) {
        map.remove(&key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(last: u8) -> AddrKey {
        AddrKey::of([192, 0, 2, last].into())
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_spending_its_budget_leaves_another_untouched() {
        let budgets = Budgets::new(AddressLimits {
            sessions_per_minute: 60.0,
            sessions_burst: 3.0,
            ..AddressLimits::default()
        });
        assert!((0..3).all(|_| budgets.try_spend(key(1), Spend::Session)));
        assert!(!budgets.try_spend(key(1), Spend::Session));
        assert!(budgets.try_spend(key(2), Spend::Session));
        // Budgets are separate per kind.
        assert!(budgets.try_spend(key(1), Spend::Room));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(budgets.try_spend(key(1), Spend::Session));
        assert!(!budgets.try_spend(key(1), Spend::Session));
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_codes_back_off_doubling_to_a_lockout_and_a_right_one_clears_it() {
        let budgets = Budgets::new(AddressLimits {
            free_code_failures: 2,
            code_lockout: Duration::from_secs(60),
            ..AddressLimits::default()
        });
        let a = key(1);
        assert!(
            budgets.code_attempt(a, false),
            "the first wrong code opens a burst"
        );
        assert!(!budgets.code_attempt(a, false));
        assert_eq!(budgets.code_allowed(a), Ok(()));
        let mut waits = Vec::new();
        for _ in 0..8 {
            budgets.code_attempt(a, false);
            let wait = budgets.code_allowed(a).unwrap_err().retry_after;
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        // Another address is not held back by this one.
        assert_eq!(budgets.code_allowed(key(2)), Ok(()));
        budgets.code_attempt(a, true);
        assert_eq!(budgets.code_allowed(a), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_logged_once_when_it_starts_and_counted_when_it_ends() {
        let budgets = Budgets::new(AddressLimits::default());
        let opened: Vec<bool> = (0..4)
            .map(|_| budgets.code_attempt(key(1), false))
            .collect();
        assert_eq!(opened, [true, false, false, false]);
        assert!(
            budgets
                .sweep(Duration::from_secs(3600), Duration::from_secs(60))
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        let ended = budgets.sweep(Duration::from_secs(3600), Duration::from_secs(60));
        assert_eq!(
            ended,
            [FailureBurst {
                addr: key(1),
                attempts: 4
            }]
        );
        // The next wrong code opens a new burst.
        assert!(budgets.code_attempt(key(1), false));
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_unseen_for_long_are_forgotten_but_not_while_locked_out() {
        let budgets = Budgets::new(AddressLimits {
            free_code_failures: 0,
            ..AddressLimits::default()
        });
        budgets.try_spend(key(1), Spend::Join);
        for _ in 0..12 {
            budgets.code_attempt(key(2), false);
        }
        tokio::time::advance(Duration::from_secs(120)).await;
        budgets.sweep(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(budgets.len(), 1, "the locked-out address is remembered");
        assert!(budgets.code_allowed(key(2)).is_err());
    }
}
