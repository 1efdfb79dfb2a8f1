//! Adopting the seeds' own tables (`integrations.adopt_legacy_integrations()`):
//! the rows of the tables `CREATE EXTENSION` moved into `integrations_legacy`
//! (`sql/ops/legacy.sql`) are copied into the extension's tables with their
//! ids, business ids, configuration, status and timestamps; each key is read
//! from Vault with the caller's privileges and sealed again. Idempotent: a row
//! whose id is already in the extension's table is skipped.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::Uuid;
use serde_json::Value;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::store;
use crate::kinds::{self, Kind};
use crate::ops::vault;
use crate::pg::fcall::{self, Call};
use crate::sql_function;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller;
use crate::tenancy::Caller;

const STATUSES: &[&str] = &["active", "inactive", "error"];

/// The columns of `integrations_legacy.<table>`; empty when there is no such table.
fn legacy_columns(c: &pgrx::spi::SpiClient<'_>, table: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in c.select(
        "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = pg_catalog.to_regclass('integrations_legacy.' || pg_catalog.quote_ident($1)) \
           AND a.attnum > 0 AND NOT a.attisdropped",
        None,
        &[table.into()],
    )? {
        out.extend(row.get::<String>(1)?);
    }
    Ok(out)
}

/// `l.<column>` cast to `ty` when the legacy table has it, else NULL of `ty`.
fn column(columns: &[String], name: &str, ty: &str) -> String {
    if columns.iter().any(|c| c == name) {
        format!("l.\"{name}\"::{ty}")
    } else {
        format!("NULL::{ty}")
    }
}

/// Whether the attached tenant table (if any) has business `id`.
fn business_known(c: &pgrx::spi::SpiClient<'_>, id: Uuid) -> Result<bool> {
    let table: Option<String> = c
        .select(
            "SELECT table_name::text FROM integrations.tenant_table",
            Some(1),
            &[],
        )?
        .first()
        .get(1)
        .unwrap_or(None);
    let Some(table) = table else {
        return Ok(true);
    };
    Ok(!c
        .select(
            &format!("SELECT 1 FROM {table} WHERE id = $1"),
            Some(1),
            &[id.into()],
        )?
        .is_empty())
}

fn skip(table: &str, id: Option<Uuid>, why: &str) {
    let id = id.map_or("(no id)".to_string(), |i| i.to_string());
    pgrx::notice!("integrations_legacy.{table}: skipped row {id}: {why}");
}

struct Row {
    id: Option<Uuid>,
    business: Option<Uuid>,
    provider: Option<String>,
    secret_id: Option<Uuid>,
    options: [Option<String>; 2],
    config: Option<pgrx::JsonB>,
    status: Option<String>,
    validated_at: Option<pgrx::datum::TimestampWithTimeZone>,
    last_synced_at: Option<pgrx::datum::TimestampWithTimeZone>,
    created_at: Option<pgrx::datum::TimestampWithTimeZone>,
    updated_at: Option<pgrx::datum::TimestampWithTimeZone>,
}

