//! The shared store: one PostgreSQL database that every server of a cluster uses at once, with
//! the same tables and the same answers as the embedded [`super::sqlite`] store.
//!
//! - **Race-free across processes: every call is one `SERIALIZABLE` transaction, retried.**
//!   PostgreSQL then guarantees that concurrent calls, from any number of servers, have the
//!   effect of some one-at-a-time order: what the embedded store gets from having a single
//!   writer. So each call reads, checks and writes as the SQLite one does, and its checks hold
//!   across processes. When two calls collide (two servers spending the same invitation,
//!   taking the same handle, counting down the same quota), PostgreSQL aborts one with
//!   SQLSTATE 40001 (40P01 for a deadlock); it runs again from the start on a fresh snapshot,
//!   sees the winner's commit and answers as SQLite would (`InvitationUsed`,
//!   `HandleTaken { existing }`, ...). A unique violation (23505) is retried the same way: it
//!   too means a concurrent call took the key first, and the retry's own check names it.
//!   Why not `SELECT ... FOR UPDATE`: several checks are about rows that do not exist yet (a
//!   free handle, no unused owner code, no live link code), which a row lock cannot hold;
//!   serializable isolation holds them with predicate locks, and stays right for calls added
//!   later without a locking plan each. The unique constraints (handle key, device key, one
//!   link code per account, one unused owner code) are kept as a second line of defence.
//! - **Reads are transactions too** (`READ ONLY`): a profile's counts, devices and account
//!   come from one snapshot.
//! - **Versioned schema, migrated by one server at a time.** [`MIGRATIONS`] in order; the
//!   `hallway_schema` table lists those that ran. Servers of a cluster may start together:
//!   each migrates under a transaction-scoped advisory lock, so one applies the steps and the
//!   others find them done. A database with our table names but no `hallway_schema`, or a
//!   newer schema, is refused unchanged. While a cluster upgrades, old servers run on the new
//!   schema: a step must leave the previous release's queries working (add, do not rename).
//! - **Blocking.** The `postgres` crate drives each connection with a small Tokio runtime of
//!   its own, and panics if called (or dropped) on another runtime's thread: connect on a plain
//!   thread (`spawn_blocking`, or before the runtime), then hand the backend to
//!   [`super::Store::spawn`], whose thread makes every call.
//! - **Connection.** Plain TCP or a Unix socket (`NoTls`): fine on loopback or a private
//!   network; TLS to the database is still to be added. A connection found lost at BEGIN is
//!   replaced and the call runs on the new one; lost later, the call fails (it may have
//!   committed, so it is not run again) and the next call reconnects.
//! - **Backups are PostgreSQL's** (`pg_dump`, base backups, a provider's snapshots):
//!   [`Backend::backup`] says so.
//! - **Ids** are `BIGINT` identities, capped at `u32::MAX` because an account's id is its
//!   [`crate::protocol::UserId`]. A sequence skips the numbers that rolled-back or retried
//!   transactions drew, so ids have gaps, where SQLite's grow by one.

use std::path::Path;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel, NoTls, Row, Transaction};

use super::{
    Account, AccountId, Backend, Device, DeviceId, NewAccount, NewDevice, NewScheduled, Profile,
    Report, Scheduled, SecretHash, StoreError,
};

/// The schema, one step per release that changed it. Never edit a step that shipped: add one.
/// Tables and columns are the SQLite schema's, in PostgreSQL's types.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE accounts (
        id BIGINT GENERATED ALWAYS AS IDENTITY (MAXVALUE 4294967295) PRIMARY KEY,
        handle TEXT NOT NULL,
        handle_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        bio TEXT NOT NULL DEFAULT '',
        created_ms BIGINT NOT NULL,
        invited_by BIGINT REFERENCES accounts (id),
        admin BOOLEAN NOT NULL DEFAULT false,
        invitations_left BIGINT CHECK (invitations_left BETWEEN 0 AND 4294967295),
        suspended TEXT,
        suspended_ms BIGINT
    );
    CREATE INDEX accounts_admins ON accounts (id) WHERE admin;
    CREATE TABLE devices (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account BIGINT NOT NULL REFERENCES accounts (id),
        sign_key BYTEA NOT NULL UNIQUE,
        agree_key BYTEA NOT NULL,
        label TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        last_seen_ms BIGINT NOT NULL
    );
    CREATE INDEX devices_by_account ON devices (account);
    CREATE TABLE tokens (
        hash BYTEA PRIMARY KEY,
        device BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
        expires_ms BIGINT NOT NULL
    );
    CREATE INDEX tokens_by_device ON tokens (device, expires_ms);
    CREATE TABLE invitations (
        hash BYTEA PRIMARY KEY,
        inviter BIGINT REFERENCES accounts (id),
        makes_admin BOOLEAN NOT NULL DEFAULT false,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT,
        used_by BIGINT REFERENCES accounts (id),
        used_ms BIGINT
    );
    CREATE UNIQUE INDEX invitations_one_owner_code ON invitations (makes_admin)
        WHERE makes_admin AND used_by IS NULL;
    CREATE TABLE link_codes (
        hash BYTEA PRIMARY KEY,
        account BIGINT NOT NULL UNIQUE REFERENCES accounts (id),
        expires_ms BIGINT NOT NULL
    );
    CREATE INDEX link_codes_by_expiry ON link_codes (expires_ms);
    CREATE TABLE follows (
        follower BIGINT NOT NULL REFERENCES accounts (id),
        followee BIGINT NOT NULL REFERENCES accounts (id),
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (follower, followee)
    );
    CREATE INDEX follows_by_followee ON follows (followee, follower);
    CREATE TABLE blocks (
        blocker BIGINT NOT NULL REFERENCES accounts (id),
        blocked BIGINT NOT NULL REFERENCES accounts (id),
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (blocker, blocked)
    );
    CREATE INDEX blocks_by_blocked ON blocks (blocked, blocker);
    CREATE TABLE reports (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        reporter BIGINT NOT NULL REFERENCES accounts (id),
        reported BIGINT NOT NULL REFERENCES accounts (id),
        reason TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );",
    "CREATE TABLE scheduled_rooms (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        host BIGINT NOT NULL REFERENCES accounts (id),
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        starts_at_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        room TEXT,
        started_ms BIGINT
    );
    CREATE INDEX scheduled_by_time ON scheduled_rooms (starts_at_ms);
    CREATE INDEX scheduled_by_host ON scheduled_rooms (host, starts_at_ms);",
];

