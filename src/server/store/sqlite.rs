//! The embedded store: one SQLite file (the bundled SQLite, so every machine runs the same
//! version).
//!
//! - **Durability.** WAL with `synchronous = NORMAL`: a commit is in the write-ahead log
//!   before the call returns, so killing the process (even `kill -9`) loses nothing
//!   committed; a power cut may lose the last commits since a checkpoint, never corrupt.
//! - **Opening touches nothing it cannot read.** An existing file is checked (`quick_check`)
//!   and its schema version compared before anything is written: a corrupt, foreign,
//!   read-only or newer file is refused with a message, unchanged.
//! - **Versioned schema.** [`MIGRATIONS`] in order; `user_version` says which have run.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use rusqlite_migration::{M, Migrations, SchemaVersion};

use super::{
    Account, AccountId, Backend, Device, DeviceId, NewAccount, NewDevice, NewScheduled, Profile,
    Report, Scheduled, SecretHash, StoreError,
};

const SCHEDULED_COLUMNS: &str = "s.id, s.host, a.handle, a.name, s.title, s.description,
    s.starts_at_ms, s.created_ms, s.room, s.started_ms";

fn scheduled_row(r: &Row) -> rusqlite::Result<Scheduled> {
    Ok(Scheduled {
        id: r.get(0)?,
        host: r.get(1)?,
        host_handle: r.get(2)?,
        host_name: r.get(3)?,
        title: r.get(4)?,
        description: r.get(5)?,
        starts_at_ms: r.get::<_, i64>(6)?.max(0) as u64,
        created_ms: r.get::<_, i64>(7)?.max(0) as u64,
        room: r.get(8)?,
        started_ms: r.get::<_, Option<i64>>(9)?.map(|t| t.max(0) as u64),
    })
}

/// The schema, one step per release that changed it. Never edit a step that shipped: add one.
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        handle TEXT NOT NULL,
        handle_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        bio TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        invited_by INTEGER REFERENCES accounts(id),
        admin INTEGER NOT NULL DEFAULT 0,
        invitations_left INTEGER,
        suspended TEXT,
        suspended_ms INTEGER
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        account INTEGER NOT NULL REFERENCES accounts(id),
        sign_key BLOB NOT NULL UNIQUE,
        agree_key BLOB NOT NULL,
        label TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    );
    CREATE INDEX devices_by_account ON devices(account);
    CREATE TABLE tokens (
        hash BLOB PRIMARY KEY,
        device INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tokens_by_device ON tokens(device);
    CREATE TABLE invitations (
        hash BLOB PRIMARY KEY,
        inviter INTEGER REFERENCES accounts(id),
        makes_admin INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        used_by INTEGER REFERENCES accounts(id),
        used_ms INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE link_codes (
        hash BLOB PRIMARY KEY,
        account INTEGER NOT NULL REFERENCES accounts(id),
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE follows (
        follower INTEGER NOT NULL REFERENCES accounts(id),
        followee INTEGER NOT NULL REFERENCES accounts(id),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (follower, followee)
    ) WITHOUT ROWID;
    CREATE INDEX follows_by_followee ON follows(followee, follower);
    CREATE TABLE blocks (
        blocker INTEGER NOT NULL REFERENCES accounts(id),
        blocked INTEGER NOT NULL REFERENCES accounts(id),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (blocker, blocked)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_by_blocked ON blocks(blocked, blocker);
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        reporter INTEGER NOT NULL REFERENCES accounts(id),
        reported INTEGER NOT NULL REFERENCES accounts(id),
        reason TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );",
    ),
    M::up(
        "CREATE TABLE scheduled_rooms (
        id INTEGER PRIMARY KEY,
        host INTEGER NOT NULL REFERENCES accounts(id),
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        starts_at_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        room TEXT,
        started_ms INTEGER
    );
    CREATE INDEX scheduled_by_time ON scheduled_rooms(starts_at_ms);
    CREATE INDEX scheduled_by_host ON scheduled_rooms(host, starts_at_ms);",
    ),
];

/// Why the database could not be opened. The file is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "cannot open the database {path}: {reason}; check the path and its permissions, or pass --data FILE"
    )]
    Open { path: PathBuf, reason: String },
    #[error(
        "the database {path} is read-only; make it writable by this user (or pass --data FILE)"
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "the database {path} is damaged or not a Hallway database ({reason}); restore a backup (`hallway admin backup` makes them) or move it away to start empty"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the database {path} was written by a newer Hallway; run that version, or restore a backup"
    )]
    TooNew { path: PathBuf },
}

