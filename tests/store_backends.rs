//! One contract for every account store: the same checks run against the embedded SQLite
//! store and against PostgreSQL (a throwaway server that each test starts; see
//! `common/postgres.rs`), then races between two PostgreSQL connections standing for two
//! servers of a cluster: whatever the timing, exactly one of them wins, and the other gets
//! the answer SQLite would give.

#[path = "common/postgres.rs"]
mod test_postgres;

use std::path::Path;
use std::sync::Barrier;

use hallway::server::store::postgres::{ConnectError, PostgresBackend};
use hallway::server::store::{
    Backend, NewAccount, NewDevice, NewScheduled, SecretHash, StoreError,
};
use test_postgres::TestPostgres;

/// Each check, as one test per backend: `on_sqlite::NAME` and `on_postgres::NAME`.
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $check() {
                    let mut db = hallway::server::store::sqlite::SqliteBackend::in_memory()
                        .expect("an in-memory SQLite store");
                    super::$check(&mut db);
                }
            )*
        }

        mod on_postgres {
            $(
                #[test]
                fn $check() {
                    let server = super::TestPostgres::start();
                    let mut db = super::PostgresBackend::connect(&server.url)
                        .expect("connect to the test PostgreSQL");
                    super::$check(&mut db);
                }
            )*
        }
    };
}

on_every_backend!(
    an_invitation_chain_spends_quotas_and_records_who_invited_whom,
    handles_and_devices_are_unique,
    tokens_expire_and_go_with_their_device_or_a_suspension,
    no_token_for_a_device_gone_or_an_account_suspended_and_few_kept,
    follows_and_blocks_are_idempotent_and_counted,
    follows_and_blocks_are_listed_and_lifted,
    a_new_owner_code_replaces_the_unused_one,
    profiles_and_reports_read_back,
    a_suspension_refuses_invitations_and_links_until_lifted,
    link_codes_expire_and_only_an_owner_revokes_a_device,
    scheduled_rooms_are_listed_by_time_capped_per_host_started_once_and_cancelled,
);

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

fn invite_only(mut new: NewAccount) -> NewAccount {
    new.invite_only = true;
    new
}

fn scheduled_rooms_are_listed_by_time_capped_per_host_started_once_and_cancelled(
    db: &mut dyn Backend,
) {
    let (grace, _) = db
        .create_account(&new_account("Grace", 1, None))
        .expect("grace");
    let (bob, _) = db
        .create_account(&new_account("Bob", 2, None))
        .expect("bob");
    let at = |host: u32, title: &str, starts_at_ms: u64| NewScheduled {
        host,
        title: title.into(),
        description: format!("about {title}"),
        starts_at_ms,
        now_ms: 1_000,
        max_upcoming: 3,
        stale_before_ms: 500,
    };
    let late = db.schedule(&at(grace.id, "late", 9_000)).expect("late");
    let early = db.schedule(&at(bob.id, "early", 5_000)).expect("early");
    assert_eq!(
        (
            late.host_handle.as_str(),
            late.description.as_str(),
            late.room.clone()
        ),
        ("Grace", "about late", None)
    );
    let titles = |db: &mut dyn Backend, since: u64| -> Vec<String> {
        db.upcoming(since, since, 10)
            .expect("upcoming")
            .into_iter()
            .map(|s| s.title)
            .collect()
    };
    assert_eq!(titles(db, 0), ["early", "late"], "by time");
    assert_eq!(titles(db, 6_000), ["late"], "the past left out");
    // Three upcoming per host here; a fourth is refused, another host's is not.
    db.schedule(&at(grace.id, "two", 9_100)).expect("two");
    db.schedule(&at(grace.id, "three", 9_200)).expect("three");
    assert_eq!(
        db.schedule(&at(grace.id, "four", 9_300)),
        Err(StoreError::TooManyScheduled(3))
    );
    db.schedule(&at(bob.id, "bob's second", 9_300))
        .expect("bob's second");
    // Started once: the room is kept, a second start refused, and it stays listed as
    // started while recent.
    db.start_scheduled(late.id, "r0oM1d", 8_000).expect("start");
    assert_eq!(
        db.start_scheduled(late.id, "other", 8_001),
        Err(StoreError::NoSuchScheduled)
    );
    let started = db.scheduled(late.id).expect("read back");
    assert_eq!(
        (started.room.as_deref(), started.started_ms),
        (Some("r0oM1d"), Some(8_000))
    );
    assert!(titles(db, 0).contains(&"late".to_string()));
    assert!(
        !db.upcoming(0, 8_001, 10)
            .expect("upcoming")
            .iter()
            .any(|s| s.title == "late"),
        "started before the window: gone"
    );
    // A started one no longer counts against the cap.
    let four = db
        .schedule(&at(grace.id, "four", 9_300))
        .expect("four fits now");
    // A start claims first (""), then names its room; a claim can be given back.
    db.start_scheduled(four.id, "", 8_500).expect("claim");
    assert_eq!(
        db.start_scheduled(four.id, "", 8_501),
        Err(StoreError::NoSuchScheduled),
        "claimed once"
    );
    db.finish_start(four.id, None).expect("given back");
    assert_eq!(db.scheduled(four.id).expect("read").room, None);
    db.start_scheduled(four.id, "", 8_600)
        .expect("claimed again");
    db.finish_start(four.id, Some("r00m2")).expect("named");
    assert_eq!(
        db.scheduled(four.id).expect("read").room.as_deref(),
        Some("r00m2")
    );
    assert_eq!(
        db.finish_start(four.id, Some("other")),
        Err(StoreError::NoSuchScheduled)
    );
    // A suspended host's rooms are not listed.
    db.set_suspended(grace.id, Some("spam"), 8_700)
        .expect("suspend");
    assert!(
        !titles(db, 0).iter().any(|t| t == "two"),
        "{:?}",
        titles(db, 0)
    );
    db.cancel_scheduled(early.id).expect("cancel");
    assert_eq!(db.scheduled(early.id), Err(StoreError::NoSuchScheduled));
    assert_eq!(
        db.cancel_scheduled(early.id),
        Err(StoreError::NoSuchScheduled)
    );
}

