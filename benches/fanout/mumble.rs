//! The peer: Debian's `mumble-server` run by hand on 127.0.0.1 with an ini in a temp dir,
//! and a minimal Mumble client: TLS control channel, `Version` + `Authenticate`, then audio
//! tunnelled in `UDPTunnel` messages in the legacy (1.3) packet format with Opus.
//!
//! Protocol messages are written by hand with prost's derive, from the field numbers in
//! Mumble's public `Mumble.proto`; nothing of Mumble's code is copied here.

use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use prost::Message as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;

const MSG_VERSION: u16 = 0;
const MSG_UDP_TUNNEL: u16 = 1;
const MSG_AUTHENTICATE: u16 = 2;
const MSG_REJECT: u16 = 4;
const MSG_SERVER_SYNC: u16 = 5;
/// Legacy audio packet type for Opus, in the top three bits of the first byte (target 0).
const AUDIO_OPUS: u8 = 4 << 5;

#[derive(Clone, PartialEq, prost::Message)]
struct Version {
    #[prost(uint32, optional, tag = "1")]
    version: Option<u32>,
    #[prost(string, optional, tag = "2")]
    release: Option<String>,
    #[prost(string, optional, tag = "3")]
    os: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Authenticate {
    #[prost(string, optional, tag = "1")]
    username: Option<String>,
    #[prost(bool, optional, tag = "5")]
    opus: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ServerSync {
    #[prost(uint32, optional, tag = "1")]
    session: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Reject {
    #[prost(int32, optional, tag = "1")]
    kind: Option<i32>,
    #[prost(string, optional, tag = "2")]
    reason: Option<String>,
}

/// A running `mumble-server`, killed when dropped; its files live in a temp dir.
pub struct MumbleServer {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl MumbleServer {
    /// Writes an ini (127.0.0.1 only, no registration, high limits, Opus forced) and starts
    /// the server in the foreground, on `cpu` when given; waits until it accepts connections.
    pub async fn start(cpu: Option<usize>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let ini = dir.path().join("mumble-server.ini");
        let d = dir.path().display();
        std::fs::write(
            &ini,
            format!(
                "database={d}/mumble.sqlite\nlogfile={d}/mumble.log\npidfile=\nice=\"\"\n\
                 host=127.0.0.1\nport={port}\nserverpassword=\nregisterName=\n\
                 users=10000\nusersperchannel=0\nbandwidth=558000\ntimeout=3600\n\
                 autobanAttempts=0\nautobanTimeframe=0\nautobanTime=0\nopusthreshold=0\n\
                 messagelimit=100000\nmessageburst=100000\nallowhtml=false\n\
                 certrequired=false\nsendversion=false\nwelcometext=\n"
            ),
        )
        .expect("write the ini");
        let bin = std::env::var("MUMBLE_SERVER_BIN").unwrap_or_else(|_| "murmurd".into());
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]);
                c
            }
            None => Command::new("env"),
        };
        // As root murmurd switches to its own user and then fails to set capabilities;
        // starting it as that user directly works (setpriv execs, so the pid stays its).
        let root = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").expect("/proc/self"),
        ) == 0;
        if root {
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .expect("open the temp dir to the mumble-server user");
            command.args([
                "setpriv",
                "--reuid=mumble-server",
                "--regid=mumble-server",
                "--clear-groups",
            ]);
        }
        let mut child = command
            .arg(&bin)
            .arg("-fg")
            .arg("-ini")
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mumble-server (apt-get install mumble-server)");
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if TcpStream::connect(&addr).await.is_ok() {
                return Self {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mumble-server did not listen on {addr} within 10 s; see {d}/mumble.log");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MumbleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Accepts any certificate: Mumble's is self-signed, and this connector is only ever
/// pointed at a server this benchmark started on 127.0.0.1.
#[derive(Debug)]
struct LoopbackOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for LoopbackOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match server_name {
            ServerName::IpAddress(ip) if std::net::IpAddr::from(*ip).is_loopback() => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::General("only loopback servers".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LoopbackOnly(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Tls = TlsStream<TcpStream>;

/// Connects, says `Version` (1.3.0, so the server sends the legacy audio format) and
/// `Authenticate`, and waits for `ServerSync`. A busy server may refuse or reset a join.
pub async fn join(
    connector: &TlsConnector,
    addr: &str,
    name: &str,
) -> std::io::Result<(MumbleReader, WriteHalf<Tls>)> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = connector.connect(ip, tcp).await?;
    let mut out = Vec::new();
    put_message(
        &mut out,
        MSG_VERSION,
        &Version {
            version: Some(1 << 16 | 3 << 8),
            release: Some("hallway fanout bench".into()),
            os: Some("Linux".into()),
        }
        .encode_to_vec(),
    );
    put_message(
        &mut out,
        MSG_AUTHENTICATE,
        &Authenticate {
            username: Some(name.into()),
            opus: Some(true),
        }
        .encode_to_vec(),
    );
    tls.write_all(&out).await?;
    tls.flush().await?;
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        while let Some((kind, len)) = parse_message(&buf) {
            let payload = &buf[6..6 + len];
            match kind {
                MSG_SERVER_SYNC => {
                    let _ = ServerSync::decode(payload);
                    buf.advance(6 + len);
                    let (read, write) = tokio::io::split(tls);
                    return Ok((MumbleReader { read, buf }, write));
                }
                MSG_REJECT => panic!(
                    "mumble rejected {name}: {:?}",
                    Reject::decode(payload).ok().and_then(|r| r.reason)
                ),
                _ => buf.advance(6 + len),
            }
        }
        buf.reserve(8192);
        if tls.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The receiving half of a Mumble connection.
pub struct MumbleReader {
    read: ReadHalf<Tls>,
    buf: BytesMut,
}

impl MumbleReader {
    pub async fn run(mut self, stats: Rc<Stats>, measure: bool, stop: CancellationToken) {
        loop {
            while let Some((kind, len)) = parse_message(&self.buf) {
                if kind == MSG_UDP_TUNNEL && measure {
                    // [type|target] [session varint] [sequence varint] [opus ...]
                    let mut p = &self.buf[7..6 + len];
                    let _session = varint(&mut p);
                    if let Some(sent_us) = varint(&mut p) {
                        stats.on_received(sent_us);
                    }
                } else if kind == MSG_REJECT {
                    stats.disconnects.set(stats.disconnects.get() + 1);
                    return;
                }
                self.buf.advance(6 + len);
            }
            self.buf.reserve(4096);
            let read = tokio::select! {
                read = self.read.read_buf(&mut self.buf) => read,
                () = stop.cancelled() => return,
            };
            if !matches!(read, Ok(n) if n > 0) {
                stats.disconnects.set(stats.disconnects.get() + 1);
                return;
            }
        }
    }
}

/// (type, payload length) of the first complete message in `buf`.
fn parse_message(buf: &[u8]) -> Option<(u16, usize)> {
    if buf.len() < 6 {
        return None;
    }
    let kind = u16::from_be_bytes([buf[0], buf[1]]);
    let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
    (buf.len() >= 6 + len).then_some((kind, len))
}

fn put_message(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One tunnelled audio packet; the send time (µs) rides in the sequence number, which the
/// server forwards untouched.
pub fn audio_message(out: &mut Vec<u8>, sent_us: u64, opus: &[u8]) {
    let mut packet = Vec::with_capacity(opus.len() + 16);
    packet.push(AUDIO_OPUS);
    put_varint(&mut packet, sent_us);
    // The Opus length; bit 13 (end of transmission) stays clear while talking.
    put_varint(&mut packet, opus.len() as u64);
    packet.extend_from_slice(opus);
    out.clear();
    put_message(out, MSG_UDP_TUNNEL, &packet);
}

/// Mumble's variable-length integer (positive forms only).
fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[0x80 | (v >> 8) as u8, v as u8]);
    } else if v < 0x20_0000 {
        out.extend_from_slice(&[0xc0 | (v >> 16) as u8, (v >> 8) as u8, v as u8]);
    } else if v < 0x1000_0000 {
        out.extend_from_slice(&[
            0xe0 | (v >> 24) as u8,
            (v >> 16) as u8,
            (v >> 8) as u8,
            v as u8,
        ]);
    } else if v < 0x1_0000_0000 {
        out.push(0xf0);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xf4);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn varint(p: &mut &[u8]) -> Option<u64> {
    let first = *p.first()?;
    let take = |p: &mut &[u8], n: usize| -> Option<u64> {
        let bytes = p.get(1..1 + n)?;
        let v = bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        *p = &p[1 + n..];
        Some(v)
    };
    Some(match first {
        b if b & 0x80 == 0 => {
            *p = &p[1..];
            u64::from(b)
        }
        b if b & 0xc0 == 0x80 => u64::from(b & 0x3f) << 8 | take(p, 1)?,
        b if b & 0xe0 == 0xc0 => u64::from(b & 0x1f) << 16 | take(p, 2)?,
        b if b & 0xf0 == 0xe0 => u64::from(b & 0x0f) << 24 | take(p, 3)?,
        0xf0..=0xf3 => take(p, 4)?,
        0xf4..=0xf7 => take(p, 8)?,
        _ => return None,
    })
}

/// Checks the varint codec both ways; run by the smoke mode (bench targets have no tests).
pub fn self_check() {
    for v in [
        0,
        1,
        127,
        128,
        0x3fff,
        0x4000,
        0x1f_ffff,
        0xfff_ffff,
        1 << 31,
        1 << 40,
    ] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        let mut p = &out[..];
        assert_eq!(varint(&mut p), Some(v), "varint {v}");
        assert!(p.is_empty(), "varint {v} left bytes");
    }
}