/// A SQLite connection with the schema in place.
pub struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens (creating if missing) the database file; see the module doc for what is checked.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let open_err = |e: rusqlite::Error| OpenError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let corrupt = |e: rusqlite::Error| OpenError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let io_err = |e: std::io::Error| OpenError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        // Accounts are nobody else's business: a new directory is 0700 and a new file 0600
        // from its first byte (SQLite gives the WAL and shared-memory files the database's
        // mode).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(io_err)?;
        }
        if !path.exists() {
            create_private(path).map_err(io_err)?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(open_err)? {
            return Err(OpenError::ReadOnly {
                path: path.to_owned(),
            });
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(OpenError::Corrupt {
                path: path.to_owned(),
                reason: check,
            });
        }
        let migrations = Migrations::from_slice(MIGRATIONS);
        if let SchemaVersion::Outside(_) =
            migrations
                .current_version(&conn)
                .map_err(|e| OpenError::Corrupt {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?
        {
            return Err(OpenError::TooNew {
                path: path.to_owned(),
            });
        }
        // A file with tables but no version of ours is someone else's database.
        let foreign: bool = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version) = 0
                    AND EXISTS (SELECT 1 FROM sqlite_schema)",
                [],
                |r| r.get(0),
            )
            .map_err(corrupt)?;
        if foreign {
            return Err(OpenError::Corrupt {
                path: path.to_owned(),
                reason: "it has tables, but no Hallway schema version".into(),
            });
        }
        Self::prepare(conn).map_err(|e| OpenError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// A database that lives only as long as the process (the embedded demo server).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::prepare(Connection::open_in_memory()?)
            .map_err(|e| StoreError::Database(e.to_string()))
    }

    fn prepare(mut conn: Connection) -> Result<Self, Box<dyn std::error::Error>> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        Ok(Self { conn })
    }
}

/// Creates an empty file readable and writable by its owner alone (an empty file is an
/// empty SQLite database).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies the database at `from` to a new file `to` with SQLite's online backup: a
/// consistent snapshot even while a server writes to it (WAL lets a reader run beside it).
pub fn backup_file(from: &Path, to: &Path) -> Result<(), OpenError> {
    let failed = |e: rusqlite::Error| OpenError::Open {
        path: from.to_owned(),
        reason: e.to_string(),
    };
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    let version: i64 = source
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| OpenError::Corrupt {
            path: from.to_owned(),
            reason: e.to_string(),
        })?;
    if version == 0 {
        return Err(OpenError::Corrupt {
            path: from.to_owned(),
            reason: "it has no Hallway schema".into(),
        });
    }
    let target_err = |reason: String| OpenError::Open {
        path: to.to_owned(),
        reason,
    };
    create_private(to).map_err(|e| target_err(e.to_string()))?;
    let mut target = Connection::open(to).map_err(|e| target_err(e.to_string()))?;
    rusqlite::backup::Backup::new(&source, &mut target)
        .and_then(|b| b.run_to_completion(256, std::time::Duration::from_millis(5), None))
        .map_err(failed)
}

/// Tokens one device keeps (each sign-in makes one; the oldest go first).
const TOKENS_PER_DEVICE: u32 = 20;

const ACCOUNT_COLUMNS: &str = "a.id, a.handle, a.name, a.bio, a.created_ms,
    (SELECT i.handle FROM accounts i WHERE i.id = a.invited_by),
    a.admin, a.invitations_left, a.suspended";

fn account_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        handle: r.get(1)?,
        name: r.get(2)?,
        bio: r.get(3)?,
        created_ms: r.get::<_, i64>(4)? as u64,
        invited_by: r.get(5)?,
        admin: r.get(6)?,
        invitations_left: r.get(7)?,
        suspended: r.get(8)?,
    })
}

const DEVICE_COLUMNS: &str =
    "d.id, d.account, d.sign_key, d.agree_key, d.label, d.created_ms, d.last_seen_ms";

