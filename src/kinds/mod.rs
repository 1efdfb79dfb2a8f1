//! The seed-compatible integration kinds (seeds 000 and 001): one table per
//! kind, each with `set_*`, `get_*`, `get_*_secret` and `delete_*` RPCs of the
//! seeds' names and shapes. This module is the engine; each kind's module
//! describes its table and declares its entry points.
//!
//! Semantics (seed 001, corrected):
//! - `set_*` upserts on (business_id, provider): the API key is sealed in the
//!   secret store (one secret per row, re-sealed in place on later calls), the
//!   optional columns keep their value when the argument is NULL and are
//!   cleared by an empty string, `p_config` NULL keeps the old config (`{}` for
//!   a new row), status goes back to `active`, `validated_at` to now.
//! - `get_*` returns the active row (the first provider by name if several).
//! - `get_*_secret` decrypts the active row's key; privileged callers only
//!   unless `integrations.owner_can_read_secrets` is on. Audited.
//! - `delete_*` deletes every row of the business; a trigger deletes their
//!   secrets (also when the rows go by a cascade from the tenant table).

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::IntoDatum;
use pgrx::Uuid;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::gucs;
use crate::core::store;
use crate::pg::direct;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::pg::update;
use crate::sql_function;
use crate::tenancy;
use crate::tenancy::audit::{self, Action};

pub mod ai_avatar;
pub mod blog;
pub mod email;
pub mod esp;
pub mod social;

/// An optional, validated configuration column set by `set_*`.
/// Validates an optional column's value (argument name, value).
pub type Check = fn(&str, &str) -> std::result::Result<(), String>;

pub struct OptionArg {
    pub column: &'static str,
    pub arg: &'static str,
    pub check: Option<Check>,
}

pub struct KindStatements {
    /// Update the row and re-seal its known secret, in one statement.
    pub fast_update: Statement,
    pub update: Statement,
    /// Settings only, for a NULL `p_api_key`.
    pub update_settings: Statement,
    pub attach_secret: Statement,
    pub insert: Statement,
    pub set_status: Statement,
    pub delete: Statement,
}

