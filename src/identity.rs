//! Device identity: the keys a client installation signs in with, and the signed message's
//! format, shared by client and server. No network I/O.
//!
//! A device (one client installation) holds two key pairs: Ed25519 for signing in and X25519
//! for key agreement (end-to-end encrypted rooms). Both secrets are 32 random bytes, kept
//! together in `device.key` in the client's config directory, readable only by its owner:
//!
//! ```text
//! hallway-device-key-v1 <base64url, no padding, of sign secret ‖ agree secret>
//! ```
//!
//! To sign in, the server sends a random nonce and the device signs [`signin_message`]: the
//! nonce bound to the server's origin (`host[:port]` as the HTTP `Host` header carries it,
//! see [`origin_of`]). The server checks the signature against the `Host` header of the
//! sign-in request, so a hostile server cannot relay another server's challenge. A server
//! learns only [`DevicePublic`]; people compare devices by its [`fingerprint`].
//!
//! [`fingerprint`]: DevicePublic::fingerprint

use std::fmt;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::StaticSecret;

/// The key file's name in the client's config directory.
pub const DEVICE_KEY_FILE: &str = "device.key";

/// The key file's first word: its format and version.
const FILE_TAG: &str = "hallway-device-key-v1";

/// What a sign-in signature covers before the origin.
const SIGNIN_CONTEXT: &[u8] = b"hallway-signin-v2\n";

/// Why the device key could not be used.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The file or its directory could not be read or written.
    #[error("cannot use the device key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a device key of this format.
    #[error(
        "{path} is not a valid hallway device key; move it away to make a new key; the \
         accounts it signed in to then need `hallway account link` from another device"
    )]
    Corrupt { path: PathBuf },
    /// Other users may read the file.
    #[error(
        "the device key {path} is readable by other users (mode {mode:03o}); \
         run chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
}

/// A device's secret keys. Its `Debug` shows only the fingerprint.
pub struct DeviceKey {
    sign: SigningKey,
    agree: StaticSecret,
}

impl DeviceKey {
    /// A new device key from fresh random bytes.
    pub fn generate() -> Self {
        let sign: [u8; 32] = rand::random();
        let agree: [u8; 32] = rand::random();
        Self::from_secrets(&sign, agree)
    }

    fn from_secrets(sign: &[u8; 32], agree: [u8; 32]) -> Self {
        Self {
            sign: SigningKey::from_bytes(sign),
            agree: StaticSecret::from(agree),
        }
    }

    /// Loads `dir/device.key`, or makes one if there is none (creating `dir`, 0700).
    ///
    /// The new key is written 0600 from its first byte to a temporary sibling, synced, then
    /// linked into place, so a crash never leaves half a key; when another process made one
    /// first, that one is loaded.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        Self::load_or_create_file(&dir.join(DEVICE_KEY_FILE))
    }

    /// [`DeviceKey::load_or_create`] with the file named in full (`hallway --key FILE`).
    pub fn load_or_create_file(path: &Path) -> Result<Self, IdentityError> {
        let path = path.to_path_buf();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| DEVICE_KEY_FILE.to_string());
        match Self::load(&path) {
            Err(IdentityError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| IdentityError::Io { path, source }
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io(dir))?;

        let key = Self::generate();
        let tmp = dir.join(format!("{file_name}.tmp-{}", std::process::id()));
        // A sibling with our pid is a dead process's leftover, never another's key.
        let _ = std::fs::remove_file(&tmp);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = options.open(&tmp).and_then(|mut file| {
            file.write_all(key.file_text().as_bytes())?;
            file.sync_all()
        });
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(source));
        }
        // A hard link never replaces a key another process has just made (and may already
        // have signed in with); rename is the fallback where links are unsupported.
        let placed = match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                return Self::load(&path);
            }
            Err(_) => std::fs::rename(&tmp, &path),
        };
        let _ = std::fs::remove_file(&tmp);
        placed.map_err(io(&path))?;
        // Make the new name durable too.
        if let Ok(handle) = std::fs::File::open(dir) {
            let _ = handle.sync_all();
        }
        Ok(key)
    }

    /// Loads a key file, refusing one that other users may read or that is not of the format.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut bytes = Vec::new();
        // A key file is under 200 bytes; a huge file is not one, whatever it holds.
        file.take(4096).read_to_end(&mut bytes).map_err(io)?;
        Self::parse(&bytes).ok_or_else(|| IdentityError::Corrupt {
            path: path.to_path_buf(),
        })
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (tag, secrets) = text.strip_suffix('\n').unwrap_or(text).split_once(' ')?;
        if tag != FILE_TAG {
            return None;
        }
        let secrets: [u8; 64] = unb64(secrets)?.try_into().ok()?;
        let (mut sign, mut agree) = ([0u8; 32], [0u8; 32]);
        sign.copy_from_slice(&secrets[..32]);
        agree.copy_from_slice(&secrets[32..]);
        Some(Self::from_secrets(&sign, agree))
    }

    fn file_text(&self) -> String {
        let mut secrets = [0u8; 64];
        secrets[..32].copy_from_slice(self.sign.as_bytes());
        secrets[32..].copy_from_slice(self.agree.as_bytes());
        format!("{FILE_TAG} {}\n", b64(&secrets))
    }

    /// The public halves, what a server learns of this device.
    pub fn public(&self) -> DevicePublic {
        DevicePublic {
            sign: self.sign.verifying_key().to_bytes(),
            agree: x25519_dalek::PublicKey::from(&self.agree).to_bytes(),
        }
    }

    /// The X25519 secret, to open room keys wrapped to this device (`e2e::wrap`). It
    /// never leaves the process.
    pub fn agree_secret(&self) -> [u8; 32] {
        self.agree.to_bytes()
    }

    /// The signature over [`signin_message`]`(origin, nonce)`.
    pub fn sign_in(&self, origin: &str, nonce: &[u8]) -> [u8; 64] {
        self.sign.sign(&signin_message(origin, nonce)).to_bytes()
    }

    /// The public key's [`DevicePublic::fingerprint`].
    pub fn fingerprint(&self) -> String {
        self.public().fingerprint()
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// What a server learns of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevicePublic {
    /// Ed25519 key that signs sign-ins.
    pub sign: [u8; 32],
    /// X25519 key for key agreement.
    pub agree: [u8; 32],
}