fn device_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(at)?,
        account: r.get(at + 1)?,
        sign_key: r.get(at + 2)?,
        agree_key: r.get(at + 3)?,
        label: r.get(at + 4)?,
        created_ms: r.get::<_, i64>(at + 5)? as u64,
        last_seen_ms: r.get::<_, i64>(at + 6)? as u64,
    })
}

fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn account_by_id(conn: &Connection, id: AccountId) -> Result<Account, StoreError> {
    conn.query_row(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ?1"),
        [id],
        account_row,
    )
    .optional()?
    .ok_or(StoreError::NoSuchAccount)
}

fn device_by_id(conn: &Connection, id: DeviceId) -> Result<Device, StoreError> {
    conn.query_row(
        &format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.id = ?1"),
        [id],
        |r| device_row(r, 0),
    )
    .optional()?
    .ok_or(StoreError::NoSuchDevice)
}

fn insert_device(
    conn: &Connection,
    account: AccountId,
    device: &NewDevice,
    now_ms: u64,
) -> Result<Device, StoreError> {
    let taken: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE sign_key = ?1)",
        [&device.sign_key[..]],
        |r| r.get(0),
    )?;
    if taken {
        return Err(StoreError::DeviceTaken);
    }
    conn.execute(
        "INSERT INTO devices (account, sign_key, agree_key, label, created_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![
            account,
            &device.sign_key[..],
            &device.agree_key[..],
            device.label,
            ms(now_ms)
        ],
    )?;
    device_by_id(conn, conn.last_insert_rowid())
}

/// The two relations of one account to another, each a table keyed (from, to).
#[derive(Clone, Copy)]
enum Edge {
    Follow,
    Block,
}

impl Edge {
    /// (insert, delete, select the `to`s of a `from`): SQL can take values as parameters,
    /// not table names.
    fn sql(self) -> [&'static str; 3] {
        match self {
            Edge::Follow => [
                "INSERT OR IGNORE INTO follows (follower, followee, created_ms) VALUES (?1, ?2, ?3)",
                "DELETE FROM follows WHERE follower = ?1 AND followee = ?2",
                "SELECT followee FROM follows WHERE follower = ?1",
            ],
            Edge::Block => [
                "INSERT OR IGNORE INTO blocks (blocker, blocked, created_ms) VALUES (?1, ?2, ?3)",
                "DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2",
                "SELECT blocked FROM blocks WHERE blocker = ?1",
            ],
        }
    }
}

/// Adds (`on`) or removes an edge; idempotent; none to oneself.
fn set_edge(
    conn: &Connection,
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
    if on {
        conn.prepare_cached(insert)?
            .execute(params![from, to, ms(now_ms)])?;
    } else {
        conn.prepare_cached(delete)?.execute(params![from, to])?;
    }
    Ok(())
}