fn an_invitation_chain_spends_quotas_and_records_who_invited_whom(db: &mut dyn Backend) {
    db.set_owner_code(&[1; 32], 0).expect("owner code");
    assert!(!db.has_admin().expect("query"));
    let (owner, _) = db
        .create_account(&new_account("Owner", 1, Some([1; 32])))
        .expect("owner");
    assert!(owner.admin);
    assert!(db.has_admin().expect("query"));
    assert_eq!(owner.invitations_left, None, "admins are unlimited");
    assert_eq!(
        db.create_account(&new_account("Again", 2, Some([1; 32]))),
        Err(StoreError::InvitationUsed)
    );
    db.create_invitation(owner.id, &[2; 32], 1_000, 5_000)
        .expect("invite");
    let (member, _) = db
        .create_account(&new_account("Member", 3, Some([2; 32])))
        .expect("member");
    assert_eq!(member.invited_by.as_deref(), Some("Owner"));
    assert_eq!(member.invitations_left, Some(1));
    assert_eq!(
        db.create_invitation(member.id, &[3; 32], 1_000, 900),
        Ok(Some(0))
    );
    assert_eq!(
        db.create_invitation(member.id, &[4; 32], 1_000, 5_000),
        Err(StoreError::NoInvitationsLeft)
    );
    assert_eq!(
        db.create_account(&new_account("Late", 5, Some([3; 32]))),
        Err(StoreError::InvitationExpired)
    );
    assert_eq!(
        db.create_account(&new_account("Nobody", 6, Some([9; 32]))),
        Err(StoreError::InvitationUnknown)
    );
    assert_eq!(
        db.create_account(&invite_only(new_account("Nobody", 6, None))),
        Err(StoreError::InvitationRequired)
    );
}

fn handles_and_devices_are_unique(db: &mut dyn Backend) {
    db.create_account(&new_account("Ada", 1, None))
        .expect("ada");
    assert_eq!(
        db.create_account(&new_account("ADA", 2, None)),
        Err(StoreError::HandleTaken {
            existing: "Ada".into()
        })
    );
    assert_eq!(
        db.create_account(&new_account("Bob", 1, None)),
        Err(StoreError::DeviceTaken)
    );
    // A refused account left nothing behind.
    assert_eq!(db.account_by_handle("bob"), Err(StoreError::NoSuchAccount));
}

