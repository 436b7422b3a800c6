//! TLS built in: `hallway serve --tls-cert --tls-key` with a certificate made here, the
//! real client over `https://` and `wss://` trusting it with `--ca`, and a new certificate
//! taken on SIGHUP without a restart. Also the client against a hostile server: whatever a
//! server says reaches the terminal escaped.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{PATIENCE, TestServer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files in
/// `dir`: (the CA's certificate, the server's certificate, the server's key).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("Hallway test CA {name}"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.crt")),
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Runs the real `hallway` with `args` to the end (within a minute).
async fn hallway(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hallway"))
        .args(args)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("hallway-tls-test-config"),
        )
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("hallway-tls-test-state"),
        )
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("hallway did not finish within a minute")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A rustls client that trusts only the certificate in `ca`.
fn trusting(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn the_client_speaks_https_and_wss_with_a_private_ca_and_a_reload_takes_a_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(dir.path(), "first");
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let cert_arg = ca.to_str().unwrap();

    // Without the CA the client refuses the server, and says what to do.
    let refused = hallway(&["rooms", "--server", &server.base]).await;
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("hallway: "), "{stderr}");
    assert!(
        last.contains("does not trust") && last.contains("--ca"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // With it: REST over https...
    let rooms = hallway(&["rooms", "--server", &server.base, "--ca", cert_arg]).await;
    assert!(rooms.status.success(), "{}", text(&rooms.stderr));
    assert_eq!(text(&rooms.stdout), "No rooms are live.\n");

    // ...and a room over wss: `play --create` signs in, creates a room, joins it live and
    // streams a clip; `rooms` then lists it.
    let clip = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(&clip, spec).unwrap();
    for i in 0..48_000 {
        let t = f32::from(u16::try_from(i % 48_000).unwrap()) / 48_000.0;
        let sample = (t * 440.0 * std::f32::consts::TAU).sin() * 8_000.0;
        wav.write_sample(sample as i16).unwrap();
    }
    wav.finalize().unwrap();
    let played = hallway(&[
        "play",
        "--server",
        &server.base,
        "--ca",
        cert_arg,
        "--name",
        "Tls Speaker",
        "--create",
        "Over TLS",
        clip.to_str().unwrap(),
    ])
    .await;
    assert!(
        played.status.success(),
        "play over wss failed:\n{}",
        text(&played.stderr)
    );

    // A new certificate on SIGHUP: a client that trusts only the new one gets in after the
    // reload, with no restart.
    let (next_ca, next_cert, next_key) = certificate(dir.path(), "second");
    std::fs::copy(&next_cert, &cert).unwrap();
    std::fs::copy(&next_key, &key).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let addr = server.base.trim_start_matches("https://").to_string();
    let config = trusting(&next_ca);
    common::eventually("the server presents the new certificate", || {
        let addr = addr.clone();
        let config = config.clone();
        async move {
            let request = format!("wss://{addr}/api/v2/rooms/none/live")
                .into_client_request()
                .unwrap();
            let connector = tokio_tungstenite::Connector::Rustls(config);
            match tokio_tungstenite::connect_async_tls_with_config(
                request,
                None,
                false,
                Some(connector),
            )
            .await
            {
                // The handshake succeeded; the upgrade is refused for want of a token.
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    response.status() == 401
                }
                _ => false,
            }
        }
    })
    .await;
}

/// A server that answers every request with `body` (and `status`), then closes.
async fn hostile_server(status: u16, body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

const NASTY: &str = "\u{1b}]0;owned\u{7}\u{1b}]52;c;aGVsbG8=\u{7}\u{1b}[2J\u{202e}\u{9b}31m";

fn assert_escaped(output: &str) {
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(
            !output.contains(bad),
            "U+{:04X} reached the terminal: {output:?}",
            u32::from(bad)
        );
    }
    assert!(
        output.contains("\\u{1b}"),
        "the escape is shown, not hidden: {output:?}"
    );
}

#[tokio::test]
async fn a_hostile_servers_words_reach_the_terminal_escaped() {
    // `hallway rooms` against a server whose room list is full of terminal escapes.
    let room = serde_json::json!({
        "id": format!("id{NASTY}"),
        "title": format!("title{NASTY}"),
        "host": {"id": 1, "handle": format!("h{NASTY}"), "name": format!("host{NASTY}")},
        "speakers": [{"id": 1, "handle": format!("h{NASTY}"), "name": format!("speaker{NASTY}"), "role": "host", "muted": false, "speaking": false}],
        "listener_count": 1,
        "created_at_ms": 0,
    });
    let info = serde_json::json!({
        "server": "hallway", "version": "0", "protocol_version": 2, "invite_only": false,
    });
    // One address serves both: the info probe and the list (the client reads what it needs
    // from each; unknown fields are ignored).
    let mut body = info.as_object().unwrap().clone();
    body.insert("rooms".into(), serde_json::json!([room]));
    let base = hostile_server(200, serde_json::Value::Object(body).to_string()).await;
    let listed = hallway(&["rooms", "--server", &base]).await;
    let stdout = text(&listed.stdout);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(stdout.contains("title"), "{stdout}");
    assert_escaped(&stdout);

    // An error whose message is an escape sequence.
    let error = serde_json::json!({"error": {"code": "internal", "message": NASTY}});
    let base = hostile_server(500, error.to_string()).await;
    let failed = hallway(&["rooms", "--server", &base]).await;
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.starts_with("hallway: "), "{stderr}");
    assert_escaped(&stderr);
}