impl DevicePublic {
    /// Checks a sign-in signature (strict verification: `verify_strict`). False on any
    /// malformed key or signature.
    pub fn verify_sign_in(&self, origin: &str, nonce: &[u8], signature: &[u8]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.sign) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        key.verify_strict(&signin_message(origin, nonce), &signature)
            .is_ok()
    }

    /// Short human-comparable fingerprint of the device: the first 10 bytes of the
    /// SHA-256 of both public keys (the one that signs in, then the one private rooms'
    /// keys are wrapped to), as 5 groups of 4 hex digits, e.g. "3f2a 91c0 ...". Two people
    /// who compare it know both keys, so a server cannot slip in another key for either.
    pub fn fingerprint(&self) -> String {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&self.sign);
        both[32..].copy_from_slice(&self.agree);
        let hash = sha256(&both);
        hash[..10]
            .chunks(2)
            .map(|pair| format!("{:02x}{:02x}", pair[0], pair[1]))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The bytes a device signs to sign in: `hallway-signin-v2\n` ‖ origin ‖ `\n` ‖ nonce.
pub fn signin_message(origin: &str, nonce: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNIN_CONTEXT.len() + origin.len() + 1 + nonce.len());
    message.extend_from_slice(SIGNIN_CONTEXT);
    message.extend_from_slice(origin.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce);
    message
}