/// Adopts one keyed kind's legacy rows: (adopted, skipped), or `None` when
/// there is no legacy table.
fn adopt_kind(
    c: &mut pgrx::spi::SpiClient<'_>,
    kind: &'static Kind,
    vault: bool,
    caller: &Caller,
) -> Result<Option<(i64, i64)>> {
    let columns = legacy_columns(c, kind.table)?;
    if columns.is_empty() {
        return Ok(None);
    }
    let (c1, c2) = (kind.options[0].column, kind.options[1].column);
    let select = format!(
        "SELECT {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM integrations_legacy.\"{}\" l ORDER BY 1",
        column(&columns, "id", "uuid"),
        column(&columns, "business_id", "uuid"),
        column(&columns, "provider", "text"),
        column(&columns, "secret_id", "uuid"),
        column(&columns, c1, "text"),
        column(&columns, c2, "text"),
        column(&columns, "provider_config", "jsonb"),
        column(&columns, "status", "text"),
        column(&columns, "validated_at", "timestamptz"),
        column(&columns, "last_synced_at", "timestamptz"),
        column(&columns, "created_at", "timestamptz"),
        column(&columns, "updated_at", "timestamptz"),
        kind.table
    );
    let mut rows = Vec::new();
    // Read with the caller's privileges: the table was whoever's made it.
    for r in crate::pg::definer::as_caller(|| c.select(&select, None, &[]))? {
        rows.push(Row {
            id: r.get(1)?,
            business: r.get(2)?,
            provider: r.get(3)?,
            secret_id: r.get(4)?,
            options: [r.get(5)?, r.get(6)?],
            config: r.get(7)?,
            status: r.get(8)?,
            validated_at: r.get(9)?,
            last_synced_at: r.get(10)?,
            created_at: r.get(11)?,
            updated_at: r.get(12)?,
        });
    }
    let insert = format!(
        "INSERT INTO public.{t} (id, business_id, provider, secret_id, {c1}, {c2}, provider_config, status, \
                                 validated_at, last_synced_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7, $8, $9, $10, COALESCE($11, pg_catalog.now()), \
                 COALESCE($12, pg_catalog.now())) \
         ON CONFLICT DO NOTHING RETURNING id",
        t = kind.table
    );
    let exists = format!("SELECT 1 FROM public.{} WHERE id = $1", kind.table);
    let (mut adopted, mut skipped) = (0, 0);
    for r in rows {
        let (Some(id), Some(business)) = (r.id, r.business) else {
            skip(kind.table, r.id, "no id or business_id");
            skipped += 1;
            continue;
        };
        if !c.select(&exists, Some(1), &[id.into()])?.is_empty() {
            skip(kind.table, Some(id), "already adopted");
            skipped += 1;
            continue;
        }
        let provider = r.provider.clone().unwrap_or_default().trim().to_lowercase();
        if let Err(e) = kinds::check_provider(kind, "provider", &provider) {
            skip(kind.table, Some(id), &e.to_string());
            skipped += 1;
            continue;
        }
        if let Some(e) =
            kind.options
                .iter()
                .zip(&r.options)
                .find_map(|(opt, v)| match (opt.check, v) {
                    (Some(check), Some(v)) if !v.is_empty() => check(opt.column, v).err(),
                    _ => None,
                })
        {
            skip(kind.table, Some(id), &e);
            skipped += 1;
            continue;
        }
        let config = match r.config.map(|j| j.0) {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                skip(kind.table, Some(id), "provider_config is not a JSON object");
                skipped += 1;
                continue;
            }
        };
        let mut status = r.status.clone().unwrap_or_else(|| "active".into());
        if !STATUSES.contains(&status.as_str()) {
            skip(
                kind.table,
                Some(id),
                "status is not active, inactive or error",
            );
            skipped += 1;
            continue;
        }
        if !business_known(c, business)? {
            skip(
                kind.table,
                Some(id),
                "its business is not in the attached tenant table",
            );
            skipped += 1;
            continue;
        }
        let key = match (r.secret_id, vault) {
            (Some(s), true) => vault::secret(c, s)?,
            _ => None,
        };
        let secret = match &key {
            Some(k) if !k.is_empty() => Some(store::create(
                c,
                business,
                k.as_bytes().to_vec(),
                kind.secret_description,
            )?),
            _ => {
                pgrx::notice!(
                    "integrations_legacy.{}: row {id} adopted without a key (no Vault, or no such secret in it), marked inactive",
                    kind.table
                );
                status = "inactive".into();
                None
            }
        };
        let inserted = c.update(
            &insert,
            Some(1),
            &[
                id.into(),
                business.into(),
                provider.as_str().into(),
                secret.into(),
                r.options[0].as_deref().into(),
                r.options[1].as_deref().into(),
                pgrx::JsonB(config).into(),
                status.as_str().into(),
                r.validated_at.into(),
                r.last_synced_at.into(),
                r.created_at.into(),
                r.updated_at.into(),
            ],
        )?;
        if inserted.is_empty() {
            if let Some(s) = secret {
                store::delete(c, s)?;
            }
            skip(
                kind.table,
                Some(id),
                "the business already has an integration with this provider",
            );
            skipped += 1;
            continue;
        }
        audit::record(
            caller,
            Action::Set,
            kind.name,
            &business,
            Some(&provider),
            Some(&id),
        )?;
        adopted += 1;
    }
    Ok(Some((adopted, skipped)))
}

