//! AEAD envelopes, secret keys, key derivation and keyed blinding for vecseal.
//!
//! This crate is the only place in vecseal that touches a cipher or creates a
//! nonce. It knows nothing of vectors, indexes or storage: it turns
//! `(key, associated data, plaintext)` into a self-describing sealed value and
//! back.
//!
//! # Sealed value format
//!
//! ```text
//! +---------+-------+-------------------+------------------------+
//! | version | suite | nonce (12 or 24)  | ciphertext || tag (16) |
//! +---------+-------+-------------------+------------------------+
//! ```
//!
//! The format version (currently [`FORMAT_VERSION`]) and the [`Suite`] id are
//! in every value, so data sealed under an older default stays readable when
//! the default changes. Both header bytes are also bound into the AEAD's
//! associated data, so they cannot be altered without detection.
//!
//! # Implementations
//!
//! AES-256-GCM is ring's (assembly with AES-NI/VAES and CLMUL/VPCLMULQDQ,
//! chosen at run time); XChaCha20-Poly1305 is RustCrypto's. [`SecretKey`]
//! bytes are zeroized on drop; ring's expanded AES key schedule inside a
//! [`Sealer`] is not (ring offers no zeroizing drop), so drop sealers when a
//! key is retired and keep process memory out of reach (no swap, no core
//! dumps) in high-assurance deployments.
//!
//! # Without copies
//!
//! [`Sealer::seal`] and [`Sealer::open`] copy the value into a new buffer.
//! For large values [`Sealer::seal_vec`] seals a plaintext written after
//! [`Sealer::prefix_len`] bytes of room where it is, and
//! [`Sealer::open_in_place`] opens inside the sealed value: the index writes
//! a vector block's plaintext once and seals it there.
//!
//! # Nonce policy
//!
//! Every nonce is drawn from the operating system's CSPRNG at seal time; no
//! counter state is kept on disk, so restarts and concurrent writers are safe.
//!
//! * [`Suite::Aes256Gcm`] uses 96-bit random nonces. NIST SP 800-38D bounds the
//!   number of messages under one key with random nonces to 2³², which keeps
//!   the collision probability below 2⁻³². A [`Sealer`] counts its seals and
//!   refuses with [`Error::KeyExhausted`] past [`AES_GCM_MESSAGE_LIMIT`];
//!   callers rotate the data key (vecseal derives a key per purpose, and the
//!   bound is far above the number of records a single index writes between
//!   key rotations).
//! * [`Suite::XChaCha20Poly1305`] uses 192-bit random nonces, for which random
//!   collisions are negligible (2⁻⁹⁶ after 2⁴⁸ messages); its documented bound
//!   is [`XCHACHA_MESSAGE_LIMIT`] messages per key.
//!
//! # Example
//!
//! ```
//! use vecseal_envelope::{SecretKey, Sealer, Suite};
//!
//! let key = SecretKey::generate()?;
//! let sealer = Sealer::new(&key, Suite::Aes256Gcm);
//! let sealed = sealer.seal(b"index-1/item/42", b"hello")?;
//! assert_eq!(sealer.open(b"index-1/item/42", &sealed)?, b"hello");
//! // The same ciphertext under other associated data does not open.
//! assert!(sealer.open(b"index-1/item/43", &sealed).is_err());
//! # Ok::<(), vecseal_envelope::Error>(())
//! ```
#![deny(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag as XTag, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce as AesNonce, UnboundKey, AES_256_GCM};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The version byte written at the start of every sealed value.
pub const FORMAT_VERSION: u8 = 1;
/// Length of every secret key, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the authentication tag of both suites, in bytes.
pub const TAG_LEN: usize = 16;
/// Maximum number of values one [`Sealer`] seals under AES-256-GCM (2³²).
pub const AES_GCM_MESSAGE_LIMIT: u64 = 1 << 32;
/// Maximum number of values one [`Sealer`] seals under XChaCha20-Poly1305 (2⁴⁸).
pub const XCHACHA_MESSAGE_LIMIT: u64 = 1 << 48;
/// Length of a blinded name, in bytes.
pub const BLIND_LEN: usize = 32;

const HEADER_LEN: usize = 2;

