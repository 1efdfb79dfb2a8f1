//! Adopting the seeds' own tables (`integrations.adopt_legacy_integrations()`):
//! the rows of the tables `CREATE EXTENSION` moved into `integrations_legacy`
//! (`sql/ops/legacy.sql`) are copied into the extension's tables with their
//! ids, business ids, configuration, status and timestamps; each key is read
//! from Vault with the caller's privileges and sealed again. Idempotent: a row
//! whose id is already in the extension's table is skipped.

use std::collections::{HashMap, HashSet};

use pgrx::pg_sys;
use pgrx::Uuid;
use serde_json::Value;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::store;
use crate::kinds::{self, Kind};
use crate::ops::vault;
use crate::pg::fcall::{self, Call};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller;
use crate::tenancy::Caller;

const STATUSES: &[&str] = &["active", "inactive", "error"];

/// The columns of `integrations_legacy.<table>`, or `None` when there is no
/// such table. Only a plain table of built-in column types is read (a view,
/// a foreign table or a user-defined type would run someone else's code),
/// and only one that — like the schema — belongs to a role as trusted as the
/// caller: a superuser, a privileged role (`service_role`,
/// `integrations_admin`, or one with their privileges, as Supabase's
/// `postgres` has), or the caller itself. A table an API role or a login
/// acting as one made before the install (it would have been moved here
/// like the seeds') could hold rows made up to land in any business: it is
/// refused with 42501, so a caller that does not see NOTICEs (`rpc()`) sees
/// why nothing was adopted.
fn legacy_columns(
    c: &pgrx::spi::SpiClient<'_>,
    table: &str,
    caller: &Caller,
) -> Result<Option<Vec<String>>> {
    let rows = c.select(
        "SELECT c.relkind::text, c.relowner, n.nspowner, \
                (SELECT pg_catalog.bool_and(a.atttypid < 16384) FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                NOT c.relrowsecurity AND EXISTS ( \
                    SELECT FROM pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))) g \
                    WHERE g.privilege_type IN ('INSERT', 'UPDATE') \
                      AND (g.grantee = 0 OR g.grantee IN (SELECT r.oid FROM pg_catalog.pg_roles r \
                                                          WHERE r.rolname IN ('anon', 'authenticated')))) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'integrations_legacy' AND c.relname = $1",
        Some(1),
        &[table.into()],
    )?;
    if rows.is_empty() {
        return Ok(None);
    }
    let row = rows.first();
    let kind: Option<String> = row.get(1)?;
    let owners: [Option<pg_sys::Oid>; 2] = [row.get(2)?, row.get(3)?];
    let builtin: Option<bool> = row.get(4)?;
    let trusted = |o: pg_sys::Oid| caller::is_privileged(o) || o == caller.role;
    let why = if kind.as_deref() != Some("r") {
        Some("it is not a plain table (drop it, or make it one)".to_string())
    } else if let Some(o) = owners.iter().flatten().find(|o| !trusted(**o)) {
        Some(format!(
            "it (or schema integrations_legacy) belongs to role {}, which is neither privileged nor the caller: it may not be the seeds' (an API role could have made it before the install); if it is, give it to a privileged role with ALTER TABLE … OWNER TO",
            caller::role_name(*o)
        ))
    } else if builtin != Some(true) {
        Some("a column has a user-defined type".to_string())
    } else {
        None
    };
    if let Some(why) = why {
        return Err(Error::NotAllowed(format!(
            "permission denied: integrations_legacy.{table} is not read: {why}"
        )));
    }
    if row.get::<bool>(6)? == Some(true) {
        // Seed 001 made its table without row level security, and Supabase's
        // default privileges let anon and authenticated write it: its rows
        // are what the seed let anyone signed in write. Adoption keeps them
        // as they are (the seed app's state), and says so.
        pgrx::warning!(
            "integrations_legacy.{table} had no row level security while anon or authenticated could write it: any signed-in user could have written its rows; check them (a key is adopted only from the Vault secret the seed stored for the row's business and provider)"
        );
    }
    Ok(Some(row.get::<Vec<String>>(5)?.unwrap_or_default()))
}

/// `l.<column>` cast to `ty` when the legacy table has it, else NULL of `ty`.
fn column(columns: &[String], name: &str, ty: &str) -> String {
    if columns.iter().any(|c| c == name) {
        format!("l.\"{name}\"::{ty}")
    } else {
        format!("NULL::{ty}")
    }
}