/// Adopts the legacy Upload-Post profiles: (adopted, skipped), or `None`.
fn adopt_profiles(c: &mut pgrx::spi::SpiClient<'_>, caller: &Caller) -> Result<Option<(i64, i64)>> {
    const TABLE: &str = "upload_post_profiles";
    let columns = legacy_columns(c, TABLE)?;
    if columns.is_empty() {
        return Ok(None);
    }
    let select = format!(
        "SELECT {}, {}, {}, {}, {}, {} FROM integrations_legacy.{TABLE} l ORDER BY 1",
        column(&columns, "id", "uuid"),
        column(&columns, "business_id", "uuid"),
        column(&columns, "upload_post_username", "text"),
        column(&columns, "social_accounts", "jsonb"),
        column(&columns, "created_at", "timestamptz"),
        column(&columns, "updated_at", "timestamptz"),
    );
    let mut rows = Vec::new();
    for r in crate::pg::definer::as_caller(|| c.select(&select, None, &[]))? {
        rows.push((
            r.get::<Uuid>(1)?,
            r.get::<Uuid>(2)?,
            r.get::<String>(3)?,
            r.get::<pgrx::JsonB>(4)?,
            r.get::<pgrx::datum::TimestampWithTimeZone>(5)?,
            r.get::<pgrx::datum::TimestampWithTimeZone>(6)?,
        ));
    }
    let (mut adopted, mut skipped) = (0, 0);
    for (id, business, username, accounts, created, updated) in rows {
        let (Some(id), Some(business), Some(username)) = (id, business, username) else {
            skip(TABLE, id, "no id, business_id or upload_post_username");
            skipped += 1;
            continue;
        };
        if username.is_empty()
            || !username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            skip(
                TABLE,
                Some(id),
                "upload_post_username is not lower-case letters, digits and underscores",
            );
            skipped += 1;
            continue;
        }
        let accounts = match accounts.map(|j| j.0) {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                skip(TABLE, Some(id), "social_accounts is not a JSON object");
                skipped += 1;
                continue;
            }
        };
        if !business_known(c, business)? {
            skip(
                TABLE,
                Some(id),
                "its business is not in the attached tenant table",
            );
            skipped += 1;
            continue;
        }
        let inserted = c.update(
            "INSERT INTO public.upload_post_profiles (id, business_id, upload_post_username, social_accounts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, COALESCE($5, pg_catalog.now()), COALESCE($6, pg_catalog.now())) \
             ON CONFLICT DO NOTHING RETURNING id",
            Some(1),
            &[
                id.into(),
                business.into(),
                username.as_str().into(),
                pgrx::JsonB(accounts).into(),
                created.into(),
                updated.into(),
            ],
        )?;
        if inserted.is_empty() {
            skip(
                TABLE,
                Some(id),
                "already adopted, or the business already has a profile or the username is taken",
            );
            skipped += 1;
            continue;
        }
        audit::record(
            caller,
            Action::Set,
            "social",
            &business,
            Some("upload_post"),
            Some(&id),
        )?;
        adopted += 1;
    }
    Ok(Some((adopted, skipped)))
}

fn adopt() -> Result<Vec<(String, i64, i64)>> {
    caller::require_privileged("integrations.adopt_legacy_integrations")?;
    let caller = Caller::current();
    Spi::connect_mut(|c| {
        let vault = vault::readable(c, &caller)?;
        let mut report = Vec::new();
        for kind in [
            &kinds::ai_avatar::KIND,
            &kinds::email::KIND,
            &kinds::blog::KIND,
        ] {
            if let Some((a, s)) = adopt_kind(c, kind, vault, &caller)? {
                report.push((kind.table.to_string(), a, s));
            }
        }
        if let Some((a, s)) = adopt_profiles(c, &caller)? {
            report.push(("upload_post_profiles".to_string(), a, s));
        }
        Ok::<_, Error>(report)
    })
}

sql_function!(pgi_adopt_legacy_integrations => adopt_legacy_integrations);
/// `integrations.adopt_legacy_integrations`, declared in `sql/ops/legacy.sql`.
fn adopt_legacy_integrations(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let report = adopt()?;
    call.begin_rows();
    for (table, adopted, skipped) in report {
        let mut values = [
            fcall::datum(table),
            fcall::datum(adopted),
            fcall::datum(skipped),
        ];
        call.put_row(&mut values, &mut [false, false, false]);
    }
    Ok(fcall::void())
}
