//! The room key wrapped to one member's device, the roster digest, and the safety code.
//!
//! The key leader (a moderator's client) draws a [`RoomSecret`] per key epoch and
//! [`wrap`]s it to every member's device X25519 key; the server relays the sealed bytes and
//! learns nothing from them. Pure code, no I/O.
//!
//! # Wrapping: HPKE (RFC 9180) in Auth mode
//!
//! Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305. Auth mode mixes the
//! sender's static device key into the KEM (`DH(eph, R) ‖ DH(sender, R)`, with both public
//! keys in the KEM context), so a blob opens only when the recipient names the right
//! sender public key: the server cannot hand out a key of its own making without also
//! faking the leader's device key, which people compare by fingerprint.
//!
//! ```text
//! sealed  = enc (32 B, ephemeral X25519 key) ‖ ChaCha20-Poly1305(payload) (66 B + 16 B tag)
//!         = 114 B (WRAPPED_LEN)
//! payload = 0x01 (version) ‖ secret (32 B) ‖ roster digest (32 B) ‖ gen (1 B) = 66 B
//! info    = field("hallway room key v1") ‖ field(room) ‖ epoch ‖ sender ‖ recipient
//! ```
//!
//! where `field(x)` is x's length as a big-endian u64 followed by x, and integers are
//! big-endian u32. Every variable-length field carrying its length keeps the encoding
//! injective: no two contexts give the same `info`, so a blob cannot be replayed into
//! another room, epoch, or to or from another person. The AEAD's associated data is empty
//! because `info` already binds everything into the key schedule.
//!
//! Limits of Auth mode worth knowing (RFC 9180 §9.1): whoever learns a device's own secret
//! can forge wraps *to that device* from anyone (key-compromise impersonation); and the
//! recipient can forge wraps to itself, so a blob proves nothing to a third party.
//!
//! # Roster digest and safety code
//!
//! [`roster_digest`] names who holds an epoch's key (user id and device key, sorted by
//! user id); the leader puts it in every payload. [`safety_code`] turns secret, room, epoch
//! and roster into 20 digits people read aloud: equal codes mean the same key from the
//! same leader's device (the key agent binds the leader's device key, as each member was
//! told it, into the roster it passes here). The roster itself is not checked against the
//! room by members, who may see only part of it: a device the server added shows in the
//! room as a member.

use hkdf::Hkdf;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, HpkeError, Kem as _, OpModeR, OpModeS, Serializable};
use rand::TryRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::identity::sha256;

/// Length of a room secret in bytes.
pub const SECRET_LEN: usize = 32;

/// One epoch's room secret; the sealing keys for audio are derived from it.
pub type RoomSecret = [u8; SECRET_LEN];

/// The payload format [`wrap`] writes; [`unwrap`] refuses any other.
pub const PAYLOAD_VERSION: u8 = 1;

/// Length of an encoded [`KeyPayload`]: version, secret, roster digest, generation.
pub const PAYLOAD_LEN: usize = 1 + SECRET_LEN + 32 + 1;

/// Length of the HPKE encapsulated key (an X25519 public key) at the front of a wrap.
pub const ENCAPSULATED_KEY_LEN: usize = 32;

/// Length of the ChaCha20-Poly1305 tag at the end of a wrap.
pub const TAG_LEN: usize = 16;

/// Exact length of what [`wrap`] returns: 32 + 66 + 16 = 114 bytes.
pub const WRAPPED_LEN: usize = ENCAPSULATED_KEY_LEN + PAYLOAD_LEN + TAG_LEN;

/// Longest room name, in bytes, that [`wrap`] and [`unwrap`] bind. The hpke crate panics
/// when `info` approaches 64 KiB; this bound keeps us far from that, and far above any
/// room name the server accepts.
pub const MAX_ROOM_BYTES: usize = 4096;

/// Label that starts every HPKE `info`; bump it with any change to the wrap format.
const WRAP_LABEL: &[u8] = b"hallway room key v1";

/// Label that starts the roster digest's input.
const ROSTER_LABEL: &[u8] = b"hallway roster v1";

/// Label that starts the safety code's HKDF info.
const SAFETY_LABEL: &[u8] = b"hallway safety code v1";