fn tokens_expire_and_go_with_their_device_or_a_suspension(db: &mut dyn Backend) {
    let (ada, phone) = db
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    db.add_token(&[7; 32], phone.id, 1_000, 2_000)
        .expect("token");
    assert_eq!(
        db.token(&[7; 32], 1_500)
            .expect("query")
            .map(|(a, _, expires_ms)| (a.id, expires_ms)),
        Some((ada.id, 2_000))
    );
    assert_eq!(db.token(&[7; 32], 2_000).expect("query"), None, "expired");
    db.create_link_code(ada.id, &[8; 32], 1_000, 5_000)
        .expect("link code");
    let (_, laptop) = db.link_device(&[8; 32], &device(2), 1_000).expect("link");
    assert_eq!(
        db.link_device(&[8; 32], &device(3), 1_000),
        Err(StoreError::InvitationUnknown),
        "a link code is used once"
    );
    assert_eq!(db.devices(ada.id).expect("devices").len(), 2);
    db.add_token(&[9; 32], laptop.id, 1_000, 9_000)
        .expect("token");
    db.revoke_device(ada.id, laptop.id).expect("revoke");
    assert_eq!(db.token(&[9; 32], 1_500).expect("query"), None);
    assert_eq!(
        db.device_by_key(&[2; 32]).map(|_| ()),
        Err(StoreError::NoSuchDevice)
    );
    db.add_token(&[10; 32], phone.id, 1_000, 9_000)
        .expect("token");
    db.set_suspended(ada.id, Some("spam"), 1_000)
        .expect("suspend");
    assert_eq!(db.token(&[10; 32], 1_500).expect("query"), None);
    assert_eq!(
        db.device_by_key(&[1; 32])
            .expect("device")
            .0
            .suspended
            .as_deref(),
        Some("spam")
    );
}

fn no_token_for_a_device_gone_or_an_account_suspended_and_few_kept(db: &mut dyn Backend) {
    let (ada, phone) = db
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    for n in 0..30u8 {
        db.add_token(&[n; 32], phone.id, 1_000, 10_000 + u64::from(n))
            .expect("token");
    }
    assert_eq!(
        db.token(&[0; 32], 1_500).expect("query"),
        None,
        "the oldest went"
    );
    assert!(db.token(&[29; 32], 1_500).expect("query").is_some());
    // A new link code replaces the last one.
    db.create_link_code(ada.id, &[40; 32], 1_000, 5_000)
        .expect("code");
    db.create_link_code(ada.id, &[41; 32], 1_000, 5_000)
        .expect("code");
    assert_eq!(
        db.link_device(&[40; 32], &device(2), 1_000).map(|_| ()),
        Err(StoreError::InvitationUnknown)
    );
    let (_, laptop) = db.link_device(&[41; 32], &device(2), 1_000).expect("link");
    db.revoke_device(ada.id, laptop.id).expect("revoke");
    assert_eq!(
        db.add_token(&[50; 32], laptop.id, 1_000, 9_000),
        Err(StoreError::NoSuchDevice)
    );
    db.set_suspended(ada.id, Some("spam"), 1_000)
        .expect("suspend");
    assert_eq!(
        db.add_token(&[51; 32], phone.id, 1_000, 9_000),
        Err(StoreError::Suspended("spam".into()))
    );
}

fn follows_and_blocks_are_idempotent_and_counted(db: &mut dyn Backend) {
    let (ada, _) = db
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let (bob, _) = db
        .create_account(&new_account("Bob", 2, None))
        .expect("bob");
    for _ in 0..2 {
        db.set_follow(ada.id, bob.id, true, 1).expect("follow");
    }
    assert_eq!(db.following(ada.id).expect("following"), vec![bob.id]);
    let card = db.profile(ada.id, "bob").expect("profile");
    assert_eq!(
        (card.followers, card.following, card.followed),
        (1, 0, true)
    );
    assert_eq!(
        db.set_block(ada.id, ada.id, true, 1),
        Err(StoreError::Yourself)
    );
    db.set_block(bob.id, ada.id, true, 1).expect("block");
    assert_eq!(db.blocked_by(ada.id, &[bob.id]).expect("q"), vec![bob.id]);
    db.set_block(bob.id, ada.id, false, 1).expect("unblock");
    assert!(db.blocked_by(ada.id, &[bob.id]).expect("q").is_empty());
}

