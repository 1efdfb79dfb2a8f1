//! The secret store: the only code that reads or writes `integrations.secrets`.
//! Seals with the active data key before any INSERT/UPDATE, so only ciphertext
//! reaches the heap, the WAL and any replica; opens with the key id a row
//! carries. Its SQL face (`integrations.create_secret`, ...) is in
//! `ops::secret_store`; the kinds and the platform call these functions.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::spi::SpiClient;
use pgrx::IntoDatum;
use pgrx::Uuid;
use zeroize::Zeroizing;

use crate::core::crypto::{self, CryptoError};
use crate::core::error::{Error, Result};
use crate::core::keyring;
use crate::pg::direct;
use crate::pg::fcall::required;
use crate::pg::plans::{self, Statement};
use crate::pg::recent;
use crate::pg::spi::Spi;
use crate::pg::update::{self, Outcome};

/// Upper bound on a secret's size; API keys and tokens are far smaller.
pub const MAX_SECRET_BYTES: usize = 16 * 1024 * 1024;

static INSERT_SECRET: Statement = Statement {
    sql: "INSERT INTO integrations.secrets (id, business_id, description, key_id, nonce, ciphertext) \
          VALUES ($1, $2, $3, $4, $5, $6)",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::INT4OID, BuiltinOid::BYTEAOID, BuiltinOid::BYTEAOID],
    mutating: true,
};
static SELECT_OWNER: Statement = Statement {
    sql: "SELECT business_id FROM integrations.secrets WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static UPDATE_SECRET: Statement = Statement {
    sql: "UPDATE integrations.secrets SET key_id = $2, nonce = $3, ciphertext = $4, updated_at = now() WHERE id = $1",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::INT4OID, BuiltinOid::BYTEAOID, BuiltinOid::BYTEAOID],
    mutating: true,
};
static REPLACE_SECRET: Statement = Statement {
    sql: "UPDATE integrations.secrets SET key_id = $3, nonce = $4, ciphertext = $5, updated_at = now() \
          WHERE id = $1 AND business_id = $2",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::INT4OID, BuiltinOid::BYTEAOID, BuiltinOid::BYTEAOID],
    mutating: true,
};
static REENCRYPT_ONE: Statement = Statement {
    sql: "UPDATE integrations.secrets SET key_id = $2, nonce = $3, ciphertext = $4 WHERE id = $1 AND business_id = $5",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::INT4OID,
        BuiltinOid::BYTEAOID,
        BuiltinOid::BYTEAOID,
        BuiltinOid::UUIDOID,
    ],
    mutating: true,
};
static DELETE_SECRET: Statement = Statement {
    sql: "DELETE FROM integrations.secrets WHERE id = $1 RETURNING business_id",
    args: &[BuiltinOid::UUIDOID],
    mutating: true,
};
// Oldest keys first, through the key_id index; SKIP LOCKED lets several
// re-encryption sessions share the work and never waits on a busy row. $3:
// the secrets this call found tampered with, passed over.
static OLD_SECRETS: Statement = Statement {
    sql: "SELECT id, business_id, key_id, nonce, ciphertext FROM integrations.secrets \
          WHERE key_id < $1 AND id <> ALL ($3) ORDER BY key_id LIMIT $2 FOR UPDATE SKIP LOCKED",
    args: &[
        BuiltinOid::INT4OID,
        BuiltinOid::INT8OID,
        BuiltinOid::UUIDARRAYOID,
    ],
    mutating: true,
};

// On Citus, which cannot lock rows across shards: the candidates unlocked,
// then each locked by its whole key (one shard), skipped if busy or already
// re-encrypted by another session.
static OLD_SECRET_IDS: Statement = Statement {
    sql: "SELECT id, business_id FROM integrations.secrets \
          WHERE key_id < $1 AND id <> ALL ($3) ORDER BY key_id LIMIT $2",
    args: &[
        BuiltinOid::INT4OID,
        BuiltinOid::INT8OID,
        BuiltinOid::UUIDARRAYOID,
    ],
    mutating: false,
};
static OLD_SECRET: Statement = Statement {
    sql: "SELECT id, business_id, key_id, nonce, ciphertext FROM integrations.secrets \
          WHERE id = $1 AND business_id = $2 AND key_id < $3 FOR UPDATE SKIP LOCKED",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::INT4OID,
    ],
    mutating: true,
};

type SealedRow = (Uuid, Uuid, i32, Vec<u8>, Vec<u8>);