/// A server's origin as the client connects to it: `host[:port]` exactly as the HTTP `Host`
/// header carries it (no port when it is the scheme's default; IPv6 in brackets). None for
/// a URL without a host.
pub fn origin_of(url: &url::Url) -> Option<String> {
    // host_str already brackets IPv6; port() is None for the scheme's default port.
    let host = url.host_str().filter(|host| !host.is_empty())?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The fingerprint of a device from its two keys as the wire carries them (base64url),
/// computed here and not taken from a server; "invalid key" when either is not 32 bytes
/// of base64url.
pub fn fingerprint_of(sign_key: &str, agree_key: &str) -> String {
    let key = |text: &str| unb64(text).and_then(|b| <[u8; 32]>::try_from(b).ok());
    match (key(sign_key), key(agree_key)) {
        (Some(sign), Some(agree)) => DevicePublic { sign, agree }.fingerprint(),
        _ => "invalid key".to_string(),
    }
}

/// base64url without padding, the encoding keys, nonces and signatures take on the wire.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes [`b64`]; None on bad base64 (including padding).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// SHA-256, used to store tokens and codes hashed.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A random secret of `bytes` random bytes as base64url (tokens use 32; invitation codes,
/// link codes and nonces 16).
pub fn random_code(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    b64(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn creates_a_private_key_once_then_loads_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("config/hallway");
        let first = DeviceKey::load_or_create(&dir).expect("create");
        let path = dir.join(DEVICE_KEY_FILE);
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&path), 0o600, "the key is the owner's alone");
            assert_eq!(mode_of(&dir), 0o700);
        }
        let second = DeviceKey::load_or_create(&dir).expect("load");
        assert_eq!(first.public(), second.public());
        assert_eq!(
            DeviceKey::load(&path).expect("load").public(),
            first.public()
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("hallway-device-key-v1 ") && text.ends_with('\n'),
            "{text}"
        );
        let leftovers = std::fs::read_dir(&dir).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file is left");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_others_can_read() {
        let tmp = tempfile::tempdir().expect("temp dir");
        DeviceKey::load_or_create(tmp.path()).expect("create");
        let path = tmp.path().join(DEVICE_KEY_FILE);
        chmod(&path, 0o644);
        let err = DeviceKey::load_or_create(tmp.path()).expect_err("readable by others");
        assert!(
            matches!(err, IdentityError::Permissions { mode: 0o644, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_a_corrupt_key_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join(DEVICE_KEY_FILE);
        let good = DeviceKey::generate().file_text();
        let short = format!("{FILE_TAG} {}\n", b64(&[7; 63]));
        for junk in [
            "junk\n".to_string(),
            good.replace("v1", "v2"),
            good.replace(' ', "  "),
            short,
            format!("{}=\n", good.trim_end()),
            String::new(),
        ] {
            std::fs::write(&path, &junk).expect("write");
            #[cfg(unix)]
            chmod(&path, 0o600);
            let err = DeviceKey::load_or_create(tmp.path()).expect_err("corrupt");
            assert!(
                matches!(err, IdentityError::Corrupt { .. }),
                "{junk:?}: {err:?}"
            );
            assert!(err.to_string().contains("hallway account link"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).expect("read"), junk);
        }
    }

    #[test]
    fn a_sign_in_verifies_only_for_its_origin_nonce_and_device() {
        let key = DeviceKey::generate();
        let public = key.public();
        let nonce = unb64(&random_code(16)).expect("nonce");
        let signature = key.sign_in("example.org", &nonce);
        assert!(public.verify_sign_in("example.org", &nonce, &signature));

        assert!(!public.verify_sign_in("evil.example", &nonce, &signature));
        assert!(!public.verify_sign_in("example.org:8443", &nonce, &signature));
        assert!(!public.verify_sign_in("example.org", b"another nonce", &signature));
        for bit in [0, 100, 511] {
            let mut flipped = signature;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!public.verify_sign_in("example.org", &nonce, &flipped));
        }
        assert!(!public.verify_sign_in("example.org", &nonce, &signature[..63]));
        assert!(!public.verify_sign_in("example.org", &nonce, &[]));
        let other = DeviceKey::generate().public();
        assert!(!other.verify_sign_in("example.org", &nonce, &signature));
        let malformed = DevicePublic {
            sign: [0; 32],
            agree: public.agree,
        };
        assert!(!malformed.verify_sign_in("example.org", &nonce, &signature));
    }

    #[test]
    fn fingerprints_are_five_groups_of_four_hex_digits() {
        let key = DeviceKey::generate();
        let fingerprint = key.fingerprint();
        let groups: Vec<&str> = fingerprint.split(' ').collect();
        assert_eq!(groups.len(), 5, "{fingerprint}");
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit()))
        );
        assert_ne!(fingerprint, DeviceKey::generate().fingerprint());
        let debug = format!("{key:?}");
        assert!(debug.contains(&fingerprint), "{debug}");
        assert!(!debug.contains(&b64(key.sign.as_bytes())), "{debug}");
    }

    #[test]
    fn origins_are_what_the_host_header_carries() {
        let origin = |url: &str| origin_of(&url::Url::parse(url).expect("url"));
        assert_eq!(
            origin("http://127.0.0.1:7600/x").as_deref(),
            Some("127.0.0.1:7600")
        );
        assert_eq!(
            origin("https://example.org/").as_deref(),
            Some("example.org")
        );
        assert_eq!(origin("http://[::1]:80/").as_deref(), Some("[::1]"));
        assert_eq!(origin("https://h:443").as_deref(), Some("h"));
        assert_eq!(
            origin("https://[::1]:8443/r").as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(origin("data:text/plain,x"), None);
    }

    #[test]
    fn base64url_round_trips_and_refuses_junk() {
        let cases: [&[u8]; 4] = [b"", b"a", b"\xff\xfe\xfd", &[0u8; 64]];
        for bytes in cases {
            assert_eq!(unb64(&b64(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
        assert_eq!(unb64("!!"), None);
        assert_eq!(unb64("YQ=="), None, "no padding");
        assert_eq!(random_code(16).len(), 22);
        assert_ne!(random_code(16), random_code(16));
    }
}