/// One integration kind.
pub struct Kind {
    /// Name in the audit log: `ai_avatar`, `email`, `blog`.
    pub name: &'static str,
    pub table: &'static str,
    pub unique_index: &'static CStr,
    /// For messages: "AI avatar provider".
    pub label: &'static str,
    pub options: [OptionArg; 2],
    /// id, provider, option 1, option 2, provider_config, status, validated_at, secret_id
    pub columns: [&'static str; 8],
    pub statements: KindStatements,
    pub secret_description: &'static str,
}

/// The SET list of a save: the two option columns (NULL keeps, `''` clears)
/// and the config (NULL keeps), from arguments $3, $4 and $5.
#[macro_export]
macro_rules! kind_settings_sql {
    ($c1:literal, $c2:literal) => {
        concat!(
            $c1,
            " = CASE WHEN $3 IS NULL THEN ",
            $c1,
            " ELSE NULLIF($3, '') END, ",
            $c2,
            " = CASE WHEN $4 IS NULL THEN ",
            $c2,
            " ELSE NULLIF($4, '') END, ",
            "provider_config = COALESCE($5, provider_config)"
        )
    };
}

/// The statements of a kind, from its table and option columns.
#[macro_export]
macro_rules! kind_statements {
    ($table:literal, $c1:literal, $c2:literal) => {
        // `provider || '' = $2`: the seeds' single-column index on provider
        // must never be the one a kept plan scans. A plan made while the
        // table was empty (at the first set_* of a new database) may pick it,
        // and then each call walks every row of that provider (measured: a
        // load of 20,000 rows went from 3 s to 40 s). The expression leaves
        // only the business_id indexes usable.
        $crate::kinds::KindStatements {
            // Locks the integration row before the secret, like the general
            // path, so concurrent calls cannot deadlock.
            fast_update: $crate::pg::plans::Statement {
                sql: $crate::reseal_with_row_update_sql!(concat!(
                    "UPDATE public.", $table, " SET ",
                    $crate::kind_settings_sql!($c1, $c2), ", status = 'active', validated_at = pg_catalog.now() ",
                    "WHERE business_id = $1 AND provider || '' = $2 AND secret_id = $6 RETURNING id"
                )),
                args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::JSONBOID,
                        BuiltinOid::UUIDOID, BuiltinOid::INT4OID, BuiltinOid::BYTEAOID, BuiltinOid::BYTEAOID],
                mutating: true,
            },
            update: $crate::pg::plans::Statement {
                sql: concat!(
                    "UPDATE public.", $table, " SET ",
                    $crate::kind_settings_sql!($c1, $c2), ", status = 'active', validated_at = pg_catalog.now() ",
                    "WHERE business_id = $1 AND provider || '' = $2 RETURNING id, secret_id"
                ),
                args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::JSONBOID],
                mutating: true,
            },
            // Settings only (p_api_key NULL): the key, status and
            // validated_at stay, and a row without a stored key is not
            // touched — saving settings does not make it usable.
            update_settings: $crate::pg::plans::Statement {
                sql: concat!(
                    "UPDATE public.", $table, " SET ",
                    $crate::kind_settings_sql!($c1, $c2), " ",
                    "WHERE business_id = $1 AND provider || '' = $2 AND secret_id IS NOT NULL RETURNING id"
                ),
                args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::JSONBOID],
                mutating: true,
            },
            attach_secret: $crate::pg::plans::Statement {
                sql: concat!("UPDATE public.", $table, " SET secret_id = $2 WHERE id = $1"),
                args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID],
                mutating: true,
            },
            insert: $crate::pg::plans::Statement {
                sql: concat!(
                    "INSERT INTO public.", $table,
                    " (business_id, provider, secret_id, ", $c1, ", ", $c2, ", provider_config, status, validated_at) ",
                    "VALUES ($1, $2, $6, NULLIF($3, ''), NULLIF($4, ''), COALESCE($5, '{}'::jsonb), 'active', pg_catalog.now()) ",
                    "ON CONFLICT (business_id, provider) DO NOTHING RETURNING id"
                ),
                args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::JSONBOID, BuiltinOid::UUIDOID],
                mutating: true,
            },
            set_status: $crate::pg::plans::Statement {
                sql: concat!(
                    "UPDATE public.", $table, " SET status = $3, error_message = $4, ",
                    "validated_at = COALESCE($5, validated_at), last_synced_at = COALESCE($6, last_synced_at) ",
                    "WHERE business_id = $1 AND provider || '' = $2 RETURNING id"
                ),
                args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID,
                        BuiltinOid::TIMESTAMPTZOID, BuiltinOid::TIMESTAMPTZOID],
                mutating: true,
            },
            delete: $crate::pg::plans::Statement {
                sql: concat!("DELETE FROM public.", $table, " WHERE business_id = $1 RETURNING id, provider"),
                args: &[BuiltinOid::UUIDOID],
                mutating: true,
            },
        }
    };
}

/// An optional text argument: `None` keeps the column, `Some("")` clears it.
fn option_arg(call: &Call, n: usize, opt: &OptionArg) -> Result<Option<String>> {
    let v = call.arg::<String>(n);
    if let (Some(value), Some(check)) = (&v, opt.check) {
        if !value.is_empty() {
            check(opt.arg, value).map_err(Error::InvalidArgument)?;
        }
    }
    Ok(v)
}

const PROVIDER_COLUMNS: &[&str] = &["category", "status"];

