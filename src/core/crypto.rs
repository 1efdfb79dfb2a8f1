//! Pure cryptography: AES-256-GCM sealing of secrets and wrapping of data keys.
//!
//! Nothing here touches Postgres, so everything is covered by plain `#[test]`s.
//!
//! Secret format (version 1): a row of `integrations.secrets` holds `format`,
//! `key_id`, a 96-bit `nonce` and `ciphertext` (AES-GCM output with its 16-byte
//! tag). The associated data binds the ciphertext to its row and tenant:
//! `"pg_integrations/secret" || format || key_id || secret_id || business_id`,
//! so a ciphertext copied to another row, tenant or key id fails to open.
//!
//! Data keys are wrapped by the master key with AES-256-GCM as well:
//! `nonce || ciphertext || tag` (60 bytes), associated data
//! `"pg_integrations/data-key" || format || key_id`.
//!
//! Routed calls (a call a Citus coordinator sends to the worker holding its
//! business) travel sealed by the active data key, so their arguments never
//! appear in the worker's statement text or log: `key_id (4, big-endian) ||
//! nonce || ciphertext || tag`, associated data `"pg_integrations/routed-call"
//! || format || key_id || context` (the called function's signature).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// The only ciphertext format so far; a new one gets a new number.
pub const FORMAT_V1: u8 = 1;
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

const SECRET_AAD_TAG: &[u8] = b"pg_integrations/secret";
const DATA_KEY_AAD_TAG: &[u8] = b"pg_integrations/data-key";
const CALL_AAD_TAG: &[u8] = b"pg_integrations/routed-call";
const FINGERPRINT_TAG: &[u8] = b"pg_integrations/master-key-fingerprint";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("authentication failed")]
    Authentication,
    #[error("malformed input: {0}")]
    Malformed(&'static str),
}

/// Fill `buf` from the OS random number generator (getrandom(2)).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|_| CryptoError::Rng)
}

/// 256 bits of key material that is wiped from memory when dropped.
pub struct KeyBytes(Zeroizing<[u8; KEY_LEN]>);

impl KeyBytes {
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(k.as_mut())?;
        Ok(KeyBytes(k))
    }

    pub fn from_slice(s: &[u8]) -> Result<Self, CryptoError> {
        if s.len() != KEY_LEN {
            return Err(CryptoError::Malformed("a key must be 32 bytes"));
        }
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(s);
        Ok(KeyBytes(k))
    }

    /// Lower-case hex, for writing a generated key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_ref())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }
}

/// The master key, read from the key file. Only ever used to wrap and unwrap data keys.
pub struct MasterKey {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl MasterKey {
    pub fn new(key: &KeyBytes) -> Self {
        MasterKey {
            cipher: key.cipher(),
            fingerprint: fingerprint(key),
        }
    }

    /// Parse a key file's contents: 64 hex digits (surrounding whitespace ignored)
    /// or exactly 32 raw bytes.
    pub fn parse_file_contents(contents: &[u8]) -> Result<Self, CryptoError> {
        let trimmed = trim_ascii(contents);
        if trimmed.len() == 2 * KEY_LEN && trimmed.iter().all(u8::is_ascii_hexdigit) {
            let mut raw = Zeroizing::new([0u8; KEY_LEN]);
            hex::decode_to_slice(trimmed, raw.as_mut())
                .map_err(|_| CryptoError::Malformed("bad hex"))?;
            return Ok(MasterKey::new(&KeyBytes(raw)));
        }
        if contents.len() == KEY_LEN {
            return Ok(MasterKey::new(&KeyBytes::from_slice(contents)?));
        }
        Err(CryptoError::Malformed(
            "a master key file holds 64 hex digits (or exactly 32 raw bytes)",
        ))
    }

    /// A public, one-way identifier of this key (16 hex digits), stored next to
    /// every data key it wraps so a wrong key is told apart from a damaged one.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn wrap(&self, key_id: i32, data_key: &KeyBytes) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(data_key.0.as_ref());
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &data_key_aad(key_id),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Authentication)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    pub fn unwrap(&self, key_id: i32, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        Ok(DataKey::new(key_id, &self.unwrap_raw(key_id, wrapped)?))
    }