/// The tables of [`MIGRATIONS`]: one of them in a database without `hallway_schema` means the
/// database is someone else's (or a damaged one of ours), and is not touched.
const TABLES: &[&str] = &[
    "accounts",
    "devices",
    "tokens",
    "invitations",
    "link_codes",
    "follows",
    "blocks",
    "reports",
    "scheduled_rooms",
];

/// The advisory lock held while migrating ("hallway!" in ASCII). Advisory locks are per
/// database, so servers of other databases on the same PostgreSQL do not wait for it.
const SCHEMA_LOCK: i64 = 0x6861_6c6c_7761_7921;

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs of one call before giving up on serialization failures. Two servers racing need two;
/// the rest is for a busy cluster, with a growing random pause between runs.
const ATTEMPTS: u32 = 10;

/// Tokens one device keeps (each sign-in makes one; the oldest go first). As in SQLite.
const TOKENS_PER_DEVICE: i64 = 20;

/// Why the database could not be used. Nothing was changed in it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error(
        "the PostgreSQL URL is not valid ({0}); write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    Url(String),
    /// No connection: server down, wrong address, refused credentials.
    #[error(
        "cannot connect to PostgreSQL: {0}; check that it runs, and the URL's host, port, user, password and database"
    )]
    Connect(String),
    /// Our table names without our schema version.
    #[error(
        "the database has tables named like Hallway's but no hallway_schema table; give Hallway a database of its own"
    )]
    Foreign,
    /// Migrated by a newer release.
    #[error(
        "the database's schema is at version {found}, newer than this Hallway's {known}; run the newer Hallway"
    )]
    TooNew { found: i64, known: usize },
    /// Reading or changing the schema failed.
    #[error("cannot prepare the database's schema: {0}")]
    Migrate(String),
}

