//! What the server keeps across restarts: accounts, their devices and tokens, invitations,
//! follows, blocks, reports and suspensions.
//!
//! **One owner.** A [`Backend`] is a plain synchronous interface, one call per transaction.
//! [`Store`] runs one backend on its own thread (`hallway-store`) and hands it jobs over a
//! channel, so exactly one connection exists, calls never interleave inside a transaction,
//! and no async task ever blocks on the disk. The audio path never calls it: a room learns
//! who someone is once, when they join.
//!
//! **Secrets are kept hashed.** Tokens (256 random bits), invitation codes and device-link
//! codes (128) are shown once; the server keeps only their SHA-256, so a copy of the
//! database signs nobody in. (A hash without a salt is enough for random secrets of that
//! size: there is nothing to guess from a dictionary.)
//!
//! **The interface, not the engine.** Everything above this module talks to [`Backend`]; the
//! embedded SQLite one is [`sqlite::SqliteBackend`]. A server cluster sharing accounts adds a
//! PostgreSQL backend behind the same trait.

pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::sync::mpsc;

use crate::protocol::UserId;

/// An account's id: also its [`UserId`] in rooms and in audio frames.
pub type AccountId = UserId;

/// A device's id within the server.
pub type DeviceId = i64;

/// A SHA-256 of a secret (token, invitation or link code).
pub type SecretHash = [u8; 32];

/// An account as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// As the person spelled it, without `@`.
    pub handle: String,
    pub name: String,
    pub bio: String,
    pub created_ms: u64,
    /// Who invited them, by handle; `None` on an open server or for the owner.
    pub invited_by: Option<String>,
    pub admin: bool,
    /// Invitations they may still send; `None` for unlimited (admins).
    pub invitations_left: Option<u32>,
    /// Why the account is suspended, when it is.
    pub suspended: Option<String>,
}

/// A device of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub account: AccountId,
    pub sign_key: [u8; 32],
    pub agree_key: [u8; 32],
    /// What the person called it (e.g. the host name), for the device list.
    pub label: String,
    pub created_ms: u64,
    pub last_seen_ms: u64,
}

/// The keys and label of a device being added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub sign_key: [u8; 32],
    pub agree_key: [u8; 32],
    pub label: String,
}

/// An account being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub handle: String,
    /// The handle's [`crate::protocol::handle::skeleton`]: unique.
    pub handle_key: String,
    pub name: String,
    pub device: NewDevice,
    /// The invitation's hash; required when `invite_only`.
    pub invitation: Option<SecretHash>,
    pub invite_only: bool,
    /// Invitations a new member may send.
    pub invitation_quota: u32,
    pub now_ms: u64,
}

/// Someone's public profile, as one viewer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub account: Account,
    pub followers: u64,
    pub following: u64,
    /// The viewer follows them.
    pub followed: bool,
    /// The viewer blocks them.
    pub blocked: bool,
    /// Their devices' public keys (for end-to-end encryption and fingerprints).
    pub devices: Vec<Device>,
}

/// A report of one person by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: i64,
    pub reporter: String,
    pub reported: String,
    pub reason: String,
    pub created_ms: u64,
}

/// A room scheduled ahead (#15), with its host's handle and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub id: i64,
    pub host: AccountId,
    pub host_handle: String,
    pub host_name: String,
    pub title: String,
    pub description: String,
    pub starts_at_ms: u64,
    pub created_ms: u64,
    /// The live room, once started.
    pub room: Option<String>,
    pub started_ms: Option<u64>,
}

/// A room being scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScheduled {
    pub host: AccountId,
    pub title: String,
    pub description: String,
    pub starts_at_ms: u64,
    pub now_ms: u64,
    /// Refused when the host already has this many not started (and not past
    /// `stale_before_ms`).
    pub max_upcoming: u32,
    pub stale_before_ms: u64,
}

/// Why a store call was refused. Every refusal has its protocol error code in the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the handle is taken, or looks like @{existing}")]
    HandleTaken { existing: String },
    #[error("this device already belongs to an account")]
    DeviceTaken,
    #[error("this server is invite-only")]
    InvitationRequired,
    #[error("no such invitation")]
    InvitationUnknown,
    #[error("the invitation was already used")]
    InvitationUsed,
    #[error("the invitation expired")]
    InvitationExpired,
    #[error("no invitations left")]
    NoInvitationsLeft,
    #[error("no such account")]
    NoSuchAccount,
    #[error("no such device")]
    NoSuchDevice,
    #[error("the account is suspended: {0}")]
    Suspended(String),
    #[error("that is yourself")]
    Yourself,
    #[error("no such scheduled room")]
    NoSuchScheduled,
    #[error("too many upcoming rooms (at most {0})")]
    TooManyScheduled(u32),
    #[error("database error: {0}")]
    Database(String),
    #[error("the store has stopped")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// One transaction per call; see the module doc.