/// A kind's providers are data: an active provider of the kind's category in
/// `integration_providers` (`integrations.register_provider()` adds one).
/// Read by its primary key without SQL: a statement was 10% of a `set_*`.
pub fn check_provider(kind: &Kind, arg: &str, provider: &str) -> Result<()> {
    let rel = direct::rel("public", "integration_providers", PROVIDER_COLUMNS)?;
    let (category, status) = (rel.att("category")?, rel.att("status")?);
    let usable = direct::find_in(
        c"public",
        c"integration_providers_pkey",
        &rel,
        &[direct::text_key(1, provider)],
        |row| {
            Ok(Some(
                row.get::<&str>(category) == Some(kind.name)
                    && row.get::<&str>(status) == Some("active"),
            ))
        },
    )?;
    if usable == Some(true) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{arg}: unknown {}; an active provider of category {} in integration_providers is needed (integrations.register_provider adds one)",
        kind.label, kind.name
    )))
}

pub fn set(kind: &'static Kind, call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let provider = call.required::<String>(1, "p_provider")?;
    check_provider(kind, "p_provider", &provider)?;
    // NULL keeps the stored key (settings only); a new row needs one.
    let api_key: Option<&str> = call.arg(2);
    if let Some(key) = api_key {
        if key.trim().is_empty() {
            return Err(Error::InvalidArgument("p_api_key must not be empty".into()));
        }
        if key.len() > store::MAX_SECRET_BYTES {
            return Err(Error::InvalidArgument("p_api_key is too long".into()));
        }
    }
    let opt1 = option_arg(call, 3, &kind.options[0])?;
    let opt2 = option_arg(call, 4, &kind.options[1])?;
    let config = call.object(5, "p_config")?;
    let st = &kind.statements;
    // The row and its current secret, read without SQL (None: no row).
    let known = direct::with_snapshot(|| {
        let rel = direct::rel("public", kind.table, &kind.columns)?;
        let (p, sid, id) = (rel.att("provider")?, rel.att("secret_id")?, rel.att("id")?);
        direct::find_in(
            c"public",
            kind.unique_index,
            &rel,
            &[direct::uuid_key(1, &business)],
            |row| {
                if row.get::<&str>(p) == Some(provider.as_str()) {
                    Ok(Some((
                        row.get::<Uuid>(id),
                        row.get::<Uuid>(sid),
                        row.target(),
                    )))
                } else {
                    Ok(None)
                }
            },
        )
    })?;
    // The common case, re-saving settings with the key: in place, no SQL.
    let mut in_place = None;
    if let (Some(api_key), Some((Some(id), Some(secret), row))) = (api_key, &known) {
        let changes = Changes {
            opt1: opt1.as_deref(),
            opt2: opt2.as_deref(),
            config,
        };
        if resave_in_place(kind, row, &changes)?
            && store::reseal_in_place(*secret, business, api_key.as_bytes().to_vec())?
        {
            in_place = Some(*id);
        }
        // Otherwise (or the secret was not): SQL does it all below.
    }
    // The arguments every statement on the row takes: $1 business, $2
    // provider, $3/$4 the optional columns, $5 the config.
    let row_args = || -> Vec<pgrx::datum::DatumWithOid<'_>> {
        vec![
            business.into(),
            provider.as_str().into(),
            opt1.as_deref().into(),
            opt2.as_deref().into(),
            fcall::jsonb_param(config),
        ]
    };
    let id = match in_place {
        Some(id) => id,
        None => Spi::connect_mut(|c| -> Result<Uuid> {
            if let (Some(api_key), Some((Some(_), Some(secret), _))) = (api_key, &known) {
                let secret = *secret;
                // The common case, re-saving settings with the key: one statement.
                let mut args = row_args();
                args.push(secret.into());
                let plaintext = api_key.as_bytes().to_vec();
                if let Some(id) = store::reseal_with_row_update(
                    c,
                    &st.fast_update,
                    args,
                    secret,
                    business,
                    plaintext,
                )? {
                    return Ok(id);
                }
                // The row changed under us: take the general path.
            }
            let Some(api_key) = api_key else {
                let plan = plans::plan(c, &st.update_settings)?;
                let updated = c.update(plan, None, &row_args())?;
                if let Some(id) = updated.first().get::<Uuid>(1).unwrap_or(None) {
                    return Ok(id);
                }
                return Err(Error::InvalidArgument(match known {
                    Some(_) => format!(
                        "p_api_key must not be null: the business's {} integration with this provider has no stored key",
                        kind.name
                    ),
                    None => format!(
                        "p_api_key must not be null: the business has no {} integration with this provider yet",
                        kind.name
                    ),
                }));
            };
            loop {
                let plan = plans::plan(c, &st.update)?;
                let updated = c.update(plan, None, &row_args())?;
                if !updated.is_empty() {
                    let row = updated.first();
                    let id: Uuid = row.get(1)?.ok_or_else(|| Error::Internal("no id".into()))?;
                    let secret: Option<Uuid> = row.get(2)?;
                    let replaced = match secret {
                        Some(s) => store::replace(c, s, business, api_key.as_bytes().to_vec())?,
                        None => false,
                    };
                    if !replaced {
                        let s = store::create(
                            c,
                            business,
                            api_key.as_bytes().to_vec(),
                            kind.secret_description,
                        )?;
                        let plan = plans::plan(c, &st.attach_secret)?;
                        c.update(plan, None, &[id.into(), s.into()])?;
                    }
                    return Ok(id);
                }
                let s = store::create(
                    c,
                    business,
                    api_key.as_bytes().to_vec(),
                    kind.secret_description,
                )?;
                let mut args = row_args();
                args.push(s.into());
                if let Some(id) = plans::write_returning_id(c, &st.insert, &args)? {
                    return Ok(id);
                }
                // Another session inserted the row first: drop our secret, update theirs.
                store::delete(c, s)?;
            }
        })?,
    };
    audit::record(
        &caller,
        Action::Set,
        kind.name,
        &business,
        Some(&provider),
        Some(&id),
    )?;
    Ok(fcall::datum(id))
}