/// How many codes [`safety_code`] can show: 20 decimal digits, about 66.4 bits.
const CODE_SPACE: u128 = 100_000_000_000_000_000_000;

type Kem = X25519HkdfSha256;
type KemPrivateKey = <Kem as hpke::Kem>::PrivateKey;
type KemPublicKey = <Kem as hpke::Kem>::PublicKey;
type KemEncappedKey = <Kem as hpke::Kem>::EncappedKey;

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WrapError {
    /// The room name is too long to bind into the key (see [`MAX_ROOM_BYTES`]).
    #[error("the room name is {len} bytes; keys can be bound to names of at most {max} bytes")]
    RoomTooLong { len: usize, max: usize },
    /// The recipient's device key is a degenerate X25519 point, not a real device's key.
    #[error("the recipient's device key is not a valid X25519 key; it cannot receive room keys")]
    BadRecipientKey,
    /// The sender's device key, as we were told it, is a degenerate X25519 point.
    #[error("the key leader's device key is not a valid X25519 key; room keys from it are refused")]
    BadSenderKey,
    /// HPKE refused to seal for a reason other than a bad key (not expected to happen).
    #[error("could not seal the room key: {0}")]
    SealFailed(HpkeError),
    /// Shorter than the smallest possible wrap: cut off in transit, or not a wrap at all.
    #[error("the wrapped room key is {len} bytes, too short to be one (a wrap is {WRAPPED_LEN})")]
    Truncated { len: usize },
    /// Authentication failed: not for this device, not from the claimed sender, made for
    /// another room, epoch or person, or altered in transit.
    #[error(
        "the wrapped room key does not open: it is not for this device, not from the \
         key leader's device, for another room or epoch, or was altered on the way"
    )]
    OpenFailed,
    /// The payload opened but is of a format this version does not know.
    #[error("the room key is in format {version}, which this version cannot read; update Hallway")]
    UnknownVersion { version: u8 },
    /// The payload opened and has a known version but the wrong length.
    #[error("the room key payload is {len} bytes; format {PAYLOAD_VERSION} has {PAYLOAD_LEN}")]
    MalformedPayload { len: usize },
}

/// Who a wrap is for, and when: bound into HPKE's `info`, so a wrap opens only with the
/// very same context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyContext<'a> {
    /// The room's name.
    pub room: &'a str,
    /// The key epoch the secret belongs to.
    pub epoch: u32,
    /// User id of the key leader who wraps.
    pub sender: u32,
    /// User id of the member it is wrapped to.
    pub recipient: u32,
}

impl KeyContext<'_> {
    /// HPKE `info`: the label, then every field, length-prefixed where its length varies.
    /// Must stay injective (see the module docs) and identical on both sides.
    fn info(&self) -> Result<Vec<u8>, WrapError> {
        if self.room.len() > MAX_ROOM_BYTES {
            return Err(WrapError::RoomTooLong {
                len: self.room.len(),
                max: MAX_ROOM_BYTES,
            });
        }
        let mut info = Vec::with_capacity(8 + WRAP_LABEL.len() + 8 + self.room.len() + 12);
        put_field(&mut info, WRAP_LABEL);
        put_field(&mut info, self.room.as_bytes());
        info.extend_from_slice(&self.epoch.to_be_bytes());
        info.extend_from_slice(&self.sender.to_be_bytes());
        info.extend_from_slice(&self.recipient.to_be_bytes());
        Ok(info)
    }
}

/// What a wrap carries. `Debug` hides the secret; `==` compares it in constant time.
#[derive(Clone)]
pub struct KeyPayload {
    /// The epoch's room secret.
    pub secret: RoomSecret,
    /// [`roster_digest`] of the devices the leader gave this secret to.
    pub roster: [u8; 32],
    /// The leader's generation number for this recipient, so a re-sent wrap of the same
    /// epoch can be told from the first.
    pub r#gen: u8,
}