fn sealed_row(row: pgrx::spi::SpiHeapTupleData<'_>) -> Result<SealedRow> {
    Ok((
        required(row.get(1)?, "id")?,
        required(row.get(2)?, "business_id")?,
        required(row.get(3)?, "key_id")?,
        required(row.get(4)?, "nonce")?,
        required(row.get(5)?, "ciphertext")?,
    ))
}

/// Up to `want` secrets under keys older than `active`, locked, but not `skipped`.
fn old_secrets(
    client: &mut SpiClient<'_>,
    active: i32,
    want: i64,
    skipped: &[Uuid],
) -> Result<Vec<SealedRow>> {
    let mut rows = Vec::new();
    let secrets = direct::rel("integrations", "secrets", SECRET_COLUMNS)?;
    if !crate::pg::sharded::is_citus_table(secrets.relid)? {
        let plan = plans::plan(client, &OLD_SECRETS)?;
        for row in client.update(
            plan,
            None,
            &[active.into(), want.into(), skipped.to_vec().into()],
        )? {
            rows.push(sealed_row(row)?);
        }
        return Ok(rows);
    }
    let plan = plans::plan(client, &OLD_SECRET_IDS)?;
    let mut candidates = Vec::new();
    for row in client.select(
        plan,
        None,
        &[active.into(), want.into(), skipped.to_vec().into()],
    )? {
        candidates.push((
            required::<Uuid>(row.get(1)?, "id")?,
            required::<Uuid>(row.get(2)?, "business_id")?,
        ));
    }
    let plan = plans::plan(client, &OLD_SECRET)?;
    for (id, business) in candidates {
        for row in client.update(plan, None, &[id.into(), business.into(), active.into()])? {
            rows.push(sealed_row(row)?);
        }
    }
    Ok(rows)
}

/// A secret argument as bytes: not NULL, at most [`MAX_SECRET_BYTES`].
pub(crate) fn checked_secret(p_secret: Option<&str>) -> Result<Vec<u8>> {
    let s = required(p_secret, "p_secret")?;
    if s.len() > MAX_SECRET_BYTES {
        return Err(Error::InvalidArgument(format!(
            "p_secret is {} bytes; a secret is at most {MAX_SECRET_BYTES} bytes",
            s.len()
        )));
    }
    Ok(s.as_bytes().to_vec())
}

fn crypto_failure(e: CryptoError) -> Error {
    Error::Internal(format!("encryption failed: {e}"))
}

/// Seal `plaintext` for secret `id` of `business` under the active key.
pub(crate) fn seal(
    client: &mut SpiClient<'_>,
    id: Uuid,
    business: Uuid,
    plaintext: Vec<u8>,
) -> Result<(i32, crypto::Sealed)> {
    let key = keyring::active_key(client)?;
    let sealed = key
        .seal(*id.as_bytes(), *business.as_bytes(), plaintext)
        .map_err(crypto_failure)?;
    Ok((key.key_id, sealed))
}

/// Open a stored ciphertext. A failure with a cached key is retried once with
/// the key read afresh, in case the keyring changed under this backend.
pub(crate) fn open(
    client: &SpiClient<'_>,
    id: Uuid,
    business: Uuid,
    key_id: i32,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    for attempt in 0..2 {
        let key = keyring::data_key(client, key_id)?;
        match key.open(*id.as_bytes(), *business.as_bytes(), nonce, ciphertext) {
            Ok(pt) => return Ok(pt),
            Err(_) if attempt == 0 => keyring::forget(key_id),
            Err(_) => break,
        }
    }
    Err(Error::Corrupted(format!(
        "secret {id} failed authentication: its ciphertext, nonce, key id or business id was altered, or it was copied from another row"
    )))
}

/// Read and decrypt one secret, with the business it belongs to; `None` when
/// there is no such secret. With the data key cached (the common case) this
/// runs no SQL at all.
pub(crate) fn read(id: Uuid) -> Result<Option<(Zeroizing<String>, Uuid)>> {
    read_row(id, fetch(id, None)?)
}

/// [`read`] of a secret of `business`: one shard's lookup on Citus, and
/// `None` for a secret of another business.
pub(crate) fn read_of(id: Uuid, business: Uuid) -> Result<Option<Zeroizing<String>>> {
    Ok(read_row(id, fetch(id, Some(business))?)?
        .filter(|(_, b)| *b == business)
        .map(|(v, _)| v))
}