fn follows_and_blocks_are_listed_and_lifted(db: &mut dyn Backend) {
    let [ada, bob, cy] = [("Ada", 1), ("Bob", 2), ("Cy", 3)].map(|(handle, n)| {
        db.create_account(&new_account(handle, n, None))
            .expect("account")
            .0
    });
    db.set_follow(ada.id, bob.id, true, 1).expect("follow");
    db.set_follow(ada.id, cy.id, true, 1).expect("follow");
    let mut following = db.following(ada.id).expect("following");
    following.sort_unstable();
    let mut expected = vec![bob.id, cy.id];
    expected.sort_unstable();
    assert_eq!(following, expected);
    for _ in 0..2 {
        db.set_follow(ada.id, bob.id, false, 2).expect("unfollow");
    }
    assert_eq!(db.following(ada.id).expect("following"), vec![cy.id]);
    assert_eq!(
        db.set_follow(cy.id, cy.id, true, 1),
        Err(StoreError::Yourself)
    );
    db.set_block(bob.id, ada.id, true, 1).expect("block");
    db.set_block(cy.id, ada.id, true, 1).expect("block");
    assert_eq!(db.blocking(bob.id).expect("blocking"), vec![ada.id]);
    assert_eq!(
        db.blocked_by(ada.id, &[cy.id, bob.id]).expect("q"),
        vec![cy.id, bob.id],
        "in the order asked"
    );
    assert!(db.blocked_by(ada.id, &[]).expect("q").is_empty());
    // As Bob sees Ada: nobody follows her, she follows Cy, and Bob blocks her.
    let card = db.profile(bob.id, "ada").expect("profile");
    assert_eq!(
        (card.followers, card.following, card.followed, card.blocked),
        (0, 1, false, true)
    );
    db.set_block(bob.id, ada.id, false, 2).expect("unblock");
    assert!(db.blocking(bob.id).expect("blocking").is_empty());
}

fn a_new_owner_code_replaces_the_unused_one(db: &mut dyn Backend) {
    db.set_owner_code(&[1; 32], 0).expect("owner code");
    db.set_owner_code(&[2; 32], 0).expect("owner code");
    assert_eq!(
        db.create_account(&new_account("Early", 1, Some([1; 32])))
            .map(|_| ()),
        Err(StoreError::InvitationUnknown),
        "the first code was replaced"
    );
    let (owner, _) = db
        .create_account(&new_account("Owner", 2, Some([2; 32])))
        .expect("owner");
    assert!(owner.admin);
    assert_eq!(owner.invited_by, None, "an owner code has no inviter");
    // A used owner code stays used; a new one makes another admin.
    db.set_owner_code(&[3; 32], 0).expect("owner code");
    assert_eq!(
        db.create_account(&new_account("Twice", 3, Some([2; 32])))
            .map(|_| ()),
        Err(StoreError::InvitationUsed)
    );
    let (second, _) = db
        .create_account(&new_account("Second", 4, Some([3; 32])))
        .expect("second admin");
    assert!(second.admin);
}

fn profiles_and_reports_read_back(db: &mut dyn Backend) {
    let (ada, phone) = db
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let (bob, _) = db
        .create_account(&new_account("Bob", 2, None))
        .expect("bob");
    db.set_profile(ada.id, "Ada L.", "counts")
        .expect("set profile");
    let card = db.profile(bob.id, "ada").expect("profile");
    assert_eq!(
        (card.account.name.as_str(), card.account.bio.as_str()),
        ("Ada L.", "counts")
    );
    assert_eq!(card.devices, vec![phone]);
    assert_eq!(
        db.profile(bob.id, "nobody").map(|_| ()),
        Err(StoreError::NoSuchAccount)
    );
    assert_eq!(
        db.set_profile(99_999, "x", "y"),
        Err(StoreError::NoSuchAccount)
    );
    assert_eq!(
        db.report(ada.id, ada.id, "me", 1),
        Err(StoreError::Yourself)
    );
    let first = db.report(ada.id, bob.id, "noise", 10).expect("report");
    let second = db.report(bob.id, ada.id, "rude", 20).expect("report");
    assert!(second > first);
    let reports = db.reports(10).expect("reports");
    assert_eq!(
        reports
            .iter()
            .map(|r| (
                r.id,
                r.reporter.as_str(),
                r.reported.as_str(),
                r.reason.as_str(),
                r.created_ms
            ))
            .collect::<Vec<_>>(),
        vec![
            (second, "Bob", "Ada", "rude", 20),
            (first, "Ada", "Bob", "noise", 10)
        ],
        "newest first"
    );
    assert_eq!(db.reports(1).expect("reports").len(), 1);
}