impl KeyPayload {
    /// The fixed v1 encoding; [`KeyPayload::decode`] must stay its inverse.
    fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let mut out = [0u8; PAYLOAD_LEN];
        out[0] = PAYLOAD_VERSION;
        out[1..1 + SECRET_LEN].copy_from_slice(&self.secret);
        out[1 + SECRET_LEN..PAYLOAD_LEN - 1].copy_from_slice(&self.roster);
        out[PAYLOAD_LEN - 1] = self.r#gen;
        out
    }

    /// Reads the version first, so a payload from a newer client says so rather than
    /// looking merely malformed.
    fn decode(bytes: &[u8]) -> Result<Self, WrapError> {
        let Some(&version) = bytes.first() else {
            return Err(WrapError::MalformedPayload { len: 0 });
        };
        if version != PAYLOAD_VERSION {
            return Err(WrapError::UnknownVersion { version });
        }
        let bytes: &[u8; PAYLOAD_LEN] = bytes
            .try_into()
            .map_err(|_| WrapError::MalformedPayload { len: bytes.len() })?;
        let mut payload = Self {
            secret: [0; SECRET_LEN],
            roster: [0; 32],
            r#gen: bytes[PAYLOAD_LEN - 1],
        };
        payload.secret.copy_from_slice(&bytes[1..1 + SECRET_LEN]);
        payload
            .roster
            .copy_from_slice(&bytes[1 + SECRET_LEN..PAYLOAD_LEN - 1]);
        Ok(payload)
    }
}

impl PartialEq for KeyPayload {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.secret.ct_eq(&other.secret))
            & (self.roster == other.roster)
            & (self.r#gen == other.r#gen)
    }
}

impl Eq for KeyPayload {}

impl std::fmt::Debug for KeyPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPayload")
            .field("secret", &"<hidden>")
            .field("roster", &crate::identity::b64(&self.roster))
            .field("gen", &self.r#gen)
            .finish()
    }
}

/// A fresh room secret from the operating system's RNG.
///
/// Should the OS refuse (it does not on any platform we ship), the thread RNG takes over:
/// ChaCha seeded from the OS earlier, still fit for keys.
pub fn new_secret() -> RoomSecret {
    let mut secret = [0u8; SECRET_LEN];
    if rand::rngs::SysRng.try_fill_bytes(&mut secret).is_err() {
        rand::fill(&mut secret[..]);
    }
    secret
}

/// Wraps `payload` to the device whose X25519 public key is `recipient_public`, from the
/// device whose X25519 secret is `sender_secret` (HPKE Auth mode single-shot seal).
///
/// Returns exactly [`WRAPPED_LEN`] (114) bytes: the encapsulated key (32) ‖ ciphertext of
/// the 66-byte payload ‖ tag (16). Each call draws a fresh ephemeral key, so two wraps of
/// the same payload differ.
pub fn wrap(
    sender_secret: &[u8; 32],
    recipient_public: &[u8; 32],
    context: &KeyContext,
    payload: &KeyPayload,
) -> Result<Vec<u8>, WrapError> {
    seal_bytes(sender_secret, recipient_public, context, &payload.encode())
}

