//! Accounts for the benchmarks, made over the real API: a fresh device key, a challenge,
//! the signed account request.
// Each benchmark uses what it needs of this.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use hallway::identity::{self, DeviceKey};
use hallway::protocol::handle::handle_from_name;
use serde_json::{Value, json};

static MADE: AtomicU32 = AtomicU32::new(0);

/// A challenge from `addr` (`127.0.0.1:PORT`), signed by `key`.
pub async fn signed(http: &reqwest::Client, addr: &str, key: &DeviceKey) -> Value {
    let challenge: Value = http
        .post(format!("http://{addr}/api/v2/challenges"))
        .send()
        .await
        .expect("POST /api/v2/challenges")
        .json()
        .await
        .expect("challenge JSON");
    let nonce = challenge["nonce"].as_str().expect("a nonce");
    json!({
        "nonce": nonce,
        "signature": identity::b64(&key.sign_in(addr, nonce.as_bytes())),
    })
}

/// Makes an account named `name` on a new key; returns (token, user id).
pub async fn sign_up(http: &reqwest::Client, addr: &str, name: &str) -> (String, u32) {
    let key = DeviceKey::generate();
    let (token, id) = sign_up_with(http, addr, name, &key).await;
    (token, id)
}

/// Makes an account named `name` for `key`; returns (token, user id).
pub async fn sign_up_with(
    http: &reqwest::Client,
    addr: &str,
    name: &str,
    key: &DeviceKey,
) -> (String, u32) {
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let public = key.public();
    let mut body = signed(http, addr, key).await;
    body["handle"] = json!(handle_from_name(name, &format!("_{n}")).as_str());
    body["name"] = json!(name);
    body["device"] = json!({
        "sign_key": identity::b64(&public.sign),
        "agree_key": identity::b64(&public.agree),
    });
    let answer: Value = http
        .post(format!("http://{addr}/api/v2/accounts"))
        .json(&body)
        .send()
        .await
        .expect("POST /api/v2/accounts")
        .json()
        .await
        .expect("account JSON");
    let token = answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_string();
    let id = answer["user"]["id"].as_u64().expect("a user id") as u32;
    (token, id)
}

/// Signs `key` in; true when the server gave a token.
pub async fn sign_in(http: &reqwest::Client, addr: &str, key: &DeviceKey) -> bool {
    let mut body = signed(http, addr, key).await;
    body["sign_key"] = json!(identity::b64(&key.public().sign));
    http.post(format!("http://{addr}/api/v2/sessions"))
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}
