//! Accounts against a real server process with a temporary database: invitations, sign-in
//! by device key, handles, devices, follows, blocks, reports, suspensions, restarts.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Live, TestServer, assert_api_error, eventually};
use hallway::identity::DeviceKey;
use hallway::protocol::Session;
use reqwest::Method;
use serde_json::{Value, json};

async fn put(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    server.request(Method::PUT, path, Some(token), None).await
}

async fn invite(server: &TestServer, token: &str) -> (u16, Value) {
    server
        .post_json("/api/v2/invitations", Some(token), json!({}))
        .await
}

#[tokio::test]
async fn the_invitation_chain_runs_from_the_owner_with_quotas_and_names_who_invited_whom() {
    let mut server = TestServer::start_with(&["--invite-only", "--invitations", "1"]);
    let owner_code = server.owner_invitation();
    let stranger = DeviceKey::generate();
    assert_api_error(
        &server.try_account(&stranger, "stranger", "S", None).await,
        403,
        "invitation_required",
    );
    assert_api_error(
        &server
            .try_account(&stranger, "stranger", "S", Some("not-a-code"))
            .await,
        403,
        "invitation_unknown",
    );
    let (owner, _) = server.account("Olive", Some(&owner_code)).await;
    let (status, me) = server.get("/api/v2/me", Some(&owner.token)).await;
    assert_eq!((status, me["admin"].as_bool()), (200, Some(true)));
    assert_eq!(me["invitations_left"], Value::Null, "admins are unlimited");
    assert_api_error(
        &server
            .try_account(&DeviceKey::generate(), "again", "A", Some(&owner_code))
            .await,
        410,
        "invitation_used",
    );

    let (status, link) = invite(&server, &owner.token).await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/invite/", server.base)),
        "{url}"
    );
    let (member, _) = server
        .account("Mira", Some(link["code"].as_str().unwrap()))
        .await;
    let (_, me) = server.get("/api/v2/me", Some(&member.token)).await;
    assert_eq!(me["invitations_left"], 1);
    let (status, second) = invite(&server, &member.token).await;
    assert_eq!(status, 201);
    assert_eq!(second["invitations_left"], 0);
    assert_api_error(
        &invite(&server, &member.token).await,
        403,
        "no_invitations_left",
    );
    let (invitee, _) = server
        .account("Ivo", Some(second["code"].as_str().unwrap()))
        .await;

    let (status, card) = server
        .get(
            &format!("/api/v2/users/{}", invitee.user.handle),
            Some(&owner.token),
        )
        .await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["invited_by"], member.user.handle.as_str());
    let (_, card) = server
        .get(
            &format!("/api/v2/users/{}", member.user.handle),
            Some(&invitee.token),
        )
        .await;
    assert_eq!(card["invited_by"], owner.user.handle.as_str());
    // The page a browser shows for a link says how to use it.
    let page = server
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("hallway --server"), "{page}");
    // Nothing is listed to someone without an account.
    assert_api_error(
        &server.get("/api/v2/rooms", None).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn handles_are_unique_whatever_the_case_and_look_alikes_are_refused() {
    let server = TestServer::start();
    let (status, body) = server
        .try_account(&DeviceKey::generate(), "@Ada_L", "Ada", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["handle"], "Ada_L");
    for taken in ["ada_l", "ADA_L", "Ada_1"] {
        assert_api_error(
            &server
                .try_account(&DeviceKey::generate(), taken, "Impostor", None)
                .await,
            409,
            "handle_taken",
        );
    }
    for bad in ["ab", "a-b-c", "Аda_x", "a_very_long_handle_indeed"] {
        assert_api_error(
            &server
                .try_account(&DeviceKey::generate(), bad, "X", None)
                .await,
            400,
            "invalid_handle",
        );
    }
}

#[tokio::test]
async fn a_sign_in_needs_a_fresh_challenge_signed_by_the_device_for_this_server() {
    let server = TestServer::start();
    let (ada, key) = server.account("Ada", None).await;
    let (status, session) = server.try_sign_in(&key).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["id"], ada.user.id);
    assert_ne!(
        session["token"],
        ada.token.as_str(),
        "a new token per sign-in"
    );

    // A replayed answer: the challenge was used up.
    let mut answered = server.signed(&key).await;
    answered["sign_key"] = json!(hallway::identity::b64(&key.public().sign));
    let first = server
        .post_json("/api/v2/sessions", None, answered.clone())
        .await;
    assert_eq!(first.0, 200);
    assert_api_error(
        &server.post_json("/api/v2/sessions", None, answered).await,
        401,
        "challenge_expired",
    );

    // Signed by another key, or for another server (a relayed challenge): refused.
    let mut forged = server.signed(&DeviceKey::generate()).await;
    forged["sign_key"] = json!(hallway::identity::b64(&key.public().sign));
    assert_api_error(
        &server.post_json("/api/v2/sessions", None, forged).await,
        401,
        "bad_signature",
    );
    let (status, challenge) = server
        .post_json("/api/v2/challenges", None, json!({}))
        .await;
    assert_eq!(status, 200);
    let nonce = challenge["nonce"].as_str().unwrap();
    let relayed = key.sign_in("evil.example:7600", nonce.as_bytes());
    let body = json!({
        "sign_key": hallway::identity::b64(&key.public().sign),
        "nonce": nonce,
        "signature": hallway::identity::b64(&relayed),
    });
    assert_api_error(
        &server.post_json("/api/v2/sessions", None, body).await,
        401,
        "bad_signature",
    );
    // Nor with the `Host` the relaying server would write: the server knows its own names.
    let (status, challenge) = server
        .post_json("/api/v2/challenges", None, json!({}))
        .await;
    assert_eq!(status, 200);
    let nonce = challenge["nonce"].as_str().unwrap();
    let relayed = key.sign_in("evil.example:7600", nonce.as_bytes());
    let body = json!({
        "sign_key": hallway::identity::b64(&key.public().sign),
        "nonce": nonce,
        "signature": hallway::identity::b64(&relayed),
    });
    let forged_host = server
        .http
        .post(server.url("/api/v2/sessions"))
        .header("host", "evil.example:7600")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = forged_host.status().as_u16();
    let answer: Value = forged_host.json().await.unwrap();
    assert_api_error(&(status, answer), 401, "bad_signature");
    // A device without an account here.
    assert_api_error(
        &server.try_sign_in(&DeviceKey::generate()).await,
        401,
        "unknown_device",
    );
    // And the old protocol is told to upgrade.
    assert_api_error(
        &server
            .post_json("/api/v1/sessions", None, json!({"name": "old"}))
            .await,
        426,
        "upgrade_required",
    );
}