/// The HPKE seal behind [`wrap`], for any plaintext (tests use it to seal bad payloads).
fn seal_bytes(
    sender_secret: &[u8; 32],
    recipient_public: &[u8; 32],
    context: &KeyContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, WrapError> {
    Wrapper::new(sender_secret)?.seal(recipient_public, context, plaintext)
}

/// A key leader's own device key made ready once for a rotation's thousands of wraps: its
/// public half is computed here, not at every wrap (one scalar multiplication of four).
pub struct Wrapper {
    sender_sk: KemPrivateKey,
    sender_pk: KemPublicKey,
}

impl Wrapper {
    pub fn new(sender_secret: &[u8; 32]) -> Result<Self, WrapError> {
        // X25519 accepts any 32 bytes as a key, so this cannot fail; a degenerate point
        // shows up in `seal` as an all-zero DH.
        let sender_sk = KemPrivateKey::from_bytes(sender_secret).map_err(WrapError::SealFailed)?;
        let sender_pk = Kem::sk_to_pk(&sender_sk);
        Ok(Self {
            sender_sk,
            sender_pk,
        })
    }

    /// [`wrap`] from this sender.
    pub fn wrap(
        &self,
        recipient_public: &[u8; 32],
        context: &KeyContext,
        payload: &KeyPayload,
    ) -> Result<Vec<u8>, WrapError> {
        self.seal(recipient_public, context, &payload.encode())
    }

    fn seal(
        &self,
        recipient_public: &[u8; 32],
        context: &KeyContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, WrapError> {
        let info = context.info()?;
        let recipient_pk =
            KemPublicKey::from_bytes(recipient_public).map_err(|_| WrapError::BadRecipientKey)?;
        let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeS::Auth((self.sender_sk.clone(), self.sender_pk.clone())),
            &recipient_pk,
            &info,
            plaintext,
            b"",
        )
        .map_err(|err| match err {
            // Both DHs of AuthEncap are with the recipient's key and a clamped scalar, so
            // an all-zero result means that key is of small order: not a real device's key.
            HpkeError::EncapError => WrapError::BadRecipientKey,
            other => WrapError::SealFailed(other),
        })?;
        let mut sealed = Vec::with_capacity(ENCAPSULATED_KEY_LEN + ciphertext.len());
        sealed.extend_from_slice(&enc.to_bytes());
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }
}

/// Opens a [`wrap`] with this device's X25519 secret, checking that it came from the device
/// whose public key is `sender_public` and was made for exactly `context`.
///
/// Every malformed, truncated, tampered, misdirected or misattributed input is an error;
/// this never panics.
pub fn unwrap(
    recipient_secret: &[u8; 32],
    sender_public: &[u8; 32],
    context: &KeyContext,
    sealed: &[u8],
) -> Result<KeyPayload, WrapError> {
    let info = context.info()?;
    // At least one byte of payload (its version) must be there to say anything.
    if sealed.len() < ENCAPSULATED_KEY_LEN + 1 + TAG_LEN {
        return Err(WrapError::Truncated { len: sealed.len() });
    }
    let (enc, ciphertext) = sealed.split_at(ENCAPSULATED_KEY_LEN);
    let enc = KemEncappedKey::from_bytes(enc).map_err(|_| WrapError::OpenFailed)?;
    let recipient_sk =
        KemPrivateKey::from_bytes(recipient_secret).map_err(|_| WrapError::OpenFailed)?;
    let sender_pk = KemPublicKey::from_bytes(sender_public).map_err(|_| WrapError::BadSenderKey)?;
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Auth(sender_pk),
        &recipient_sk,
        &enc,
        &info,
        ciphertext,
        b"",
    )
    .map_err(|err| match err {
        // An all-zero DH: either the sender key we were told or the blob's ephemeral key
        // is of small order. Only the first is worth telling apart (it is not tampering
        // with this blob but a bad key from the directory); it costs one more DH, and only
        // on this failure path.
        HpkeError::DecapError if !sender_key_is_usable(recipient_secret, sender_public) => {
            WrapError::BadSenderKey
        }
        _ => WrapError::OpenFailed,
    })?;
    KeyPayload::decode(&plaintext)
}

/// False when `public` is of small order, so that DH with it gives all zeros.
fn sender_key_is_usable(own_secret: &[u8; 32], public: &[u8; 32]) -> bool {
    x25519_dalek::StaticSecret::from(*own_secret)
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .was_contributory()
}

/// SHA-256 naming who holds an epoch's key: a label, the room, the epoch, then every
/// holder's user id and device X25519 key, sorted by user id (then key, so even duplicate
/// ids give one answer): the same set in any order gives the same digest.
///
/// Encoding: `field(label) ‖ field(room) ‖ epoch (u32 BE) ‖ count (u64 BE) ‖ (id (u32 BE)
/// ‖ key (32 B))*`, injective like `info` (see the module docs).
pub fn roster_digest(room: &str, epoch: u32, holders: &[(u32, [u8; 32])]) -> [u8; 32] {
    let mut sorted = holders.to_vec();
    sorted.sort_unstable();
    let mut input = Vec::with_capacity(64 + room.len() + sorted.len() * 36);
    put_field(&mut input, ROSTER_LABEL);
    put_field(&mut input, room.as_bytes());
    input.extend_from_slice(&epoch.to_be_bytes());
    input.extend_from_slice(&(sorted.len() as u64).to_be_bytes());
    for (user, key) in &sorted {
        input.extend_from_slice(&user.to_be_bytes());
        input.extend_from_slice(key);
    }
    sha256(&input)
}

