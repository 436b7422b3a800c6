//! SFrame (RFC 9605) for one cipher suite, AES_128_GCM_SHA256_128 (0x0004): the header
//! codec, per-sender key derivation, sealing and opening one frame, and the replay window a
//! receiver keeps per sender key.
//!
//! ```text
//! frame on the wire:  header (1..=17 bytes) | ciphertext (= plaintext length) | tag (16)
//! AAD:                header | metadata     (metadata is authenticated, never sent here)
//! nonce:              sframe_salt XOR CTR, CTR big-endian and left-padded to 12 bytes
//! ```
//!
//! Pure and allocation-free per frame: a [`SenderKey`] derives its AES key schedule once,
//! and [`Sealer::seal`] and [`open`] write only into the caller's buffer. One base key is
//! either sealed with (by exactly one [`Sealer`]) or opened with, never both (RFC 9605
//! §4.4.1): a second sealer on the same key would reuse nonces, which breaks AES-GCM.

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{self, AeadInOut, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;

/// Our one cipher suite, AES_128_GCM_SHA256_128 (RFC 9605 §4.5; registry, §8.1).
pub const CIPHER_SUITE: u16 = 0x0004;
/// AEAD key length in bytes (`Nk`).
pub const KEY_LEN: usize = 16;
/// AEAD nonce length in bytes (`Nn`), and so the salt's.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes (`Nt`).
pub const TAG_LEN: usize = 16;
/// The longest header: the config byte and 8 bytes each of KID and CTR.
pub const MAX_HEADER_LEN: usize = 17;
/// The last counter a [`Sealer`] uses. RFC 9605 allows 64-bit counters; we stop at 2^32 - 1
/// so that a counter never takes more than 4 header bytes (see [`MAX_OVERHEAD`]). At 50
/// frames a second that is over two years of speech, far beyond any key's life.
pub const MAX_CTR: u64 = (1 << 32) - 1;
/// The largest KID for which [`MAX_OVERHEAD`] holds; the key agent hands out KIDs below it.
pub const MAX_KID: u64 = (1 << 24) - 1;
/// The most bytes sealing adds to a plaintext, for KIDs up to [`MAX_KID`] (every frame a
/// [`Sealer`] makes has a CTR up to [`MAX_CTR`]): a 1-byte config, 3 bytes of KID, 4 of CTR
/// and the 16-byte tag, 24 in all. Budget packets with it; a larger KID adds up to 5 bytes.
pub const MAX_OVERHEAD: usize = 1 + 3 + 4 + TAG_LEN;

// MAX_OVERHEAD is written out for readers; the codec must agree with it.
const WORST_HEADER: Header = Header {
    kid: MAX_KID,
    ctr: MAX_CTR,
};
const _: () = assert!(WORST_HEADER.encoded_len() + TAG_LEN == MAX_OVERHEAD);

/// Labels for the key schedule, RFC 9605 §4.4.2; each is followed by the KID (8 bytes,
/// big-endian) and the cipher suite (2 bytes, big-endian).
const KEY_LABEL: &[u8] = b"SFrame 1.0 Secret key ";
const SALT_LABEL: &[u8] = b"SFrame 1.0 Secret salt ";

/// Why a frame could not be sealed, parsed or opened.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SframeError {
    /// The bytes end inside the header, or are too short to hold the 16-byte tag.
    #[error("SFrame ciphertext is truncated; the frame was cut short and must be dropped")]
    Truncated,
    /// A KID or CTR in the header is not in its shortest form, which RFC 9605 §4.3 requires.
    #[error("SFrame header is not minimally encoded; the sender does not follow RFC 9605")]
    NonMinimalHeader,
    /// The header handed to [`open`] is not the one at the start of the frame.
    #[error("the SFrame header given to open does not match the frame's own header bytes")]
    HeaderMismatch,
    /// The frame names another KID than the key it was opened with.
    #[error("SFrame frame has KID {frame_kid} but was opened with the key for KID {key_kid}")]
    WrongKey {
        /// The KID in the frame's header.
        frame_kid: u64,
        /// The KID of the key it was opened with.
        key_kid: u64,
    },
    /// Authentication failed: a wrong key, or a frame or metadata changed on the way.
    #[error("SFrame authentication failed: wrong key, or the frame was altered in transit")]
    Decrypt,
    /// The counter was seen before, or is older than the replay window.
    #[error("SFrame counter {0} was already seen or is too old; the frame is a replay")]
    Replayed(u64),
    /// This sender key has sealed its last counter; seal with a new key.
    #[error("SFrame counter exhausted after {MAX_CTR} frames; rotate to a new key")]
    CounterExhausted,
    /// Plaintext or metadata longer than AES-GCM can seal (about 64 GiB).
    #[error("SFrame plaintext or metadata is longer than AES-GCM allows")]
    TooLong,
}

/// An SFrame header (RFC 9605 §4.3): which key sealed the frame and under which counter.
///
/// ```text
///  0 1 2 3 4 5 6 7
/// +-+-+-+-+-+-+-+-+------------+------------+
/// |X|  K  |Y|  C  |   KID...   |   CTR...   |
/// +-+-+-+-+-+-+-+-+------------+------------+
/// ```
///
/// A value 0..=7 sits in K (or C) with X (or Y) clear; a larger one follows the config byte
/// in the fewest big-endian bytes, X (or Y) set and K (or C) holding its length minus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Key ID: names the sender key, so the receiver can pick it.
    pub kid: u64,
    /// Counter: unique per frame under one key; it forms the nonce.
    pub ctr: u64,
}

impl Header {
    /// Length of the encoded header in bytes, 1..=17.
    pub const fn encoded_len(&self) -> usize {
        1 + field_len(self.kid) + field_len(self.ctr)
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let len = self.write(&mut buf);
        out.extend_from_slice(&buf[..len]);
    }

    /// Parses the header at the start of `bytes`; returns it and its length in bytes, so
    /// that `&bytes[len..]` is the ciphertext and tag.
    ///
    /// Refuses input that ends inside the header, and values not in their shortest form
    /// (an extended field under 8, or with a leading zero byte): with that, `encode` and
    /// `parse` are inverses, and each (KID, CTR) has exactly one encoding.
    pub fn parse(bytes: &[u8]) -> Result<(Header, usize), SframeError> {
        let (&config, rest) = bytes.split_first().ok_or(SframeError::Truncated)?;
        let (kid, kid_len) = read_field(config >> 4, rest)?;
        let (ctr, ctr_len) = read_field(config & 0x0f, &rest[kid_len..])?;
        Ok((Header { kid, ctr }, 1 + kid_len + ctr_len))
    }