/// The attached tenant table, if any (checked against once per adopted row).
fn tenant_table(c: &pgrx::spi::SpiClient<'_>) -> Result<Option<String>> {
    Ok(c.select(
        "SELECT table_name::text FROM integrations.tenant_table",
        Some(1),
        &[],
    )?
    .first()
    .get(1)
    .unwrap_or(None))
}

/// Whether the attached tenant table (if any) has business `id`.
fn business_known(c: &pgrx::spi::SpiClient<'_>, tenants: Option<&str>, id: Uuid) -> Result<bool> {
    let Some(table) = tenants else {
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

fn normalized(provider: &Option<String>) -> String {
    provider
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_lowercase()
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

/// One keyed kind's legacy rows, or `None` when there is no table to read.
fn read_kind(
    c: &pgrx::spi::SpiClient<'_>,
    kind: &'static Kind,
    caller: &Caller,
) -> Result<Option<Vec<Row>>> {
    let Some(columns) = legacy_columns(c, kind.table, caller)? else {
        return Ok(None);
    };
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
    Ok(Some(rows))
}

/// The ids this kind's adoptions already copied (from the audit trail), so
/// a row adopted and since deleted is not brought back by a second run.
fn adopted_before(c: &pgrx::spi::SpiClient<'_>, kind: &str) -> Result<HashSet<Uuid>> {
    let mut out = HashSet::new();
    for r in c.select(
        "SELECT target_id FROM integrations.audit_log WHERE action = 'adopt' AND kind = $1 AND target_id IS NOT NULL",
        None,
        &[kind.into()],
    )? {
        out.extend(r.get::<Uuid>(1)?);
    }
    Ok(out)
}

/// Vault secret ids that legacy rows of two different businesses point at:
/// their keys are adopted for neither (a row could have been written to
/// point at another business's secret).
fn shared_secrets<'a>(rows: impl Iterator<Item = &'a Row>) -> HashSet<Uuid> {
    let mut owner: HashMap<Uuid, Option<Uuid>> = HashMap::new();
    let mut shared = HashSet::new();
    for r in rows {
        if let Some(s) = r.secret_id {
            match owner.insert(s, r.business) {
                Some(b) if b != r.business => {
                    shared.insert(s);
                }
                _ => {}
            }
        }
    }
    shared
}

/// The key behind a legacy row's `secret_id`, when it may be adopted: Vault
/// is readable, no other business's row points at it, and its Vault name is
/// the one the seeds gave it (`<kind>_<provider>_key_for_business_<id>`), so
/// a row cannot borrow a secret stored for something else.
fn legacy_key(
    c: &pgrx::spi::SpiClient<'_>,
    kind: &Kind,
    r: &Row,
    business: Uuid,
    vault: bool,
    shared: &HashSet<Uuid>,
) -> Result<std::result::Result<String, &'static str>> {
    let Some(secret_id) = r.secret_id else {
        return Ok(Err("it has no secret_id"));
    };
    if !vault {
        return Ok(Err("there is no Vault to read it from"));
    }
    if shared.contains(&secret_id) {
        return Ok(Err(
            "its Vault secret is also named by another business's row",
        ));
    }
    let Some((name, key)) = vault::named_secret(c, secret_id)? else {
        return Ok(Err("its Vault secret does not exist"));
    };
    let provider = r.provider.as_deref().unwrap_or_default();
    if name.as_deref()
        != Some(&format!(
            "{}_{provider}_key_for_business_{business}",
            kind.name
        ))
    {
        return Ok(Err(
            "its Vault secret is not named for this business and provider",
        ));
    }
    match key {
        Some(k) if !k.is_empty() => Ok(Ok(k)),
        _ => Ok(Err("its Vault secret is empty")),
    }
}

/// Adopts one keyed kind's legacy rows: (adopted, skipped).
fn adopt_kind(
    c: &mut pgrx::spi::SpiClient<'_>,
    kind: &'static Kind,
    rows: Vec<Row>,
    vault: bool,
    shared: &HashSet<Uuid>,
    caller: &Caller,
) -> Result<(i64, i64)> {
    let before = adopted_before(c, kind.name)?;
    let tenants = tenant_table(c)?;
    // (business, provider) named by more than one row: which one is meant is
    // not for us to guess, so none of them is adopted.
    let mut seen: HashMap<(Option<Uuid>, String), usize> = HashMap::new();
    for r in &rows {
        *seen
            .entry((r.business, normalized(&r.provider)))
            .or_default() += 1;
    }
    let (c1, c2) = (kind.options[0].column, kind.options[1].column);
    let insert = format!(
        "INSERT INTO public.{t} (id, business_id, provider, secret_id, {c1}, {c2}, provider_config, status, \
                                 validated_at, last_synced_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), $7, $8, $9, $10, $11, $12) \
         ON CONFLICT DO NOTHING RETURNING id",
        t = kind.table
    );
    let exists = format!("SELECT 1 FROM public.{} WHERE id = $1", kind.table);
    let (mut adopted, mut skipped) = (0, 0);
    for mut r in rows {
        let (Some(id), Some(business)) = (r.id, r.business) else {
            skip(kind.table, r.id, "no id or business_id");
            skipped += 1;
            continue;
        };
        if before.contains(&id) || !c.select(&exists, Some(1), &[id.into()])?.is_empty() {
            skip(kind.table, Some(id), "already adopted");
            skipped += 1;
            continue;
        }
        let provider = normalized(&r.provider);
        if seen[&(r.business, provider.clone())] > 1 {
            skip(
                kind.table,
                Some(id),
                "another legacy row has the same business and provider",
            );
            skipped += 1;
            continue;
        }
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
        let config = match r.config.take().map(|j| j.0) {
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
        if !business_known(c, tenants.as_deref(), business)? {
            skip(
                kind.table,
                Some(id),
                "its business is not in the attached tenant table",
            );
            skipped += 1;
            continue;
        }
        let secret = match legacy_key(c, kind, &r, business, vault, shared)? {
            Ok(key) => Some(store::create(
                c,
                business,
                key.into_bytes(),
                kind.secret_description,
            )?),
            Err(why) => {
                pgrx::notice!(
                    "integrations_legacy.{}: row {id} adopted without a key ({why}), marked inactive",
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
                // now() is the transaction's start, as in SQL; passed, not written
                // in the statement: Citus refuses now() inside COALESCE
                r.created_at.unwrap_or_else(pgrx::datetime::now).into(),
                r.updated_at.unwrap_or_else(pgrx::datetime::now).into(),
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
            Action::Adopt,
            kind.name,
            &business,
            Some(&provider),
            Some(&id),
        )?;
        adopted += 1;
    }
    Ok((adopted, skipped))
}

/// Adopts the legacy Upload-Post profiles: (adopted, skipped), or `None`.
fn adopt_profiles(c: &mut pgrx::spi::SpiClient<'_>, caller: &Caller) -> Result<Option<(i64, i64)>> {
    const TABLE: &str = "upload_post_profiles";
    let Some(columns) = legacy_columns(c, TABLE, caller)? else {
        return Ok(None);
    };
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
    let before = adopted_before(c, "social")?;
    let tenants = tenant_table(c)?;
    let (mut adopted, mut skipped) = (0, 0);
    for (id, business, username, accounts, created, updated) in rows {
        let (Some(id), Some(business), Some(username)) = (id, business, username) else {
            skip(TABLE, id, "no id, business_id or upload_post_username");
            skipped += 1;
            continue;
        };
        if before.contains(&id) {
            skip(TABLE, Some(id), "already adopted");
            skipped += 1;
            continue;
        }
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
        if !business_known(c, tenants.as_deref(), business)? {
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
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING RETURNING id",
            Some(1),
            &[
                id.into(),
                business.into(),
                username.as_str().into(),
                pgrx::JsonB(accounts).into(),
                created.unwrap_or_else(pgrx::datetime::now).into(),
                updated.unwrap_or_else(pgrx::datetime::now).into(),
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
            Action::Adopt,
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
        let mut read = Vec::new();
        for kind in [
            &kinds::ai_avatar::KIND,
            &kinds::email::KIND,
            &kinds::blog::KIND,
        ] {
            if let Some(rows) = read_kind(c, kind, &caller)? {
                read.push((kind, rows));
            }
        }
        let shared = shared_secrets(read.iter().flat_map(|(_, rows)| rows));
        let mut report = Vec::new();
        for (kind, rows) in read {
            let (a, s) = adopt_kind(c, kind, rows, vault, &shared, &caller)?;
            report.push((kind.table.to_string(), a, s));
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