/// Errors of the envelope layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A key was given with the wrong number of bytes.
    #[error("a key must be exactly {expected} bytes, got {got}")]
    InvalidKeyLength {
        /// The number of bytes supplied.
        got: usize,
        /// The required number of bytes (32).
        expected: usize,
    },
    /// A sealed value is shorter than its header, nonce and tag.
    #[error("sealed value is truncated: {len} bytes, at least {min} needed")]
    Truncated {
        /// Length of the value given.
        len: usize,
        /// Smallest possible length of a sealed value of its suite.
        min: usize,
    },
    /// A sealed value names a format version this build does not know.
    #[error("unsupported envelope format version {0}, expected {FORMAT_VERSION}")]
    UnsupportedVersion(u8),
    /// A sealed value or configuration names an unknown cipher suite.
    #[error("unknown cipher suite id {0}, expected 1 (AES-256-GCM) or 2 (XChaCha20-Poly1305)")]
    UnknownSuite(u8),
    /// A cipher suite named by text that names none.
    #[error("unknown cipher {0:?}: expected aes-256-gcm or chacha20-poly1305")]
    UnknownSuiteName(String),
    /// The value failed authentication: wrong key, wrong associated data or a
    /// modified ciphertext. Deliberately says nothing more.
    #[error("authentication failed: wrong key, or the value was modified or moved")]
    Authentication,
    /// The key has sealed as many values as its suite's nonce policy allows.
    #[error("key exhausted: {limit} values sealed under one key; rotate the key")]
    KeyExhausted {
        /// The per-key message bound of the suite.
        limit: u64,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Rng,
    /// A buffer given to [`Sealer::seal_vec`] is shorter than the room it
    /// must leave in front of its plaintext.
    #[error("a buffer to seal in place holds {len} bytes, fewer than the {prefix} the header and nonce take before the plaintext")]
    NoRoomForHeader {
        /// Length of the buffer given.
        len: usize,
        /// [`Sealer::prefix_len`].
        prefix: usize,
    },
}

/// A 32-byte secret key.
///
/// It cannot be printed, cloned or compared with `==`: it is zeroized on drop
/// and compared in constant time with [`SecretKey::ct_eq`].
///
/// ```compile_fail
/// let key = vecseal_envelope::SecretKey::generate().unwrap();
/// println!("{:?}", key); // SecretKey does not implement Debug.
/// ```
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Draws a fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::getrandom(&mut bytes).map_err(|_| Error::Rng)?;
        Ok(Self(bytes))
    }

    /// Takes a key from exactly 32 bytes; any other length is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| Error::InvalidKeyLength {
            got: bytes.len(),
            expected: KEY_LEN,
        })?;
        Ok(Self(arr))
    }

    /// The raw key bytes. Handle with care: do not log or persist them unsealed.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Constant-time equality of two keys.
    pub fn ct_eq(&self, other: &SecretKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Derives a purpose-bound sub-key with HKDF-SHA256.
    ///
    /// `purpose` names what the key is for (for instance `"vectors"`), and
    /// `context` binds it further (for instance to an index id). Distinct
    /// `(purpose, context)` pairs give independent keys, so no key serves two
    /// purposes.
    pub fn derive(&self, purpose: &str, context: &[u8]) -> SecretKey {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"vecseal/hkdf/v1"), &self.0);
        let mut info = Vec::with_capacity(purpose.len() + context.len() + 4);
        info.extend_from_slice(&(purpose.len() as u32).to_be_bytes());
        info.extend_from_slice(purpose.as_bytes());
        info.extend_from_slice(context);
        let mut out = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's 255 * 32 byte output limit.
        #[allow(clippy::expect_used)]
        hk.expand(&info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let key = SecretKey(out);
        out.zeroize();
        key
    }
}

/// The AEAD used to seal values. Chosen per index and recorded in every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM with 96-bit random nonces (hardware accelerated where the
    /// CPU has AES-NI and CLMUL, detected at run time).
    #[default]
    Aes256Gcm,
    /// XChaCha20-Poly1305 with 192-bit random nonces.
    XChaCha20Poly1305,
}

