//! Random tokens and constant-time comparison: OAuth state tokens, webhook
//! endpoint tokens, and checking a presented secret against the stored one.
//! Pure Rust, no pgrx.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::core::crypto::{random_bytes, CryptoError};

/// A new token of 256 random bits, URL-safe base64 without padding (43
/// characters).
pub fn new_token() -> Result<String, CryptoError> {
    let mut raw = [0u8; 32];
    random_bytes(&mut raw)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// SHA-256 of a token: what is stored in its place. A plain hash suits
/// high-entropy tokens: 256 random bits cannot be guessed from their hash.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `a` equals `b`, in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn hashes_are_sha256() {
        assert_eq!(
            hex::encode(token_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn comparison() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret1"));
        assert!(ct_eq(b"", b""));
    }
}