/// A PostgreSQL connection with the schema in place.
pub struct PostgresBackend {
    /// Kept to reconnect after the connection is lost.
    config: Config,
    client: Client,
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or
    /// PostgreSQL's `key=value` form) and brings its schema up to date. Blocking: see the
    /// module doc.
    pub fn connect(url: &str) -> Result<Self, ConnectError> {
        let mut config: Config = url.parse().map_err(|e| ConnectError::Url(describe(&e)))?;
        if config.get_application_name().is_none() {
            // Names our sessions in pg_stat_activity.
            config.application_name("hallway");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // One thread serves every sign-in of this node: a connection gone half-open, or a
        // statement stuck behind a lock, must fail within seconds, not hold it for minutes.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(15));
        if config.get_options().is_none() {
            config.options("-c statement_timeout=10000 -c lock_timeout=5000");
        }
        let mut client = config
            .connect(NoTls)
            .map_err(|e| ConnectError::Connect(describe(&e)))?;
        migrate(&mut client)?;
        Ok(Self { config, client })
    }

    /// Runs `call` in one `SERIALIZABLE` transaction (read-only for [`Access::Read`]) and
    /// commits it; runs it again from the start when PostgreSQL aborts it for a concurrent
    /// call (see the module doc). A refusal rolls back whatever the call wrote.
    fn run<T>(
        &mut self,
        access: Access,
        mut call: impl FnMut(&mut Transaction<'_>) -> Step<T>,
    ) -> Result<T, StoreError> {
        let mut reconnected = false;
        let mut attempt = 1;
        loop {
            if self.client.is_closed() {
                self.reconnect()?;
                reconnected = true;
            }
            let error = match run_once(&mut self.client, access, &mut call) {
                Ok(value) => return Ok(value),
                Err(Abort::Refused(refusal)) => return Err(refusal),
                // A connection that died while idle (a PostgreSQL restart, a failover, an
                // idle timeout) is found dead by the next BEGIN. Nothing of the call ran, so
                // it can run on a new connection.
                Err(Abort::NotStarted(e)) if !reconnected => {
                    tracing::warn!("cannot begin a PostgreSQL transaction ({e}); reconnecting");
                    self.reconnect()?;
                    reconnected = true;
                    continue;
                }
                Err(Abort::NotStarted(e) | Abort::Database(e)) => e,
            };
            if !is_conflict(&error) {
                return Err(database(&error));
            }
            if attempt == ATTEMPTS {
                return Err(StoreError::Database(format!(
                    "{} (still conflicting with other servers after {ATTEMPTS} tries)",
                    describe(&error)
                )));
            }
            std::thread::sleep(pause(attempt));
            attempt += 1;
        }
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.client = self.config.connect(NoTls).map_err(|e| {
            StoreError::Database(format!("cannot reconnect to PostgreSQL: {}", describe(&e)))
        })?;
        Ok(())
    }
}

/// Applies the steps of [`MIGRATIONS`] not yet run, in one transaction under [`SCHEMA_LOCK`]
/// (PostgreSQL's DDL is transactional: a failed step leaves nothing behind).
fn migrate(client: &mut Client) -> Result<(), ConnectError> {
    let failed = |e: postgres::Error| ConnectError::Migrate(describe(&e));
    // READ COMMITTED whatever the server's default: each statement after the lock then sees
    // what a server that held the lock before us committed.
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(failed)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hallway_schema (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .map_err(failed)?;
    let version: i64 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM hallway_schema", &[])
        .and_then(|r| r.try_get(0))
        .map_err(failed)?;
    if version == 0 {
        let foreign: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
                     WHERE schemaname = current_schema() AND tablename = ANY ($1::TEXT[]))",
                &[&TABLES],
            )
            .and_then(|r| r.try_get(0))
            .map_err(failed)?;
        if foreign {
            return Err(ConnectError::Foreign);
        }
    }
    let known = MIGRATIONS.len();
    let done = usize::try_from(version).unwrap_or(usize::MAX);
    if done > known {
        return Err(ConnectError::TooNew {
            found: version,
            known,
        });
    }
    for (step, sql) in (1_i64..).zip(MIGRATIONS).skip(done) {
        tx.batch_execute(sql).map_err(failed)?;
        tx.execute("INSERT INTO hallway_schema (version) VALUES ($1)", &[&step])
            .map_err(failed)?;
        tracing::info!(version = step, "migrated the PostgreSQL schema");
    }
    tx.commit().map_err(failed)
}

/// Whether a call only reads.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// Why one run of a call ended without its answer.
enum Abort {
    /// The call's answer is a refusal: the transaction rolls back and the refusal is returned.
    Refused(StoreError),
    /// BEGIN failed: nothing of the call ran.
    NotStarted(postgres::Error),
    /// PostgreSQL refused a statement or the commit; retried when it is a conflict.
    Database(postgres::Error),
}

impl From<StoreError> for Abort {
    fn from(refusal: StoreError) -> Self {
        Self::Refused(refusal)
    }
}

impl From<postgres::Error> for Abort {
    fn from(e: postgres::Error) -> Self {
        Self::Database(e)
    }
}

/// What a step of a call returns: `?` takes both refusals and database errors.
type Step<T> = Result<T, Abort>;

/// One run of `call` in its own transaction. Dropping an unfinished transaction rolls it back.
fn run_once<T>(
    client: &mut Client,
    access: Access,
    call: &mut impl FnMut(&mut Transaction<'_>) -> Step<T>,
) -> Step<T> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .read_only(matches!(access, Access::Read))
        .start()
        .map_err(Abort::NotStarted)?;
    let value = call(&mut tx)?;
    tx.commit()?;
    Ok(value)
}

/// A concurrent call got in the way: running again from the start gives the right answer.
fn is_conflict(e: &postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::UNIQUE_VIOLATION
    })
}

/// A random pause before run `attempt + 1`, up to 2^(attempt+1) ms (capped near 130 ms), so
/// that two servers that collided do not collide again in step.
fn pause(attempt: u32) -> Duration {
    let ceiling_ms = 2_u64 << attempt.min(6);
    Duration::from_millis(1 + u64::from(rand::random::<u32>()) % ceiling_ms)
}

/// PostgreSQL's error on one line (its detail and hint follow on lines of their own).
fn describe(e: &postgres::Error) -> String {
    e.to_string().replace('\n', "; ")
}

/// A database error as the store reports it.
fn database(e: &postgres::Error) -> StoreError {
    StoreError::Database(describe(e))
}

/// A value that does not fit where Hallway keeps it: a bug or a foreign row, not a refusal.
fn out_of_range(what: &str) -> Abort {
    Abort::Refused(StoreError::Database(format!("{what} is out of range")))
}

fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn account_id(id: i64) -> Step<AccountId> {
    AccountId::try_from(id).map_err(|_| out_of_range("an account id"))
}

fn key(bytes: Vec<u8>) -> Step<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| out_of_range("a device key"))
}

const ACCOUNT_COLUMNS: &str = "a.id, a.handle, a.name, a.bio, a.created_ms,
    (SELECT i.handle FROM accounts i WHERE i.id = a.invited_by),
    a.admin, a.invitations_left, a.suspended";

fn account_row(r: &Row) -> Step<Account> {
    Ok(Account {
        id: account_id(r.try_get(0)?)?,
        handle: r.try_get(1)?,
        name: r.try_get(2)?,
        bio: r.try_get(3)?,
        created_ms: r.try_get::<_, i64>(4)? as u64,
        invited_by: r.try_get(5)?,
        admin: r.try_get(6)?,
        invitations_left: r
            .try_get::<_, Option<i64>>(7)?
            .map(|n| u32::try_from(n).map_err(|_| out_of_range("an invitation count")))
            .transpose()?,
        suspended: r.try_get(8)?,
    })
}

const DEVICE_COLUMNS: &str =
    "d.id, d.account, d.sign_key, d.agree_key, d.label, d.created_ms, d.last_seen_ms";

fn device_row(r: &Row, at: usize) -> Step<Device> {
    Ok(Device {
        id: r.try_get(at)?,
        account: account_id(r.try_get(at + 1)?)?,
        sign_key: key(r.try_get(at + 2)?)?,
        agree_key: key(r.try_get(at + 3)?)?,
        label: r.try_get(at + 4)?,
        created_ms: r.try_get::<_, i64>(at + 5)? as u64,
        last_seen_ms: r.try_get::<_, i64>(at + 6)? as u64,
    })
}

fn account_by_id(tx: &mut Transaction<'_>, id: AccountId) -> Step<Account> {
    let row = tx.query_opt(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1"),
        &[&i64::from(id)],
    )?;
    match row {
        Some(row) => account_row(&row),
        None => Err(StoreError::NoSuchAccount.into()),
    }
}

fn account_by_handle(tx: &mut Transaction<'_>, handle_key: &str) -> Step<Account> {
    let row = tx.query_opt(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.handle_key = $1"),
        &[&handle_key],
    )?;
    match row {
        Some(row) => account_row(&row),
        None => Err(StoreError::NoSuchAccount.into()),
    }
}

fn devices_of(tx: &mut Transaction<'_>, account: AccountId) -> Step<Vec<Device>> {
    tx.query(
        &format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.account = $1 ORDER BY d.id"),
        &[&i64::from(account)],
    )?
    .iter()
    .map(|r| device_row(r, 0))
    .collect()
}

fn insert_device(
    tx: &mut Transaction<'_>,
    account: AccountId,
    device: &NewDevice,
    now_ms: u64,
) -> Step<Device> {
    let sign_key = &device.sign_key[..];
    let taken: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE sign_key = $1)",
            &[&sign_key],
        )?
        .try_get(0)?;
    if taken {
        return Err(StoreError::DeviceTaken.into());
    }
    let row = tx.query_one(
        &format!(
            "INSERT INTO devices AS d (account, sign_key, agree_key, label, created_ms,
                 last_seen_ms)
             VALUES ($1, $2, $3, $4, $5, $5)
             RETURNING {DEVICE_COLUMNS}"
        ),
        &[
            &i64::from(account),
            &sign_key,
            &&device.agree_key[..],
            &device.label,
            &ms(now_ms),
        ],
    )?;
    device_row(&row, 0)
}

const SCHEDULED_COLUMNS: &str = "s.id, s.host, a.handle, a.name, s.title, s.description,
    s.starts_at_ms, s.created_ms, s.room, s.started_ms";

fn scheduled_row(r: &Row) -> Step<Scheduled> {
    Ok(Scheduled {
        id: r.try_get(0)?,
        host: account_id(r.try_get(1)?)?,
        host_handle: r.try_get(2)?,
        host_name: r.try_get(3)?,
        title: r.try_get(4)?,
        description: r.try_get(5)?,
        starts_at_ms: r.try_get::<_, i64>(6)?.max(0) as u64,
        created_ms: r.try_get::<_, i64>(7)?.max(0) as u64,
        room: r.try_get(8)?,
        started_ms: r.try_get::<_, Option<i64>>(9)?.map(|t| t.max(0) as u64),
    })
}

fn report_row(r: &Row) -> Step<Report> {
    Ok(Report {
        id: r.try_get(0)?,
        reporter: r.try_get(1)?,
        reported: r.try_get(2)?,
        reason: r.try_get(3)?,
        created_ms: r.try_get::<_, i64>(4)? as u64,
    })
}

/// The two relations of one account to another, each a table keyed (from, to).
#[derive(Clone, Copy)]
enum Edge {
    Follow,
    Block,
}

