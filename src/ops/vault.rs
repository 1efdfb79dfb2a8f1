//! Supabase Vault, where the seeds kept their keys: whether it can be trusted
//! and read, and reading one secret. Used by the migration off the wide
//! `businesses` table and by the adoption of the seeds' own tables.

use pgrx::prelude::*;
use pgrx::Uuid;

use crate::core::error::{Error, Result};
use crate::pg::definer;
use crate::tenancy::caller;
use crate::tenancy::Caller;

/// Whether Supabase Vault can be read: `vault.decrypted_secrets` exists, and
/// the `vault` schema and that view belong to a superuser (a look-alike made
/// by another role would run its code, and could answer with anything).
pub(crate) fn readable(c: &pgrx::spi::SpiClient<'_>, caller: &Caller) -> Result<bool> {
    let rows = c.select(
        "SELECT n.nspowner, v.relowner FROM pg_catalog.pg_namespace n \
         LEFT JOIN pg_catalog.pg_class v ON v.relnamespace = n.oid AND v.relname = 'decrypted_secrets' \
         WHERE n.nspname = 'vault'",
        Some(1),
        &[],
    )?;
    if rows.is_empty() {
        return Ok(false);
    }
    let row = rows.first();
    let schema_owner: Option<pg_sys::Oid> = row.get(1)?;
    let Some(view_owner) = row.get::<pg_sys::Oid>(2)? else {
        return Ok(false);
    };
    if [schema_owner, Some(view_owner)]
        .iter()
        .all(|o| o.is_some_and(caller::is_superuser))
    {
        // Keys are read with the caller's privileges: never one the caller
        // could not read from Vault itself.
        let readable = c
            .select(
                "SELECT pg_catalog.has_table_privilege($1, 'vault.decrypted_secrets', 'SELECT')",
                Some(1),
                &[caller.role.into()],
            )?
            .first()
            .get::<bool>(1)?
            .unwrap_or(false);
        if readable {
            Ok(true)
        } else {
            Err(Error::NotAllowed(format!(
                "permission denied: the caller ({}) may not read vault.decrypted_secrets, and keys are read with its privileges",
                caller.role_name()
            )))
        }
    } else {
        Err(Error::NotAllowed(
            "permission denied: the vault schema (or vault.decrypted_secrets) is not owned by a superuser, so its secrets are not read".into(),
        ))
    }
}

/// The value of Vault secret `id`, if there is one, read with the caller's
/// privileges (inside a security-restricted operation).
/// (Not through `named_secret`: a Vault without names is still read.)
pub(crate) fn secret(c: &pgrx::spi::SpiClient<'_>, id: Uuid) -> Result<Option<String>> {
    definer::as_caller(|| {
        let rows = c.select(
            "SELECT v.decrypted_secret::text FROM vault.decrypted_secrets v WHERE v.id = $1",
            Some(1),
            &[id.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(rows.first().get(1)?)
    })
}

/// The name and value of Vault secret `id`, if there is one, read with the
/// caller's privileges.
pub(crate) fn named_secret(
    c: &pgrx::spi::SpiClient<'_>,
    id: Uuid,
) -> Result<Option<(Option<String>, Option<String>)>> {
    definer::as_caller(|| {
        let rows = c.select(
            "SELECT v.name::text, v.decrypted_secret::text FROM vault.decrypted_secrets v WHERE v.id = $1",
            Some(1),
            &[id.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok(Some((row.get(1)?, row.get(2)?)))
    })
}
