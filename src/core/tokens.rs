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

/// Whether `a` equals `b`, in constant time.
///
/// Both sides are hashed with SHA-256 and the two digests compared byte for
/// byte without an early exit, so neither where they differ nor whether their
/// lengths differ shows in the time taken: a presented value of the wrong
/// length costs the same as one of the right length. The time depends on each
/// side's length only through its number of 64-byte SHA-256 blocks, and a
/// secret shorter than 56 bytes is one block whatever its length. (Equal
/// digests of unequal inputs would be a SHA-256 collision.)
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    let diff = da
        .iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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
        assert!(!ct_eq(b"", b"\0"));
        assert!(!ct_eq(b"\0", b"\0\0"));
        assert!(!ct_eq(b"secret", b""));
        let long = vec![7u8; 10_000];
        assert!(ct_eq(&long, &long.clone()));
        let mut other = long.clone();
        other[9_999] = 8;
        assert!(!ct_eq(&long, &other));
        assert!(!ct_eq(&long, &long[..9_999]));
    }

    /// The fastest of `runs` timings of `f`, in nanoseconds.
    fn fastest(runs: usize, f: impl Fn() -> bool) -> u128 {
        (0..runs)
            .map(|_| {
                let start = std::time::Instant::now();
                std::hint::black_box(f());
                start.elapsed().as_nanos()
            })
            .min()
            .unwrap_or(0)
    }

    /// A presented value of another length than the secret is not refused
    /// early: it takes about as long as one of the right length (the early
    /// return made it hundreds of times faster). Large inputs keep the
    /// margin far above timer noise.
    #[test]
    fn a_length_mismatch_is_not_refused_early() {
        let secret = vec![0x5au8; 4 << 20];
        let same_length = {
            let mut v = secret.clone();
            v[(4 << 20) - 1] ^= 1;
            v
        };
        let one_longer = {
            let mut v = secret.clone();
            v.push(0);
            v
        };
        let equal_length = fastest(5, || ct_eq(&same_length, &secret));
        let other_length = fastest(5, || ct_eq(&one_longer, &secret));
        assert!(
            other_length * 4 >= equal_length,
            "length mismatch took {other_length} ns, equal length {equal_length} ns"
        );
    }
}