impl Edge {
    /// (insert, delete, select the `to`s of a `from`): SQL can take values as parameters,
    /// not table names. The select is in `to` order, the order SQLite's key gives.
    fn sql(self) -> [&'static str; 3] {
        match self {
            Edge::Follow => [
                "INSERT INTO follows (follower, followee, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                "DELETE FROM follows WHERE follower = $1 AND followee = $2",
                "SELECT followee FROM follows WHERE follower = $1 ORDER BY followee",
            ],
            Edge::Block => [
                "INSERT INTO blocks (blocker, blocked, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2",
                "SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked",
            ],
        }
    }
}

impl PostgresBackend {
    /// Adds (`on`) or removes an edge; idempotent; none to oneself.
    fn set_edge(
        &mut self,
        edge: Edge,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if from == to {
            return Err(StoreError::Yourself);
        }
        let [insert, delete, _] = edge.sql();
        let (from, to) = (i64::from(from), i64::from(to));
        self.run(Access::Write, |tx| {
            if on {
                tx.execute(insert, &[&from, &to, &ms(now_ms)])?;
            } else {
                tx.execute(delete, &[&from, &to])?;
            }
            Ok(())
        })
    }

    /// Every `to` of `from`'s edges.
    fn edges_from(&mut self, edge: Edge, from: AccountId) -> Result<Vec<AccountId>, StoreError> {
        let [_, _, select] = edge.sql();
        self.run(Access::Read, |tx| {
            tx.query(select, &[&i64::from(from)])?
                .iter()
                .map(|r| account_id(r.try_get(0)?))
                .collect()
        })
    }
}