fn a_suspension_refuses_invitations_and_links_until_lifted(db: &mut dyn Backend) {
    let (ada, _) = db
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    db.create_link_code(ada.id, &[5; 32], 1_000, 5_000)
        .expect("code");
    db.set_suspended(ada.id, Some("spam"), 1_000)
        .expect("suspend");
    assert_eq!(
        db.create_invitation(ada.id, &[6; 32], 1_000, 5_000),
        Err(StoreError::Suspended("spam".into()))
    );
    assert_eq!(
        db.link_device(&[5; 32], &device(2), 1_000).map(|_| ()),
        Err(StoreError::Suspended("spam".into()))
    );
    db.set_suspended(ada.id, None, 2_000).expect("lift");
    assert_eq!(db.account(ada.id).expect("ada").suspended, None);
    // The refused link wrote nothing: its code is still there.
    let (owner, laptop) = db.link_device(&[5; 32], &device(2), 2_000).expect("link");
    assert_eq!((owner.id, laptop.account), (ada.id, ada.id));
    assert_eq!(
        db.create_invitation(ada.id, &[6; 32], 2_000, 5_000),
        Ok(Some(0))
    );
    assert_eq!(
        db.set_suspended(99_999, Some("spam"), 1),
        Err(StoreError::NoSuchAccount)
    );
}

fn link_codes_expire_and_only_an_owner_revokes_a_device(db: &mut dyn Backend) {
    let (ada, phone) = db
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let (bob, _) = db
        .create_account(&new_account("Bob", 2, None))
        .expect("bob");
    db.create_link_code(ada.id, &[5; 32], 1_000, 2_000)
        .expect("code");
    assert_eq!(
        db.link_device(&[5; 32], &device(3), 2_000).map(|_| ()),
        Err(StoreError::InvitationExpired)
    );
    db.add_token(&[7; 32], phone.id, 1_000, 9_000)
        .expect("token");
    assert_eq!(
        db.revoke_device(bob.id, phone.id),
        Err(StoreError::NoSuchDevice)
    );
    assert!(
        db.token(&[7; 32], 1_500).expect("query").is_some(),
        "a refused revocation removed nothing"
    );
    assert_eq!(
        db.revoke_device(ada.id, 99_999),
        Err(StoreError::NoSuchDevice)
    );
    assert_eq!(db.devices(ada.id).expect("devices"), vec![phone]);
}

/// Rounds of each race: enough for the two connections to overlap in many ways.
const ROUNDS: u8 = 20;

/// Two connections to one database: two servers of a cluster.
fn two_servers(server: &TestPostgres) -> [PostgresBackend; 2] {
    [(); 2].map(|()| PostgresBackend::connect(&server.url).expect("connect"))
}

/// Runs `call` on both servers at once (as near as a barrier gets) and returns both answers.
fn race<T: Send>(
    servers: &mut [PostgresBackend; 2],
    call: impl Fn(&mut PostgresBackend, usize) -> T + Sync,
) -> [T; 2] {
    let barrier = Barrier::new(2);
    let (barrier, call) = (&barrier, &call);
    let [first, second] = servers;
    std::thread::scope(|s| {
        let answers = [(first, 0), (second, 1)].map(|(db, i)| {
            s.spawn(move || {
                barrier.wait();
                call(db, i)
            })
        });
        answers.map(|answer| answer.join().expect("a racing server panicked"))
    })
}

/// The winner's answer and the loser's refusal, when exactly one of two answers is `Ok`.
fn one_winner<T: std::fmt::Debug>(
    round: u8,
    answers: [Result<T, StoreError>; 2],
) -> (T, StoreError) {
    match answers {
        [Ok(won), Err(lost)] | [Err(lost), Ok(won)] => (won, lost),
        answers => panic!("round {round}: expected one winner, got {answers:?}"),
    }
}

/// An admin (through an owner code) to invite people.
fn owner(db: &mut PostgresBackend) -> hallway::server::store::Account {
    db.set_owner_code(&[1; 32], 0).expect("owner code");
    db.create_account(&new_account("Owner", 1, Some([1; 32])))
        .expect("owner")
        .0
}

