//! The secret store's SQL face, in schema `integrations`: create, update,
//! read and delete secrets, rotate keys, re-encrypt and report the keyring.
//! For back ends and operators: privileged callers only, every use audited.
//! The sealing itself is `core::store`'s.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::Uuid;

use crate::core::error::{statement_holds_secret, Error, OrRaise, Result};
use crate::core::keyring;
use crate::core::store::{checked_secret, create, delete, read, reencrypt, update};
use crate::pg::definer;
use crate::pg::fcall::required;
use crate::pg::spi::Spi;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller::require_privileged;
use crate::tenancy::Caller;

const MAX_DESCRIPTION_CHARS: usize = 1000;

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

/// The extension's rows that hold secret `id`, if any (the first table found).
/// The secret columns carry no foreign keys — every secret is written and
/// deleted with its row by the extension itself, and nine NO ACTION checks
/// made every deleted secret cost nine queries (measured: a delete_* call
/// fell from 170 to 45 µs without them) — so deleting a secret directly checks here.
fn referenced_by(id: Uuid) -> Result<Option<String>> {
    const SQL: &str = "SELECT t FROM (\
        SELECT 'ai_avatar_integrations' AS t FROM public.ai_avatar_integrations WHERE secret_id = $1 \
        UNION ALL SELECT 'email_integrations' FROM public.email_integrations WHERE secret_id = $1 \
        UNION ALL SELECT 'blog_integrations' FROM public.blog_integrations WHERE secret_id = $1 \
        UNION ALL SELECT 'integration_oauth_states' FROM public.integration_oauth_states WHERE code_verifier_secret_id = $1 \
        UNION ALL SELECT 'integration_webhook_configs' FROM public.integration_webhook_configs WHERE signing_secret_id = $1 \
        UNION ALL SELECT 'integration_connections' FROM public.integration_connections \
            WHERE $1 IN (api_key_secret_id, basic_password_secret_id, oauth_access_token_secret_id, oauth_refresh_token_secret_id)\
        ) x LIMIT 1";
    Spi::connect(|c| {
        let rows = c.select(SQL, Some(1), &[id.into()])?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(rows.first().get::<String>(1)?)
    })
}

/// The SQL surface, in schema `integrations`.
#[pg_schema]
mod integrations {
    use super::*;

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn create_secret(
        p_business_id: Option<Uuid>,
        p_secret: Option<&str>,
        p_description: default!(Option<&str>, "''"),
        fcinfo: pg_sys::FunctionCallInfo,
    ) -> Uuid {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
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

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn update_secret(
        p_secret_id: Option<Uuid>,
        p_secret: Option<&str>,
        fcinfo: pg_sys::FunctionCallInfo,
    ) {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
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

    // No pinned search_path: see src/pg/spi.rs.
    #[pg_extern(volatile, parallel_unsafe)]
    fn read_secret(p_secret_id: Option<Uuid>, fcinfo: pg_sys::FunctionCallInfo) -> Option<String> {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
        (|| {
            require_privileged("integrations.read_secret")?;
            let Some(id) = p_secret_id else {
                return Ok(None);
            };
            let Some((value, business)) = read(id)? else {
                return Ok(None);
            };
            audit_secret(Action::ReadSecret, &business, &id)?;
            // The one copy left unwiped: the String pgrx turns into the result.
            Ok(Some(value.to_string()))
        })()
        .or_raise()
    }

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn delete_secret(p_secret_id: Option<Uuid>, fcinfo: pg_sys::FunctionCallInfo) -> bool {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
        (|| {
            require_privileged("integrations.delete_secret")?;
            let Some(id) = p_secret_id else {
                return Ok(false);
            };
            if let Some(table) = referenced_by(id)? {
                return Err(Error::MissingReference {
                    message: format!("secret {id} is in use by a row of {table}"),
                    hint: "Delete the integration (its secrets go with it) instead of the secret."
                        .into(),
                });
            }
            match Spi::connect_mut(|c| delete(c, id))? {
                Some(business) => audit_secret(Action::Delete, &business, &id).map(|_| true),
                None => Ok(false),
            }
        })()
        .or_raise()
    }

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn rotate_data_key(fcinfo: pg_sys::FunctionCallInfo) -> i32 {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
        (|| {
            require_privileged("integrations.rotate_data_key")?;
            Spi::connect_mut(keyring::rotate_data_key)
        })()
        .or_raise()
    }

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn rotate_master_key(fcinfo: pg_sys::FunctionCallInfo) -> i32 {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
        (|| {
            require_privileged("integrations.rotate_master_key")?;
            Spi::connect_mut(keyring::rotate_master_key)
        })()
        .or_raise()
    }

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn reencrypt_secrets(
        p_batch_size: default!(Option<i32>, 1000),
        fcinfo: pg_sys::FunctionCallInfo,
    ) -> i32 {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
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

    #[pg_extern(stable, parallel_unsafe)]
    #[search_path(pg_catalog, pg_temp)]
    fn keyring_status(
        fcinfo: pg_sys::FunctionCallInfo,
    ) -> TableIterator<
        'static,
        (
            name!(key_id, i32),
            name!(status, String),
            name!(created_at, TimestampWithTimeZone),
            name!(secrets, i64),
        ),
    > {
        // SAFETY: pgrx passes this call's fcinfo.
        let _as_owner = unsafe { definer::enter_from(fcinfo) };
        let rows = (|| {
            require_privileged("integrations.keyring_status")?;
            Spi::connect(|c| {
                let mut out = Vec::new();
                for row in c.select(
                    // counted in one pass and joined: Citus runs no correlated
                    // subquery next to a reference table (the keys, once distributed)
                    "SELECT k.key_id, k.status, k.created_at, COALESCE(n.secrets, 0) \
                     FROM integrations.keys k \
                     LEFT JOIN (SELECT key_id, count(*) AS secrets FROM integrations.secrets GROUP BY key_id) n \
                       ON n.key_id = k.key_id \
                     ORDER BY k.key_id",
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