/// What a re-save changes besides the key: the option columns (`None`
/// keeps, `""` clears) and the config (`None` keeps).
struct Changes<'a> {
    opt1: Option<&'a str>,
    opt2: Option<&'a str>,
    config: Option<fcall::JsonbDatum>,
}

/// The re-save of `row` as the fast SQL statement does it (settings, status
/// `active`, `validated_at` now), written in place by `pg::update`; `false`
/// when the table needs SQL or the row changed since it was read.
fn resave_in_place(kind: &'static Kind, row: &update::Target, c: &Changes<'_>) -> Result<bool> {
    let rel = direct::rel("public", kind.table, &kind.columns)?;
    let column = |att: i16, type_oid: pg_sys::Oid, value: Option<pg_sys::Datum>| update::Set {
        att,
        type_oid,
        value,
    };
    let mut set = Vec::with_capacity(6);
    for (opt, value) in kind.options.iter().zip([c.opt1, c.opt2]) {
        if let Some(v) = value {
            let value = if v.is_empty() { None } else { v.into_datum() };
            set.push(column(rel.att(opt.column)?, pg_sys::TEXTOID, value));
        }
    }
    if let Some(config) = c.config {
        set.push(column(
            rel.att("provider_config")?,
            pg_sys::JSONBOID,
            Some(config.datum()),
        ));
    }
    // SAFETY: reads the running transaction's start time, what now() returns.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    set.push(column(
        rel.att("status")?,
        pg_sys::TEXTOID,
        "active".into_datum(),
    ));
    set.push(column(
        rel.att("validated_at")?,
        pg_sys::TIMESTAMPTZOID,
        Some(pg_sys::Datum::from(now)),
    ));
    Ok(update::update_row(rel.relid, row, &set)? == update::Outcome::Done)
}

/// The active row of `business`, handed to `f` while it is pinned.
fn active_row<T>(
    kind: &'static Kind,
    business: &Uuid,
    f: impl FnMut(&direct::Row, &direct::RelInfo) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let rel = direct::rel("public", kind.table, &kind.columns)?;
    let status = rel.att("status")?;
    let mut f = f;
    direct::find_in(
        c"public",
        kind.unique_index,
        &rel,
        &[direct::uuid_key(1, business)],
        |row| {
            if row.get::<&str>(status) == Some("active") {
                f(row, &rel)
            } else {
                Ok(None)
            }
        },
    )
}