#[test]
fn postgres_two_servers_spend_one_invitation_once() {
    let server = TestPostgres::start();
    let mut setup = PostgresBackend::connect(&server.url).expect("connect");
    let owner = owner(&mut setup);
    let mut servers = two_servers(&server);
    for round in 0..ROUNDS {
        let invitation = [200 + round; 32];
        setup
            .create_invitation(owner.id, &invitation, 1_000, 1_000_000)
            .expect("invite");
        let answers = race(&mut servers, |db, i| {
            let n = 10 + 2 * round + i as u8;
            db.create_account(&new_account(&format!("Guest{n}"), n, Some(invitation)))
        });
        let ((guest, _), lost) = one_winner(round, answers);
        assert_eq!(lost, StoreError::InvitationUsed, "round {round}");
        assert_eq!(guest.invited_by.as_deref(), Some("Owner"));
    }
}

#[test]
fn postgres_two_servers_take_one_handle_once() {
    let server = TestPostgres::start();
    let mut servers = two_servers(&server);
    for round in 0..ROUNDS {
        // One handle, spelled two ways: the loser is told the winner's spelling.
        let answers = race(&mut servers, |db, i| {
            let handle = if i == 0 { "Zed" } else { "ZED" };
            db.create_account(&new_account(
                &format!("{handle}{round}"),
                10 + 2 * round + i as u8,
                None,
            ))
        });
        let ((winner, _), lost) = one_winner(round, answers);
        assert_eq!(
            lost,
            StoreError::HandleTaken {
                existing: winner.handle
            },
            "round {round}"
        );
    }
}

#[test]
fn postgres_two_servers_count_down_one_quota() {
    let server = TestPostgres::start();
    let mut setup = PostgresBackend::connect(&server.url).expect("connect");
    let owner = owner(&mut setup);
    let mut servers = two_servers(&server);
    for round in 0..ROUNDS {
        let invitation = [200 + round; 32];
        setup
            .create_invitation(owner.id, &invitation, 1_000, 1_000_000)
            .expect("invite");
        let (member, _) = setup
            .create_account(&new_account(
                &format!("Member{round}"),
                10 + round,
                Some(invitation),
            ))
            .expect("member");
        assert_eq!(member.invitations_left, Some(1));
        let answers = race(&mut servers, |db, i| {
            db.create_invitation(member.id, &[50 + 2 * round + i as u8; 32], 1_000, 5_000)
        });
        let (left, lost) = one_winner(round, answers);
        assert_eq!(
            (left, lost),
            (Some(0), StoreError::NoInvitationsLeft),
            "round {round}"
        );
    }
}

#[test]
fn postgres_two_servers_leave_one_owner_code_and_one_link_code() {
    let server = TestPostgres::start();
    let mut setup = PostgresBackend::connect(&server.url).expect("connect");
    let (ada, _) = setup
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let mut servers = two_servers(&server);
    for round in 0..ROUNDS {
        let codes = [[10 + 2 * round; 32], [11 + 2 * round; 32]];
        for answer in race(&mut servers, |db, i| db.set_owner_code(&codes[i], 0)) {
            answer.expect("owner code");
        }
        let answers = [0, 1].map(|i| {
            let n = 10 + 2 * round + i as u8;
            setup
                .create_account(&new_account(&format!("Admin{n}"), n, Some(codes[i])))
                .map(|(account, _)| account.admin)
        });
        let (admin, lost) = one_winner(round, answers);
        assert_eq!(
            (admin, lost),
            (true, StoreError::InvitationUnknown),
            "round {round}: one unused owner code"
        );

        let codes = [[100 + 2 * round; 32], [101 + 2 * round; 32]];
        for answer in race(&mut servers, |db, i| {
            db.create_link_code(ada.id, &codes[i], 1_000, 5_000)
        }) {
            answer.expect("link code");
        }
        let answers = [0, 1].map(|i| {
            setup
                .link_device(&codes[i], &device(100 + 2 * round + i as u8), 1_000)
                .map(|(account, _)| account.id)
        });
        let (linked_to, lost) = one_winner(round, answers);
        assert_eq!(
            (linked_to, lost),
            (ada.id, StoreError::InvitationUnknown),
            "round {round}: one link code per account"
        );
    }
}

#[test]
fn postgres_two_servers_use_one_link_code_once() {
    let server = TestPostgres::start();
    let mut setup = PostgresBackend::connect(&server.url).expect("connect");
    let (ada, _) = setup
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let mut servers = two_servers(&server);
    for round in 0..ROUNDS {
        let code = [10 + round; 32];
        setup
            .create_link_code(ada.id, &code, 1_000, 5_000)
            .expect("code");
        let answers = race(&mut servers, |db, i| {
            db.link_device(&code, &device(50 + 2 * round + i as u8), 1_000)
        });
        let (_, lost) = one_winner(round, answers);
        assert_eq!(lost, StoreError::InvitationUnknown, "round {round}");
    }
    assert_eq!(
        setup.devices(ada.id).expect("devices").len(),
        1 + usize::from(ROUNDS)
    );
}