impl Suite {
    /// The id byte written into sealed values.
    pub fn id(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 1,
            Suite::XChaCha20Poly1305 => 2,
        }
    }

    /// The suite with the given id byte.
    pub fn from_id(id: u8) -> Result<Self, Error> {
        match id {
            1 => Ok(Suite::Aes256Gcm),
            2 => Ok(Suite::XChaCha20Poly1305),
            other => Err(Error::UnknownSuite(other)),
        }
    }

    /// Nonce length in bytes.
    pub fn nonce_len(self) -> usize {
        match self {
            Suite::Aes256Gcm => 12,
            Suite::XChaCha20Poly1305 => 24,
        }
    }

    /// The per-key message bound of this suite under the random-nonce policy.
    pub fn message_limit(self) -> u64 {
        match self {
            Suite::Aes256Gcm => AES_GCM_MESSAGE_LIMIT,
            Suite::XChaCha20Poly1305 => XCHACHA_MESSAGE_LIMIT,
        }
    }

    /// Bytes a sealed value adds to its plaintext.
    pub fn overhead(self) -> usize {
        HEADER_LEN + self.nonce_len() + TAG_LEN
    }

    /// The stable name of the suite (`aes-256-gcm`, `chacha20-poly1305`).
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes-256-gcm",
            Suite::XChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Suite {
    type Err = Error;

    /// `aes-256-gcm`, or `chacha20-poly1305` (also `xchacha20-poly1305`).
    ///
    /// # Errors
    /// [`Error::UnknownSuiteName`] for any other name.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "aes-256-gcm" => Ok(Suite::Aes256Gcm),
            "chacha20-poly1305" | "xchacha20-poly1305" => Ok(Suite::XChaCha20Poly1305),
            other => Err(Error::UnknownSuiteName(other.to_owned())),
        }
    }
}

/// Seals and opens values under one key.
///
/// A `Sealer` holds the expanded key schedules of both suites (so it can open
/// values of either suite) and seals new values with the suite it was made
/// with. It is `Send + Sync`; share it behind an `Arc` for parallel use.
pub struct Sealer {
    suite: Suite,
    aes: LessSafeKey,
    xchacha: XChaCha20Poly1305,
    sealed: AtomicU64,
}

