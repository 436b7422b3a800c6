//! Scheduled rooms (#15) against a real server process: scheduling and its refusals,
//! the list with followed hosts first, a restart that keeps them, the host starting one
//! (a live room anyone can join) and cancelling another.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Live, TestServer, assert_api_error};
use serde_json::{Value, json};

const HOUR_MS: u64 = 3_600_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_scheduled_room_survives_a_restart_and_its_host_starts_it() {
    let first = TestServer::start();
    let listen = first.base.trim_start_matches("http://").to_string();
    let data = first.data.clone();
    let grace = first.session("Grace").await;
    let bob = first.session("Bob").await;
    let ada = first.session("Ada").await;
    let follow = first
        .request(
            reqwest::Method::PUT,
            &format!("/api/v2/users/{}/follow", grace.user.handle),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(follow.0, 204, "{}", follow.1);

    let soon = now_ms() + HOUR_MS;
    // Refusals, each with its reason.
    let post = |token: Option<String>, body: Value| {
        let first = &first;
        async move {
            first
                .post_json("/api/v2/schedule", token.as_deref(), body)
                .await
        }
    };
    let past = post(
        Some(grace.token.clone()),
        json!({"title": "Too late", "starts_at_ms": now_ms() - HOUR_MS}),
    )
    .await;
    assert_api_error(&past, 400, "invalid_time");
    let far = post(
        Some(grace.token.clone()),
        json!({"title": "Far off", "starts_at_ms": now_ms() + 2 * 365 * 24 * HOUR_MS}),
    )
    .await;
    assert_api_error(&far, 400, "invalid_time");
    let blank = post(
        Some(grace.token.clone()),
        json!({"title": " \u{200B} ", "starts_at_ms": soon}),
    )
    .await;
    assert_api_error(&blank, 400, "invalid_title");
    let bidi = post(
        Some(grace.token.clone()),
        json!({"title": "Talk", "description": "a\u{202E}b", "starts_at_ms": soon}),
    )
    .await;
    assert_api_error(&bidi, 400, "bad_request");
    let anonymous = post(None, json!({"title": "Talk", "starts_at_ms": soon})).await;
    assert_api_error(&anonymous, 401, "unauthorized");

    // Bob's is earlier, Grace's later: Ada follows Grace, so hers comes first for Ada.
    let (status, bobs) = post(
        Some(bob.token.clone()),
        json!({"title": "Bob's early one", "starts_at_ms": soon - HOUR_MS / 2}),
    )
    .await;
    assert_eq!(status, 201, "{bobs}");
    let (status, graces) = post(
        Some(grace.token.clone()),
        json!({
            "title": "Rust office hours",
            "description": "Bring your borrow checker questions",
            "starts_at_ms": soon
        }),
    )
    .await;
    assert_eq!(status, 201, "{graces}");
    assert_eq!(graces["host"]["handle"], grace.user.handle.as_str());
    let id = graces["id"].as_u64().unwrap();
    drop(first);

    // A new process on the same database.
    let server = TestServer::start_on_data(data, &listen, &[]);
    let (status, list) = server.get("/api/v2/schedule", Some(&ada.token)).await;
    assert_eq!(status, 200, "{list}");
    let titles: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Rust office hours", "Bob's early one"], "{list}");
    assert_eq!(list["rooms"][0]["followed"], true);
    assert_eq!(
        list["rooms"][0]["description"],
        "Bring your borrow checker questions"
    );
    // Anyone else sees them by time.
    let (_, plain) = server.get("/api/v2/schedule", None).await;
    assert_eq!(plain["rooms"][0]["title"], "Bob's early one");

    // Only the host starts it.
    let path = format!("/api/v2/schedule/{id}/start");
    let stolen = server
        .request(reqwest::Method::POST, &path, Some(&bob.token), None)
        .await;
    assert_api_error(&stolen, 403, "forbidden");
    let (status, detail) = server
        .request(reqwest::Method::POST, &path, Some(&grace.token), None)
        .await;
    assert_eq!(status, 201, "{detail}");
    let room = detail["id"].as_str().unwrap().to_string();
    assert_eq!(detail["title"], "Rust office hours");
    // It is live: Grace hosts it, Ada joins it, and the schedule says where it is.
    let mut grace_live = Live::join(&server, &room, &grace).await;
    let ada_live = Live::join(&server, &room, &ada).await;
    assert!(
        ada_live
            .snapshot
            .participants
            .iter()
            .any(|p| p.id == grace.user.id)
    );
    grace_live
        .command(json!({"type": "chat", "text": "we are live"}))
        .await;
    let (_, list) = server.get("/api/v2/schedule", Some(&ada.token)).await;
    assert_eq!(list["rooms"][0]["room"], room.as_str(), "{list}");
    let again = server
        .request(reqwest::Method::POST, &path, Some(&grace.token), None)
        .await;
    assert_api_error(&again, 409, "already_started");

    // Bob cancels his; it is gone.
    let bobs_id = bobs["id"].as_u64().unwrap();
    let cancel = server
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v2/schedule/{bobs_id}"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(cancel.0, 204, "{}", cancel.1);
    let gone = server
        .get(&format!("/api/v2/schedule/{bobs_id}"), None)
        .await;
    assert_api_error(&gone, 404, "room_not_found");
    let bad_id = server.get("/api/v2/schedule/0x1", None).await;
    assert_api_error(&bad_id, 404, "room_not_found");
}