pub fn get(kind: &'static Kind, call: &Call) -> Result<pg_sys::Datum> {
    // declared STABLE: the calling statement's snapshot, as for any STABLE function
    direct::with_statement_snapshot(|| get_row(kind, call))
}

fn get_row(kind: &'static Kind, call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    tenancy::authorize(&business)?;
    call.begin_rows();
    active_row(kind, &business, |row, rel| {
        let mut values = [pg_sys::Datum::from(0); 7];
        let mut nulls = [true; 7];
        for (i, col) in kind.columns[..7].iter().enumerate() {
            if let Some(d) = row.datum(rel.att(col)?) {
                values[i] = d;
                nulls[i] = false;
            }
        }
        call.put_row(&mut values, &mut nulls);
        Ok(Some(()))
    })?;
    Ok(fcall::void())
}

pub fn get_secret(kind: &'static Kind, call: &Call) -> Result<pg_sys::Datum> {
    direct::with_snapshot(|| read_secret(kind, call))
}

fn read_secret(kind: &'static Kind, call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize(&business)?;
    if !caller.privileged && !gucs::owner_can_read_secrets() {
        return Err(Error::NotAllowed(format!(
            "permission denied: get_{}_secret is for service_role, integrations_admin and superusers (integrations.owner_can_read_secrets is off)",
            kind.name
        )));
    }
    if !caller.privileged {
        // integrations.owner_can_read_secrets opens keys to owners and admins,
        // not to every member.
        tenancy::authorize_manage(&business)?;
    }
    let row = active_row(kind, &business, |row, rel| {
        Ok(Some((
            row.get::<Uuid>(rel.att("id")?),
            row.get::<Uuid>(rel.att("secret_id")?),
            row.get::<String>(rel.att("provider")?),
        )))
    })?;
    let found = match row {
        Some((Some(id), Some(secret_id), provider)) => {
            store::read_of(secret_id, business)?.map(|v| (id, provider, v))
        }
        _ => None,
    };
    let Some((id, provider, value)) = found else {
        return Ok(call.null());
    };
    audit::record(
        &caller,
        Action::ReadSecret,
        kind.name,
        &business,
        provider.as_deref(),
        Some(&id),
    )?;
    Ok(fcall::datum(value.as_str()))
}

pub fn delete(kind: &'static Kind, call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let mut deleted = Vec::new();
    if !delete_in_place(kind, &business, &mut deleted)? {
        // what is left: by SQL, whose trigger deletes the secrets
        Spi::connect_mut(|c| -> Result<()> {
            let plan = plans::plan(c, &kind.statements.delete)?;
            for row in c.update(plan, None, &[business.into()])? {
                deleted.push((row.get::<Uuid>(1)?, row.get::<String>(2)?));
            }
            Ok(())
        })?;
    }
    for (id, provider) in deleted {
        audit::record(
            &caller,
            Action::Delete,
            kind.name,
            &business,
            provider.as_deref(),
            id.as_ref(),
        )?;
    }
    Ok(fcall::void())
}

/// The rows of `business` and their secrets deleted without SQL
/// (`pg::update`), each pushed to `deleted`; `false` when SQL must delete
/// the rest (the table needs the executor, or a row changed since it was read).
fn delete_in_place(
    kind: &'static Kind,
    business: &Uuid,
    deleted: &mut Vec<(Option<Uuid>, Option<String>)>,
) -> Result<bool> {
    let rel = direct::rel("public", kind.table, &kind.columns)?;
    let (id, provider, secret) = (rel.att("id")?, rel.att("provider")?, rel.att("secret_id")?);
    let mut rows = Vec::new();
    direct::with_snapshot(|| {
        direct::find_in(
            c"public",
            kind.unique_index,
            &rel,
            &[direct::uuid_key(1, business)],
            |row| {
                rows.push((
                    row.get::<Uuid>(id),
                    row.get::<String>(provider),
                    row.get::<Uuid>(secret),
                    row.target(),
                ));
                Ok(None::<()>)
            },
        )
    })?;
    for (id, provider, secret, row) in rows {
        if update::delete_row(rel.relid, &row)? != update::Outcome::Done {
            return Ok(false);
        }
        if let Some(secret) = secret {
            store::delete_all(vec![(secret, *business)])?;
        }
        deleted.push((id, provider));
    }
    Ok(true)
}

