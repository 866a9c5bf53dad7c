//! Who is calling: the `X-API-Key` header against the root key, user tokens
//! (`cdbk_…`), and the credentials a request acts with.
//!
//! # User tokens
//!
//! `cdbk_1_` followed by unpadded base64url of 64 bytes: the user id (16),
//! the user's key-encryption key (32) and a tag (16), the first half of
//! HMAC-SHA256 under `SHA-256("vecseal/server/user-token/v1" ‖ root key)`
//! over `"1" ‖ user id ‖ key`. The server stores no token and no user key:
//! a token carries the key that opens the user's wraps in the index's
//! keyring, and the tag proves this server's root key issued it. Revoking a
//! user deletes the wraps, so the token opens nothing on the next request.
//! The root key and tags are compared in constant time.

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vecseal::{Credentials, SecretKey, UserId};
use zeroize::Zeroizing;

use crate::error::ApiError;

const TOKEN_PREFIX: &str = "cdbk_1_";
const TAG_LEN: usize = 16;
const TOKEN_BYTES: usize = 16 + 32 + TAG_LEN;

/// The service's root key, if authentication is on.
pub(crate) struct Auth {
    /// SHA-256 of the root key (compared in constant time, whatever its length).
    root_digest: Option<[u8; 32]>,
    /// The key of user-token tags, derived from the root key.
    token_key: Option<Zeroizing<[u8; 32]>>,
}

/// The class of a caller.
pub(crate) enum Caller {
    /// Authentication is off: admin rights, but not user management.
    Open,
    /// The root key.
    Root,
    /// An RBAC user, from a token.
    User {
        id: UserId,
        kek: Zeroizing<[u8; 32]>,
    },
}

impl Auth {
    pub(crate) fn new(root_key: Option<&str>) -> Self {
        match root_key.filter(|k| !k.is_empty()) {
            None => Self {
                root_digest: None,
                token_key: None,
            },
            Some(k) => {
                let mut h = Sha256::new();
                h.update(b"vecseal/server/user-token/v1");
                h.update(k.as_bytes());
                Self {
                    root_digest: Some(Sha256::digest(k.as_bytes()).into()),
                    token_key: Some(Zeroizing::new(h.finalize().into())),
                }
            }
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.root_digest.is_some()
    }

    /// Classifies the caller of a request by its `X-API-Key` header.
    pub(crate) fn classify(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(root) = &self.root_digest else {
            return Ok(Caller::Open);
        };
        let given = headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if given.is_empty() {
            return Err(ApiError::unauthorized("API Key is required"));
        }
        let digest: [u8; 32] = Sha256::digest(given).into();
        if bool::from(digest.ct_eq(root)) {
            return Ok(Caller::Root);
        }
        if given.starts_with(b"cdbk_") {
            return self
                .verify_token(given)
                .ok_or_else(|| ApiError::unauthorized("Invalid user API key"));
        }
        Err(ApiError::unauthorized("Invalid API Key"))
    }

    fn tag(&self, id: &[u8; 16], kek: &[u8; 32]) -> Option<Hmac<Sha256>> {
        let key = self.token_key.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key[..]).ok()?;
        mac.update(b"1");
        mac.update(id);
        mac.update(kek);
        Some(mac)
    }

    fn verify_token(&self, token: &[u8]) -> Option<Caller> {
        let body = token.strip_prefix(TOKEN_PREFIX.as_bytes())?;
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).ok()?);
        if bytes.len() != TOKEN_BYTES {
            return None;
        }
        let id: [u8; 16] = bytes[..16].try_into().ok()?;
        let mut kek = Zeroizing::new([0u8; 32]);
        kek.copy_from_slice(&bytes[16..48]);
        self.tag(&id, &kek)?
            .verify_truncated_left(&bytes[48..])
            .ok()?;
        Some(Caller::User {
            id: UserId(id),
            kek,
        })
    }

    /// A token for a new user: its id, its key, and the token carrying both.
    /// `None` when authentication is off (no root key to sign with).
    pub(crate) fn new_user(&self) -> Result<Option<(UserId, SecretKey, String)>, ApiError> {
        if self.token_key.is_none() {
            return Ok(None);
        }
        let mut raw = Zeroizing::new([0u8; 48]);
        getrandom::getrandom(&mut raw[..])
            .map_err(|_| ApiError::internal("the system random generator failed"))?;
        let id: [u8; 16] = raw[..16].try_into().expect("16 bytes");
        let mut kek = Zeroizing::new([0u8; 32]);
        kek.copy_from_slice(&raw[16..]);
        let tag = self
            .tag(&id, &kek)
            .ok_or_else(|| ApiError::internal("no token key"))?
            .finalize()
            .into_bytes();
        let mut bytes = Zeroizing::new(Vec::with_capacity(TOKEN_BYTES));
        bytes.extend_from_slice(&raw[..]);
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes[..]));
        let key = SecretKey::from_bytes(&kek[..])
            .map_err(|_| ApiError::internal("a 32-byte key was refused"))?;
        Ok(Some((UserId(id), key, token)))
    }
}