impl Backend for PostgresBackend {
    fn create_account(&mut self, new: &NewAccount) -> Result<(Account, Device), StoreError> {
        self.run(Access::Write, |tx| {
            let now_ms = ms(new.now_ms);
            // The invitation first: without a good one, nothing is said about handles (which
            // would tell a stranger who has an account here).
            // (inviter, makes_admin)
            let mut invited: Option<(Option<i64>, bool)> = None;
            match &new.invitation {
                Some(hash) => {
                    let row = tx.query_opt(
                        "SELECT inviter, makes_admin, expires_ms, used_by FROM invitations
                         WHERE hash = $1",
                        &[&&hash[..]],
                    )?;
                    let Some(row) = row else {
                        return Err(StoreError::InvitationUnknown.into());
                    };
                    let inviter: Option<i64> = row.try_get(0)?;
                    let admin: bool = row.try_get(1)?;
                    let expires: Option<i64> = row.try_get(2)?;
                    let used_by: Option<i64> = row.try_get(3)?;
                    if used_by.is_some() {
                        return Err(StoreError::InvitationUsed.into());
                    }
                    if expires.is_some_and(|e| e <= now_ms) {
                        return Err(StoreError::InvitationExpired.into());
                    }
                    invited = Some((inviter, admin));
                }
                None if new.invite_only => return Err(StoreError::InvitationRequired.into()),
                None => {}
            }
            // A device that has an account here is told so, whatever handle it asked for.
            let device_known: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM devices WHERE sign_key = $1)",
                    &[&&new.device.sign_key[..]],
                )?
                .try_get(0)?;
            if device_known {
                return Err(StoreError::DeviceTaken.into());
            }
            if let Some(row) = tx.query_opt(
                "SELECT handle FROM accounts WHERE handle_key = $1",
                &[&new.handle_key],
            )? {
                return Err(StoreError::HandleTaken {
                    existing: row.try_get(0)?,
                }
                .into());
            }
            let admin = invited.is_some_and(|(_, admin)| admin);
            let quota = (!admin).then_some(i64::from(new.invitation_quota));
            let id: i64 = tx
                .query_one(
                    "INSERT INTO accounts (handle, handle_key, name, created_ms, invited_by,
                         admin, invitations_left)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     RETURNING id",
                    &[
                        &new.handle,
                        &new.handle_key,
                        &new.name,
                        &now_ms,
                        &invited.and_then(|(inviter, _)| inviter),
                        &admin,
                        &quota,
                    ],
                )?
                .try_get(0)?;
            let id = account_id(id)?;
            if let Some(hash) = &new.invitation {
                tx.execute(
                    "UPDATE invitations SET used_by = $1, used_ms = $2 WHERE hash = $3",
                    &[&i64::from(id), &now_ms, &&hash[..]],
                )?;
            }
            let device = insert_device(tx, id, &new.device, new.now_ms)?;
            let account = account_by_id(tx, id)?;
            Ok((account, device))
        })
    }

    fn device_by_key(&mut self, sign_key: &[u8; 32]) -> Result<(Account, Device), StoreError> {
        self.run(Access::Read, |tx| {
            let row = tx.query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.sign_key = $1"),
                &[&&sign_key[..]],
            )?;
            let Some(row) = row else {
                return Err(StoreError::NoSuchDevice.into());
            };
            let device = device_row(&row, 0)?;
            let account = account_by_id(tx, device.account)?;
            Ok((account, device))
        })
    }

    fn add_token(
        &mut self,
        hash: &SecretHash,
        device: DeviceId,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            // Checked in the same transaction as the insert: a device revoked or an account
            // suspended a moment ago, by any server, gets no token, whatever the caller read
            // before (a suspension that commits while this runs makes this run again).
            let row = tx.query_opt(
                "SELECT a.suspended FROM devices d JOIN accounts a ON a.id = d.account
                 WHERE d.id = $1",
                &[&device],
            )?;
            match row.map(|r| r.try_get::<_, Option<String>>(0)).transpose()? {
                None => return Err(StoreError::NoSuchDevice.into()),
                Some(Some(reason)) => return Err(StoreError::Suspended(reason).into()),
                Some(None) => {}
            }
            tx.execute(
                "DELETE FROM tokens WHERE device = $1 AND expires_ms <= $2",
                &[&device, &ms(now_ms)],
            )?;
            tx.execute(
                "INSERT INTO tokens (hash, device, expires_ms) VALUES ($1, $2, $3)",
                &[&&hash[..], &device, &ms(expires_ms)],
            )?;
            // A device keeps its newest tokens only: signing in in a loop cannot grow the table.
            tx.execute(
                "DELETE FROM tokens WHERE device = $1 AND hash NOT IN
                     (SELECT hash FROM tokens WHERE device = $1
                      ORDER BY expires_ms DESC LIMIT $2)",
                &[&device, &TOKENS_PER_DEVICE],
            )?;
            tx.execute(
                "UPDATE devices SET last_seen_ms = $1 WHERE id = $2",
                &[&ms(now_ms), &device],
            )?;
            Ok(())
        })
    }

    fn token(
        &mut self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(Account, Device, u64)>, StoreError> {
        self.run(Access::Read, |tx| {
            let row = tx.query_opt(
                &format!(
                    "SELECT t.expires_ms, {DEVICE_COLUMNS} FROM tokens t
                     JOIN devices d ON d.id = t.device
                     WHERE t.hash = $1 AND t.expires_ms > $2"
                ),
                &[&&hash[..], &ms(now_ms)],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            let expires_ms = row.try_get::<_, i64>(0)? as u64;
            let device = device_row(&row, 1)?;
            let account = account_by_id(tx, device.account)?;
            Ok(Some((account, device, expires_ms)))
        })
    }

    fn account(&mut self, id: AccountId) -> Result<Account, StoreError> {
        self.run(Access::Read, |tx| account_by_id(tx, id))
    }

    fn account_by_handle(&mut self, handle_key: &str) -> Result<Account, StoreError> {
        self.run(Access::Read, |tx| account_by_handle(tx, handle_key))
    }

    fn create_invitation(
        &mut self,
        inviter: AccountId,
        hash: &SecretHash,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Option<u32>, StoreError> {
        self.run(Access::Write, |tx| {
            let account = account_by_id(tx, inviter)?;
            if let Some(reason) = account.suspended {
                return Err(StoreError::Suspended(reason).into());
            }
            let left = match account.invitations_left {
                None => None,
                Some(0) => return Err(StoreError::NoInvitationsLeft.into()),
                Some(n) => Some(n - 1),
            };
            tx.execute(
                "UPDATE accounts SET invitations_left = $1 WHERE id = $2",
                &[&left.map(i64::from), &i64::from(inviter)],
            )?;
            tx.execute(
                "INSERT INTO invitations (hash, inviter, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&hash[..],
                    &i64::from(inviter),
                    &ms(now_ms),
                    &ms(expires_ms),
                ],
            )?;
            Ok(left)
        })
    }

    fn has_admin(&mut self) -> Result<bool, StoreError> {
        self.run(Access::Read, |tx| {
            Ok(tx
                .query_one("SELECT EXISTS (SELECT 1 FROM accounts WHERE admin)", &[])?
                .try_get(0)?)
        })
    }

    fn set_owner_code(&mut self, hash: &SecretHash, now_ms: u64) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            tx.execute(
                "DELETE FROM invitations WHERE makes_admin AND used_by IS NULL",
                &[],
            )?;
            tx.execute(
                "INSERT INTO invitations (hash, inviter, makes_admin, created_ms)
                 VALUES ($1, NULL, true, $2)",
                &[&&hash[..], &ms(now_ms)],
            )?;
            Ok(())
        })
    }

    fn create_link_code(
        &mut self,
        account: AccountId,
        hash: &SecretHash,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            // One live code per account (a new one replaces it), and none kept past its time:
            // asking in a loop cannot grow the table.
            tx.execute(
                "DELETE FROM link_codes WHERE account = $1 OR expires_ms <= $2",
                &[&i64::from(account), &ms(now_ms)],
            )?;
            tx.execute(
                "INSERT INTO link_codes (hash, account, expires_ms) VALUES ($1, $2, $3)",
                &[&&hash[..], &i64::from(account), &ms(expires_ms)],
            )?;
            Ok(())
        })
    }

    fn link_device(
        &mut self,
        hash: &SecretHash,
        device: &NewDevice,
        now_ms: u64,
    ) -> Result<(Account, Device), StoreError> {
        self.run(Access::Write, |tx| {
            let row = tx.query_opt(
                "SELECT account, expires_ms FROM link_codes WHERE hash = $1",
                &[&&hash[..]],
            )?;
            let Some(row) = row else {
                return Err(StoreError::InvitationUnknown.into());
            };
            let account = account_id(row.try_get(0)?)?;
            let expires: i64 = row.try_get(1)?;
            if expires <= ms(now_ms) {
                return Err(StoreError::InvitationExpired.into());
            }
            // Used once: of two servers using it at once, one commits and the other runs
            // again and finds it gone.
            tx.execute("DELETE FROM link_codes WHERE hash = $1", &[&&hash[..]])?;
            let owner = account_by_id(tx, account)?;
            if let Some(reason) = owner.suspended {
                return Err(StoreError::Suspended(reason).into());
            }
            let device = insert_device(tx, account, device, now_ms)?;
            Ok((owner, device))
        })
    }

    fn devices(&mut self, account: AccountId) -> Result<Vec<Device>, StoreError> {
        self.run(Access::Read, |tx| devices_of(tx, account))
    }

    fn revoke_device(&mut self, account: AccountId, device: DeviceId) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            tx.execute("DELETE FROM tokens WHERE device = $1", &[&device])?;
            let removed = tx.execute(
                "DELETE FROM devices WHERE id = $1 AND account = $2",
                &[&device, &i64::from(account)],
            )?;
            if removed == 0 {
                return Err(StoreError::NoSuchDevice.into());
            }
            Ok(())
        })
    }

    fn set_profile(&mut self, account: AccountId, name: &str, bio: &str) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            let changed = tx.execute(
                "UPDATE accounts SET name = $1, bio = $2 WHERE id = $3",
                &[&name, &bio, &i64::from(account)],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchAccount.into());
            }
            Ok(())
        })
    }

    fn profile(&mut self, viewer: AccountId, handle_key: &str) -> Result<Profile, StoreError> {
        self.run(Access::Read, |tx| {
            let account = account_by_handle(tx, handle_key)?;
            let row = tx.query_one(
                "SELECT (SELECT count(*) FROM follows WHERE followee = $1),
                        (SELECT count(*) FROM follows WHERE follower = $1),
                        EXISTS (SELECT 1 FROM follows WHERE follower = $2 AND followee = $1),
                        EXISTS (SELECT 1 FROM blocks WHERE blocker = $2 AND blocked = $1)",
                &[&i64::from(account.id), &i64::from(viewer)],
            )?;
            let followers = row.try_get::<_, i64>(0)? as u64;
            let following = row.try_get::<_, i64>(1)? as u64;
            let followed = row.try_get(2)?;
            let blocked = row.try_get(3)?;
            let devices = devices_of(tx, account.id)?;
            Ok(Profile {
                account,
                followers,
                following,
                followed,
                blocked,
                devices,
            })
        })
    }

    fn set_follow(
        &mut self,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.set_edge(Edge::Follow, from, to, on, now_ms)
    }

    fn following(&mut self, account: AccountId) -> Result<Vec<AccountId>, StoreError> {
        self.edges_from(Edge::Follow, account)
    }

    fn set_block(
        &mut self,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.set_edge(Edge::Block, from, to, on, now_ms)
    }

    fn blocking(&mut self, account: AccountId) -> Result<Vec<AccountId>, StoreError> {
        self.edges_from(Edge::Block, account)
    }

    fn blocked_by(
        &mut self,
        account: AccountId,
        among: &[AccountId],
    ) -> Result<Vec<AccountId>, StoreError> {
        let among: Vec<i64> = among.iter().copied().map(i64::from).collect();
        // One round trip for the whole list; in the list's order, as SQLite answers.
        self.run(Access::Read, |tx| {
            tx.query(
                "SELECT o.id FROM unnest($2::BIGINT[]) WITH ORDINALITY AS o (id, n)
                 WHERE EXISTS (SELECT 1 FROM blocks WHERE blocker = o.id AND blocked = $1)
                 ORDER BY o.n",
                &[&i64::from(account), &among],
            )?
            .iter()
            .map(|r| account_id(r.try_get(0)?))
            .collect()
        })
    }

    fn report(
        &mut self,
        from: AccountId,
        about: AccountId,
        reason: &str,
        now_ms: u64,
    ) -> Result<i64, StoreError> {
        if from == about {
            return Err(StoreError::Yourself);
        }
        self.run(Access::Write, |tx| {
            Ok(tx
                .query_one(
                    "INSERT INTO reports (reporter, reported, reason, created_ms)
                     VALUES ($1, $2, $3, $4)
                     RETURNING id",
                    &[&i64::from(from), &i64::from(about), &reason, &ms(now_ms)],
                )?
                .try_get(0)?)
        })
    }

    fn schedule(&mut self, new: &NewScheduled) -> Result<Scheduled, StoreError> {
        self.run(Access::Write, |tx| {
            // One host's rooms are counted and added under a lock on the host's row, so two
            // nodes scheduling at once cannot both pass the count.
            tx.execute(
                "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&i64::from(new.host)],
            )?;
            let upcoming: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM scheduled_rooms
                     WHERE host = $1 AND room IS NULL AND starts_at_ms >= $2",
                    &[&i64::from(new.host), &ms(new.stale_before_ms)],
                )?
                .try_get(0)?;
            if upcoming >= i64::from(new.max_upcoming) {
                return Err(StoreError::TooManyScheduled(new.max_upcoming).into());
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO scheduled_rooms (host, title, description, starts_at_ms, created_ms)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[
                        &i64::from(new.host),
                        &new.title,
                        &new.description,
                        &ms(new.starts_at_ms),
                        &ms(new.now_ms),
                    ],
                )?
                .try_get(0)?;
            scheduled_row(&tx.query_one(
                &format!(
                    "SELECT {SCHEDULED_COLUMNS} FROM scheduled_rooms s
                     JOIN accounts a ON a.id = s.host WHERE s.id = $1"
                ),
                &[&id],
            )?)
        })
    }

    fn upcoming(
        &mut self,
        since_ms: u64,
        started_since_ms: u64,
        limit: u32,
    ) -> Result<Vec<Scheduled>, StoreError> {
        self.run(Access::Read, |tx| {
            tx.query(
                &format!(
                    "SELECT {SCHEDULED_COLUMNS} FROM scheduled_rooms s
                     JOIN accounts a ON a.id = s.host
                     WHERE ((s.room IS NULL AND s.starts_at_ms >= $1) OR s.started_ms >= $2)
                       AND a.suspended IS NULL
                     ORDER BY s.starts_at_ms, s.id LIMIT $3"
                ),
                &[&ms(since_ms), &ms(started_since_ms), &i64::from(limit)],
            )?
            .iter()
            .map(scheduled_row)
            .collect()
        })
    }

    fn scheduled(&mut self, id: i64) -> Result<Scheduled, StoreError> {
        self.run(Access::Read, |tx| {
            match tx.query_opt(
                &format!(
                    "SELECT {SCHEDULED_COLUMNS} FROM scheduled_rooms s
                     JOIN accounts a ON a.id = s.host WHERE s.id = $1"
                ),
                &[&id],
            )? {
                Some(row) => scheduled_row(&row),
                None => Err(StoreError::NoSuchScheduled.into()),
            }
        })
    }

    fn start_scheduled(&mut self, id: i64, room: &str, now_ms: u64) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            let changed = tx.execute(
                "UPDATE scheduled_rooms SET room = $1, started_ms = $2
                 WHERE id = $3 AND room IS NULL",
                &[&room, &ms(now_ms), &id],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchScheduled.into());
            }
            Ok(())
        })
    }

    fn finish_start(&mut self, id: i64, room: Option<&str>) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            let changed = match room {
                Some(room) => tx.execute(
                    "UPDATE scheduled_rooms SET room = $1 WHERE id = $2 AND room = ''",
                    &[&room, &id],
                )?,
                None => tx.execute(
                    "UPDATE scheduled_rooms SET room = NULL, started_ms = NULL
                     WHERE id = $1 AND room = ''",
                    &[&id],
                )?,
            };
            if changed == 0 {
                return Err(StoreError::NoSuchScheduled.into());
            }
            Ok(())
        })
    }

    fn cancel_scheduled(&mut self, id: i64) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            if tx.execute("DELETE FROM scheduled_rooms WHERE id = $1", &[&id])? == 0 {
                return Err(StoreError::NoSuchScheduled.into());
            }
            Ok(())
        })
    }

    fn reports(&mut self, limit: u32) -> Result<Vec<Report>, StoreError> {
        self.run(Access::Read, |tx| {
            tx.query(
                "SELECT r.id, a.handle, b.handle, r.reason, r.created_ms FROM reports r
                 JOIN accounts a ON a.id = r.reporter JOIN accounts b ON b.id = r.reported
                 ORDER BY r.id DESC LIMIT $1",
                &[&i64::from(limit)],
            )?
            .iter()
            .map(report_row)
            .collect()
        })
    }

    fn set_suspended(
        &mut self,
        account: AccountId,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(Access::Write, |tx| {
            let changed = tx.execute(
                "UPDATE accounts SET suspended = $1, suspended_ms = $2 WHERE id = $3",
                &[&reason, &reason.map(|_| ms(now_ms)), &i64::from(account)],
            )?;
            if changed == 0 {
                return Err(StoreError::NoSuchAccount.into());
            }
            if reason.is_some() {
                tx.execute(
                    "DELETE FROM tokens WHERE device IN
                         (SELECT id FROM devices WHERE account = $1)",
                    &[&i64::from(account)],
                )?;
            }
            Ok(())
        })
    }

    fn backup(&mut self, _path: &Path) -> Result<(), StoreError> {
        Err(StoreError::Database(
            "a PostgreSQL store is backed up by PostgreSQL: run pg_dump against the database \
             (or use its base backups or your provider's snapshots); Hallway copies only a \
             SQLite file"
                .into(),
        ))
    }
}