/// The code people read aloud to check they share one key with the same devices, e.g.
/// `"04128 83319 07551 29384"`: 20 decimal digits in 4 groups of 5 (23 characters).
///
/// HKDF-SHA256 with the secret as input key material (so only key holders can compute
/// it) and info = `field(label) ‖ field(room) ‖ epoch (u32 BE) ‖ roster`. Anyone holding
/// the same epoch's secret and roster digest gets the same code.
///
/// Uniformity: 16 bytes of HKDF output read as a u128 and reduced mod 10²⁰. As
/// 2¹²⁸ = q·10²⁰ + r, the r smallest codes come up q+1 times and the rest q times, a
/// relative excess of 1/q < 3·10⁻¹⁹: no measurable bias.
///
/// Strength: 20 digits are about 66.4 bits. A server in the middle that knows one side's
/// secret and picks the other's freely must search about 10²⁰ secrets for a colliding
/// code; 12 digits (40 bits) would be minutes on a GPU.
pub fn safety_code(room: &str, epoch: u32, secret: &RoomSecret, roster: &[u8; 32]) -> String {
    let mut info = Vec::with_capacity(64 + room.len());
    put_field(&mut info, SAFETY_LABEL);
    put_field(&mut info, room.as_bytes());
    info.extend_from_slice(&epoch.to_be_bytes());
    info.extend_from_slice(roster);
    let mut okm = [0u8; 16];
    Hkdf::<Sha256>::new(None, secret)
        .expand(&info, &mut okm)
        .expect("16 bytes is far below HKDF-SHA256's limit of 255 * 32");
    render_code(u128::from_be_bytes(okm))
}

/// `value mod 10²⁰` as "ddddd ddddd ddddd ddddd", leading zeros kept.
fn render_code(value: u128) -> String {
    let digits = format!("{:020}", value % CODE_SPACE);
    format!(
        "{} {} {} {}",
        &digits[..5],
        &digits[5..10],
        &digits[10..15],
        &digits[15..]
    )
}