fn read_row(id: Uuid, row: Option<SecretRow>) -> Result<Option<(Zeroizing<String>, Uuid)>> {
    let Some(row) = row else {
        return Ok(None);
    };
    let cached = keyring::cached_data_key(row.key_id).and_then(|k| {
        k.open(
            *id.as_bytes(),
            *row.business_id.as_bytes(),
            &row.nonce,
            &row.ciphertext,
        )
        .ok()
    });
    let mut plaintext = match cached {
        Some(pt) => pt,
        None => Spi::connect(|c| {
            open(
                c,
                id,
                row.business_id,
                row.key_id,
                &row.nonce,
                &row.ciphertext,
            )
        })?,
    };
    // The buffer moves into the String (no copy), which is wiped when dropped.
    match String::from_utf8(std::mem::take(&mut *plaintext)) {
        Ok(v) => Ok(Some((Zeroizing::new(v), row.business_id))),
        Err(e) => {
            Zeroizing::new(e.into_bytes());
            Err(Error::Corrupted(format!(
                "secret {id} is not valid UTF-8 text"
            )))
        }
    }
}

/// Store a new secret; returns its id.
pub(crate) fn create(
    client: &mut SpiClient<'_>,
    business: Uuid,
    plaintext: Vec<u8>,
    description: &str,
) -> Result<Uuid> {
    let key = keyring::active_key(client)?;
    let (id, sealed) = key
        .seal_new(*business.as_bytes(), plaintext)
        .map_err(crypto_failure)?;
    let (id, key_id) = (Uuid::from_bytes(id), key.key_id);
    let plan = plans::plan(client, &INSERT_SECRET)?;
    client.update(
        plan,
        None,
        &[
            id.into(),
            business.into(),
            description.into(),
            key_id.into(),
            sealed.nonce.as_slice().into(),
            sealed.ciphertext.as_slice().into(),
        ],
    )?;
    Ok(id)
}

/// Replace a secret's value; the business it belongs to, or `None` when there
/// is no such secret.
pub(crate) fn update(
    client: &mut SpiClient<'_>,
    id: Uuid,
    plaintext: Vec<u8>,
) -> Result<Option<Uuid>> {
    let plan = plans::plan(client, &SELECT_OWNER)?;
    let rows = client.select(plan, Some(1), &[id.into()])?;
    if rows.is_empty() {
        return Ok(None);
    }
    let business: Uuid = required(rows.first().get(1)?, "business_id")?;
    let (key_id, sealed) = seal(client, id, business, plaintext)?;
    let plan = plans::plan(client, &UPDATE_SECRET)?;
    let done = client.update(
        plan,
        None,
        &[
            id.into(),
            key_id.into(),
            sealed.nonce.as_slice().into(),
            sealed.ciphertext.as_slice().into(),
        ],
    )?;
    Ok((!done.is_empty()).then_some(business))
}

/// Replace the value of secret `id` of `business` (whose owner the caller
/// already knows, so no lookup is needed); `false` when there is no such secret.
pub(crate) fn replace(
    client: &mut SpiClient<'_>,
    id: Uuid,
    business: Uuid,
    plaintext: Vec<u8>,
) -> Result<bool> {
    let (key_id, sealed) = seal(client, id, business, plaintext)?;
    let plan = plans::plan(client, &REPLACE_SECRET)?;
    let done = client.update(
        plan,
        None,
        &[
            id.into(),
            business.into(),
            key_id.into(),
            sealed.nonce.as_slice().into(),
            sealed.ciphertext.as_slice().into(),
        ],
    )?;
    Ok(!done.is_empty())
}

/// Re-seal secret `id` of `business` with `plaintext` in place, without SQL
/// (`pg::update`): the second half of a `set_*` re-save. `false` when the
/// SQL path must do it (nothing written): the table needs the executor, or
/// the row changed or went since.
pub(crate) fn reseal_in_place(id: Uuid, business: Uuid, plaintext: Vec<u8>) -> Result<bool> {
    let key = match keyring::cached_active_key() {
        Some(k) => k,
        // a backend's first write: the key is read once through SQL
        None => Spi::connect_mut(keyring::active_key)?,
    };
    let rel = direct::rel("integrations", "secrets", SECRET_COLUMNS)?;
    let index = rel.index(c"integrations", c"secrets_pkey")?;
    if direct::index_key_columns(index) < 2 {
        return Ok(false); // (id) only: a database not yet updated to 0.6.0
    }
    let keys = [direct::uuid_key(1, &id), direct::uuid_key(2, &business)];
    let Some(target) = direct::find(rel.relid, index, &keys, |row| Ok(Some(row.target())))? else {
        return Ok(false);
    };
    let sealed = key
        .seal(*id.as_bytes(), *business.as_bytes(), plaintext)
        .map_err(crypto_failure)?;
    // SAFETY: reads the running transaction's start time, what now() returns.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let set = [
        update::Set {
            att: rel.att("key_id")?,
            type_oid: pg_sys::INT4OID,
            value: key.key_id.into_datum(),
        },
        update::Set {
            att: rel.att("nonce")?,
            type_oid: pg_sys::BYTEAOID,
            value: sealed.nonce.as_slice().into_datum(),
        },
        update::Set {
            att: rel.att("ciphertext")?,
            type_oid: pg_sys::BYTEAOID,
            value: sealed.ciphertext.as_slice().into_datum(),
        },
        update::Set {
            att: rel.att("updated_at")?,
            type_oid: pg_sys::TIMESTAMPTZOID,
            value: Some(pg_sys::Datum::from(now)),
        },
    ];
    Ok(update::update_row(rel.relid, &target, &set)? == Outcome::Done)
}