impl Sealer {
    /// A sealer for `key` that seals with `suite`.
    pub fn new(key: &SecretKey, suite: Suite) -> Self {
        Self {
            suite,
            // ring refuses only keys of the wrong length; a SecretKey is 32 bytes.
            aes: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key.0.as_slice())
                    .expect("a 32-byte key is an AES-256 key"),
            ),
            xchacha: XChaCha20Poly1305::new(key.0.as_slice().into()),
            sealed: AtomicU64::new(0),
        }
    }

    /// The suite new values are sealed with.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Seals `plaintext`, binding it to `aad`.
    ///
    /// The result opens only with the same key and the same `aad`; any change
    /// to the value or the associated data makes [`Sealer::open`] fail with
    /// [`Error::Authentication`]. Confidentiality covers the plaintext but not
    /// its length.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal_vec(aad, self.with_prefix(plaintext))
    }

    /// The bytes in front of the plaintext in a value this sealer seals
    /// (format version, suite and nonce): the room [`Sealer::seal_vec`]
    /// expects at the start of its buffer.
    pub fn prefix_len(&self) -> usize {
        HEADER_LEN + self.suite.nonce_len()
    }

    /// Like [`Sealer::seal`], but seals the plaintext `buf[prefix_len()..]`
    /// where it is, with no copy: the first [`Sealer::prefix_len`] bytes
    /// (whatever they hold) become the header and nonce, and the tag is
    /// appended (without moving the buffer when it has [`TAG_LEN`] bytes of
    /// spare capacity). The result is a value as `seal` makes it.
    ///
    /// # Errors
    /// As [`Sealer::seal`], and [`Error::NoRoomForHeader`] when `buf` is
    /// shorter than the prefix.
    pub fn seal_vec(&self, aad: &[u8], buf: Vec<u8>) -> Result<Vec<u8>, Error> {
        let prefix = self.prefix_len();
        if buf.len() < prefix {
            return Err(Error::NoRoomForHeader {
                len: buf.len(),
                prefix,
            });
        }
        let count = self.sealed.fetch_add(1, Ordering::Relaxed);
        let limit = self.suite.message_limit();
        if count >= limit {
            return Err(Error::KeyExhausted { limit });
        }
        let mut nonce = [0u8; 24];
        let nonce = &mut nonce[..self.suite.nonce_len()];
        getrandom::getrandom(nonce).map_err(|_| Error::Rng)?;
        self.seal_vec_with_nonce(nonce, aad, buf)
    }

    /// `plaintext` after [`Sealer::prefix_len`] zero bytes, with room for
    /// the tag.
    fn with_prefix(&self, plaintext: &[u8]) -> Vec<u8> {
        let prefix = self.prefix_len();
        let mut buf = Vec::with_capacity(prefix + plaintext.len() + TAG_LEN);
        buf.resize(prefix, 0);
        buf.extend_from_slice(plaintext);
        buf
    }

    /// [`Sealer::seal_vec`] with `nonce` (of the suite's length, and
    /// `buf` at least the prefix long: both checked by the callers).
    fn seal_vec_with_nonce(
        &self,
        nonce: &[u8],
        aad: &[u8],
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let header = [FORMAT_VERSION, self.suite.id()];
        let full_aad = bind_header(&header, aad);
        let body = HEADER_LEN + nonce.len();
        buf[..HEADER_LEN].copy_from_slice(&header);
        buf[HEADER_LEN..body].copy_from_slice(nonce);
        let tag = self.seal_in_place(self.suite, nonce, &full_aad, &mut buf[body..])?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// Opens a value sealed by [`Sealer::seal`] with the same key and `aad`.
    ///
    /// Malformed input (too short, unknown version or suite) is reported as
    /// such; every other failure is the single opaque [`Error::Authentication`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let suite = check_header(sealed)?;
        let (nonce, ct) = sealed[HEADER_LEN..].split_at(suite.nonce_len());
        let full_aad = bind_header(&sealed[..HEADER_LEN], aad);
        let mut buf = ct.to_vec();
        let len = self.open_body(suite, nonce, &full_aad, &mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Like [`Sealer::open`], but decrypts inside `sealed` (no copy) and
    /// returns the plaintext, a part of that buffer. On any error the buffer's
    /// contents are unspecified.
    pub fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Result<&'a [u8], Error> {
        let suite = check_header(sealed)?;
        let full_aad = bind_header(&sealed[..HEADER_LEN], aad);
        let (head, body) = sealed.split_at_mut(HEADER_LEN + suite.nonce_len());
        let len = self.open_body(suite, &head[HEADER_LEN..], &full_aad, body)?;
        Ok(&body[..len])
    }

    /// The bare AEAD: encrypts `buf` in place and returns the tag.
    fn seal_in_place(
        &self,
        suite: Suite,
        nonce: &[u8],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let mut out = [0u8; TAG_LEN];
        match suite {
            Suite::Aes256Gcm => {
                let nonce = aes_nonce(nonce)?;
                let tag = self
                    .aes
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
                    .map_err(|_| Error::Authentication)?;
                out.copy_from_slice(tag.as_ref());
            }
            Suite::XChaCha20Poly1305 => {
                let tag = self
                    .xchacha
                    .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf)
                    .map_err(|_| Error::Authentication)?;
                out.copy_from_slice(&tag);
            }
        }
        Ok(out)
    }

    /// The bare AEAD inverse: `body` is `ciphertext ‖ tag` (at least
    /// `TAG_LEN` bytes); decrypts in place and returns the plaintext length
    /// (the plaintext is `body[..len]`).
    fn open_body(
        &self,
        suite: Suite,
        nonce: &[u8],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<usize, Error> {
        let len = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::Authentication)?;
        match suite {
            Suite::Aes256Gcm => {
                self.aes
                    .open_in_place(aes_nonce(nonce)?, Aad::from(aad), body)
                    .map_err(|_| Error::Authentication)?;
            }
            Suite::XChaCha20Poly1305 => {
                let (ct, tag) = body.split_at_mut(len);
                self.xchacha
                    .decrypt_in_place_detached(
                        XNonce::from_slice(nonce),
                        aad,
                        ct,
                        XTag::from_slice(tag),
                    )
                    .map_err(|_| Error::Authentication)?;
            }
        }
        Ok(len)
    }
}

/// A 96-bit AES-GCM nonce (the length is the suite's; a wrong one is the
/// opaque error, never a panic).
fn aes_nonce(nonce: &[u8]) -> Result<AesNonce, Error> {
    AesNonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Authentication)
}

