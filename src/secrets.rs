//! The secret store's SQL API (schema `integrations`): create, update, read and
//! delete secrets, rotate keys and re-encrypt. Privileged callers only.
//!
//! The plaintext is sealed before the INSERT/UPDATE, so only ciphertext reaches
//! the heap, the WAL and any replica.

use pgrx::pg_sys::BuiltinOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::Uuid;

use crate::access::require_privileged;
use crate::audit::{self, Action};
use crate::crypto::{self, CryptoError};
use crate::direct;
use crate::error::{statement_holds_secret, Error, OrRaise, Result};
use crate::keyring;
use crate::plans::{self, Statement};
use crate::tenancy::Caller;

/// Upper bound on a secret's size; API keys and tokens are far smaller.
pub const MAX_SECRET_BYTES: usize = 16 * 1024 * 1024;
const MAX_DESCRIPTION_CHARS: usize = 1000;

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
    sql: "UPDATE integrations.secrets SET key_id = $2, nonce = $3, ciphertext = $4 WHERE id = $1",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::INT4OID,
        BuiltinOid::BYTEAOID,
        BuiltinOid::BYTEAOID,
    ],
    mutating: true,
};
static DELETE_SECRET: Statement = Statement {
    sql: "DELETE FROM integrations.secrets WHERE id = $1 RETURNING business_id",
    args: &[BuiltinOid::UUIDOID],
    mutating: true,
};
// Oldest keys first, through the key_id index; SKIP LOCKED lets several
// re-encryption sessions share the work and never waits on a busy row.
static OLD_SECRETS: Statement = Statement {
    sql: "SELECT id, business_id, key_id, nonce, ciphertext FROM integrations.secrets \
          WHERE key_id < $1 ORDER BY key_id LIMIT $2 FOR UPDATE SKIP LOCKED",
    args: &[BuiltinOid::INT4OID, BuiltinOid::INT8OID],
    mutating: true,
};

fn required<T>(v: Option<T>, name: &str) -> Result<T> {
    v.ok_or_else(|| Error::InvalidArgument(format!("{name} must not be null")))
}