#[test]
fn postgres_a_token_never_outlives_a_suspension_made_at_the_same_time() {
    let server = TestPostgres::start();
    let mut setup = PostgresBackend::connect(&server.url).expect("connect");
    let (ada, phone) = setup
        .create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let mut servers = two_servers(&server);
    for round in 0..ROUNDS {
        let token = [round; 32];
        let [added, suspended] = race(&mut servers, |db, i| {
            if i == 0 {
                db.add_token(&token, phone.id, 1_000, 9_000)
            } else {
                db.set_suspended(ada.id, Some("spam"), 1_000)
            }
        });
        suspended.expect("suspend");
        assert!(
            matches!(&added, Ok(()) | Err(StoreError::Suspended(_))),
            "round {round}: {added:?}"
        );
        assert_eq!(
            setup.token(&token, 1_500).expect("query"),
            None,
            "round {round}: a suspended account keeps no token"
        );
        setup.set_suspended(ada.id, None, 1_000).expect("lift");
    }
}

#[test]
fn postgres_servers_starting_together_migrate_once() {
    let server = TestPostgres::start();
    let url = server.create_database("fresh");
    let barrier = Barrier::new(4);
    let (barrier, url) = (&barrier, url.as_str());
    let started: Vec<Result<(), ConnectError>> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    barrier.wait();
                    PostgresBackend::connect(url).map(drop)
                })
            })
            .collect();
        starts
            .into_iter()
            .map(|start| start.join().expect("start"))
            .collect()
    });
    for start in started {
        start.expect("every server starts");
    }
    let mut db = PostgresBackend::connect(url).expect("connect");
    db.create_account(&new_account("Ada", 1, None))
        .expect("the schema is whole");
}

#[test]
fn postgres_refuses_a_newer_or_a_foreign_schema_and_leaves_it_alone() {
    let server = TestPostgres::start();
    drop(PostgresBackend::connect(&server.url).expect("migrate"));
    let mut admin =
        postgres::Client::connect(&server.url, postgres::NoTls).expect("admin connection");
    admin
        .batch_execute("INSERT INTO hallway_schema (version) VALUES (999)")
        .expect("pretend a newer release migrated");
    match PostgresBackend::connect(&server.url) {
        Err(ConnectError::TooNew { found: 999, .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("ran on a newer schema"),
    }

    let foreign = server.create_database("foreign");
    let mut admin = postgres::Client::connect(&foreign, postgres::NoTls).expect("connect");
    admin
        .batch_execute("CREATE TABLE accounts (id INTEGER)")
        .expect("someone else's table");
    match PostgresBackend::connect(&foreign) {
        Err(ConnectError::Foreign) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("migrated someone else's database"),
    }
    let touched: bool = admin
        .query_one("SELECT to_regclass('hallway_schema') IS NOT NULL", &[])
        .expect("query")
        .get(0);
    assert!(!touched, "a refused database is left as it was");
}

#[test]
fn postgres_reconnects_after_its_connection_is_cut() {
    let server = TestPostgres::start();
    let mut db = PostgresBackend::connect(&server.url).expect("connect");
    db.create_account(&new_account("Ada", 1, None))
        .expect("ada");
    let mut admin =
        postgres::Client::connect(&server.url, postgres::NoTls).expect("admin connection");
    // The backend names its sessions `hallway`; the timeout (PostgreSQL 14+) waits for the end.
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
             WHERE application_name = 'hallway'",
            &[],
        )
        .expect("terminate");
    assert_eq!(cut.len(), 1, "{}", server.log());
    assert_eq!(
        db.account_by_handle("ada")
            .expect("the next call reconnects")
            .handle,
        "Ada"
    );
}

#[test]
fn postgres_backups_are_left_to_postgres_tools() {
    let server = TestPostgres::start();
    let mut db = PostgresBackend::connect(&server.url).expect("connect");
    let refused = db
        .backup(Path::new("/nonexistent/copy.db"))
        .expect_err("no file backup of PostgreSQL");
    assert!(
        matches!(&refused, StoreError::Database(message) if message.contains("pg_dump")),
        "{refused}"
    );
}