/// Every `to` of `from`'s edges.
fn edges_from(
    conn: &Connection,
    edge: Edge,
    from: AccountId,
) -> Result<Vec<AccountId>, StoreError> {
    let [_, _, select] = edge.sql();
    let mut statement = conn.prepare_cached(select)?;
    let ids = statement
        .query_map([from], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

impl Backend for SqliteBackend {
    fn create_account(&mut self, new: &NewAccount) -> Result<(Account, Device), StoreError> {
        let tx = self.conn.transaction()?;
        // The invitation first: without a good one, nothing is said about handles (which
        // would tell a stranger who has an account here).
        // (inviter, makes_admin)
        let mut invited: Option<(Option<AccountId>, bool)> = None;
        match &new.invitation {
            Some(hash) => {
                let row = tx
                    .query_row(
                        "SELECT inviter, makes_admin, expires_ms, used_by FROM invitations
                         WHERE hash = ?1",
                        [&hash[..]],
                        |r| {
                            Ok((
                                r.get::<_, Option<AccountId>>(0)?,
                                r.get::<_, bool>(1)?,
                                r.get::<_, Option<i64>>(2)?,
                                r.get::<_, Option<AccountId>>(3)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((inviter, admin, expires, used_by)) = row else {
                    return Err(StoreError::InvitationUnknown);
                };
                if used_by.is_some() {
                    return Err(StoreError::InvitationUsed);
                }
                if expires.is_some_and(|e| e <= ms(new.now_ms)) {
                    return Err(StoreError::InvitationExpired);
                }
                invited = Some((inviter, admin));
            }
            None if new.invite_only => return Err(StoreError::InvitationRequired),
            None => {}
        }
        // A device that has an account here is told so, whatever handle it asked for.
        let device_known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE sign_key = ?1)",
            [&new.device.sign_key[..]],
            |r| r.get(0),
        )?;
        if device_known {
            return Err(StoreError::DeviceTaken);
        }
        if let Some(existing) = tx
            .query_row(
                "SELECT handle FROM accounts WHERE handle_key = ?1",
                [&new.handle_key],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Err(StoreError::HandleTaken { existing });
        }
        let admin = invited.is_some_and(|(_, admin)| admin);
        let quota = (!admin).then_some(new.invitation_quota);
        tx.execute(
            "INSERT INTO accounts (handle, handle_key, name, created_ms, invited_by, admin,
                 invitations_left)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                new.handle,
                new.handle_key,
                new.name,
                ms(new.now_ms),
                invited.and_then(|(inviter, _)| inviter),
                admin,
                quota
            ],
        )?;
        let id = AccountId::try_from(tx.last_insert_rowid())
            .map_err(|_| StoreError::Database("account ids are exhausted".into()))?;
        if let Some(hash) = &new.invitation {
            tx.execute(
                "UPDATE invitations SET used_by = ?1, used_ms = ?2 WHERE hash = ?3",
                params![id, ms(new.now_ms), &hash[..]],
            )?;
        }
        let device = insert_device(&tx, id, &new.device, new.now_ms)?;
        let account = account_by_id(&tx, id)?;
        tx.commit()?;
        Ok((account, device))
    }

    fn device_by_key(&mut self, sign_key: &[u8; 32]) -> Result<(Account, Device), StoreError> {
        let device = self
            .conn
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.sign_key = ?1"),
                [&sign_key[..]],
                |r| device_row(r, 0),
            )
            .optional()?
            .ok_or(StoreError::NoSuchDevice)?;
        let account = account_by_id(&self.conn, device.account)?;
        Ok((account, device))
    }

    fn add_token(
        &mut self,
        hash: &SecretHash,
        device: DeviceId,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        // Checked in the same transaction as the insert: a device revoked or an account
        // suspended a moment ago gets no token, whatever the caller read before.
        let suspended: Option<Option<String>> = tx
            .query_row(
                "SELECT a.suspended FROM devices d JOIN accounts a ON a.id = d.account
                 WHERE d.id = ?1",
                [device],
                |r| r.get(0),
            )
            .optional()?;
        match suspended {
            None => return Err(StoreError::NoSuchDevice),
            Some(Some(reason)) => return Err(StoreError::Suspended(reason)),
            Some(None) => {}
        }
        tx.execute(
            "DELETE FROM tokens WHERE device = ?1 AND expires_ms <= ?2",
            params![device, ms(now_ms)],
        )?;
        tx.execute(
            "INSERT INTO tokens (hash, device, expires_ms) VALUES (?1, ?2, ?3)",
            params![&hash[..], device, ms(expires_ms)],
        )?;
        // A device keeps its newest tokens only: signing in in a loop cannot grow the table.
        tx.execute(
            "DELETE FROM tokens WHERE device = ?1 AND hash NOT IN
                 (SELECT hash FROM tokens WHERE device = ?1 ORDER BY expires_ms DESC LIMIT ?2)",
            params![device, TOKENS_PER_DEVICE],
        )?;
        tx.execute(
            "UPDATE devices SET last_seen_ms = ?1 WHERE id = ?2",
            params![ms(now_ms), device],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn token(
        &mut self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(Account, Device, u64)>, StoreError> {
        let found = self
            .conn
            .query_row(
                &format!(
                    "SELECT t.expires_ms, {DEVICE_COLUMNS} FROM tokens t
                     JOIN devices d ON d.id = t.device
                     WHERE t.hash = ?1 AND t.expires_ms > ?2"
                ),
                params![&hash[..], ms(now_ms)],
                |r| Ok((r.get::<_, i64>(0)? as u64, device_row(r, 1)?)),
            )
            .optional()?;
        let Some((expires_ms, device)) = found else {
            return Ok(None);
        };
        let account = account_by_id(&self.conn, device.account)?;
        Ok(Some((account, device, expires_ms)))
    }

    fn account(&mut self, id: AccountId) -> Result<Account, StoreError> {
        account_by_id(&self.conn, id)
    }

    fn account_by_handle(&mut self, handle_key: &str) -> Result<Account, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.handle_key = ?1"),
                [handle_key],
                account_row,
            )
            .optional()?
            .ok_or(StoreError::NoSuchAccount)
    }

    fn create_invitation(
        &mut self,
        inviter: AccountId,
        hash: &SecretHash,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Option<u32>, StoreError> {
        let tx = self.conn.transaction()?;
        let account = account_by_id(&tx, inviter)?;
        if let Some(reason) = account.suspended {
            return Err(StoreError::Suspended(reason));
        }
        let left = match account.invitations_left {
            None => None,
            Some(0) => return Err(StoreError::NoInvitationsLeft),
            Some(n) => Some(n - 1),
        };
        tx.execute(
            "UPDATE accounts SET invitations_left = ?1 WHERE id = ?2",
            params![left, inviter],
        )?;
        tx.execute(
            "INSERT INTO invitations (hash, inviter, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![&hash[..], inviter, ms(now_ms), ms(expires_ms)],
        )?;
        tx.commit()?;
        Ok(left)
    }

    fn has_admin(&mut self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE admin)",
            [],
            |r| r.get(0),
        )?)
    }

    fn set_owner_code(&mut self, hash: &SecretHash, now_ms: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM invitations WHERE makes_admin AND used_by IS NULL",
            [],
        )?;
        tx.execute(
            "INSERT INTO invitations (hash, inviter, makes_admin, created_ms)
             VALUES (?1, NULL, 1, ?2)",
            params![&hash[..], ms(now_ms)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn create_link_code(
        &mut self,
        account: AccountId,
        hash: &SecretHash,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        // One live code per account (a new one replaces it), and none kept past its time:
        // asking in a loop cannot grow the table.
        tx.execute(
            "DELETE FROM link_codes WHERE account = ?1 OR expires_ms <= ?2",
            params![account, ms(now_ms)],
        )?;
        tx.execute(
            "INSERT INTO link_codes (hash, account, expires_ms) VALUES (?1, ?2, ?3)",
            params![&hash[..], account, ms(expires_ms)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn link_device(
        &mut self,
        hash: &SecretHash,
        device: &NewDevice,
        now_ms: u64,
    ) -> Result<(Account, Device), StoreError> {
        let tx = self.conn.transaction()?;
        let row = tx
            .query_row(
                "SELECT account, expires_ms FROM link_codes WHERE hash = ?1",
                [&hash[..]],
                |r| Ok((r.get::<_, AccountId>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?;
        let Some((account, expires)) = row else {
            return Err(StoreError::InvitationUnknown);
        };
        if expires <= ms(now_ms) {
            return Err(StoreError::InvitationExpired);
        }
        tx.execute("DELETE FROM link_codes WHERE hash = ?1", [&hash[..]])?;
        let owner = account_by_id(&tx, account)?;
        if let Some(reason) = owner.suspended {
            return Err(StoreError::Suspended(reason));
        }
        let device = insert_device(&tx, account, device, now_ms)?;
        tx.commit()?;
        Ok((owner, device))
    }

    fn devices(&mut self, account: AccountId) -> Result<Vec<Device>, StoreError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.account = ?1 ORDER BY d.id"
        ))?;
        let devices = statement
            .query_map([account], |r| device_row(r, 0))?
            .collect::<Result<_, _>>()?;
        Ok(devices)
    }

    fn revoke_device(&mut self, account: AccountId, device: DeviceId) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM tokens WHERE device = ?1", [device])?;
        let removed = tx.execute(
            "DELETE FROM devices WHERE id = ?1 AND account = ?2",
            params![device, account],
        )?;
        if removed == 0 {
            return Err(StoreError::NoSuchDevice);
        }
        tx.commit()?;
        Ok(())
    }

    fn set_profile(&mut self, account: AccountId, name: &str, bio: &str) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE accounts SET name = ?1, bio = ?2 WHERE id = ?3",
            params![name, bio, account],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchAccount);
        }
        Ok(())
    }

    fn profile(&mut self, viewer: AccountId, handle_key: &str) -> Result<Profile, StoreError> {
        let account = self.account_by_handle(handle_key)?;
        let (followers, following, followed, blocked) = self.conn.query_row(
            "SELECT (SELECT count(*) FROM follows WHERE followee = ?1),
                    (SELECT count(*) FROM follows WHERE follower = ?1),
                    EXISTS (SELECT 1 FROM follows WHERE follower = ?2 AND followee = ?1),
                    EXISTS (SELECT 1 FROM blocks WHERE blocker = ?2 AND blocked = ?1)",
            params![account.id, viewer],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            },
        )?;
        let devices = self.devices(account.id)?;
        Ok(Profile {
            account,
            followers: followers as u64,
            following: following as u64,
            followed,
            blocked,
            devices,
        })
    }

    fn set_follow(
        &mut self,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        set_edge(&self.conn, Edge::Follow, from, to, on, now_ms)
    }

    fn following(&mut self, account: AccountId) -> Result<Vec<AccountId>, StoreError> {
        edges_from(&self.conn, Edge::Follow, account)
    }

    fn set_block(
        &mut self,
        from: AccountId,
        to: AccountId,
        on: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        set_edge(&self.conn, Edge::Block, from, to, on, now_ms)
    }

    fn blocking(&mut self, account: AccountId) -> Result<Vec<AccountId>, StoreError> {
        edges_from(&self.conn, Edge::Block, account)
    }

    fn blocked_by(
        &mut self,
        account: AccountId,
        among: &[AccountId],
    ) -> Result<Vec<AccountId>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker = ?1 AND blocked = ?2)",
        )?;
        let mut blockers = Vec::new();
        for &other in among {
            if statement.query_row(params![other, account], |r| r.get::<_, bool>(0))? {
                blockers.push(other);
            }
        }
        Ok(blockers)
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
        self.conn.execute(
            "INSERT INTO reports (reporter, reported, reason, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![from, about, reason, ms(now_ms)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn schedule(&mut self, new: &NewScheduled) -> Result<Scheduled, StoreError> {
        let tx = self.conn.transaction()?;
        let upcoming: u32 = tx.query_row(
            "SELECT COUNT(*) FROM scheduled_rooms
             WHERE host = ?1 AND room IS NULL AND starts_at_ms >= ?2",
            params![new.host, ms(new.stale_before_ms)],
            |r| r.get(0),
        )?;
        if upcoming >= new.max_upcoming {
            return Err(StoreError::TooManyScheduled(new.max_upcoming));
        }
        tx.execute(
            "INSERT INTO scheduled_rooms (host, title, description, starts_at_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                new.host,
                new.title,
                new.description,
                ms(new.starts_at_ms),
                ms(new.now_ms)
            ],
        )?;
        let id = tx.last_insert_rowid();
        let scheduled = tx.query_row(
            &format!(
                "SELECT {SCHEDULED_COLUMNS} FROM scheduled_rooms s
                 JOIN accounts a ON a.id = s.host WHERE s.id = ?1"
            ),
            [id],
            scheduled_row,
        )?;
        tx.commit()?;
        Ok(scheduled)
    }

    fn upcoming(
        &mut self,
        since_ms: u64,
        started_since_ms: u64,
        limit: u32,
    ) -> Result<Vec<Scheduled>, StoreError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {SCHEDULED_COLUMNS} FROM scheduled_rooms s JOIN accounts a ON a.id = s.host
             WHERE ((s.room IS NULL AND s.starts_at_ms >= ?1) OR s.started_ms >= ?2)
               AND a.suspended IS NULL
             ORDER BY s.starts_at_ms, s.id LIMIT ?3"
        ))?;
        let rows = statement
            .query_map(
                params![ms(since_ms), ms(started_since_ms), limit],
                scheduled_row,
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn scheduled(&mut self, id: i64) -> Result<Scheduled, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {SCHEDULED_COLUMNS} FROM scheduled_rooms s
                     JOIN accounts a ON a.id = s.host WHERE s.id = ?1"
                ),
                [id],
                scheduled_row,
            )
            .optional()?
            .ok_or(StoreError::NoSuchScheduled)
    }

    fn start_scheduled(&mut self, id: i64, room: &str, now_ms: u64) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE scheduled_rooms SET room = ?1, started_ms = ?2 WHERE id = ?3 AND room IS NULL",
            params![room, ms(now_ms), id],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchScheduled);
        }
        Ok(())
    }

    fn finish_start(&mut self, id: i64, room: Option<&str>) -> Result<(), StoreError> {
        let changed = match room {
            Some(room) => self.conn.execute(
                "UPDATE scheduled_rooms SET room = ?1 WHERE id = ?2 AND room = ''",
                params![room, id],
            )?,
            None => self.conn.execute(
                "UPDATE scheduled_rooms SET room = NULL, started_ms = NULL
                 WHERE id = ?1 AND room = ''",
                [id],
            )?,
        };
        if changed == 0 {
            return Err(StoreError::NoSuchScheduled);
        }
        Ok(())
    }

    fn cancel_scheduled(&mut self, id: i64) -> Result<(), StoreError> {
        if self
            .conn
            .execute("DELETE FROM scheduled_rooms WHERE id = ?1", [id])?
            == 0
        {
            return Err(StoreError::NoSuchScheduled);
        }
        Ok(())
    }

    fn reports(&mut self, limit: u32) -> Result<Vec<Report>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT r.id, a.handle, b.handle, r.reason, r.created_ms FROM reports r
             JOIN accounts a ON a.id = r.reporter JOIN accounts b ON b.id = r.reported
             ORDER BY r.id DESC LIMIT ?1",
        )?;
        let reports = statement
            .query_map([limit], |r| {
                Ok(Report {
                    id: r.get(0)?,
                    reporter: r.get(1)?,
                    reported: r.get(2)?,
                    reason: r.get(3)?,
                    created_ms: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(reports)
    }

    fn set_suspended(
        &mut self,
        account: AccountId,
        reason: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE accounts SET suspended = ?1, suspended_ms = ?2 WHERE id = ?3",
            params![reason, reason.map(|_| ms(now_ms)), account],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchAccount);
        }
        if reason.is_some() {
            tx.execute(
                "DELETE FROM tokens WHERE device IN (SELECT id FROM devices WHERE account = ?1)",
                [account],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn backup(&mut self, path: &Path) -> Result<(), StoreError> {
        let mut target = Connection::open(path)?;
        let backup = rusqlite::backup::Backup::new(&self.conn, &mut target)?;
        backup.run_to_completion(256, std::time::Duration::ZERO, None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u8) -> NewDevice {
        NewDevice {
            sign_key: [n; 32],
            agree_key: [n.wrapping_add(100); 32],
            label: format!("device {n}"),
        }
    }

    fn new_account(handle: &str, n: u8, invitation: Option<SecretHash>) -> NewAccount {
        NewAccount {
            handle: handle.into(),
            handle_key: handle.to_lowercase(),
            name: handle.into(),
            device: device(n),
            invitation,
            invite_only: invitation.is_some(),
            invitation_quota: 1,
            now_ms: 1_000,
        }
    }

    // The behaviour every backend shares is tested once, against each, in
    // tests/store_backends.rs; what is SQLite's own (files, modes, reopening) is here.

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.db");
        std::fs::write(&path, b"this is not sqlite, it is a text file of some length ......................................................").expect("write");
        let before = std::fs::read(&path).expect("read");
        let Err(err) = SqliteBackend::open(&path) else {
            panic!("opened a text file as a database");
        };
        assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
        assert!(!dir.path().join("server.db-wal").exists());
    }

    #[test]
    fn a_new_database_and_its_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("server.db");
        let mut db = SqliteBackend::open(&path).expect("open");
        db.create_account(&new_account("Ada", 1, None))
            .expect("ada");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&dir.path().join("data").join("server.db-wal")), 0o600);
        let copy = dir.path().join("copy.db");
        backup_file(&path, &copy).expect("backup");
        assert_eq!(mode(&copy), 0o600);
    }

    #[test]
    fn a_database_reopens_with_what_was_committed_and_backs_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.db");
        {
            let mut db = SqliteBackend::open(&path).expect("open");
            db.create_account(&new_account("Ada", 1, None))
                .expect("ada");
            db.backup(&dir.path().join("copy.db")).expect("backup");
        }
        let mut db = SqliteBackend::open(&path).expect("reopen");
        assert_eq!(db.account_by_handle("ada").expect("ada").handle, "Ada");
        let mut copy = SqliteBackend::open(&dir.path().join("copy.db")).expect("copy");
        assert_eq!(copy.account_by_handle("ada").expect("ada").handle, "Ada");
    }
}