impl Caller {
    pub(crate) fn is_user(&self) -> bool {
        matches!(self, Caller::User { .. })
    }

    /// The credentials a request on index `name` acts with: a user's own, or
    /// the owner's from the request's `index_key` (64 hex characters).
    pub(crate) fn credentials(
        &self,
        name: &str,
        index_key: Option<&str>,
    ) -> Result<Credentials, ApiError> {
        match self {
            Caller::User { id, kek } => {
                let key = SecretKey::from_bytes(&kek[..])
                    .map_err(|_| ApiError::internal("a 32-byte key was refused"))?;
                Ok(Credentials::user(*id, key))
            }
            Caller::Open | Caller::Root => owner_credentials(name, index_key),
        }
    }

    /// A digest, keyed by `salt`, of the key this caller acts with on an
    /// index (a user's own key, or the request's `index_key`): equal for
    /// the same key and caller kind, and saying nothing about the key
    /// without `salt`. `None` without a usable `index_key`.
    pub(crate) fn fingerprint(&self, salt: &[u8; 32], index_key: Option<&str>) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(salt).ok()?;
        match self {
            Caller::User { id, kek } => {
                mac.update(b"user");
                mac.update(id.to_string().as_bytes());
                mac.update(&kek[..]);
            }
            Caller::Open | Caller::Root => {
                let bytes = Zeroizing::new(hex::decode(index_key?).ok()?);
                mac.update(b"owner");
                mac.update(&bytes);
            }
        }
        Some(mac.finalize().into_bytes().into())
    }
}

/// Owner credentials from a hex `index_key`; absent or empty is 401.
pub(crate) fn owner_credentials(
    name: &str,
    index_key: Option<&str>,
) -> Result<Credentials, ApiError> {
    let Some(hex_key) = index_key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::unauthorized(format!(
            "index {name:?} needs its index_key (64 hex characters) on every request"
        )));
    };
    let bytes = Zeroizing::new(
        hex::decode(hex_key)
            .map_err(|_| ApiError::bad_request("Invalid hex string for encryption key"))?,
    );
    if bytes.len() != 32 {
        return Err(ApiError::bad_request(format!(
            "index_key must be 32 bytes (hex-encoded); got {} bytes",
            bytes.len()
        )));
    }
    Credentials::owner_from_bytes(&bytes)
        .map_err(|_| ApiError::bad_request("index_key must be 32 bytes (hex-encoded)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn tokens_verify_only_under_the_root_key_that_issued_them() {
        let auth = Auth::new(Some("root-secret"));
        let (id, _, token) = auth.new_user().unwrap().unwrap();
        assert!(token.starts_with("cdbk_1_"));
        match auth.classify(&headers(&token)).unwrap() {
            Caller::User { id: got, .. } => assert_eq!(got, id),
            _ => panic!("a valid token is a user"),
        }
        let other = Auth::new(Some("another-root"));
        let e = other.classify(&headers(&token)).err().unwrap();
        assert_eq!(e.status.as_u16(), 401);
        // Any change to the token fails.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 5;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(
            auth.classify(&headers(&bad)).err().unwrap().detail,
            "Invalid user API key"
        );
    }

    #[test]
    fn callers_are_classified_as_the_protocol_says() {
        let auth = Auth::new(Some("root-secret"));
        assert!(matches!(
            auth.classify(&headers("root-secret")).unwrap(),
            Caller::Root
        ));
        assert_eq!(
            auth.classify(&HeaderMap::new()).err().unwrap().detail,
            "API Key is required"
        );
        assert_eq!(
            auth.classify(&headers("root-secreT")).err().unwrap().detail,
            "Invalid API Key"
        );
        let open = Auth::new(None);
        assert!(matches!(
            open.classify(&headers("anything")).unwrap(),
            Caller::Open
        ));
        assert!(open.new_user().unwrap().is_none());
    }

    #[test]
    fn index_keys_are_checked_for_presence_hex_and_length() {
        let e = owner_credentials("a", None).err().unwrap();
        assert_eq!(e.status.as_u16(), 401);
        let e = owner_credentials("a", Some("")).err().unwrap();
        assert_eq!(e.status.as_u16(), 401);
        let e = owner_credentials("a", Some("zz")).err().unwrap();
        assert_eq!(e.detail, "Invalid hex string for encryption key");
        let e = owner_credentials("a", Some("00ff")).err().unwrap();
        assert_eq!(
            e.detail,
            "index_key must be 32 bytes (hex-encoded); got 2 bytes"
        );
        assert!(owner_credentials("a", Some(&"ab".repeat(32))).is_ok());
    }
}