    /// Writes the encoding into `buf`; returns its length.
    fn write(&self, buf: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let kid_len = field_len(self.kid);
        let ctr_len = field_len(self.ctr);
        buf[0] = (config_nibble(self.kid) << 4) | config_nibble(self.ctr);
        buf[1..1 + kid_len].copy_from_slice(&self.kid.to_be_bytes()[8 - kid_len..]);
        let ctr_at = 1 + kid_len;
        buf[ctr_at..ctr_at + ctr_len].copy_from_slice(&self.ctr.to_be_bytes()[8 - ctr_len..]);
        ctr_at + ctr_len
    }
}

/// Bytes a value takes after the config byte: none when it fits in 3 bits, else the fewest
/// big-endian bytes that hold it.
const fn field_len(value: u64) -> usize {
    if value < 8 {
        0
    } else {
        ((u64::BITS - value.leading_zeros()) as usize).div_ceil(8)
    }
}

/// The 4 config bits for one value: `0vvv` inline, or `1lll` with the length minus one.
fn config_nibble(value: u64) -> u8 {
    match field_len(value) {
        // Only values below 8 are inline, so the cast keeps every bit.
        0 => value as u8,
        len => 0x8 | (len - 1) as u8,
    }
}

/// Reads one value described by config bits `nibble` from the front of `bytes`; returns it
/// and how many of `bytes` it took.
fn read_field(nibble: u8, bytes: &[u8]) -> Result<(u64, usize), SframeError> {
    if nibble & 0x8 == 0 {
        return Ok((u64::from(nibble), 0));
    }
    let len = usize::from(nibble & 0x7) + 1;
    let field = bytes.get(..len).ok_or(SframeError::Truncated)?;
    let mut be = [0u8; 8];
    be[8 - len..].copy_from_slice(field);
    let value = u64::from_be_bytes(be);
    if field_len(value) != len {
        return Err(SframeError::NonMinimalHeader);
    }
    Ok((value, len))
}

/// The AES-128-GCM key and salt for one (base key, KID), derived once (RFC 9605 §4.4.2).
///
/// Not `Clone`: a sender key belongs to one [`Sealer`] or is used only to [`open`], and a
/// copy is the easiest way to end up sealing twice under one counter.
pub struct SenderKey {
    kid: u64,
    cipher: Aes128Gcm,
    salt: [u8; NONCE_LEN],
}

impl SenderKey {
    /// Derives the key for `kid` from `base_key`, with HKDF-SHA256:
    /// `sframe_secret = HKDF-Extract("", base_key)`, then `sframe_key` (16 bytes) and
    /// `sframe_salt` (12 bytes) expanded from it under the labels above.
    pub fn derive(kid: u64, base_key: &[u8]) -> SenderKey {
        let (key, salt) = derive_key_salt(kid, base_key);
        SenderKey {
            kid,
            cipher: Aes128Gcm::new(&aead::Key::<Aes128Gcm>::from(key)),
            salt,
        }
    }

    /// The KID this key seals under, and opens frames for.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    /// The nonce for one counter: the salt XOR the counter, right-aligned.
    fn nonce(&self, ctr: u64) -> aead::Nonce<Aes128Gcm> {
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        nonce.into()
    }
}

// Key material stays out of logs: only the KID is printed.
impl std::fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// `sframe_key` and `sframe_salt` for `kid` under `base_key` (RFC 9605 §4.4.2).
fn derive_key_salt(kid: u64, base_key: &[u8]) -> ([u8; KEY_LEN], [u8; NONCE_LEN]) {
    // An empty salt: HMAC pads it with zeros, as RFC 5869 does for a missing one.
    let empty_salt: &[u8] = &[];
    let hkdf = Hkdf::<Sha256>::new(Some(empty_salt), base_key);
    let kid_be = kid.to_be_bytes();
    let suite_be = CIPHER_SUITE.to_be_bytes();
    let mut key = [0u8; KEY_LEN];
    let mut salt = [0u8; NONCE_LEN];
    // HKDF-Expand only fails past 255 hash lengths (8160 bytes); we ask for 16 and 12.
    hkdf.expand_multi_info(&[KEY_LABEL, &kid_be, &suite_be], &mut key)
        .expect("16 bytes is within HKDF-SHA256's output limit");
    hkdf.expand_multi_info(&[SALT_LABEL, &kid_be, &suite_be], &mut salt)
        .expect("12 bytes is within HKDF-SHA256's output limit");
    (key, salt)
}

/// Seals one sender's frames under one key, counting from 0 and never reusing a counter.
#[derive(Debug)]
pub struct Sealer {
    key: SenderKey,
    next_ctr: u64,
}

impl Sealer {
    /// A sealer whose first frame has counter 0.
    pub fn new(key: SenderKey) -> Sealer {
        Sealer { key, next_ctr: 0 }
    }

    /// The KID every frame from this sealer carries.
    pub fn kid(&self) -> u64 {
        self.key.kid
    }

    /// The counter the next frame will carry; past [`MAX_CTR`] the key is spent.
    pub fn next_ctr(&self) -> u64 {
        self.next_ctr
    }