/// Checks a sealed value's length, version and suite (malformed input is
/// reported as such, before any authentication).
fn check_header(sealed: &[u8]) -> Result<Suite, Error> {
    if sealed.len() < HEADER_LEN {
        return Err(Error::Truncated {
            len: sealed.len(),
            min: HEADER_LEN + 12 + TAG_LEN,
        });
    }
    if sealed[0] != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion(sealed[0]));
    }
    let suite = Suite::from_id(sealed[1])?;
    let min = suite.overhead();
    if sealed.len() < min {
        return Err(Error::Truncated {
            len: sealed.len(),
            min,
        });
    }
    Ok(suite)
}

fn bind_header(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(header.len() + aad.len());
    full.extend_from_slice(header);
    full.extend_from_slice(aad);
    full
}

/// Keyed blinding of names with HMAC-SHA256.
///
/// A blinded name is a deterministic pseudorandom function of the name under
/// the key: equal names blind to equal values (so they can be used as storage
/// keys), and without the key nothing about the name can be learned or
/// guessed, even for low-entropy names such as `"0"`, `"1"`, ….
pub struct Blinder {
    mac: Hmac<Sha256>,
}

impl Blinder {
    /// A blinder keyed with `key` (derive a dedicated key for it).
    pub fn new(key: &SecretKey) -> Self {
        #[allow(clippy::expect_used)]
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC accepts keys of any length");
        Self { mac }
    }

    /// Blinds `name` within a `domain` (for instance `b"item"`), so the same
    /// name in two domains blinds to unrelated values.
    pub fn blind(&self, domain: &[u8], name: &[u8]) -> [u8; BLIND_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&(domain.len() as u32).to_be_bytes());
        mac.update(domain);
        mac.update(name);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(b: u8) -> SecretKey {
        SecretKey([b; 32])
    }

    #[test]
    fn suite_names_parse_and_others_are_typed_errors() {
        assert_eq!("aes-256-gcm".parse::<Suite>().ok(), Some(Suite::Aes256Gcm));
        assert_eq!(
            "xchacha20-poly1305".parse::<Suite>().ok(),
            Some(Suite::XChaCha20Poly1305)
        );
        assert!(matches!(
            "rot13".parse::<Suite>(),
            Err(Error::UnknownSuiteName(s)) if s == "rot13"
        ));
    }

    #[test]
    fn key_length_is_checked() {
        assert!(matches!(
            SecretKey::from_bytes(&[0u8; 31]),
            Err(Error::InvalidKeyLength {
                got: 31,
                expected: 32
            })
        ));
        assert!(matches!(
            SecretKey::from_bytes(&[0u8; 33]),
            Err(Error::InvalidKeyLength {
                got: 33,
                expected: 32
            })
        ));
        assert!(SecretKey::from_bytes(&[0u8; 32]).is_ok());
    }

    #[test]
    fn key_equality_is_by_value() {
        assert!(key(1).ct_eq(&key(1)));
        assert!(!key(1).ct_eq(&key(2)));
    }

    #[test]
    fn error_messages_never_carry_key_bytes() {
        let err = SecretKey::from_bytes(&[0xAB; 31])
            .err()
            .map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(msg.contains("32") && msg.contains("31"));
        assert!(!msg.to_lowercase().contains("ab"));
    }

    #[test]
    fn open_in_place_agrees_with_open_and_rejects_tampering() {
        for suite in [Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
            let s = Sealer::new(&key(4), suite);
            let sealed = s.seal(b"ad", b"in place please").unwrap_or_default();
            let mut buf = sealed.clone();
            let pt = s.open_in_place(b"ad", &mut buf).map(<[u8]>::to_vec);
            assert_eq!(pt.ok(), s.open(b"ad", &sealed).ok());
            assert_eq!(
                s.open(b"ad", &sealed).unwrap_or_default(),
                b"in place please"
            );
            let mut wrong_ad = sealed.clone();
            assert!(matches!(
                s.open_in_place(b"AD", &mut wrong_ad),
                Err(Error::Authentication)
            ));
            for i in 0..sealed.len() {
                let mut flipped = sealed.clone();
                flipped[i] ^= 0x01;
                assert!(
                    s.open_in_place(b"ad", &mut flipped).is_err(),
                    "{suite} byte {i}"
                );
            }
            assert!(matches!(
                s.open_in_place(b"ad", &mut [1u8, 1, 0][..]),
                Err(Error::Truncated { .. })
            ));
        }
    }

