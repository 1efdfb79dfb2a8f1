//! Moving off the wide `businesses` table (seeds 000/001):
//! `integrations.migrate_business_columns()` copies the legacy columns
//! (`heygen_*`, `email_provider`/`email_secret_id`/`sender_*`, `blog_*`) into
//! the per-kind tables, re-encrypting legacy Vault secrets into our store, and
//! optionally drops the columns and the old RPCs. Idempotent: a business that
//! already has a row for that provider is left as it is.

use pgrx::pg_sys;
use pgrx::Uuid;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::store;
use crate::kinds::{self, Kind};
use crate::ops::vault;
use crate::pg::definer;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans;
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller;
use crate::tenancy::Caller;

struct Legacy {
    kind: &'static Kind,
    /// Legacy provider column, or the one provider the kind had.
    provider: LegacyProvider,
    secret: &'static str,
    options: [&'static str; 2],
}

enum LegacyProvider {
    Column(&'static str),
    Fixed(&'static str),
}

static LEGACY: [Legacy; 3] = [
    Legacy {
        kind: &kinds::ai_avatar::KIND,
        provider: LegacyProvider::Fixed("heygen"),
        secret: "heygen_secret_id",
        options: ["heygen_avatar_id", "heygen_voice_id"],
    },
    Legacy {
        kind: &kinds::email::KIND,
        provider: LegacyProvider::Column("email_provider"),
        secret: "email_secret_id",
        options: ["sender_name", "sender_email"],
    },
    Legacy {
        kind: &kinds::blog::KIND,
        provider: LegacyProvider::Column("blog_provider"),
        secret: "blog_secret_id",
        options: ["blog_site_url", "blog_username"],
    },
];

/// Old RPCs of the wide-table era, dropped with the columns.
const LEGACY_FUNCTIONS: &[&str] = &[
    "public.set_heygen_key(uuid, text)",
    "public.delete_heygen_key(uuid)",
    "public.get_heygen_secret(uuid)",
];

fn legacy_columns(l: &Legacy) -> Vec<&'static str> {
    let mut cols = vec![l.secret, l.options[0], l.options[1]];
    if let LegacyProvider::Column(c) = l.provider {
        cols.push(c);
    }
    cols
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

struct LegacyRow {
    business: Uuid,
    provider: Option<String>,
    secret: Option<String>,
    secret_id: Option<Uuid>,
    options: [Option<String>; 2],
}

/// Checks `p_table`: an ordinary or partitioned table the caller owns
/// (superusers excepted), since it is read and, with `p_drop_columns`,
/// altered. Returns its name as SQL (quoted by regclass).
fn checked_table(
    c: &pgrx::spi::SpiClient<'_>,
    table: pg_sys::Oid,
    caller: &Caller,
) -> Result<String> {
    crate::pg::direct::lock_relation(table);
    let rows = c.select(
        "SELECT c.relkind::text, c.relowner, c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.oid = $1",
        Some(1),
        &[table.into()],
    )?;
    if rows.is_empty() {
        return Err(Error::InvalidArgument("p_table does not exist".into()));
    }
    let row = rows.first();
    let kind: String = row.get(1)?.unwrap_or_default();
    let owner: pg_sys::Oid = row.get(2)?.unwrap_or(pg_sys::InvalidOid);
    let name: String = row.get(3)?.unwrap_or_default();
    if kind != "r" && kind != "p" {
        return Err(Error::InvalidArgument(format!(
            "p_table: {name} is not a table (views, foreign tables and other relations are refused)"
        )));
    }
    if !caller::owns(caller.role, owner) {
        return Err(Error::NotAllowed(format!(
            "permission denied: p_table {name} is not owned by the caller ({})",
            caller.role_name()
        )));
    }
    Ok(name)
}

fn migrate(table: pg_sys::Oid, drop_columns: bool) -> Result<Vec<(&'static str, i64)>> {
    caller::require_privileged("integrations.migrate_business_columns")?;
    let caller = Caller::current();
    Spi::connect_mut(|c| {
        let name = checked_table(c, table, &caller)?;
        // Only columns of plain types: a cast from a type of the table
        // owner's would run its code while the rows are read.
        let mut columns = Vec::new();
        for row in c.select(
            "SELECT attname::text FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped \
               AND atttypid IN ('pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype, 'pg_catalog.uuid'::regtype)",
            None,
            &[table.into()],
        )? {
            columns.extend(row.get::<String>(1)?);
        }
        let vault = vault::readable(c, &caller)?;
        // The legacy rows of every kind, read with the caller's privileges.
        let mut legacy = Vec::new();
        for l in &LEGACY {
            let needed = legacy_columns(l);
            if !needed
                .iter()
                .all(|col| columns.iter().any(|have| have == col))
            {
                continue;
            }
            let provider_expr = match l.provider {
                LegacyProvider::Column(col) => {
                    format!("pg_catalog.lower(pg_catalog.btrim(t.{}))", quote_ident(col))
                }
                LegacyProvider::Fixed(p) => format!("'{p}'::text"),
            };
            let (s, o1, o2) = (
                quote_ident(l.secret),
                quote_ident(l.options[0]),
                quote_ident(l.options[1]),
            );
            let sql = format!(
                "SELECT t.id, {provider_expr}, t.{s}, t.{o1}::text, t.{o2}::text FROM {name} t \
                 WHERE t.{s} IS NOT NULL OR t.{o1} IS NOT NULL OR t.{o2} IS NOT NULL ORDER BY t.id"
            );
            let mut rows = Vec::new();
            definer::as_caller(|| -> Result<()> {
                for row in c.select(&sql, None, &[])? {
                    let Some(business) = row.get::<Uuid>(1)? else {
                        continue;
                    };
                    rows.push(LegacyRow {
                        business,
                        provider: row.get(2)?,
                        secret: None,
                        secret_id: row.get(3)?,
                        options: [row.get(4)?, row.get(5)?],
                    });
                }
                Ok(())
            })?;
            legacy.push((l, rows));
        }
        // A Vault secret referenced by the rows of two businesses belongs to
        // neither for sure: it is not copied to either.
        let mut holders: std::collections::HashMap<Uuid, Uuid> = std::collections::HashMap::new();
        let mut shared = std::collections::HashSet::new();
        for (_, rows) in &legacy {
            for r in rows {
                if let Some(s) = r.secret_id {
                    match holders.insert(s, r.business) {
                        Some(b) if b != r.business => {
                            shared.insert(s);
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut report = Vec::new();
        for (l, rows) in legacy {
            let mut migrated = 0i64;
            for mut r in rows {
                if let Some(why) = invalid(l.kind, &r) {
                    notice(format!(
                        "{}: skipped business {}: {why}",
                        l.kind.name, r.business
                    ));
                    continue;
                }
                if let Some(s) = r.secret_id {
                    if shared.contains(&s) {
                        notice(format!(
                            "{}: skipped business {}: its legacy secret id {s} is also referenced by another business's row",
                            l.kind.name, r.business
                        ));
                        continue;
                    }
                    if vault {
                        r.secret = vault::secret(c, s)?;
                    }
                }
                let provider = r.provider.clone().unwrap_or_default();
                if r.secret_id.is_some() && r.secret.is_none() {
                    notice(format!(
                        "{}: business {}: its legacy secret could not be read (no vault.decrypted_secrets, or no such secret); migrated without a key",
                        l.kind.name, r.business
                    ));
                }
                let secret = match &r.secret {
                    Some(v) if !v.is_empty() => Some(store::create(
                        c,
                        r.business,
                        v.as_bytes().to_vec(),
                        l.kind.secret_description,
                    )?),
                    _ => None,
                };
                let inserted = plans::write_returning_id(
                    c,
                    &l.kind.statements.insert,
                    &[
                        r.business.into(),
                        provider.as_str().into(),
                        r.options[0].as_deref().into(),
                        r.options[1].as_deref().into(),
                        fcall::jsonb_param(None),
                        secret.into(),
                    ],
                )?;
                let Some(id) = inserted else {
                    // Already migrated (or set through the new RPCs): keep it.
                    if let Some(s) = secret {
                        store::delete(c, s)?;
                    }
                    continue;
                };
                audit::record(
                    &caller,
                    Action::Set,
                    l.kind.name,
                    &r.business,
                    Some(&provider),
                    Some(&id),
                )?;
                migrated += 1;
            }
            report.push((l.kind.name, migrated));
        }
        if drop_columns {
            for l in &LEGACY {
                for col in legacy_columns(l) {
                    c.update(
                        &format!(
                            "ALTER TABLE {name} DROP COLUMN IF EXISTS {}",
                            quote_ident(col)
                        ),
                        None,
                        &[],
                    )?;
                }
            }
            for f in LEGACY_FUNCTIONS {
                let owner: Option<pg_sys::Oid> = c
                    .select(
                        "SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure($1)",
                        Some(1),
                        &[(*f).into()],
                    )?
                    .first()
                    .get(1)
                    .unwrap_or(None);
                match owner {
                    Some(o) if caller::owns(caller.role, o) => {
                        c.update(&format!("DROP FUNCTION IF EXISTS {f}"), None, &[])?;
                    }
                    Some(_) => notice(format!("left {f} in place: the caller does not own it")),
                    None => {}
                }
            }
        }
        Ok(report)
    })
}

fn invalid(kind: &Kind, r: &LegacyRow) -> Option<String> {
    let Some(provider) = &r.provider else {
        return Some("no provider".into());
    };
    if let Err(e) = kinds::check_provider(kind, "provider", provider) {
        return Some(e.to_string());
    }
    for (opt, value) in kind.options.iter().zip(&r.options) {
        if let (Some(check), Some(v)) = (opt.check, value) {
            if !v.is_empty() {
                if let Err(e) = check(opt.column, v) {
                    return Some(e);
                }
            }
        }
    }
    None
}

fn notice(message: String) {
    pgrx::notice!("{message}");
}

sql_function!(pgi_migrate_business_columns => migrate_business_columns);
/// `integrations.migrate_business_columns`, declared in `sql/ops/migrate.sql`.
fn migrate_business_columns(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let table: pg_sys::Oid = call.required(0, "p_table")?;
    let drop_columns: bool = call.arg(1).unwrap_or(false);
    let report = migrate(table, drop_columns)?;
    call.begin_rows();
    for (kind, n) in report {
        let mut values = [fcall::datum(kind), fcall::datum(n)];
        let mut nulls = [false, false];
        call.put_row(&mut values, &mut nulls);
    }
    Ok(fcall::void())
}