fn checked_secret(p_secret: Option<&str>) -> Result<Vec<u8>> {
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
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
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
pub(crate) fn read(id: Uuid) -> Result<Option<(String, Uuid)>> {
    let Some(row) = direct::fetch_secret(id)? else {
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
    String::from_utf8(std::mem::take(&mut *plaintext))
        .map(|v| Some((v, row.business_id)))
        .map_err(|_| Error::Corrupted(format!("secret {id} is not valid UTF-8 text")))
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

/// Delete a secret; the business it belonged to, or `None` when there was none.
pub(crate) fn delete(client: &mut SpiClient<'_>, id: Uuid) -> Result<Option<Uuid>> {
    let plan = plans::plan(client, &DELETE_SECRET)?;
    let rows = client.update(plan, None, &[id.into()])?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(rows.first().get::<Uuid>(1)?)
}

/// Audit a direct use of the secret store (kind `secret`).
fn audit_secret(action: Action, business: &Uuid, id: &Uuid) -> Result<()> {
    audit::record(
        &Caller::current(),
        action,
        "secret",
        business,
        None,
        Some(id),
    )
}

fn description(p: Option<&str>) -> Result<&str> {
    let d = p.unwrap_or("");
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::InvalidArgument(format!(
            "p_description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(d)
}

/// Re-encrypt up to `batch` secrets still sealed under an older data key.
pub(crate) fn reencrypt(client: &mut SpiClient<'_>, batch: i64) -> Result<i32> {
    let active = keyring::active_key(client)?;
    let plan = plans::plan(client, &OLD_SECRETS)?;
    let mut rows = Vec::new();
    for row in client.update(plan, None, &[active.key_id.into(), batch.into()])? {
        let id: Uuid = required(row.get(1)?, "id")?;
        let business: Uuid = required(row.get(2)?, "business_id")?;
        let key_id: i32 = required(row.get(3)?, "key_id")?;
        let nonce: Vec<u8> = required(row.get(4)?, "nonce")?;
        let ciphertext: Vec<u8> = required(row.get(5)?, "ciphertext")?;
        rows.push((id, business, key_id, nonce, ciphertext));
    }
    let update = plans::plan(client, &REENCRYPT_ONE)?;
    let mut n = 0;
    for (id, business, key_id, nonce, ciphertext) in rows {
        let mut plaintext = open(client, id, business, key_id, &nonce, &ciphertext)?;
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
            ],
        )?;
        n += 1;
    }
    Ok(n)
}

/// The SQL surface, in schema `integrations`.
#[pg_schema]
mod integrations {
    use super::*;

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn create_secret(
        p_business_id: Option<Uuid>,
        p_secret: Option<&str>,
        p_description: default!(Option<&str>, "''"),
    ) -> Uuid {
        statement_holds_secret();
        (|| {
            require_privileged("integrations.create_secret")?;
            let business = required(p_business_id, "p_business_id")?;
            let plaintext = checked_secret(p_secret)?;
            let description = description(p_description)?;
            let id = Spi::connect_mut(|c| create(c, business, plaintext, description))?;
            audit_secret(Action::Set, &business, &id)?;
            Ok(id)
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn update_secret(p_secret_id: Option<Uuid>, p_secret: Option<&str>) {
        statement_holds_secret();
        (|| {
            require_privileged("integrations.update_secret")?;
            let id = required(p_secret_id, "p_secret_id")?;
            let plaintext = checked_secret(p_secret)?;
            match Spi::connect_mut(|c| update(c, id, plaintext))? {
                Some(business) => audit_secret(Action::Set, &business, &id),
                None => Err(Error::NotFound(format!("secret {id} does not exist"))),
            }
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn read_secret(p_secret_id: Option<Uuid>) -> Option<String> {
        (|| {
            require_privileged("integrations.read_secret")?;
            let Some(id) = p_secret_id else {
                return Ok(None);
            };
            let Some((value, business)) = read(id)? else {
                return Ok(None);
            };
            audit_secret(Action::ReadSecret, &business, &id)?;
            Ok(Some(value))
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn delete_secret(p_secret_id: Option<Uuid>) -> bool {
        (|| {
            require_privileged("integrations.delete_secret")?;
            let Some(id) = p_secret_id else {
                return Ok(false);
            };
            match Spi::connect_mut(|c| delete(c, id))? {
                Some(business) => audit_secret(Action::Delete, &business, &id).map(|_| true),
                None => Ok(false),
            }
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn rotate_data_key() -> i32 {
        (|| {
            require_privileged("integrations.rotate_data_key")?;
            Spi::connect_mut(keyring::rotate_data_key)
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn rotate_master_key() -> i32 {
        (|| {
            require_privileged("integrations.rotate_master_key")?;
            Spi::connect_mut(keyring::rotate_master_key)
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn reencrypt_secrets(p_batch_size: default!(Option<i32>, 1000)) -> i32 {
        (|| {
            require_privileged("integrations.reencrypt_secrets")?;
            let batch = p_batch_size.unwrap_or(1000);
            if !(1..=1_000_000).contains(&batch) {
                return Err(Error::InvalidArgument(format!(
                    "p_batch_size must be between 1 and 1000000, not {batch}"
                )));
            }
            Spi::connect_mut(|c| reencrypt(c, batch as i64))
        })()
        .or_raise()
    }

    #[pg_extern(security_definer, stable, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn keyring_status() -> TableIterator<
        'static,
        (
            name!(key_id, i32),
            name!(status, String),
            name!(created_at, TimestampWithTimeZone),
            name!(secrets, i64),
        ),
    > {
        let rows = (|| {
            require_privileged("integrations.keyring_status")?;
            Spi::connect(|c| {
                let mut out = Vec::new();
                for row in c.select(
                    "SELECT k.key_id, k.status, k.created_at, \
                            (SELECT count(*) FROM integrations.secrets s WHERE s.key_id = k.key_id) \
                     FROM integrations.keys k ORDER BY k.key_id",
                    None,
                    &[],
                )? {
                    out.push((
                        required(row.get::<i32>(1)?, "key_id")?,
                        required(row.get::<String>(2)?, "status")?,
                        required(row.get::<TimestampWithTimeZone>(3)?, "created_at")?,
                        row.get::<i64>(4)?.unwrap_or(0),
                    ));
                }
                Ok::<_, Error>(out)
            })
        })()
        .or_raise();
        TableIterator::new(rows)
    }
}
