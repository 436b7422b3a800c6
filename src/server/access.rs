//! Who may see and join a private room (#13).
//!
//! A private room is listed to, described to and joined by only those it is shared with:
//! its maker, the people named by handle when it was made, everyone the maker follows (when
//! asked; looked up at each check, so a follow made later counts), and anyone who came in
//! with the share link's secret (remembered, so the room stays in their list). Everyone
//! else is answered as if there were no such room: a refusal that said "private" would
//! tell a stranger the room exists.
//!
//! The rules here are pure; the store is asked only for the host's follows, by the caller.

use std::collections::HashSet;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::protocol::UserId;

/// A private room's sharing, kept beside its actor (for the door and the listing) and in
/// its cluster directory entry (so every node keeps the same door).
#[derive(Debug, Serialize, Deserialize)]
pub struct Access {
    /// Who made the room: it is shared as they chose, whoever hosts it later.
    pub owner: UserId,
    /// Named when the room was made, sorted.
    pub shared_with: Vec<UserId>,
    /// Everyone the owner follows.
    pub followers: bool,
    /// The share link's secret, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_secret: Option<String>,
    /// Those who came in with the link.
    #[serde(default)]
    admitted: RwLock<HashSet<UserId>>,
}

/// What a check needs from outside: whether the owner follows the person, asked only when
/// the rest does not decide.
pub enum Verdict {
    /// Let in (or shown).
    Yes,
    /// Kept out.
    No,
    /// Let in when the owner follows them.
    IfFollowed,
}

impl Access {
    pub fn new(
        owner: UserId,
        mut shared_with: Vec<UserId>,
        followers: bool,
        link_secret: Option<String>,
    ) -> Self {
        shared_with.sort_unstable();
        shared_with.dedup();
        Self {
            owner,
            shared_with,
            followers,
            link_secret,
            admitted: RwLock::default(),
        }
    }

    /// Whether `user` may see or join the room, with `secret` if they came by the link.
    /// A right link secret lets them in from now on.
    pub fn check(&self, user: UserId, secret: Option<&str>) -> Verdict {
        if user == self.owner || self.shared_with.binary_search(&user).is_ok() {
            return Verdict::Yes;
        }
        if self.admitted.read().is_ok_and(|a| a.contains(&user)) {
            return Verdict::Yes;
        }
        if let (Some(link), Some(given)) = (&self.link_secret, secret)
            && bool::from(link.as_bytes().ct_eq(given.as_bytes()))
        {
            if let Ok(mut admitted) = self.admitted.write() {
                admitted.insert(user);
            }
            return Verdict::Yes;
        }
        if self.followers {
            Verdict::IfFollowed
        } else {
            Verdict::No
        }
    }

    /// A copy for another node's directory (those let in by the link on this node
    /// included).
    pub fn copy(&self) -> Self {
        Self {
            owner: self.owner,
            shared_with: self.shared_with.clone(),
            followers: self.followers,
            link_secret: self.link_secret.clone(),
            admitted: RwLock::new(self.admitted.read().map(|a| a.clone()).unwrap_or_default()),
        }
    }
}

impl Clone for Access {
    fn clone(&self) -> Self {
        self.copy()
    }
}

impl Eq for Access {}

impl PartialEq for Access {
    fn eq(&self, other: &Self) -> bool {
        self.owner == other.owner
            && self.shared_with == other.shared_with
            && self.followers == other.followers
            && self.link_secret == other.link_secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(v: Verdict) -> bool {
        matches!(v, Verdict::Yes)
    }

    #[test]
    fn the_owner_and_the_named_are_in_and_strangers_out() {
        let access = Access::new(1, vec![3, 2, 3], false, None);
        assert_eq!(access.shared_with, vec![2, 3]);
        assert!(yes(access.check(1, None)));
        assert!(yes(access.check(2, None)));
        assert!(matches!(access.check(4, None), Verdict::No));
        assert!(matches!(access.check(4, Some("guess")), Verdict::No));
    }

    #[test]
    fn the_link_lets_in_and_is_remembered_and_a_wrong_one_does_not() {
        let access = Access::new(1, vec![], false, Some("s3cret".into()));
        assert!(matches!(access.check(5, Some("s3cre")), Verdict::No));
        assert!(matches!(access.check(5, Some("s3cret!")), Verdict::No));
        assert!(yes(access.check(5, Some("s3cret"))));
        assert!(yes(access.check(5, None)), "remembered without the link");
        assert!(yes(access.copy().check(5, None)), "and in a copy");
        assert!(matches!(access.check(6, None), Verdict::No));
    }

    #[test]
    fn followers_are_left_to_the_store() {
        let access = Access::new(1, vec![2], true, None);
        assert!(yes(access.check(2, None)));
        assert!(matches!(access.check(7, None), Verdict::IfFollowed));
    }
}