/// Delete a secret; the business it belonged to, or `None` when there was none.
pub(crate) fn delete(client: &mut SpiClient<'_>, id: Uuid) -> Result<Option<Uuid>> {
    let plan = plans::plan(client, &DELETE_SECRET)?;
    let rows = client.update(plan, None, &[id.into()])?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(rows.first().get::<Uuid>(1)?)
}

/// Delete the secrets `ids` (those of deleted rows). Directly, not by SQL:
/// nothing references or fires on `integrations.secrets`, and a `DELETE`
/// statement's start-up was a third of a `delete_*` call.
pub(crate) fn delete_all(ids: Vec<(Uuid, Uuid)>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let rel = direct::rel("integrations", "secrets", SECRET_COLUMNS)?;
    let index = rel.index(c"integrations", c"secrets_pkey")?;
    // (id, business_id) since 0.6.0; (id) in a database not yet updated
    let by_business = direct::index_key_columns(index) >= 2;
    for (id, business) in ids {
        let keys = [direct::uuid_key(1, &id), direct::uuid_key(2, &business)];
        let keys = if by_business { &keys[..] } else { &keys[..1] };
        direct::delete_unique(rel.relid, index, keys)?;
    }
    Ok(())
}

/// Re-encrypt up to `batch` secrets still sealed under an older data key;
/// how many were. A secret that fails authentication (tampered with) is left
/// as it is, named in a WARNING (and by `verify_secrets`), and passed over,
/// so one bad row never stops a rotation: 0 means nothing re-encryptable is
/// left.
pub(crate) fn reencrypt(client: &mut SpiClient<'_>, batch: i64) -> Result<i32> {
    let active = keyring::active_key(client)?;
    let update = plans::plan(client, &REENCRYPT_ONE)?;
    let mut skipped: Vec<Uuid> = Vec::new();
    let mut n = 0;
    while i64::from(n) < batch {
        let want = batch - i64::from(n);
        let rows = old_secrets(client, active.key_id, want, &skipped)?;
        if rows.is_empty() {
            break;
        }
        for (id, business, key_id, nonce, ciphertext) in rows {
            let mut plaintext = match open(client, id, business, key_id, &nonce, &ciphertext) {
                Ok(p) => p,
                Err(Error::Corrupted(_)) => {
                    pgrx::warning!(
                        "secret {id} failed authentication and stays under data key {key_id}; integrations.verify_secrets() lists such secrets"
                    );
                    skipped.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let sealed = active
                .seal(
                    *id.as_bytes(),
                    *business.as_bytes(),
                    std::mem::take(&mut *plaintext),
                )
                .map_err(crypto_failure)?;
            client.update(
                update,
                None,
                &[
                    id.into(),
                    active.key_id.into(),
                    sealed.nonce.as_slice().into(),
                    sealed.ciphertext.as_slice().into(),
                    business.into(),
                ],
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// One stored secret, as read from its row.
struct SecretRow {
    business_id: pgrx::Uuid,
    key_id: i32,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

const SECRET_COLUMNS: &[&str] = &["business_id", "key_id", "nonce", "ciphertext", "updated_at"];

/// The row of secret `id`, if any; looked up with its business when given
/// (the whole primary key since 0.6.0).
fn fetch(id: pgrx::Uuid, business: Option<pgrx::Uuid>) -> Result<Option<SecretRow>> {
    let rel = direct::rel("integrations", "secrets", SECRET_COLUMNS)?;
    let (b, k, n, c) = (
        rel.att("business_id")?,
        rel.att("key_id")?,
        rel.att("nonce")?,
        rel.att("ciphertext")?,
    );
    let index = rel.index(c"integrations", c"secrets_pkey")?;
    let keys = match &business {
        Some(b) if direct::index_key_columns(index) >= 2 => vec![&id, b],
        _ => vec![&id],
    };
    recent::find(rel.relid, index, &keys, |row| {
        match (row.get(b), row.get(k), row.get(n), row.get(c)) {
            (Some(business_id), Some(key_id), Some(nonce), Some(ciphertext)) => {
                Ok(Some(SecretRow {
                    business_id,
                    key_id,
                    nonce,
                    ciphertext,
                }))
            }
            _ => Err(Error::Corrupted(format!("secret {id} has a NULL column"))),
        }
    })
}

/// The SQL of one statement that updates a row holding a secret id and, in
/// the same statement, re-seals that secret (re-saving settings takes one
/// round trip). `$row_update` is an `UPDATE ... RETURNING id` of the row that
/// uses `$1` for the business and `$6` for the secret id; this adds `$7`–`$9`
/// (key id, nonce, ciphertext), filled by [`reseal_with_row_update`]. The row
/// is locked before the secret, like every other write path.
#[macro_export]
macro_rules! reseal_with_row_update_sql {
    ($row_update:expr) => {
        concat!(
            "WITH r AS (", $row_update, ") ",
            "UPDATE integrations.secrets SET key_id = $7, nonce = $8, ciphertext = $9, updated_at = pg_catalog.now() ",
            "WHERE id = $6 AND business_id = $1 AND EXISTS (SELECT 1 FROM r) RETURNING (SELECT id FROM r)"
        )
    };
}

/// Run a statement built by [`reseal_with_row_update_sql!`]: seals
/// `plaintext` for `secret` of `business` and binds it after `row_args`
/// (`$1`–`$6`). The row's id, or `None` when no row matched.
pub(crate) fn reseal_with_row_update(
    client: &mut SpiClient<'_>,
    statement: &'static Statement,
    mut row_args: Vec<pgrx::datum::DatumWithOid<'_>>,
    secret: Uuid,
    business: Uuid,
    plaintext: Vec<u8>,
) -> Result<Option<Uuid>> {
    let (key_id, sealed) = seal(client, secret, business, plaintext)?;
    row_args.extend([
        key_id.into(),
        sealed.nonce.as_slice().into(),
        sealed.ciphertext.as_slice().into(),
    ]);
    plans::write_returning_id(client, statement, &row_args)
}

/// At most this many failing secret ids are listed; the count is exact.
const MAX_LISTED_FAILURES: usize = 100;
/// Rows fetched per cursor round trip: bounded memory with a million secrets.
const VERIFY_CHUNK: i64 = 10_000;

/// Outcome of opening every stored secret.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub checked: i64,
    pub failed: i64,
    pub failed_ids: Vec<Uuid>,
}

impl Verification {
    fn note(&mut self, id: Uuid, opened: bool) {
        self.checked += 1;
        if !opened {
            self.failed += 1;
            if self.failed_ids.len() < MAX_LISTED_FAILURES {
                self.failed_ids.push(id);
            }
        }
    }
}

/// Opens (authenticates and decrypts, then forgets) every secret. A secret
/// that fails authentication is counted; a missing or wrong master key is an
/// error (55000), since then nothing can be checked.
pub(crate) fn verify_all() -> Result<Verification> {
    Spi::connect(|client| {
        let mut out = Verification::default();
        let mut cursor = client.try_open_cursor(
            "SELECT id, business_id, key_id, nonce, ciphertext FROM integrations.secrets",
            &[],
        )?;
        loop {
            let rows = cursor.fetch(VERIFY_CHUNK)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let id: Uuid = row
                    .get(1)?
                    .ok_or_else(|| Error::Internal("id is null".into()))?;
                let business: Uuid = row
                    .get(2)?
                    .ok_or_else(|| Error::Internal("business_id is null".into()))?;
                let key_id: i32 = row.get(3)?.unwrap_or(0);
                let nonce: Vec<u8> = row.get(4)?.unwrap_or_default();
                let ciphertext: Vec<u8> = row.get(5)?.unwrap_or_default();
                match open(client, id, business, key_id, &nonce, &ciphertext) {
                    Ok(_plaintext) => out.note(id, true), // zeroized on drop
                    Err(Error::Corrupted(_)) => out.note(id, false),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_exactly_and_listed_up_to_the_cap() {
        let mut v = Verification::default();
        for i in 0..250u128 {
            v.note(Uuid::from_bytes(i.to_be_bytes()), i % 2 == 0);
        }
        assert_eq!(v.checked, 250);
        assert_eq!(v.failed, 125);
        assert_eq!(v.failed_ids.len(), MAX_LISTED_FAILURES);
        assert_eq!(v.failed_ids[0], Uuid::from_bytes(1u128.to_be_bytes()));
    }
}