/// Appends `bytes` preceded by their length as a big-endian u64, so fields cannot run
/// into each other.
fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::identity::DeviceKey;

    /// A leader, a member, and one wrap from the first to the second, made once: wraps are
    /// slow in debug builds and the property tests try many variations of one.
    struct Fixture {
        leader_secret: [u8; 32],
        leader_public: [u8; 32],
        member_secret: [u8; 32],
        member_public: [u8; 32],
        payload: KeyPayload,
        sealed: Vec<u8>,
    }

    const ROOM: &str = "book club";

    fn context() -> KeyContext<'static> {
        KeyContext {
            room: ROOM,
            epoch: 7,
            sender: 1,
            recipient: 2,
        }
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let leader = DeviceKey::generate();
            let member = DeviceKey::generate();
            let payload = KeyPayload {
                secret: new_secret(),
                roster: roster_digest(
                    ROOM,
                    7,
                    &[(1, leader.public().agree), (2, member.public().agree)],
                ),
                r#gen: 3,
            };
            let sealed = wrap(
                &leader.agree_secret(),
                &member.public().agree,
                &context(),
                &payload,
            )
            .expect("wrap");
            Fixture {
                leader_secret: leader.agree_secret(),
                leader_public: leader.public().agree,
                member_secret: member.agree_secret(),
                member_public: member.public().agree,
                payload,
                sealed,
            }
        })
    }

    fn open(f: &Fixture, context: &KeyContext, sealed: &[u8]) -> Result<KeyPayload, WrapError> {
        unwrap(&f.member_secret, &f.leader_public, context, sealed)
    }

    #[test]
    fn a_wrap_opens_for_its_recipient_from_its_sender() {
        let f = fixture();
        assert_eq!(open(f, &context(), &f.sealed), Ok(f.payload.clone()));
    }

    #[test]
    fn the_wrap_is_exactly_the_documented_size() {
        let f = fixture();
        assert_eq!(WRAPPED_LEN, 114);
        assert_eq!(f.sealed.len(), WRAPPED_LEN);
        assert_eq!(KemEncappedKey::size(), ENCAPSULATED_KEY_LEN);
        assert_eq!(PAYLOAD_LEN, 66);
        assert_eq!(f.payload.encode().len(), PAYLOAD_LEN);
    }

    #[test]
    fn two_wraps_of_one_payload_differ() {
        let f = fixture();
        let again = wrap(&f.leader_secret, &f.member_public, &context(), &f.payload).expect("wrap");
        assert_ne!(again, f.sealed, "each wrap has its own ephemeral key");
        assert_eq!(open(f, &context(), &again), Ok(f.payload.clone()));
    }

    #[test]
    fn another_device_cannot_open_it() {
        let f = fixture();
        let stranger = DeviceKey::generate();
        assert_eq!(
            unwrap(
                &stranger.agree_secret(),
                &f.leader_public,
                &context(),
                &f.sealed
            ),
            Err(WrapError::OpenFailed)
        );
    }

    #[test]
    fn it_opens_only_from_the_sender_it_names() {
        let f = fixture();
        let impostor = DeviceKey::generate().public().agree;
        assert_eq!(
            unwrap(&f.member_secret, &impostor, &context(), &f.sealed),
            Err(WrapError::OpenFailed)
        );
        // Nor does the member's own key, or a non-canonical spelling of the leader's (X25519
        // ignores the top bit, but HPKE binds the bytes).
        assert_eq!(
            unwrap(&f.member_secret, &f.member_public, &context(), &f.sealed),
            Err(WrapError::OpenFailed)
        );
        let mut high_bit = f.leader_public;
        high_bit[31] ^= 0x80;
        assert_eq!(
            unwrap(&f.member_secret, &high_bit, &context(), &f.sealed),
            Err(WrapError::OpenFailed)
        );
    }

    #[test]
    fn a_forged_wrap_from_a_key_of_the_servers_making_does_not_open() {
        let f = fixture();
        let server = DeviceKey::generate();
        let forged = wrap(
            &server.agree_secret(),
            &f.member_public,
            &context(),
            &KeyPayload {
                secret: [9; 32],
                ..f.payload.clone()
            },
        )
        .expect("wrap");
        assert_eq!(open(f, &context(), &forged), Err(WrapError::OpenFailed));
    }

    #[test]
    fn any_other_context_fails() {
        let f = fixture();
        let base = context();
        let others = [
            KeyContext {
                room: "book club ",
                ..base
            },
            KeyContext { room: "", ..base },
            KeyContext { epoch: 8, ..base },
            KeyContext { epoch: 6, ..base },
            KeyContext { sender: 2, ..base },
            KeyContext {
                sender: 2,
                recipient: 1,
                ..base
            },
            KeyContext {
                recipient: 3,
                ..base
            },
        ];
        for other in others {
            assert_eq!(
                open(f, &other, &f.sealed),
                Err(WrapError::OpenFailed),
                "{other:?}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_fails() {
        let f = fixture();
        for bit in 0..f.sealed.len() * 8 {
            let mut flipped = f.sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                open(f, &context(), &flipped),
                Err(WrapError::OpenFailed),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn every_truncation_and_extension_fails() {
        let f = fixture();
        for len in 0..f.sealed.len() {
            let expected = if len < ENCAPSULATED_KEY_LEN + 1 + TAG_LEN {
                WrapError::Truncated { len }
            } else {
                WrapError::OpenFailed
            };
            assert_eq!(open(f, &context(), &f.sealed[..len]), Err(expected));
        }
        let mut longer = f.sealed.clone();
        longer.push(0);
        assert_eq!(open(f, &context(), &longer), Err(WrapError::OpenFailed));
    }

    #[test]
    fn an_unknown_payload_version_is_refused() {
        let f = fixture();
        let mut bytes = f.payload.encode();
        bytes[0] = 2;
        let sealed =
            seal_bytes(&f.leader_secret, &f.member_public, &context(), &bytes).expect("seal");
        assert_eq!(
            open(f, &context(), &sealed),
            Err(WrapError::UnknownVersion { version: 2 })
        );
        // A newer, longer format is still reported by its version, not as damage.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0; 40]);
        let sealed =
            seal_bytes(&f.leader_secret, &f.member_public, &context(), &longer).expect("seal");
        assert_eq!(
            open(f, &context(), &sealed),
            Err(WrapError::UnknownVersion { version: 2 })
        );
    }

    #[test]
    fn a_known_version_of_the_wrong_length_is_refused() {
        let f = fixture();
        let bytes = f.payload.encode();
        for len in [1, PAYLOAD_LEN - 1, PAYLOAD_LEN + 1] {
            let mut payload = bytes.to_vec();
            payload.resize(len, 0);
            let sealed =
                seal_bytes(&f.leader_secret, &f.member_public, &context(), &payload).expect("seal");
            assert_eq!(
                open(f, &context(), &sealed),
                Err(WrapError::MalformedPayload { len })
            );
        }
    }

    #[test]
    fn payload_encoding_round_trips() {
        let payload = KeyPayload {
            secret: [0xab; 32],
            roster: [0xcd; 32],
            r#gen: 255,
        };
        let bytes = payload.encode();
        assert_eq!(bytes[0], PAYLOAD_VERSION);
        assert_eq!(KeyPayload::decode(&bytes), Ok(payload));
        assert_eq!(
            KeyPayload::decode(&[]),
            Err(WrapError::MalformedPayload { len: 0 })
        );
    }

    #[test]
    fn degenerate_keys_are_named_as_such() {
        let f = fixture();
        // 0 and 1 are small-order points: every DH with them is all zeros.
        for degenerate in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                wrap(&f.leader_secret, &degenerate, &context(), &f.payload),
                Err(WrapError::BadRecipientKey)
            );
            assert_eq!(
                unwrap(&f.member_secret, &degenerate, &context(), &f.sealed),
                Err(WrapError::BadSenderKey)
            );
            // A small-order ephemeral key in the blob is damage, not a bad sender.
            let mut sealed = f.sealed.clone();
            sealed[..32].copy_from_slice(&degenerate);
            assert_eq!(open(f, &context(), &sealed), Err(WrapError::OpenFailed));
        }
    }

    #[test]
    fn an_overlong_room_name_is_an_error_not_a_panic() {
        let f = fixture();
        let room = "x".repeat(MAX_ROOM_BYTES + 1);
        let long = KeyContext {
            room: &room,
            ..context()
        };
        let too_long = WrapError::RoomTooLong {
            len: MAX_ROOM_BYTES + 1,
            max: MAX_ROOM_BYTES,
        };
        assert_eq!(
            wrap(&f.leader_secret, &f.member_public, &long, &f.payload),
            Err(too_long.clone())
        );
        assert_eq!(open(f, &long, &f.sealed), Err(too_long));
        let longest = "x".repeat(MAX_ROOM_BYTES);
        let context = KeyContext {
            room: &longest,
            ..context()
        };
        let sealed = wrap(&f.leader_secret, &f.member_public, &context, &f.payload).expect("wrap");
        assert_eq!(open(f, &context, &sealed), Ok(f.payload.clone()));
    }

    #[test]
    fn debug_hides_the_secret() {
        let payload = KeyPayload {
            secret: [0x41; 32],
            roster: [0; 32],
            r#gen: 1,
        };
        let debug = format!("{payload:?}");
        assert!(debug.contains("<hidden>"), "{debug}");
        assert!(!debug.contains("65, 65"), "{debug}");
        assert!(
            !debug.contains(&crate::identity::b64(&[0x41; 32])),
            "{debug}"
        );
    }

    #[test]
    fn new_secrets_are_fresh() {
        assert_ne!(new_secret(), new_secret());
        assert_ne!(new_secret(), [0; SECRET_LEN]);
    }

    #[test]
    fn the_roster_digest_ignores_order_and_sees_every_change() {
        let keys: Vec<(u32, [u8; 32])> =
            (0..5u8).map(|i| (u32::from(i) * 10 + 3, [i; 32])).collect();
        let digest = roster_digest(ROOM, 7, &keys);
        let mut reversed = keys.clone();
        reversed.reverse();
        assert_eq!(roster_digest(ROOM, 7, &reversed), digest);
        let mut rotated = keys.clone();
        rotated.rotate_left(2);
        assert_eq!(roster_digest(ROOM, 7, &rotated), digest);

        for i in 0..keys.len() {
            let mut other_key = keys.clone();
            other_key[i].1[5] ^= 1;
            assert_ne!(roster_digest(ROOM, 7, &other_key), digest, "key {i}");
            let mut other_id = keys.clone();
            other_id[i].0 += 1;
            assert_ne!(roster_digest(ROOM, 7, &other_id), digest, "id {i}");
            let mut fewer = keys.clone();
            fewer.remove(i);
            assert_ne!(roster_digest(ROOM, 7, &fewer), digest, "without {i}");
        }
        // Swapping two members' keys is a different roster.
        let mut swapped = keys.clone();
        let key0 = swapped[0].1;
        swapped[0].1 = swapped[1].1;
        swapped[1].1 = key0;
        assert_ne!(roster_digest(ROOM, 7, &swapped), digest);
        assert_ne!(roster_digest(ROOM, 8, &keys), digest);
        assert_ne!(roster_digest("book clu", 7, &keys), digest);
        assert_ne!(roster_digest(ROOM, 7, &[]), digest);
        // Duplicate ids still give one answer whatever the order.
        let dupes = [(1, [1; 32]), (1, [2; 32])];
        assert_eq!(
            roster_digest(ROOM, 7, &dupes),
            roster_digest(ROOM, 7, &[dupes[1], dupes[0]])
        );
    }

    fn is_code(code: &str) -> bool {
        let groups: Vec<&str> = code.split(' ').collect();
        code.len() == 23
            && groups.len() == 4
            && groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    }

    #[test]
    fn the_safety_code_is_deterministic_and_in_format() {
        let secret = [7; 32];
        let roster = [8; 32];
        let code = safety_code(ROOM, 7, &secret, &roster);
        assert!(is_code(&code), "{code:?}");
        assert_eq!(safety_code(ROOM, 7, &secret, &roster), code);

        assert_ne!(safety_code(ROOM, 7, &[6; 32], &roster), code);
        assert_ne!(safety_code(ROOM, 7, &secret, &[9; 32]), code);
        assert_ne!(safety_code(ROOM, 8, &secret, &roster), code);
        assert_ne!(safety_code("book clu", 7, &secret, &roster), code);
    }

    #[test]
    fn codes_keep_leading_zeros_and_reduce_mod_ten_to_the_twenty() {
        assert_eq!(
            render_code(4_128_833_190_755_129_384),
            "04128 83319 07551 29384"
        );
        assert_eq!(render_code(0), "00000 00000 00000 00000");
        assert_eq!(render_code(CODE_SPACE + 5), "00000 00000 00000 00005");
        assert_eq!(render_code(u128::MAX), render_code(u128::MAX % CODE_SPACE));
    }

    #[test]
    fn codes_use_every_digit_in_every_place() {
        // A coarse check of uniformity: over 400 random secrets each position shows all
        // ten digits (a stuck or biased position would show far fewer).
        let mut seen = [[false; 10]; 20];
        for _ in 0..400 {
            let code = safety_code(ROOM, 1, &new_secret(), &[0; 32]);
            for (place, digit) in code.bytes().filter(u8::is_ascii_digit).enumerate() {
                seen[place][usize::from(digit - b'0')] = true;
            }
        }
        assert!(seen.iter().flatten().all(|&s| s), "{seen:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_prefix_is_refused(len in 0..WRAPPED_LEN) {
            let f = fixture();
            prop_assert!(open(f, &context(), &f.sealed[..len]).is_err());
        }

        #[test]
        fn any_bit_flip_is_refused(bit in 0..WRAPPED_LEN * 8) {
            let f = fixture();
            let mut flipped = f.sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(open(f, &context(), &flipped), Err(WrapError::OpenFailed));
        }

        #[test]
        fn any_tampering_is_refused(
            index in 0..WRAPPED_LEN,
            mask in 1..=255u8,
            cut in 0..=WRAPPED_LEN,
        ) {
            let f = fixture();
            let mut tampered = f.sealed.clone();
            tampered[index] ^= mask;
            tampered.truncate(cut);
            prop_assert!(open(f, &context(), &tampered).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_open_or_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let f = fixture();
            prop_assert!(open(f, &context(), &bytes).is_err());
        }

        #[test]
        fn the_roster_digest_is_order_independent(
            holders in proptest::collection::vec((any::<u32>(), any::<[u8; 32]>()), 0..12),
            seed in any::<u64>(),
        ) {
            let mut shuffled = holders.clone();
            // A deterministic shuffle from the seed keeps failures reproducible.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = (seed.rotate_left(i as u32) as usize) % (i + 1);
                shuffled.swap(i, j);
            }
            prop_assert_eq!(roster_digest(ROOM, 1, &holders), roster_digest(ROOM, 1, &shuffled));
        }
    }
}