sql_function!(pgi_delete_row_secrets => delete_row_secrets);
/// AFTER DELETE trigger `integrations.delete_row_secrets([column, ...])`,
/// declared in `sql/kinds/tables.sql`: the deleted rows' secrets (in the
/// columns named by the trigger's arguments; `secret_id` without any) go with
/// them — a `delete_*` call, or a cascade from the tenant table — each by its
/// primary key, (id, business_id). A statement trigger with `REFERENCING OLD
/// TABLE` on a single node; a row trigger on tables Citus distributes
/// (integrations.distribute()), where the delete reaches the co-located shard
/// of the secrets. Was PL/pgSQL: its call, planning over the transition table
/// and search_path switch cost a delete_* call about 20 µs.
fn delete_row_secrets(call: &Call) -> Result<pg_sys::Datum> {
    let args = crate::pg::triggers::trigger_args(call);
    let columns: Vec<&std::ffi::CStr> = if args.is_empty() {
        vec![c"secret_id"]
    } else {
        args.iter().map(|a| a.as_c_str()).collect()
    };
    let ids = crate::pg::triggers::deleted_uuids(call, &columns)?;
    store::delete_all(ids)?;
    Ok(pg_sys::Datum::from(0))
}

const STATUSES: &[&str] = &["active", "inactive", "error"];

sql_function!(pgi_set_integration_status => set_integration_status);
/// `public.set_integration_status`, declared in `sql/kinds/rpcs.sql`: a back
/// end records what it found (a rejected key, a successful sync) without
/// superuser rights. Audited.
fn set_integration_status(call: &Call) -> Result<pg_sys::Datum> {
    crate::tenancy::caller::require_privileged("set_integration_status")?;
    let name: String = call.required(0, "p_kind")?;
    let kind = [&ai_avatar::KIND, &email::KIND, &blog::KIND]
        .into_iter()
        .find(|k| k.name == name)
        .ok_or_else(|| Error::InvalidArgument("p_kind must be ai_avatar, email or blog".into()))?;
    let business: Uuid = call.required(1, "p_business_id")?;
    let caller = tenancy::authorize(&business)?;
    let provider: String = call.required(2, "p_provider")?;
    let status: String = call.required(3, "p_status")?;
    if !STATUSES.contains(&status.as_str()) {
        return Err(Error::InvalidArgument(
            "p_status must be active, inactive or error".into(),
        ));
    }
    // Kept short and redacted: an error text may quote a request or a response.
    let message: Option<String> = call.text(4).map(|m| {
        crate::core::redact::redact_text(&m)
            .chars()
            .take(1000)
            .collect()
    });
    let validated_at: Option<pgrx::datum::TimestampWithTimeZone> = call.arg(5);
    let last_synced_at: Option<pgrx::datum::TimestampWithTimeZone> = call.arg(6);
    let id = Spi::connect_mut(|c| {
        plans::write_returning_id(
            c,
            &kind.statements.set_status,
            &[
                business.into(),
                provider.as_str().into(),
                status.as_str().into(),
                message.as_deref().into(),
                validated_at.into(),
                last_synced_at.into(),
            ],
        )
    })?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "business {business} has no {} integration with that provider",
            kind.name
        ))
    })?;
    audit::record(
        &caller,
        Action::Set,
        kind.name,
        &business,
        Some(&provider),
        Some(&id),
    )?;
    Ok(fcall::datum(id))
}