    /// Seals `plaintext` and appends the frame (header, ciphertext, tag) to `out`;
    /// `metadata` is authenticated but not included, so the receiver must supply the same.
    ///
    /// Adds `plaintext.len() + MAX_OVERHEAD` bytes at most (for KIDs up to [`MAX_KID`]).
    /// Refuses with [`SframeError::CounterExhausted`] once [`MAX_CTR`] has been used; on any
    /// error `out` is as it was and no counter is spent.
    pub fn seal(
        &mut self,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SframeError> {
        let ctr = self.next_ctr;
        if ctr > MAX_CTR {
            return Err(SframeError::CounterExhausted);
        }
        let header = Header {
            kid: self.key.kid,
            ctr,
        };

        // GCM wants the AAD (header | metadata) in one slice. Rather than allocate, lay out
        // header | metadata | plaintext in `out`, encrypt the plaintext in place, then slide
        // the ciphertext down over the metadata, which is not sent.
        let start = out.len();
        out.reserve(MAX_HEADER_LEN + metadata.len() + plaintext.len() + TAG_LEN);
        header.encode(out);
        let header_end = out.len();
        out.extend_from_slice(metadata);
        let body_at = out.len();
        out.extend_from_slice(plaintext);
        let (aad, body) = out.split_at_mut(body_at);
        let tag = match self.key.cipher.encrypt_inout_detached(
            &self.key.nonce(ctr),
            &aad[start..],
            body.into(),
        ) {
            Ok(tag) => tag,
            Err(aead::Error) => {
                out.truncate(start);
                return Err(SframeError::TooLong);
            }
        };
        out.copy_within(body_at.., header_end);
        out.truncate(header_end + plaintext.len());
        out.extend_from_slice(&tag);
        self.next_ctr = ctr + 1;
        Ok(())
    }

    /// A sealer whose first frame has counter `next_ctr`. A sender that cannot be sure
    /// no earlier run of it sealed under this key (a restarted client handed an old key
    /// again) starts at a random point, so that the two runs' counters, and nonces, stay
    /// apart however the key came back.
    pub fn starting_at(key: SenderKey, next_ctr: u64) -> Sealer {
        Sealer { key, next_ctr }
    }
}

/// Opens one frame and appends its plaintext to `out`.
///
/// The caller first runs [`Header::parse`] on `sframe` to pick the key by KID, then passes
/// that header and its length here with the same `metadata` the sender sealed with. Any
/// failure (truncated, altered, wrong key, header not the frame's) is an error and leaves
/// `out` as it was. Replays are not checked here: consult the sender's [`ReplayWindow`]
/// before, and mark it after this succeeds.
pub fn open(
    key: &SenderKey,
    header: &Header,
    header_len: usize,
    metadata: &[u8],
    sframe: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SframeError> {
    if header.kid != key.kid {
        return Err(SframeError::WrongKey {
            frame_kid: header.kid,
            key_kid: key.kid,
        });
    }
    let header_bytes = sframe.get(..header_len).ok_or(SframeError::Truncated)?;
    // The counter in `header` forms the nonce and the bytes go into the AAD, so a mismatch
    // would fail authentication anyway; saying so names the caller's bug instead.
    let mut expected = [0u8; MAX_HEADER_LEN];
    let expected_len = header.write(&mut expected);
    if header_bytes != &expected[..expected_len] {
        return Err(SframeError::HeaderMismatch);
    }
    let body = &sframe[header_len..];
    let ciphertext_len = body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(SframeError::Truncated)?;
    let (ciphertext, tag) = body.split_at(ciphertext_len);
    let tag = aead::Tag::<Aes128Gcm>::try_from(tag).map_err(|_| SframeError::Truncated)?;

    // As in `seal`: header | metadata | ciphertext in `out`, decrypted in place, then slid
    // down. aes-gcm checks the tag before decrypting, so a failure leaves only public bytes.
    let start = out.len();
    out.reserve(header_len + metadata.len() + ciphertext_len);
    out.extend_from_slice(header_bytes);
    out.extend_from_slice(metadata);
    let body_at = out.len();
    out.extend_from_slice(ciphertext);
    let (aad, body) = out.split_at_mut(body_at);
    let opened =
        key.cipher
            .decrypt_inout_detached(&key.nonce(header.ctr), &aad[start..], body.into(), &tag);
    if opened.is_err() {
        out.truncate(start);
        return Err(SframeError::Decrypt);
    }
    out.copy_within(body_at.., start);
    out.truncate(start + ciphertext_len);
    Ok(())
}

// The replay window. A receiver keeps one per sender key (KID): counters mean nothing across
// keys, and a new key starts its own window. It remembers the highest counter opened so far
// and, in a 64-bit bitmap, which of the 64 counters ending there (bit i: highest - i) have
// been opened. A counter above the highest is new; one within 63 below it is new if its bit
// is clear; anything older is refused, since it may have been seen and forgotten. 64 frames
// is 1.28 s of 20 ms Opus, longer than any frame waits in the jitter buffer, so a frame that
// late would be dropped anyway.
//
// `check` before opening, `mark` only after `open` succeeds: otherwise a forged frame with
// a huge counter would slide the window forward and make every real frame look too old.

/// Counters a receiver has opened under one sender key, to refuse replays (see above).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest counter marked; meaningless while `seen` is 0.
    highest: u64,
    /// Bit i set: `highest - i` was marked. Bit 0 is set once anything is, so 0 means empty.
    seen: u64,
}

impl ReplayWindow {
    /// How far back, in counters, the window remembers.
    pub const SIZE: u64 = u64::BITS as u64;

    /// An empty window: every counter is acceptable.
    pub fn new() -> ReplayWindow {
        ReplayWindow::default()
    }

    /// Whether a frame with counter `ctr` may be opened: not seen, and not too old to tell.
    pub fn check(&self, ctr: u64) -> bool {
        if self.seen == 0 || ctr > self.highest {
            return true;
        }
        let age = self.highest - ctr;
        age < Self::SIZE && self.seen & (1 << age) == 0
    }

    /// [`check`](Self::check) as a `Result`, for `?`: [`SframeError::Replayed`] if refused.
    pub fn ensure_fresh(&self, ctr: u64) -> Result<(), SframeError> {
        if self.check(ctr) {
            Ok(())
        } else {
            Err(SframeError::Replayed(ctr))
        }
    }