#[tokio::test]
async fn two_devices_share_one_account_and_a_revoked_one_is_signed_out() {
    let server = TestServer::start();
    let (ada, _) = server.account("Ada", None).await;
    let (status, code) = server
        .post_json("/api/v2/devices/link-codes", Some(&ada.token), json!({}))
        .await;
    assert_eq!(status, 201, "{code}");
    let laptop = DeviceKey::generate();
    let public = laptop.public();
    let mut body = server.signed(&laptop).await;
    body["code"] = code["code"].clone();
    body["device"] = json!({
        "sign_key": hallway::identity::b64(&public.sign),
        "agree_key": hallway::identity::b64(&public.agree),
        "label": "laptop",
    });
    let (status, linked) = server
        .post_json("/api/v2/devices", None, body.clone())
        .await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(linked["user"]["id"], ada.user.id);
    // The code works once, even with a fresh challenge from yet another device.
    let third = DeviceKey::generate();
    let mut again = server.signed(&third).await;
    again["code"] = code["code"].clone();
    again["device"] = json!({
        "sign_key": hallway::identity::b64(&third.public().sign),
        "agree_key": hallway::identity::b64(&third.public().agree),
    });
    assert_api_error(
        &server.post_json("/api/v2/devices", None, again).await,
        403,
        "invitation_unknown",
    );
    let (_, me) = server.get("/api/v2/me", Some(&ada.token)).await;
    let devices = me["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let laptop_id = devices.iter().find(|d| d["label"] == "laptop").unwrap()["id"]
        .as_i64()
        .unwrap();
    // The laptop is in a room when it is signed out: it is put out of it.
    let laptop_session: Session = serde_json::from_value(linked.clone()).unwrap();
    let host = server.session("Hosta").await;
    let room = server.create_room(&host, "devices").await;
    let _host_live = Live::join(&server, &room, &host).await;
    let mut laptop_live = Live::join(&server, &room, &laptop_session).await;
    let (status, _) = server
        .request(
            Method::DELETE,
            &format!("/api/v2/devices/{laptop_id}"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(laptop_live.closed().await.as_deref(), Some("unauthorized"));
    let laptop_token = linked["token"].as_str().unwrap();
    assert_api_error(
        &server.get("/api/v2/me", Some(laptop_token)).await,
        401,
        "unauthorized",
    );
    assert_api_error(&server.try_sign_in(&laptop).await, 401, "unknown_device");
    assert_eq!(server.get("/api/v2/me", Some(&ada.token)).await.0, 200);
    // The last device stays: revoking it would lose the account.
    let phone = devices.iter().find(|d| d["label"] != "laptop").unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_api_error(
        &server
            .request(
                Method::DELETE,
                &format!("/api/v2/devices/{phone}"),
                Some(&ada.token),
                None,
            )
            .await,
        400,
        "bad_request",
    );
    assert_api_error(
        &server
            .request(
                Method::DELETE,
                "/api/v2/devices/999999",
                Some(&ada.token),
                None,
            )
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn follows_put_rooms_with_followed_people_on_stage_first() {
    let server = TestServer::start();
    let fan = server.session("Fan").await;
    let star = server.session("Star").await;
    let other = server.session("Other").await;
    let star_room = server.create_room(&star, "the star's room").await;
    let _star_live = Live::join(&server, &star_room, &star).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer_room = server.create_room(&other, "a newer room").await;
    let _other_live = Live::join(&server, &newer_room, &other).await;

    let ids = |list: &Value| -> Vec<String> {
        list["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, anonymous) = server.get("/api/v2/rooms", None).await;
    assert_eq!(ids(&anonymous), vec![newer_room.clone(), star_room.clone()]);
    let (status, _) = put(
        &server,
        &format!("/api/v2/users/{}/follow", star.user.handle),
        &fan.token,
    )
    .await;
    assert_eq!(status, 204);
    let (_, mine) = server.get("/api/v2/rooms", Some(&fan.token)).await;
    assert_eq!(ids(&mine), vec![star_room.clone(), newer_room.clone()]);
    assert_eq!(mine["rooms"][0]["followed"], true);
    assert_eq!(mine["rooms"][1].get("followed"), None);
    let (_, card) = server
        .get(
            &format!("/api/v2/users/{}", star.user.handle),
            Some(&fan.token),
        )
        .await;
    assert_eq!(
        (card["followers"].as_u64(), card["followed"].as_bool()),
        (Some(1), Some(true))
    );
    assert_api_error(
        &put(
            &server,
            &format!("/api/v2/users/{}/follow", fan.user.handle),
            &fan.token,
        )
        .await,
        400,
        "yourself",
    );
    assert_api_error(
        &put(&server, "/api/v2/users/nobody_here/follow", &fan.token).await,
        404,
        "unknown_handle",
    );
}

#[tokio::test]
async fn a_person_the_host_blocks_is_put_out_and_kept_out_while_others_stay() {
    let server = TestServer::start();
    let host = server.session("Hana").await;
    let troll = server.session("Troll").await;
    let guest = server.session("Guest").await;
    let room = server.create_room(&host, "blocks").await;
    let mut host_live = Live::join(&server, &room, &host).await;
    let mut troll_live = Live::join(&server, &room, &troll).await;
    let mut guest_live = Live::join(&server, &room, &guest).await;
    let (status, _) = put(
        &server,
        &format!("/api/v2/users/{}/block", troll.user.handle),
        &host.token,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(troll_live.closed().await.as_deref(), Some("blocked"));
    let (status, body) = common::connect_refusal(&server, &room, Some(&troll.token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("blocked"))
    );
    // The guest is still served: a ping answered after the block.
    guest_live.ping(7).await;
    host_live.ping(8).await;
    // A block on yourself is refused.
    assert_api_error(
        &put(
            &server,
            &format!("/api/v2/users/{}/block", host.user.handle),
            &host.token,
        )
        .await,
        400,
        "yourself",
    );
}

#[tokio::test]
async fn reports_reach_admins_and_a_suspension_closes_connections_and_sign_ins() {
    let mut server = TestServer::start_with(&["--invite-only"]);
    let owner_code = server.owner_invitation();
    let (admin, _) = server.account("Admin", Some(&owner_code)).await;
    let (_, link) = invite(&server, &admin.token).await;
    let (troll, troll_key) = server
        .account("Troll", Some(link["code"].as_str().unwrap()))
        .await;
    let (status, _) = server
        .post_json(
            &format!("/api/v2/users/{}/reports", troll.user.handle),
            Some(&admin.token),
            json!({"reason": "spam in every room"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_api_error(
        &server
            .get("/api/v2/admin/reports", Some(&troll.token))
            .await,
        403,
        "forbidden",
    );
    // Reports are limited per account: 5 at once, then one every two minutes, however
    // often the reporter signs in again.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, _) = server
            .post_json(
                &format!("/api/v2/users/{}/reports", admin.user.handle),
                Some(&troll.token),
                json!({"reason": "retaliation"}),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [201, 201, 201, 201, 201, 429]);
    let (status, fresh) = server.try_sign_in(&troll_key).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post_json(
            &format!("/api/v2/users/{}/reports", admin.user.handle),
            Some(fresh["token"].as_str().unwrap()),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, 429, "a new sign-in does not reset the limit");
    let (_, reports) = server
        .get("/api/v2/admin/reports", Some(&admin.token))
        .await;
    let first = reports["reports"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(first["reported"], troll.user.handle.as_str());
    assert_eq!(first["reason"], "spam in every room");

    let room = server.create_room(&admin, "suspensions").await;
    let _admin_live = Live::join(&server, &room, &admin).await;
    let mut troll_live = Live::join(&server, &room, &troll).await;
    let (status, _) = server
        .request(
            Method::PUT,
            &format!("/api/v2/admin/users/{}/suspension", troll.user.handle),
            Some(&admin.token),
            Some(json!({"reason": "spam"})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(troll_live.closed().await.as_deref(), Some("suspended"));
    assert_api_error(
        &server.get("/api/v2/me", Some(&troll.token)).await,
        401,
        "unauthorized",
    );
    assert_api_error(&server.try_sign_in(&troll_key).await, 403, "suspended");
}

#[tokio::test]
async fn kill_9_in_a_burst_of_follows_loses_nothing_acknowledged() {
    let mut server = TestServer::start();
    let data = server.data.clone();
    let fan = server.session("Fan").await;
    let mut people = Vec::new();
    for n in 0..60 {
        people.push(server.session(&format!("p{n}")).await);
    }
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for person in &people {
        let http = server.http.clone();
        let url = server.url(&format!("/api/v2/users/{}/follow", person.user.handle));
        let token = fan.token.clone();
        let id = person.user.id;
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let sent = http.put(url).bearer_auth(token).send().await;
            if sent.is_ok_and(|r| r.status() == 204) {
                acknowledged.lock().unwrap().push(id);
            }
        }));
    }
    // Mid-burst: some follows are answered, some are not yet.
    eventually("some follows acknowledged", || {
        let acknowledged = acknowledged.clone();
        async move { !acknowledged.lock().unwrap().is_empty() }
    })
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for task in tasks {
        let _ = task.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    // On a new port: the database is what carries over, and no other process can hold it.
    let restarted = TestServer::start_on_data(data, "127.0.0.1:0", &[]);
    let (status, me) = restarted.get("/api/v2/me", Some(&fan.token)).await;
    assert_eq!(status, 200, "{me}");
    let following: Vec<u64> = me["following"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for id in &acknowledged {
        assert!(
            following.contains(&u64::from(*id)),
            "follow of {id} was acknowledged before kill -9 and is gone"
        );
    }
}

#[test]
fn a_database_that_is_not_one_stops_the_server_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hallway"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("damaged or not a Hallway database"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing else written"
    );
}

#[tokio::test]
async fn a_block_applies_when_the_blocker_arrives_or_is_made_a_moderator_later() {
    let server = TestServer::start();
    let host = server.session("Hana").await;
    let mira = server.session("Mira").await;
    let troll = server.session("Troll").await;
    let pest = server.session("Pest").await;
    let guest = server.session("Guest").await;
    for (by, whom) in [(&host, &troll), (&mira, &pest)] {
        let (status, _) = put(
            &server,
            &format!("/api/v2/users/{}/block", whom.user.handle),
            &by.token,
        )
        .await;
        assert_eq!(status, 204);
    }
    // The host has made the room but is not in it yet: nobody there blocks the troll.
    let room = server.create_room(&host, "later").await;
    let mut troll_live = Live::join(&server, &room, &troll).await;
    let mut pest_live = Live::join(&server, &room, &pest).await;
    let mut guest_live = Live::join(&server, &room, &guest).await;
    let mut mira_live = Live::join(&server, &room, &mira).await;
    // The host arrives: the troll is put out; the others stay.
    let mut host_live = Live::join(&server, &room, &host).await;
    assert_eq!(troll_live.closed().await.as_deref(), Some("blocked"));
    guest_live.ping(1).await;
    pest_live.ping(2).await;
    // Mira, a listener, blocks the pest, but puts nobody out until she runs the stage.
    host_live
        .command(json!({"type": "make_moderator", "user_id": mira.user.id}))
        .await;
    assert_eq!(pest_live.closed().await.as_deref(), Some("blocked"));
    guest_live.ping(3).await;
    mira_live.ping(4).await;
}

#[tokio::test]
async fn one_account_calling_in_a_loop_is_held_to_its_budget_while_another_is_served() {
    let server = TestServer::start();
    let looper = server.session("Looper").await;
    let target = server.session("Target").await;
    let other = server.session("Other").await;
    let path = format!("/api/v2/users/{}/follow", target.user.handle);
    let mut limited = 0;
    for _ in 0..120 {
        let (status, _) = put(&server, &path, &looper.token).await;
        match status {
            204 => {}
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(limited > 0, "120 store calls at once were all taken");
    // Someone else's account calls are untouched.
    let (status, _) = put(&server, &path, &other.token).await;
    assert_eq!(status, 204);
    let (status, me) = server.get("/api/v2/me", Some(&other.token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["following"], json!([target.user.id]));
}