    /// AES-256-GCM test cases 13 and 14 of McGrew & Viega, "The Galois/Counter
    /// Mode of Operation" (also NIST's GCM test vectors).
    #[test]
    fn aes_gcm_known_answers() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/aead_kat.json")).unwrap_or_default();
        let cases = vectors["aes-256-gcm"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let xcases = vectors["xchacha20-poly1305"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !cases.is_empty() && !xcases.is_empty(),
            "test vectors missing"
        );
        for (suite, cases) in [
            (Suite::Aes256Gcm, cases),
            (Suite::XChaCha20Poly1305, xcases),
        ] {
            for case in cases {
                let h =
                    |f: &str| hex::decode(case[f].as_str().unwrap_or_default()).unwrap_or_default();
                let k = SecretKey::from_bytes(&h("key")).unwrap_or_else(|_| key(0));
                let s = Sealer::new(&k, suite);
                // The raw AEAD, without the envelope header, must match the vector.
                let mut ct = h("pt");
                let tag = s
                    .seal_in_place(suite, &h("nonce"), &h("aad"), &mut ct)
                    .unwrap_or_else(|e| panic!("{e}"));
                ct.extend_from_slice(&tag);
                let mut back = ct.clone();
                let len = s
                    .open_body(suite, &h("nonce"), &h("aad"), &mut back)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(back[..len], h("pt"));
                let mut expected = h("ct");
                expected.extend_from_slice(&h("tag"));
                assert_eq!(
                    hex::encode(&ct),
                    hex::encode(&expected),
                    "{suite} case {case}"
                );
                // And the envelope round-trips with that nonce.
                let sealed = s
                    .seal_vec_with_nonce(&h("nonce"), &h("aad"), s.with_prefix(&h("pt")))
                    .unwrap_or_default();
                assert_eq!(s.open(&h("aad"), &sealed), Ok(h("pt")));
                // Sealed where it is, the plaintext behind a prefix of any
                // bytes gives the same value.
                let mut buf = vec![0xA5; s.prefix_len()];
                buf.extend_from_slice(&h("pt"));
                let in_vec = s
                    .seal_vec_with_nonce(&h("nonce"), &h("aad"), buf)
                    .unwrap_or_default();
                assert_eq!(in_vec, sealed, "{suite} case {case}");
            }
        }
    }

    #[test]
    fn seal_vec_seals_where_the_plaintext_is() {
        for suite in [Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
            let s = Sealer::new(&key(5), suite);
            let plaintext = b"sealed in its own buffer";
            let mut buf = Vec::with_capacity(s.prefix_len() + plaintext.len() + TAG_LEN);
            buf.resize(s.prefix_len(), 0xFF);
            buf.extend_from_slice(plaintext);
            let at = buf.as_ptr();
            let sealed = s.seal_vec(b"aad", buf).expect("seals");
            assert_eq!(sealed.as_ptr(), at, "{suite}: the buffer was moved");
            assert_eq!(s.open(b"aad", &sealed), Ok(plaintext.to_vec()));
            // Only the prefix: an empty plaintext.
            let empty = s.seal_vec(b"", vec![0; s.prefix_len()]).expect("seals");
            assert_eq!(s.open(b"", &empty), Ok(Vec::new()));
            let short = s.prefix_len() - 1;
            assert!(matches!(
                s.seal_vec(b"", vec![0; short]),
                Err(Error::NoRoomForHeader { len, prefix }) if len == short && prefix == short + 1
            ));
        }
    }

    #[test]
    fn every_byte_flip_fails_to_open() {
        for suite in [Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
            let s = Sealer::new(&key(7), suite);
            let sealed = s.seal(b"aad", b"some plaintext").unwrap_or_default();
            for i in 0..sealed.len() {
                for bit in [0x01u8, 0x80] {
                    let mut t = sealed.clone();
                    t[i] ^= bit;
                    assert!(s.open(b"aad", &t).is_err(), "flip at {i} opened");
                }
            }
            assert!(matches!(
                s.open(b"aae", &sealed),
                Err(Error::Authentication)
            ));
            assert!(matches!(s.open(b"", &sealed), Err(Error::Authentication)));
        }
    }