    /// Records that the frame with counter `ctr` was opened.
    pub fn mark(&mut self, ctr: u64) {
        if self.seen == 0 {
            self.highest = ctr;
            self.seen = 1;
        } else if ctr > self.highest {
            let shift = ctr - self.highest;
            self.seen = if shift >= Self::SIZE {
                1
            } else {
                (self.seen << shift) | 1
            };
            self.highest = ctr;
        } else {
            let age = self.highest - ctr;
            if age < Self::SIZE {
                self.seen |= 1 << age;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes from hex, ignoring the whitespace the RFC wraps long values with.
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// Parses the header, then opens with `key`, as a receiver does.
    fn parse_and_open(
        key: &SenderKey,
        metadata: &[u8],
        sframe: &[u8],
    ) -> Result<Vec<u8>, SframeError> {
        let (header, header_len) = Header::parse(sframe)?;
        let mut out = Vec::new();
        open(key, &header, header_len, metadata, sframe, &mut out)?;
        Ok(out)
    }

    /// RFC 9605 Appendix C.1 (Header Encoding/Decoding): every case, one a line as
    /// `kid ctr header`, copied from the RFC's source, sframe-wg/sframe `test-vectors/header.md`.
    const HEADER_VECTORS: &str = "
0x0 0x0 00
0x0 0x1 01
0x0 0xff 08ff
0x0 0x100 090100
0x0 0xffff 09ffff
0x0 0x10000 0a010000
0x0 0xffffff 0affffff
0x0 0x1000000 0b01000000
0x0 0xffffffff 0bffffffff
0x0 0x100000000 0c0100000000
0x0 0xffffffffff 0cffffffffff
0x0 0x10000000000 0d010000000000
0x0 0xffffffffffff 0dffffffffffff
0x0 0x1000000000000 0e01000000000000
0x0 0xffffffffffffff 0effffffffffffff
0x0 0x100000000000000 0f0100000000000000
0x0 0xffffffffffffffff 0fffffffffffffffff
0x1 0x0 10
0x1 0x1 11
0x1 0xff 18ff
0x1 0x100 190100
0x1 0xffff 19ffff
0x1 0x10000 1a010000
0x1 0xffffff 1affffff
0x1 0x1000000 1b01000000
0x1 0xffffffff 1bffffffff
0x1 0x100000000 1c0100000000
0x1 0xffffffffff 1cffffffffff
0x1 0x10000000000 1d010000000000
0x1 0xffffffffffff 1dffffffffffff
0x1 0x1000000000000 1e01000000000000
0x1 0xffffffffffffff 1effffffffffffff
0x1 0x100000000000000 1f0100000000000000
0x1 0xffffffffffffffff 1fffffffffffffffff
0xff 0x0 80ff
0xff 0x1 81ff
0xff 0xff 88ffff
0xff 0x100 89ff0100
0xff 0xffff 89ffffff
0xff 0x10000 8aff010000
0xff 0xffffff 8affffffff
0xff 0x1000000 8bff01000000
0xff 0xffffffff 8bffffffffff
0xff 0x100000000 8cff0100000000
0xff 0xffffffffff 8cffffffffffff
0xff 0x10000000000 8dff010000000000
0xff 0xffffffffffff 8dffffffffffffff
0xff 0x1000000000000 8eff01000000000000
0xff 0xffffffffffffff 8effffffffffffffff
0xff 0x100000000000000 8fff0100000000000000
0xff 0xffffffffffffffff 8fffffffffffffffffff
0x100 0x0 900100
0x100 0x1 910100
0x100 0xff 980100ff
0x100 0x100 9901000100
0x100 0xffff 990100ffff
0x100 0x10000 9a0100010000
0x100 0xffffff 9a0100ffffff
0x100 0x1000000 9b010001000000
0x100 0xffffffff 9b0100ffffffff
0x100 0x100000000 9c01000100000000
0x100 0xffffffffff 9c0100ffffffffff
0x100 0x10000000000 9d0100010000000000
0x100 0xffffffffffff 9d0100ffffffffffff
0x100 0x1000000000000 9e010001000000000000
0x100 0xffffffffffffff 9e0100ffffffffffffff
0x100 0x100000000000000 9f01000100000000000000
0x100 0xffffffffffffffff 9f0100ffffffffffffffff
0xffff 0x0 90ffff
0xffff 0x1 91ffff
0xffff 0xff 98ffffff
0xffff 0x100 99ffff0100
0xffff 0xffff 99ffffffff
0xffff 0x10000 9affff010000
0xffff 0xffffff 9affffffffff
0xffff 0x1000000 9bffff01000000
0xffff 0xffffffff 9bffffffffffff
0xffff 0x100000000 9cffff0100000000
0xffff 0xffffffffff 9cffffffffffffff
0xffff 0x10000000000 9dffff010000000000
0xffff 0xffffffffffff 9dffffffffffffffff
0xffff 0x1000000000000 9effff01000000000000
0xffff 0xffffffffffffff 9effffffffffffffffff
0xffff 0x100000000000000 9fffff0100000000000000
0xffff 0xffffffffffffffff 9fffffffffffffffffffff
0x10000 0x0 a0010000
0x10000 0x1 a1010000
0x10000 0xff a8010000ff
0x10000 0x100 a90100000100
0x10000 0xffff a9010000ffff
0x10000 0x10000 aa010000010000
0x10000 0xffffff aa010000ffffff
0x10000 0x1000000 ab01000001000000
0x10000 0xffffffff ab010000ffffffff
0x10000 0x100000000 ac0100000100000000
0x10000 0xffffffffff ac010000ffffffffff
0x10000 0x10000000000 ad010000010000000000
0x10000 0xffffffffffff ad010000ffffffffffff
0x10000 0x1000000000000 ae01000001000000000000
0x10000 0xffffffffffffff ae010000ffffffffffffff
0x10000 0x100000000000000 af0100000100000000000000
0x10000 0xffffffffffffffff af010000ffffffffffffffff
0xffffff 0x0 a0ffffff
0xffffff 0x1 a1ffffff
0xffffff 0xff a8ffffffff
0xffffff 0x100 a9ffffff0100
0xffffff 0xffff a9ffffffffff
0xffffff 0x10000 aaffffff010000
0xffffff 0xffffff aaffffffffffff
0xffffff 0x1000000 abffffff01000000
0xffffff 0xffffffff abffffffffffffff
0xffffff 0x100000000 acffffff0100000000
0xffffff 0xffffffffff acffffffffffffffff
0xffffff 0x10000000000 adffffff010000000000
0xffffff 0xffffffffffff adffffffffffffffffff
0xffffff 0x1000000000000 aeffffff01000000000000
0xffffff 0xffffffffffffff aeffffffffffffffffffff
0xffffff 0x100000000000000 afffffff0100000000000000
0xffffff 0xffffffffffffffff afffffffffffffffffffffff
0x1000000 0x0 b001000000
0x1000000 0x1 b101000000
0x1000000 0xff b801000000ff
0x1000000 0x100 b9010000000100
0x1000000 0xffff b901000000ffff
0x1000000 0x10000 ba01000000010000
0x1000000 0xffffff ba01000000ffffff
0x1000000 0x1000000 bb0100000001000000
0x1000000 0xffffffff bb01000000ffffffff
0x1000000 0x100000000 bc010000000100000000
0x1000000 0xffffffffff bc01000000ffffffffff
0x1000000 0x10000000000 bd01000000010000000000
0x1000000 0xffffffffffff bd01000000ffffffffffff
0x1000000 0x1000000000000 be0100000001000000000000
0x1000000 0xffffffffffffff be01000000ffffffffffffff
0x1000000 0x100000000000000 bf010000000100000000000000
0x1000000 0xffffffffffffffff bf01000000ffffffffffffffff
0xffffffff 0x0 b0ffffffff
0xffffffff 0x1 b1ffffffff
0xffffffff 0xff b8ffffffffff
0xffffffff 0x100 b9ffffffff0100
0xffffffff 0xffff b9ffffffffffff
0xffffffff 0x10000 baffffffff010000
0xffffffff 0xffffff baffffffffffffff
0xffffffff 0x1000000 bbffffffff01000000
0xffffffff 0xffffffff bbffffffffffffffff
0xffffffff 0x100000000 bcffffffff0100000000
0xffffffff 0xffffffffff bcffffffffffffffffff
0xffffffff 0x10000000000 bdffffffff010000000000
0xffffffff 0xffffffffffff bdffffffffffffffffffff
0xffffffff 0x1000000000000 beffffffff01000000000000
0xffffffff 0xffffffffffffff beffffffffffffffffffffff
0xffffffff 0x100000000000000 bfffffffff0100000000000000
0xffffffff 0xffffffffffffffff bfffffffffffffffffffffffff
0x100000000 0x0 c00100000000
0x100000000 0x1 c10100000000
0x100000000 0xff c80100000000ff
0x100000000 0x100 c901000000000100
0x100000000 0xffff c90100000000ffff
0x100000000 0x10000 ca0100000000010000
0x100000000 0xffffff ca0100000000ffffff
0x100000000 0x1000000 cb010000000001000000
0x100000000 0xffffffff cb0100000000ffffffff
0x100000000 0x100000000 cc01000000000100000000
0x100000000 0xffffffffff cc0100000000ffffffffff
0x100000000 0x10000000000 cd0100000000010000000000
0x100000000 0xffffffffffff cd0100000000ffffffffffff
0x100000000 0x1000000000000 ce010000000001000000000000
0x100000000 0xffffffffffffff ce0100000000ffffffffffffff
0x100000000 0x100000000000000 cf01000000000100000000000000
0x100000000 0xffffffffffffffff cf0100000000ffffffffffffffff
0xffffffffff 0x0 c0ffffffffff
0xffffffffff 0x1 c1ffffffffff
0xffffffffff 0xff c8ffffffffffff
0xffffffffff 0x100 c9ffffffffff0100
0xffffffffff 0xffff c9ffffffffffffff
0xffffffffff 0x10000 caffffffffff010000
0xffffffffff 0xffffff caffffffffffffffff
0xffffffffff 0x1000000 cbffffffffff01000000
0xffffffffff 0xffffffff cbffffffffffffffffff
0xffffffffff 0x100000000 ccffffffffff0100000000
0xffffffffff 0xffffffffff ccffffffffffffffffffff
0xffffffffff 0x10000000000 cdffffffffff010000000000
0xffffffffff 0xffffffffffff cdffffffffffffffffffffff
0xffffffffff 0x1000000000000 ceffffffffff01000000000000
0xffffffffff 0xffffffffffffff ceffffffffffffffffffffffff
0xffffffffff 0x100000000000000 cfffffffffff0100000000000000
0xffffffffff 0xffffffffffffffff cfffffffffffffffffffffffffff
0x10000000000 0x0 d0010000000000
0x10000000000 0x1 d1010000000000
0x10000000000 0xff d8010000000000ff
0x10000000000 0x100 d90100000000000100
0x10000000000 0xffff d9010000000000ffff
0x10000000000 0x10000 da010000000000010000
0x10000000000 0xffffff da010000000000ffffff
0x10000000000 0x1000000 db01000000000001000000
0x10000000000 0xffffffff db010000000000ffffffff
0x10000000000 0x100000000 dc0100000000000100000000
0x10000000000 0xffffffffff dc010000000000ffffffffff
0x10000000000 0x10000000000 dd010000000000010000000000
0x10000000000 0xffffffffffff dd010000000000ffffffffffff
0x10000000000 0x1000000000000 de01000000000001000000000000
0x10000000000 0xffffffffffffff de010000000000ffffffffffffff
0x10000000000 0x100000000000000 df0100000000000100000000000000
0x10000000000 0xffffffffffffffff df010000000000ffffffffffffffff
0xffffffffffff 0x0 d0ffffffffffff
0xffffffffffff 0x1 d1ffffffffffff
0xffffffffffff 0xff d8ffffffffffffff
0xffffffffffff 0x100 d9ffffffffffff0100
0xffffffffffff 0xffff d9ffffffffffffffff
0xffffffffffff 0x10000 daffffffffffff010000
0xffffffffffff 0xffffff daffffffffffffffffff
0xffffffffffff 0x1000000 dbffffffffffff01000000
0xffffffffffff 0xffffffff dbffffffffffffffffffff
0xffffffffffff 0x100000000 dcffffffffffff0100000000
0xffffffffffff 0xffffffffff dcffffffffffffffffffffff
0xffffffffffff 0x10000000000 ddffffffffffff010000000000
0xffffffffffff 0xffffffffffff ddffffffffffffffffffffffff
0xffffffffffff 0x1000000000000 deffffffffffff01000000000000
0xffffffffffff 0xffffffffffffff deffffffffffffffffffffffffff
0xffffffffffff 0x100000000000000 dfffffffffffff0100000000000000
0xffffffffffff 0xffffffffffffffff dfffffffffffffffffffffffffffff
0x1000000000000 0x0 e001000000000000
0x1000000000000 0x1 e101000000000000
0x1000000000000 0xff e801000000000000ff
0x1000000000000 0x100 e9010000000000000100
0x1000000000000 0xffff e901000000000000ffff
0x1000000000000 0x10000 ea01000000000000010000
0x1000000000000 0xffffff ea01000000000000ffffff
0x1000000000000 0x1000000 eb0100000000000001000000
0x1000000000000 0xffffffff eb01000000000000ffffffff
0x1000000000000 0x100000000 ec010000000000000100000000
0x1000000000000 0xffffffffff ec01000000000000ffffffffff
0x1000000000000 0x10000000000 ed01000000000000010000000000
0x1000000000000 0xffffffffffff ed01000000000000ffffffffffff
0x1000000000000 0x1000000000000 ee0100000000000001000000000000
0x1000000000000 0xffffffffffffff ee01000000000000ffffffffffffff
0x1000000000000 0x100000000000000 ef010000000000000100000000000000
0x1000000000000 0xffffffffffffffff ef01000000000000ffffffffffffffff
0xffffffffffffff 0x0 e0ffffffffffffff
0xffffffffffffff 0x1 e1ffffffffffffff
0xffffffffffffff 0xff e8ffffffffffffffff
0xffffffffffffff 0x100 e9ffffffffffffff0100
0xffffffffffffff 0xffff e9ffffffffffffffffff
0xffffffffffffff 0x10000 eaffffffffffffff010000
0xffffffffffffff 0xffffff eaffffffffffffffffffff
0xffffffffffffff 0x1000000 ebffffffffffffff01000000
0xffffffffffffff 0xffffffff ebffffffffffffffffffffff
0xffffffffffffff 0x100000000 ecffffffffffffff0100000000
0xffffffffffffff 0xffffffffff ecffffffffffffffffffffffff
0xffffffffffffff 0x10000000000 edffffffffffffff010000000000
0xffffffffffffff 0xffffffffffff edffffffffffffffffffffffffff
0xffffffffffffff 0x1000000000000 eeffffffffffffff01000000000000
0xffffffffffffff 0xffffffffffffff eeffffffffffffffffffffffffffff
0xffffffffffffff 0x100000000000000 efffffffffffffff0100000000000000
0xffffffffffffff 0xffffffffffffffff efffffffffffffffffffffffffffffff
0x100000000000000 0x0 f00100000000000000
0x100000000000000 0x1 f10100000000000000
0x100000000000000 0xff f80100000000000000ff
0x100000000000000 0x100 f901000000000000000100
0x100000000000000 0xffff f90100000000000000ffff
0x100000000000000 0x10000 fa0100000000000000010000
0x100000000000000 0xffffff fa0100000000000000ffffff
0x100000000000000 0x1000000 fb010000000000000001000000
0x100000000000000 0xffffffff fb0100000000000000ffffffff
0x100000000000000 0x100000000 fc01000000000000000100000000
0x100000000000000 0xffffffffff fc0100000000000000ffffffffff
0x100000000000000 0x10000000000 fd0100000000000000010000000000
0x100000000000000 0xffffffffffff fd0100000000000000ffffffffffff
0x100000000000000 0x1000000000000 fe010000000000000001000000000000
0x100000000000000 0xffffffffffffff fe0100000000000000ffffffffffffff
0x100000000000000 0x100000000000000 ff01000000000000000100000000000000
0x100000000000000 0xffffffffffffffff ff0100000000000000ffffffffffffffff
0xffffffffffffffff 0x0 f0ffffffffffffffff
0xffffffffffffffff 0x1 f1ffffffffffffffff
0xffffffffffffffff 0xff f8ffffffffffffffffff
0xffffffffffffffff 0x100 f9ffffffffffffffff0100
0xffffffffffffffff 0xffff f9ffffffffffffffffffff
0xffffffffffffffff 0x10000 faffffffffffffffff010000
0xffffffffffffffff 0xffffff faffffffffffffffffffffff
0xffffffffffffffff 0x1000000 fbffffffffffffffff01000000
0xffffffffffffffff 0xffffffff fbffffffffffffffffffffffff
0xffffffffffffffff 0x100000000 fcffffffffffffffff0100000000
0xffffffffffffffff 0xffffffffff fcffffffffffffffffffffffffff
0xffffffffffffffff 0x10000000000 fdffffffffffffffff010000000000
0xffffffffffffffff 0xffffffffffff fdffffffffffffffffffffffffffff
0xffffffffffffffff 0x1000000000000 feffffffffffffffff01000000000000
0xffffffffffffffff 0xffffffffffffff feffffffffffffffffffffffffffffff
0xffffffffffffffff 0x100000000000000 ffffffffffffffffff0100000000000000
0xffffffffffffffff 0xffffffffffffffff ffffffffffffffffffffffffffffffffff
";

    #[test]
    fn rfc9605_header_vectors_encode_and_parse() {
        let number = |field: &str| u64::from_str_radix(field.trim_start_matches("0x"), 16).unwrap();
        let mut cases = 0;
        for line in HEADER_VECTORS.lines().filter(|line| !line.is_empty()) {
            let fields: Vec<&str> = line.split(' ').collect();
            let [kid, ctr, encoded] = fields[..] else {
                panic!("malformed vector line {line:?}");
            };
            let (kid, ctr) = (number(kid), number(ctr));
            let header = Header { kid, ctr };
            let expected = hex(encoded);
            cases += 1;
            let mut out = vec![0xaa];
            header.encode(&mut out);
            assert_eq!(out[1..], expected[..], "encoding kid {kid:#x} ctr {ctr:#x}");
            assert_eq!(header.encoded_len(), expected.len());
            assert_eq!(Header::parse(&expected), Ok((header, expected.len())));
            // Trailing bytes are the ciphertext's, not the header's.
            let mut longer = expected.clone();
            longer.extend_from_slice(&[0xff; 20]);
            assert_eq!(Header::parse(&longer), Ok((header, expected.len())));
            for cut in 0..expected.len() {
                assert_eq!(Header::parse(&expected[..cut]), Err(SframeError::Truncated));
            }
        }
        assert_eq!(cases, 289, "the RFC lists 289 header cases");
    }

    #[test]
    fn headers_not_in_their_shortest_form_are_refused() {
        for bytes in [
            &[0x08, 0x05][..],                     // CTR 5 must be inline
            &[0x09, 0x00, 0xff],                   // CTR 0xff with a leading zero byte
            &[0x80, 0x07, 0x00],                   // KID 7 must be inline
            &[0x90, 0x00, 0x08],                   // KID 8 with a leading zero byte
            &[0xf8, 0, 0, 0, 0, 0, 0, 0, 1, 0x09], // 8-byte KID of 1
        ] {
            assert_eq!(
                Header::parse(bytes),
                Err(SframeError::NonMinimalHeader),
                "{bytes:x?}"
            );
        }
    }

    /// RFC 9605 Appendix C.3 (SFrame Encryption/Decryption), the cipher_suite 0x0004 case,
    /// copied from the RFC's source, sframe-wg/sframe `test-vectors/sframe.md`.
    #[test]
    fn rfc9605_sframe_vector_aes_128_gcm_sha256_128() {
        let kid = 0x0000000000000123;
        let ctr = 0x0000000000004567;
        let base_key = hex("000102030405060708090a0b0c0d0e0f");
        let sframe_key_label = hex("534672616d6520312e30205365637265
             74206b65792000000000000001230004");
        let sframe_salt_label = hex("534672616d6520312e30205365637265
             742073616c7420000000000000012300
             04");
        let sframe_secret = hex("d926952ca8b7ec4a95941d1ada3a5203
             ceff8cceee34f574d23909eb314c40c0");
        let sframe_key = hex("d34f547f4ca4f9a7447006fe7fcbf768");
        let sframe_salt = hex("75234edefe07819026751816");
        let metadata = hex("4945544620534672616d65205747");
        let nonce = hex("75234edefe07819026755d71");
        let aad = hex("99012345674945544620534672616d65
             205747");
        let pt = hex("64726166742d696574662d736672616d
             652d656e63");
        let ct = hex("9901234567b7412c2513a1b66dbb4884
             1bbaf17f598751176ad847681a69c6d0
             b091c07018ce4adb34eb");

        let kid_be = u64::to_be_bytes(kid);
        let suite_be = CIPHER_SUITE.to_be_bytes();
        assert_eq!([KEY_LABEL, &kid_be, &suite_be].concat(), sframe_key_label);
        assert_eq!([SALT_LABEL, &kid_be, &suite_be].concat(), sframe_salt_label);
        let empty_salt: &[u8] = &[];
        let (secret, _) = Hkdf::<Sha256>::extract(Some(empty_salt), &base_key);
        assert_eq!(secret[..], sframe_secret[..]);
        let (key_bytes, salt_bytes) = derive_key_salt(kid, &base_key);
        assert_eq!(key_bytes[..], sframe_key[..]);
        assert_eq!(salt_bytes[..], sframe_salt[..]);

        let key = SenderKey::derive(kid, &base_key);
        assert_eq!(key.nonce(ctr)[..], nonce[..]);
        let mut header_and_metadata = Vec::new();
        Header { kid, ctr }.encode(&mut header_and_metadata);
        header_and_metadata.extend_from_slice(&metadata);
        assert_eq!(header_and_metadata, aad);

        let mut sealer = Sealer::starting_at(key, ctr);
        let mut sealed = Vec::new();
        sealer.seal(&metadata, &pt, &mut sealed).unwrap();
        assert_eq!(sealed, ct);
        assert_eq!(sealer.next_ctr(), ctr + 1);

        let receiver_key = SenderKey::derive(kid, &base_key);
        assert_eq!(parse_and_open(&receiver_key, &metadata, &ct), Ok(pt));
    }

    #[test]
    fn sealing_appends_to_what_is_in_the_buffer_and_counts_from_zero() {
        let mut sealer = Sealer::new(SenderKey::derive(3, b"base key"));
        let receiver = SenderKey::derive(3, b"base key");
        let mut out = b"prefix".to_vec();
        for expected_ctr in 0..3 {
            out.truncate(6);
            sealer.seal(b"meta", b"opus", &mut out).unwrap();
            assert_eq!(&out[..6], b"prefix");
            let (header, _) = Header::parse(&out[6..]).unwrap();
            assert_eq!(
                header,
                Header {
                    kid: 3,
                    ctr: expected_ctr
                }
            );
            assert_eq!(
                parse_and_open(&receiver, b"meta", &out[6..]),
                Ok(b"opus".to_vec())
            );
        }
        assert_eq!(sealer.kid(), 3);
    }

    #[test]
    fn the_last_counter_is_sealed_and_then_the_sealer_refuses() {
        let mut sealer = Sealer::starting_at(SenderKey::derive(MAX_KID, b"k"), MAX_CTR);
        let mut out = Vec::new();
        sealer.seal(&[], &[7; 60], &mut out).unwrap();
        // The worst case MAX_OVERHEAD promises: the largest KID and CTR it covers.
        assert_eq!(out.len(), 60 + MAX_OVERHEAD);
        assert_eq!(MAX_OVERHEAD, 24);
        let (header, _) = Header::parse(&out).unwrap();
        assert_eq!(header.ctr, MAX_CTR);
        let before = out.clone();
        for _ in 0..2 {
            assert_eq!(
                sealer.seal(&[], &[7; 60], &mut out),
                Err(SframeError::CounterExhausted)
            );
        }
        assert_eq!(out, before);
        assert_eq!(
            parse_and_open(&SenderKey::derive(MAX_KID, b"k"), &[], &before),
            Ok(vec![7; 60])
        );
    }

    #[test]
    fn open_refuses_a_key_for_another_kid_and_a_header_not_the_frames() {
        let mut sealer = Sealer::starting_at(SenderKey::derive(9, b"k"), 300);
        let mut frame = Vec::new();
        sealer.seal(&[], b"hello", &mut frame).unwrap();
        let (header, header_len) = Header::parse(&frame).unwrap();
        let mut out = b"kept".to_vec();

        let other_kid = SenderKey::derive(10, b"k");
        assert_eq!(
            open(&other_kid, &header, header_len, &[], &frame, &mut out),
            Err(SframeError::WrongKey {
                frame_kid: 9,
                key_kid: 10
            })
        );
        let key = SenderKey::derive(9, b"k");
        let other_ctr = Header { ctr: 301, ..header };
        assert_eq!(
            open(&key, &other_ctr, header_len, &[], &frame, &mut out),
            Err(SframeError::HeaderMismatch)
        );
        assert_eq!(
            open(&key, &header, header_len + 1, &[], &frame, &mut out),
            Err(SframeError::HeaderMismatch)
        );
        assert_eq!(
            open(&key, &header, frame.len() + 1, &[], &frame, &mut out),
            Err(SframeError::Truncated)
        );
        assert_eq!(out, b"kept");
        open(&key, &header, header_len, &[], &frame, &mut out).unwrap();
        assert_eq!(out, b"kepthello");
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = SenderKey::derive(5, b"secret base key");
        assert_eq!(format!("{key:?}"), "SenderKey { kid: 5, .. }");
    }

    #[test]
    fn replay_window_accepts_in_order_counters_once() {
        let mut window = ReplayWindow::new();
        for ctr in 0..200 {
            assert!(window.check(ctr));
            window.mark(ctr);
            assert!(!window.check(ctr));
            assert_eq!(window.ensure_fresh(ctr), Err(SframeError::Replayed(ctr)));
        }
        // Within the window, each was seen; beyond it, too old to tell.
        for ctr in 0..200 {
            assert!(!window.check(ctr), "counter {ctr}");
        }
        assert!(window.check(200));
    }

    #[test]
    fn replay_window_takes_late_frames_within_64_and_refuses_older_ones() {
        let mut window = ReplayWindow::new();
        window.mark(100);
        assert!(window.check(99));
        assert!(
            window.check(37),
            "63 behind the highest is inside the window"
        );
        assert!(!window.check(36), "64 behind is outside");
        assert!(!window.check(0));
        window.mark(99);
        window.mark(37);
        assert!(!window.check(99));
        assert!(!window.check(37));
        assert!(window.check(98));
        // A jump forward slides the window: 37 falls out, 99 and 100 stay remembered.
        window.mark(110);
        assert!(window.check(101));
        assert!(window.check(105));
        assert!(!window.check(100));
        assert!(!window.check(99));
        assert!(!window.check(46), "now 64 behind");
        // A jump past the whole window forgets everything before it.
        window.mark(1000);
        assert!(!window.check(110));
        assert!(window.check(999));
        assert!(window.check(937));
        assert!(!window.check(936));
    }

    #[test]
    fn replay_window_copes_with_the_ends_of_the_counter_range() {
        let mut window = ReplayWindow::new();
        assert!(window.check(0));
        assert!(window.check(u64::MAX));
        window.mark(u64::MAX);
        assert!(!window.check(u64::MAX));
        assert!(window.check(u64::MAX - 63));
        assert!(!window.check(0));
        // A window never marked is not the same as one that marked counter 0.
        let mut window = ReplayWindow::new();
        window.mark(0);
        assert!(!window.check(0));
        assert!(window.check(1));
    }

    fn any_key_material() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..48)
    }

    proptest! {
        #[test]
        fn seal_then_open_gives_back_the_plaintext(
            kid in any::<u64>(),
            ctr in 0..=MAX_CTR,
            base_key in any_key_material(),
            metadata in prop::collection::vec(any::<u8>(), 0..40),
            plaintext in prop::collection::vec(any::<u8>(), 0..300),
            prefix in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut sealer = Sealer::starting_at(SenderKey::derive(kid, &base_key), ctr);
            let mut out = prefix.clone();
            sealer.seal(&metadata, &plaintext, &mut out).unwrap();
            let frame = &out[prefix.len()..];
            let (header, header_len) = Header::parse(frame).unwrap();
            prop_assert_eq!(header, Header { kid, ctr });
            prop_assert_eq!(frame.len(), header_len + plaintext.len() + TAG_LEN);
            if kid <= MAX_KID {
                prop_assert!(frame.len() <= plaintext.len() + MAX_OVERHEAD);
            }

            let key = SenderKey::derive(kid, &base_key);
            let mut opened = prefix.clone();
            open(&key, &header, header_len, &metadata, frame, &mut opened).unwrap();
            prop_assert_eq!(&opened[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&opened[prefix.len()..], &plaintext[..]);
        }

        #[test]
        fn any_header_encodes_and_parses_back(kid in any::<u64>(), ctr in any::<u64>()) {
            let header = Header { kid, ctr };
            let mut bytes = Vec::new();
            header.encode(&mut bytes);
            prop_assert_eq!(bytes.len(), header.encoded_len());
            prop_assert_eq!(Header::parse(&bytes), Ok((header, bytes.len())));
        }

        #[test]
        fn flipping_any_bit_of_the_frame_or_metadata_fails(
            kid in any::<u64>(),
            ctr in 0..=MAX_CTR,
            metadata in prop::collection::vec(any::<u8>(), 1..16),
            plaintext in prop::collection::vec(any::<u8>(), 0..80),
            flip in any::<prop::sample::Index>(),
            in_metadata in any::<bool>(),
        ) {
            let mut sealer = Sealer::starting_at(SenderKey::derive(kid, b"base"), ctr);
            let mut frame = Vec::new();
            sealer.seal(&metadata, &plaintext, &mut frame).unwrap();
            let key = SenderKey::derive(kid, b"base");
            let (mut frame, mut metadata) = (frame, metadata);
            let target = if in_metadata { &mut metadata } else { &mut frame };
            let bit = flip.index(target.len() * 8);
            target[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(parse_and_open(&key, &metadata, &frame).is_err());
        }

        #[test]
        fn a_truncated_frame_fails(
            kid in any::<u64>(),
            plaintext in prop::collection::vec(any::<u8>(), 0..80),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut sealer = Sealer::new(SenderKey::derive(kid, b"base"));
            let mut frame = Vec::new();
            sealer.seal(&[], &plaintext, &mut frame).unwrap();
            let key = SenderKey::derive(kid, b"base");
            let kept = cut.index(frame.len());
            prop_assert!(parse_and_open(&key, &[], &frame[..kept]).is_err());
        }

        #[test]
        fn another_base_key_fails(
            kid in any::<u64>(),
            ctr in 0..=MAX_CTR,
            sender_base in any_key_material(),
            receiver_base in any_key_material(),
            plaintext in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            prop_assume!(sender_base != receiver_base);
            let mut sealer = Sealer::starting_at(SenderKey::derive(kid, &sender_base), ctr);
            let mut frame = Vec::new();
            sealer.seal(&[], &plaintext, &mut frame).unwrap();
            let key = SenderKey::derive(kid, &receiver_base);
            prop_assert_eq!(parse_and_open(&key, &[], &frame), Err(SframeError::Decrypt));
        }

        #[test]
        fn arbitrary_bytes_never_open_and_never_panic(
            kid in 0..16u64,
            bytes in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let key = SenderKey::derive(kid, b"base");
            let mut out = b"kept".to_vec();
            if let Ok((header, header_len)) = Header::parse(&bytes) {
                prop_assert!(open(&key, &header, header_len, &[], &bytes, &mut out).is_err());
            }
            prop_assert_eq!(out, b"kept".to_vec());
        }

        #[test]
        fn replay_window_matches_a_model_that_remembers_everything(
            ctrs in prop::collection::vec(0..300u64, 1..200),
        ) {
            let mut window = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            for ctr in ctrs {
                let highest = seen.last().copied();
                let fresh = !seen.contains(&ctr)
                    && highest.is_none_or(|h| ctr + ReplayWindow::SIZE > h);
                prop_assert_eq!(window.check(ctr), fresh, "counter {}", ctr);
                if fresh {
                    window.mark(ctr);
                    seen.insert(ctr);
                }
            }
        }
    }
}