pub trait Backend: Send {
    /// Creates an account and its first device, using the invitation if one is given.
    fn create_account(&mut self, new: &NewAccount) -> Result<(Account, Device), StoreError>;
    /// The account and device a signing key belongs to.
    fn device_by_key(&mut self, sign_key: &[u8; 32]) -> Result<(Account, Device), StoreError>;
    /// Keeps a token for a device until `expires_ms` (refused for a device that is gone or
    /// an account suspended, checked in the same transaction); marks the device seen; keeps
    /// only the device's newest tokens.
    fn add_token(
        &mut self,
        hash: &SecretHash,
        device: DeviceId,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError>;
    /// Who a token signs in, and until when: its account and device, if it is known and
    /// not expired.
    fn token(
        &mut self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(Account, Device, u64)>, StoreError>;
    fn account(&mut self, id: AccountId) -> Result<Account, StoreError>;
    fn account_by_handle(&mut self, handle_key: &str) -> Result<Account, StoreError>;
    /// Records a new invitation by `inviter`, spending one of their invitations (unless
    /// they are an admin); returns what they have left.
    fn create_invitation(
        &mut self,
        inviter: AccountId,
        hash: &SecretHash,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Option<u32>, StoreError>;
    /// True when an admin exists.
    fn has_admin(&mut self) -> Result<bool, StoreError>;
    /// Replaces any unused owner code by this one: whoever uses it becomes an admin.
    fn set_owner_code(&mut self, hash: &SecretHash, now_ms: u64) -> Result<(), StoreError>;
    /// Records a one-time code that adds a device to `account` until `expires_ms`; it
    /// replaces the account's previous code, and expired codes go.
    fn create_link_code(
        &mut self,
        account: AccountId,
        hash: &SecretHash,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError>;
    /// Adds a device to the account a link code was made for, using the code.
    fn link_device(
        &mut self,
        hash: &SecretHash,
        device: &NewDevice,
        now_ms: u64,
    ) -> Result<(Account, Device), StoreError>;
    fn devices(&mut self, account: AccountId) -> Result<Vec<Device>, StoreError>;
    /// Removes a device and its tokens.
    fn revoke_device(&mut self, account: AccountId, device: DeviceId) -> Result<(), StoreError>;
    fn set_profile(&mut self, account: AccountId, name: &str, bio: &str) -> Result<(), StoreError>;
    fn profile(&mut self, viewer: AccountId, handle_key: &str) -> Result<Profile, StoreError>;
    /// Follows (`on`) or unfollows; idempotent.
    fn set_follow(
        &mut self,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Everyone `account` follows.
    fn following(&mut self, account: AccountId) -> Result<Vec<AccountId>, StoreError>;
    /// Blocks (`on`) or unblocks; idempotent.
    fn set_block(
        &mut self,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Everyone `account` blocks.
    fn blocking(&mut self, account: AccountId) -> Result<Vec<AccountId>, StoreError>;
    /// Which of `among` block `account`.
    fn blocked_by(
        &mut self,
        account: AccountId,
        among: &[AccountId],
    ) -> Result<Vec<AccountId>, StoreError>;
    fn report(
        &mut self,
        from: AccountId,
        about: AccountId,
        reason: &str,
        now_ms: u64,
    ) -> Result<i64, StoreError>;
    /// Reports, newest first.
    fn reports(&mut self, limit: u32) -> Result<Vec<Report>, StoreError>;
    /// Suspends an account (deleting its tokens) or lifts a suspension (`reason` `None`).
    fn set_suspended(
        &mut self,
        account: AccountId,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Writes a consistent copy of the whole store to `path`, while it stays in use.
    fn backup(&mut self, path: &Path) -> Result<(), StoreError>;

    /// Schedules a room (#15).
    fn schedule(&mut self, new: &NewScheduled) -> Result<Scheduled, StoreError>;
    /// Scheduled rooms not started that start at or after `since_ms`, and those started at
    /// or after `started_since_ms`, by time, at most `limit`.
    fn upcoming(
        &mut self,
        since_ms: u64,
        started_since_ms: u64,
        limit: u32,
    ) -> Result<Vec<Scheduled>, StoreError>;
    fn scheduled(&mut self, id: i64) -> Result<Scheduled, StoreError>;
    /// Marks it started as live room `room` (`""` while the room is being opened: a claim,
    /// so two starts cannot both open one); refused (`NoSuchScheduled`) when it is gone or
    /// was started (or claimed) already.
    fn start_scheduled(&mut self, id: i64, room: &str, now_ms: u64) -> Result<(), StoreError>;
    /// Completes a claim (`start_scheduled(id, "")`): the live room's id, or `None` to give
    /// the claim back when the room could not be opened.
    fn finish_start(&mut self, id: i64, room: Option<&str>) -> Result<(), StoreError>;
    fn cancel_scheduled(&mut self, id: i64) -> Result<(), StoreError>;
}

type Job = Box<dyn FnOnce(&mut dyn Backend) + Send>;

/// A [`Backend`] on its own thread; cheap to clone, callable from async code.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Moves `backend` onto the store thread. The thread ends when every `Store` is dropped.
    pub fn spawn(mut backend: Box<dyn Backend>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hallway-store".into())
            .spawn(move || {
                for job in queue {
                    // A job that panics (a bug) loses its answer (the caller gets `Closed`),
                    // not the store: the next job runs.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(&mut *backend)
                    }));
                    if ran.is_err() {
                        tracing::error!("a store call panicked; its request failed");
                    }
                }
                tracing::debug!("the store thread stopped (the server is gone)");
            })?;
        Ok(Self { jobs })
    }

    /// Runs `call` on the store thread and waits for its answer.
    pub async fn call<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |backend| {
                let _ = answer.send(call(backend));
            }))
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}