    /// Unwrap to raw key bytes (for re-wrapping under another master key).
    pub fn unwrap_raw(&self, key_id: i32, wrapped: &[u8]) -> Result<KeyBytes, CryptoError> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::Malformed("a wrapped key is 60 bytes"));
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(KEY_LEN);
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        raw.copy_from_slice(ct);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &data_key_aad(key_id),
                raw.as_mut(),
                Tag::from_slice(tag),
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(KeyBytes(raw))
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn fingerprint(key: &KeyBytes) -> String {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_TAG);
    h.update(key.0.as_ref());
    let digest = h.finalize();
    hex::encode(&digest[..8])
}

/// The data key a sealed routed call names.
pub fn call_key_id(sealed: &[u8]) -> Result<i32, CryptoError> {
    let id: [u8; 4] =
        sealed
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(CryptoError::Malformed(
                "a routed call starts with its key id",
            ))?;
    Ok(i32::from_be_bytes(id))
}

fn call_aad(key_id: i32, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(CALL_AAD_TAG.len() + 5 + context.len());
    aad.extend_from_slice(CALL_AAD_TAG);
    aad.push(FORMAT_V1);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad.extend_from_slice(context);
    aad
}

fn data_key_aad(key_id: i32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DATA_KEY_AAD_TAG.len() + 5);
    aad.extend_from_slice(DATA_KEY_AAD_TAG);
    aad.push(FORMAT_V1);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

/// Where a secret lives: the associated data of its ciphertext.
#[derive(Clone, Copy, Debug)]
pub struct SecretContext {
    pub key_id: i32,
    pub secret_id: [u8; 16],
    pub business_id: [u8; 16],
}

impl SecretContext {
    fn aad(&self) -> [u8; SECRET_AAD_TAG.len() + 1 + 4 + 16 + 16] {
        let mut aad = [0u8; SECRET_AAD_TAG.len() + 1 + 4 + 16 + 16];
        let (tag, rest) = aad.split_at_mut(SECRET_AAD_TAG.len());
        tag.copy_from_slice(SECRET_AAD_TAG);
        rest[0] = FORMAT_V1;
        rest[1..5].copy_from_slice(&self.key_id.to_be_bytes());
        rest[5..21].copy_from_slice(&self.secret_id);
        rest[21..37].copy_from_slice(&self.business_id);
        aad
    }
}

/// An unwrapped data key, ready to seal and open secrets. The AES key schedule
/// inside `Aes256Gcm` is zeroized on drop (the crate's `zeroize` feature).
pub struct DataKey {
    pub key_id: i32,
    cipher: Aes256Gcm,
}