    #[test]
    fn wrong_key_is_one_opaque_error() {
        let sealed = Sealer::new(&key(1), Suite::Aes256Gcm)
            .seal(b"a", b"x")
            .unwrap_or_default();
        assert!(matches!(
            Sealer::new(&key(2), Suite::Aes256Gcm).open(b"a", &sealed),
            Err(Error::Authentication)
        ));
    }

    #[test]
    fn malformed_values_are_reported() {
        let s = Sealer::new(&key(1), Suite::Aes256Gcm);
        assert!(matches!(s.open(b"", &[]), Err(Error::Truncated { .. })));
        assert!(matches!(
            s.open(b"", &[1, 1, 0, 0]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            s.open(b"", &[9, 1, 0, 0]),
            Err(Error::UnsupportedVersion(9))
        ));
        assert!(matches!(
            s.open(b"", &[1, 7, 0, 0]),
            Err(Error::UnknownSuite(7))
        ));
    }

    #[test]
    fn suites_open_each_others_values_with_the_same_key() {
        let a = Sealer::new(&key(3), Suite::Aes256Gcm);
        let x = Sealer::new(&key(3), Suite::XChaCha20Poly1305);
        let sealed = x.seal(b"a", b"old data").unwrap_or_default();
        assert_eq!(a.open(b"a", &sealed), Ok(b"old data".to_vec()));
    }

    #[test]
    fn a_million_seals_repeat_no_nonce() {
        let s = Sealer::new(&key(9), Suite::Aes256Gcm);
        let mut seen = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let sealed = s.seal(b"", b"").unwrap_or_default();
            let nonce: [u8; 12] = sealed[2..14].try_into().unwrap_or_default();
            assert!(seen.insert(nonce), "nonce repeated");
        }
    }

    #[test]
    fn exhausted_key_refuses_to_seal() {
        let s = Sealer::new(&key(9), Suite::Aes256Gcm);
        s.sealed.store(AES_GCM_MESSAGE_LIMIT, Ordering::Relaxed);
        assert!(matches!(s.seal(b"", b""), Err(Error::KeyExhausted { .. })));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_context() {
        let root = key(5);
        let a = root.derive("vectors", b"idx1");
        let b = root.derive("payloads", b"idx1");
        let c = root.derive("vectors", b"idx2");
        assert!(!a.ct_eq(&b) && !a.ct_eq(&c) && !b.ct_eq(&c));
        assert!(a.ct_eq(&root.derive("vectors", b"idx1")));
    }

    #[test]
    fn blinding_is_deterministic_and_domain_separated() {
        let b = Blinder::new(&key(4));
        assert_eq!(b.blind(b"item", b"1"), b.blind(b"item", b"1"));
        assert_ne!(b.blind(b"item", b"1"), b.blind(b"list", b"1"));
        assert_ne!(
            b.blind(b"item", b"1"),
            Blinder::new(&key(5)).blind(b"item", b"1")
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn round_trip(k in any::<[u8; 32]>(), aad in proptest::collection::vec(any::<u8>(), 0..64),
                          pt in proptest::collection::vec(any::<u8>(), 0..2048), chacha in any::<bool>()) {
                let suite = if chacha { Suite::XChaCha20Poly1305 } else { Suite::Aes256Gcm };
                let s = Sealer::new(&SecretKey(k), suite);
                let sealed = s.seal(&aad, &pt).unwrap_or_default();
                prop_assert_eq!(sealed.len(), pt.len() + suite.overhead());
                prop_assert_eq!(s.open(&aad, &sealed), Ok(pt));
            }

            #[test]
            fn truncation_never_opens(pt in proptest::collection::vec(any::<u8>(), 0..256), cut in 1usize..300) {
                let s = Sealer::new(&key(1), Suite::Aes256Gcm);
                let sealed = s.seal(b"a", &pt).unwrap_or_default();
                let keep = sealed.len().saturating_sub(cut);
                prop_assert!(s.open(b"a", &sealed[..keep]).is_err());
            }
        }
    }
}