/// A sealed secret: what goes into the table.
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl DataKey {
    pub fn new(key_id: i32, key: &KeyBytes) -> Self {
        DataKey {
            key_id,
            cipher: key.cipher(),
        }
    }

    /// Seal a routed call's message, bound to `context` (the function's
    /// signature): `key_id || nonce || ciphertext || tag`.
    pub fn seal_call(&self, context: &[u8], mut message: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let tag = match self.cipher.encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &call_aad(self.key_id, context),
            &mut message,
        ) {
            Ok(tag) => tag,
            Err(_) => {
                message.zeroize();
                return Err(CryptoError::Authentication);
            }
        };
        let mut out = Vec::with_capacity(4 + NONCE_LEN + message.len() + TAG_LEN);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&message);
        out.extend_from_slice(&tag);
        message.zeroize();
        Ok(out)
    }

    /// Open what [`DataKey::seal_call`] sealed for the same `context`; the key
    /// must be the one [`call_key_id`] names.
    pub fn open_call(
        &self,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if call_key_id(sealed)? != self.key_id {
            return Err(CryptoError::Malformed(
                "a routed call sealed by another key",
            ));
        }
        let body = &sealed[4..];
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("a routed call is at least 32 bytes"));
        }
        let (nonce, rest) = body.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &call_aad(self.key_id, context),
                buf.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(buf)
    }

    /// Encrypt `plaintext` in place (the buffer becomes the ciphertext, so no
    /// plaintext copy outlives the call) under a fresh random nonce.
    pub fn seal(
        &self,
        secret_id: [u8; 16],
        business_id: [u8; 16],
        plaintext: Vec<u8>,
    ) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        self.seal_with_nonce(secret_id, business_id, nonce, plaintext)
    }

    /// Seal a new secret: its random id and the nonce come from one read of the
    /// OS random number generator. Returns the id.
    pub fn seal_new(
        &self,
        business_id: [u8; 16],
        plaintext: Vec<u8>,
    ) -> Result<([u8; 16], Sealed), CryptoError> {
        let mut random = [0u8; 16 + NONCE_LEN];
        random_bytes(&mut random)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&random[..16]);
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&random[16..]);
        Ok((id, self.seal_with_nonce(id, business_id, nonce, plaintext)?))
    }

    fn seal_with_nonce(
        &self,
        secret_id: [u8; 16],
        business_id: [u8; 16],
        nonce: [u8; NONCE_LEN],
        mut plaintext: Vec<u8>,
    ) -> Result<Sealed, CryptoError> {
        let ctx = SecretContext {
            key_id: self.key_id,
            secret_id,
            business_id,
        };
        plaintext.reserve_exact(TAG_LEN);
        let tag = match self.cipher.encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &ctx.aad(),
            &mut plaintext,
        ) {
            Ok(tag) => tag,
            Err(_) => {
                plaintext.zeroize();
                return Err(CryptoError::Authentication);
            }
        };
        plaintext.extend_from_slice(&tag);
        Ok(Sealed {
            nonce,
            ciphertext: plaintext,
        })
    }

    /// Decrypt a sealed secret; any change to the ciphertext, nonce, key id,
    /// secret id or business id fails authentication.
    pub fn open(
        &self,
        secret_id: [u8; 16],
        business_id: [u8; 16],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if nonce.len() != NONCE_LEN {
            return Err(CryptoError::Malformed("a nonce is 12 bytes"));
        }
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed("a ciphertext is at least 16 bytes"));
        }
        let ctx = SecretContext {
            key_id: self.key_id,
            secret_id,
            business_id,
        };
        let (body, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
        let mut buf = Zeroizing::new(body.to_vec());
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &ctx.aad(),
                buf.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SID: [u8; 16] = [1; 16];
    const BID: [u8; 16] = [2; 16];

    fn key(id: i32) -> DataKey {
        DataKey::new(id, &KeyBytes::generate().unwrap())
    }

    #[test]
    fn routed_calls_open_only_for_their_key_and_context() {
        let k = key(7);
        let sealed = k
            .seal_call(b"public.f(uuid)", b"MARKER-ARGUMENT".to_vec())
            .unwrap();
        assert_eq!(call_key_id(&sealed).unwrap(), 7);
        assert!(!sealed.windows(15).any(|w| w == b"MARKER-ARGUMENT"));
        assert_eq!(
            k.open_call(b"public.f(uuid)", &sealed).unwrap().as_slice(),
            b"MARKER-ARGUMENT"
        );
        // another function, another key, a changed byte, a cut message
        assert_eq!(
            k.open_call(b"public.g(uuid)", &sealed).err(),
            Some(CryptoError::Authentication)
        );
        assert!(key(7).open_call(b"public.f(uuid)", &sealed).is_err());
        assert!(key(8).open_call(b"public.f(uuid)", &sealed).is_err());
        for i in 4..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(k.open_call(b"public.f(uuid)", &bad).is_err(), "byte {i}");
        }
        assert!(k.open_call(b"public.f(uuid)", &sealed[..20]).is_err());
        assert!(call_key_id(&sealed[..3]).is_err());
        // never accepted as a stored secret, nor a secret as a call
        let s = k.seal(SID, BID, b"x".to_vec()).unwrap();
        let mut as_call = 7i32.to_be_bytes().to_vec();
        as_call.extend_from_slice(&s.nonce);
        as_call.extend_from_slice(&s.ciphertext);
        assert!(k.open_call(b"", &as_call).is_err());
        assert!(k.open(SID, BID, &sealed[4..16], &sealed[16..]).is_err());
    }

    #[test]
    fn round_trips_empty_ascii_multibyte_and_large() {
        let k = key(1);
        let big = "x".repeat(1 << 20);
        for pt in ["", "sk_live_abc123", "مفتاح-🔑-ключ", big.as_str()] {
            let s = k.seal(SID, BID, pt.as_bytes().to_vec()).unwrap();
            assert_eq!(s.ciphertext.len(), pt.len() + TAG_LEN);
            let out = k.open(SID, BID, &s.nonce, &s.ciphertext).unwrap();
            assert_eq!(out.as_slice(), pt.as_bytes());
        }
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext() {
        let k = key(1);
        let pt = b"MARKER-PLAINTEXT-0123456789".to_vec();
        let s = k.seal(SID, BID, pt.clone()).unwrap();
        assert!(!s.ciphertext.windows(pt.len()).any(|w| w == pt.as_slice()));
    }

    #[test]
    fn nonces_are_unique_across_10000_encryptions() {
        let k = key(1);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let s = k.seal(SID, BID, b"same".to_vec()).unwrap();
            assert!(seen.insert(s.nonce), "nonce reused");
        }
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(7);
        let s = k.seal(SID, BID, b"secret value".to_vec()).unwrap();
        // flipped ciphertext bit, flipped tag bit, flipped nonce bit
        let mut ct = s.ciphertext.clone();
        ct[0] ^= 1;
        assert_eq!(
            k.open(SID, BID, &s.nonce, &ct).unwrap_err(),
            CryptoError::Authentication
        );
        let mut ct = s.ciphertext.clone();
        *ct.last_mut().unwrap() ^= 0x80;
        assert_eq!(
            k.open(SID, BID, &s.nonce, &ct).unwrap_err(),
            CryptoError::Authentication
        );
        let mut nonce = s.nonce;
        nonce[11] ^= 1;
        assert_eq!(
            k.open(SID, BID, &nonce, &s.ciphertext).unwrap_err(),
            CryptoError::Authentication
        );
        // truncated
        assert!(k.open(SID, BID, &s.nonce, &s.ciphertext[..10]).is_err());
        assert!(k.open(SID, BID, &s.nonce[..8], &s.ciphertext).is_err());
    }

    #[test]
    fn ciphertext_is_bound_to_row_tenant_and_key_id() {
        let raw = KeyBytes::generate().unwrap();
        let k1 = DataKey::new(1, &raw);
        let s = k1.seal(SID, BID, b"bound".to_vec()).unwrap();
        // another row
        assert!(k1.open([9; 16], BID, &s.nonce, &s.ciphertext).is_err());
        // another tenant
        assert!(k1.open(SID, [9; 16], &s.nonce, &s.ciphertext).is_err());
        // same key material labelled with another key id
        let k2 = DataKey::new(2, &raw);
        assert!(k2.open(SID, BID, &s.nonce, &s.ciphertext).is_err());
        // another key
        assert!(key(1).open(SID, BID, &s.nonce, &s.ciphertext).is_err());
    }

    #[test]
    fn data_keys_wrap_and_unwrap() {
        let master = MasterKey::new(&KeyBytes::generate().unwrap());
        let dk_raw = KeyBytes::generate().unwrap();
        let wrapped = master.wrap(3, &dk_raw).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        let dk = master.unwrap(3, &wrapped).unwrap();
        let s = DataKey::new(3, &dk_raw)
            .seal(SID, BID, b"v".to_vec())
            .unwrap();
        assert_eq!(
            dk.open(SID, BID, &s.nonce, &s.ciphertext)
                .unwrap()
                .as_slice(),
            b"v"
        );
        // wrong key id, wrong master, tampered
        assert!(master.unwrap(4, &wrapped).is_err());
        let other = MasterKey::new(&KeyBytes::generate().unwrap());
        assert!(other.unwrap(3, &wrapped).is_err());
        let mut bad = wrapped.clone();
        bad[20] ^= 1;
        assert!(master.unwrap(3, &bad).is_err());
        assert!(master.unwrap(3, &wrapped[..59]).is_err());
    }

    #[test]
    fn master_key_file_formats() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = MasterKey::parse_file_contents(format!("{hex_key}\n").as_bytes()).unwrap();
        let b = MasterKey::parse_file_contents(&hex::decode(hex_key).unwrap()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        for bad in [
            &b""[..],
            b"abc",
            b"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ] {
            assert!(MasterKey::parse_file_contents(bad).is_err());
        }
        let c = MasterKey::parse_file_contents(
            b"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        )
        .unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn new_secrets_get_a_version_4_id_and_open_under_it() {
        let k = key(5);
        let (id, s) = k.seal_new(BID, b"fresh".to_vec()).unwrap();
        assert_eq!(id[6] >> 4, 4);
        assert_eq!(id[8] >> 6, 2);
        assert_eq!(
            k.open(id, BID, &s.nonce, &s.ciphertext).unwrap().as_slice(),
            b"fresh"
        );
        let (id2, s2) = k.seal_new(BID, b"fresh".to_vec()).unwrap();
        assert_ne!(id, id2);
        assert_ne!(s.nonce, s2.nonce);
    }
}
