//! Inbound API keys (seed 004's `api_keys`): keys a business's own programs
//! present to the platform. A key is `pgi_` and 43 URL-safe characters (256
//! random bits), shown once; only its SHA-256 is stored. A plain hash suits
//! keys of that entropy: nobody can search 2^256 candidates, so a slow or
//! keyed hash would cost every verification and protect nothing more.
//!
//! `verify_api_key` (the gateway's call) counts every use against the key's
//! hourly limit in the shared-memory limiter (`limiter.rs`) and queues the use
//! for the audit writer, which adds it to `usage_count` in its own
//! transaction: a verification writes nothing in the caller's. Without the
//! library preloaded, the use is counted in the key's row instead.

pub mod limiter;

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::Uuid;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::tokens;
use crate::pg::direct;
use crate::pg::fcall::{self, Call};
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy;
use crate::tenancy::audit::{self, Action, Use};
use crate::tenancy::caller::require_privileged;

use limiter::Admit;

const KIND: &str = "api_key";
pub const KEY_PREFIX: &str = "pgi_";
/// `pgi_` and the 43 characters of a token.
const KEY_LEN: usize = 47;
/// Shown in lists: `pgi_` and the first 8 random characters.
const DISPLAY_LEN: usize = 12;
const MAX_SCOPES: usize = 64;
const MAX_RATE_LIMIT: i32 = 100_000_000;
/// Active keys one business may hold: enough for any gateway set-up, and a
/// bound on how much of the server-wide limiter table one tenant can take.
pub const MAX_ACTIVE_KEYS: i64 = 100;

const COLUMNS: &[&str] = &[
    "id",
    "business_id",
    "key_hash",
    "key_prefix",
    "is_active",
    "expires_at",
    "scopes",
    "rate_limit",
    "usage_hour",
    "usage_hour_count",
];

/// Register the limiter's shared memory and the usage sink; from `_PG_init`.
pub fn init() {
    limiter::init();
    audit::set_usage_sink(write_uses);
}

/// A new key and what is stored of it: (key, SHA-256 hex, display prefix).
pub fn new_key() -> Result<(String, String, String)> {
    let token = tokens::new_token().map_err(|e| Error::Internal(e.to_string()))?;
    let key = format!("{KEY_PREFIX}{token}");
    let hash = hash_hex(&key);
    let prefix = key[..DISPLAY_LEN].to_string();
    Ok((key, hash, prefix))
}

pub fn hash_hex(key: &str) -> String {
    // (hex::encode: a formatted string per byte cost ~1 µs of a verification)
    hex::encode(tokens::token_hash(key))
}

/// A scope: `resource:action`, each a lower-case letter then up to 62 lower-case
/// letters, digits or underscores.
pub fn is_scope(s: &str) -> bool {
    let part = |p: &str| {
        (1..=63).contains(&p.len())
            && p.as_bytes()[0].is_ascii_lowercase()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    matches!(s.split_once(':'), Some((r, a)) if part(r) && part(a))
}

/// The scopes argument, checked, sorted and without repeats.
pub fn checked_scopes(
    scopes: Option<Vec<Option<String>>>,
) -> std::result::Result<Vec<String>, String> {
    let scopes = scopes.ok_or("p_scopes must not be null")?;
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        let s = s.ok_or("p_scopes must not contain null")?;
        if !is_scope(&s) {
            return Err(format!(
                "p_scopes: \"{}\" is not a scope: scopes are resource:action, lower-case letters, digits and _ (e.g. content:read)",
                s.chars().take(80).collect::<String>()
            ));
        }
        out.push(s);
    }
    out.sort();
    out.dedup();
    if out.is_empty() || out.len() > MAX_SCOPES {
        return Err(format!("p_scopes must hold 1 to {MAX_SCOPES} scopes"));
    }
    Ok(out)
}

fn invalid_key() -> Error {
    Error::NotAllowed("invalid API key: unknown, revoked or expired".into())
}

/// The business's active, unexpired keys. Not serialized: creations racing
/// in concurrent transactions may each see 99 and pass the cap by a few. (A
/// transaction-level lock per business was tried: a bulk creation for 20,000
/// businesses in one transaction ran out of lock table entries.)
static ACTIVE_KEYS: Statement = Statement {
    sql: "SELECT count(*) FROM public.api_keys WHERE business_id = $1 AND is_active \
            AND (expires_at IS NULL OR expires_at > pg_catalog.now())",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static INSERT: Statement = Statement {
    sql: "INSERT INTO public.api_keys (business_id, key_hash, key_prefix, name, scopes, expires_at, rate_limit, created_by) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::TIMESTAMPTZOID,
        BuiltinOid::INT4OID,
        BuiltinOid::UUIDOID,
    ],
    mutating: true,
};
/// Counts a use in the key's row, enforcing the limit when $4 (the row lock
/// makes it exact): no row when revoked meanwhile or over the limit. The
/// hour never goes back: a call whose hour ($3, read before it waited for the
/// lock) is older than the row's counts in the row's hour.
static COUNT_LIMITED: Statement = Statement {
    sql: "UPDATE public.api_keys SET usage_count = usage_count + 1, \
              last_used_at = GREATEST(last_used_at, pg_catalog.to_timestamp($2::float8 / 1e6 + 946684800)), \
              usage_hour_count = CASE WHEN usage_hour >= pg_catalog.to_timestamp($3::float8 / 1e6 + 946684800) \
                                      THEN usage_hour_count + 1 ELSE 1 END, \
              usage_hour = GREATEST(usage_hour, pg_catalog.to_timestamp($3::float8 / 1e6 + 946684800)) \
          WHERE id = $1 AND is_active \
            AND (NOT $4 OR usage_hour IS NULL OR usage_hour < pg_catalog.to_timestamp($3::float8 / 1e6 + 946684800) \
                 OR usage_hour_count < rate_limit) \
          RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::INT8OID,
        BuiltinOid::INT8OID,
        BuiltinOid::BOOLOID,
    ],
    mutating: true,
};
/// Adds the writer's held uses, aggregated per key, to the rows it can lock
/// at once (in id order); a row some transaction holds (a revocation, a
/// gateway counting in the row) is skipped, not waited for: the writer must
/// not stall the audit queue behind it. The ids it updated.
static ADD_USES: Statement = Statement {
    sql: "WITH u AS MATERIALIZED ( \
              SELECT * FROM ROWS FROM (pg_catalog.unnest($1::uuid[]), pg_catalog.unnest($2::int8[]), pg_catalog.unnest($3::int8[]), \
                                       pg_catalog.unnest($4::int8[]), pg_catalog.unnest($5::int4[])) AS u (id, n, last_at, hour, in_hour)), \
          free AS MATERIALIZED ( \
              SELECT k.id FROM public.api_keys k WHERE k.id IN (SELECT u.id FROM u) ORDER BY k.id FOR UPDATE OF k SKIP LOCKED) \
          UPDATE public.api_keys k SET usage_count = k.usage_count + u.n, \
              last_used_at = GREATEST(k.last_used_at, pg_catalog.to_timestamp(u.last_at::float8 / 1e6 + 946684800)), \
              usage_hour_count = CASE WHEN k.usage_hour IS NULL OR k.usage_hour < pg_catalog.to_timestamp(u.hour::float8 / 1e6 + 946684800) THEN u.in_hour \
                                      WHEN k.usage_hour = pg_catalog.to_timestamp(u.hour::float8 / 1e6 + 946684800) THEN k.usage_hour_count + u.in_hour \
                                      ELSE k.usage_hour_count END, \
              usage_hour = GREATEST(k.usage_hour, pg_catalog.to_timestamp(u.hour::float8 / 1e6 + 946684800)) \
          FROM u WHERE k.id = u.id AND k.id IN (SELECT free.id FROM free) \
          RETURNING k.id",
    args: &[
        BuiltinOid::UUIDARRAYOID,
        BuiltinOid::INT8ARRAYOID,
        BuiltinOid::INT8ARRAYOID,
        BuiltinOid::INT8ARRAYOID,
        BuiltinOid::INT4ARRAYOID,
    ],
    mutating: true,
};
/// Of the keys the writer could not update, the ones that still exist.
static EXISTING: Statement = Statement {
    sql: "SELECT id FROM public.api_keys WHERE id = ANY ($1)",
    args: &[BuiltinOid::UUIDARRAYOID],
    mutating: false,
};
/// On Citus: the keys' businesses, then one row per statement by its whole
/// key (one shard each). Citus cannot lock rows across shards, so nothing
/// is skipped: a row held elsewhere fails the batch after `lock_timeout`,
/// and the uses are held for the next interval.
static KEY_BUSINESSES: Statement = Statement {
    sql: "SELECT id, business_id FROM public.api_keys WHERE id = ANY ($1)",
    args: &[BuiltinOid::UUIDARRAYOID],
    mutating: false,
};
static ADD_USES_ONE: Statement = Statement {
    sql: "UPDATE public.api_keys k SET usage_count = k.usage_count + $3, \
              last_used_at = GREATEST(k.last_used_at, $4), \
              usage_hour_count = CASE WHEN k.usage_hour IS NULL OR k.usage_hour < $5 THEN $6 \
                                      WHEN k.usage_hour = $5 THEN k.usage_hour_count + $6 \
                                      ELSE k.usage_hour_count END, \
              usage_hour = GREATEST(k.usage_hour, $5) \
          WHERE k.id = $1 AND k.business_id = $2 RETURNING k.id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::INT8OID,
        BuiltinOid::TIMESTAMPTZOID,
        BuiltinOid::TIMESTAMPTZOID,
        BuiltinOid::INT4OID,
    ],
    mutating: true,
};

/// `ADD_USES` for a table Citus distributes; the ids updated.
fn add_uses_by_shard(
    c: &mut pgrx::spi::SpiClient<'_>,
    per: &std::collections::BTreeMap<[u8; 16], (i64, i64, i64, i32)>,
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = per.keys().map(|k| Uuid::from_bytes(*k)).collect();
    let plan = plans::plan(c, &KEY_BUSINESSES)?;
    let mut owners = Vec::new();
    for r in c.select(plan, None, &[ids.into()])? {
        if let (Some(id), Some(b)) = (r.get::<Uuid>(1)?, r.get::<Uuid>(2)?) {
            owners.push((id, b));
        }
    }
    let plan = plans::plan(c, &ADD_USES_ONE)?;
    let mut done = Vec::new();
    for (id, business) in owners {
        let Some(&(n, last, hour, in_hour)) = per.get(id.as_bytes()) else {
            continue;
        };
        let rows = c.update(
            plan,
            None,
            &[
                id.into(),
                business.into(),
                n.into(),
                plans::timestamp(last).into(),
                plans::timestamp(hour).into(),
                in_hour.into(),
            ],
        )?;
        if !rows.is_empty() {
            done.push(id);
        }
    }
    Ok(done)
}

/// The usage sink (`audit::set_usage_sink`), in the writer's transaction:
/// how many rows it updated, and the uses whose keys' rows others held, to
/// try again later.
fn write_uses(uses: &[Use]) -> Result<(u64, Vec<Use>)> {
    if direct::relid(c"public", c"api_keys").is_err() {
        return Ok((0, Vec::new())); // the extension is gone from this database
    }
    // per key: uses, last use, latest hour, uses in that hour
    let mut per: std::collections::BTreeMap<[u8; 16], (i64, i64, i64, i32)> = Default::default();
    for u in uses {
        let hour = limiter::hour_of(u.at);
        let e = per
            .entry(*u.target.as_bytes())
            .or_insert((0, u.at, hour, 0));
        e.0 += i64::from(u.n);
        e.1 = e.1.max(u.at);
        if hour > e.2 {
            e.2 = hour;
            e.3 = 0;
        }
        if hour == e.2 {
            e.3 = e.3.saturating_add(u.n.min(i32::MAX as u32) as i32);
        }
    }
    let ids: Vec<Uuid> = per.keys().map(|k| Uuid::from_bytes(*k)).collect();
    let n: Vec<i64> = per.values().map(|v| v.0).collect();
    let last: Vec<i64> = per.values().map(|v| v.1).collect();
    let hours: Vec<i64> = per.values().map(|v| v.2).collect();
    let in_hour: Vec<i32> = per.values().map(|v| v.3).collect();
    let (updated, skipped) = Spi::connect_mut(|c| -> Result<(u64, Vec<Uuid>)> {
        // a lock on the whole table (an index build, ALTER TABLE) must not stall the
        // writer either: give up quickly and try again next interval
        c.update(
            "SELECT pg_catalog.set_config('lock_timeout', '50', true)",
            None,
            &[],
        )?;
        let mut done = std::collections::BTreeSet::new();
        if crate::pg::sharded::is_citus_table(direct::relid(c"public", c"api_keys")?)? {
            for id in add_uses_by_shard(c, &per)? {
                done.insert(*id.as_bytes());
            }
        } else {
            let plan = plans::plan(c, &ADD_USES)?;
            let rows = c.update(
                plan,
                None,
                &[
                    ids.clone().into(),
                    n.into(),
                    last.into(),
                    hours.into(),
                    in_hour.into(),
                ],
            )?;
            for r in rows {
                if let Some(id) = r.get::<Uuid>(1)? {
                    done.insert(*id.as_bytes());
                }
            }
        }
        let missed: Vec<Uuid> = ids
            .into_iter()
            .filter(|id| !done.contains(id.as_bytes()))
            .collect();
        let updated = done.len() as u64;
        if missed.is_empty() {
            return Ok((updated, missed));
        }
        let plan = plans::plan(c, &EXISTING)?;
        let rows = c.select(plan, None, &[missed.into()])?;
        let mut held = Vec::new();
        for r in rows {
            if let Some(id) = r.get::<Uuid>(1)? {
                held.push(id);
            }
        }
        Ok((updated, held))
    })?;
    Ok((
        updated,
        uses.iter()
            .filter(|u| skipped.contains(&u.target))
            .copied()
            .collect(),
    ))
}

sql_function!(pgi_create_api_key => create_api_key);
/// `public.create_api_key`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn create_api_key(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let name: String = call.required(1, "p_name")?;
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Error::InvalidArgument(
            "p_name must be 1 to 200 characters, not blank".into(),
        ));
    }
    let scopes = checked_scopes(call.arg(2)).map_err(Error::InvalidArgument)?;
    let expires: Option<pgrx::datum::TimestampWithTimeZone> = call.arg(3);
    let limit: i32 = call.arg(4).unwrap_or(1000);
    if !(1..=MAX_RATE_LIMIT).contains(&limit) {
        return Err(Error::InvalidArgument(format!(
            "p_rate_limit must be between 1 and {MAX_RATE_LIMIT} verifications per hour"
        )));
    }
    let (id, key) = insert_key(&business, &name, &scopes, expires, limit, caller.user_id)?;
    audit::record(&caller, Action::Create, KIND, &business, None, Some(&id))?;
    put_key(call, id, &key)
}

fn insert_key(
    business: &Uuid,
    name: &str,
    scopes: &[String],
    expires: Option<pgrx::datum::TimestampWithTimeZone>,
    limit: i32,
    by: Option<Uuid>,
) -> Result<(Uuid, String)> {
    statement_holds_secret();
    if let Some(e) = expires {
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        if i64::from(e) <= now {
            return Err(Error::InvalidArgument(
                "p_expires_at must be in the future (or NULL: never)".into(),
            ));
        }
    }
    let (key, hash, prefix) = new_key()?;
    let id = Spi::connect_mut(|c| {
        let plan = plans::plan(c, &ACTIVE_KEYS)?;
        let rows = c.update(plan, Some(1), &[(*business).into()])?;
        let active = rows.first().get::<i64>(1)?.unwrap_or(0);
        if active >= MAX_ACTIVE_KEYS {
            return Err(Error::TooMany(format!(
                "business {business} already holds {MAX_ACTIVE_KEYS} active API keys, the most it may: revoke one first"
            )));
        }
        plans::write_returning_id(
            c,
            &INSERT,
            &[
                (*business).into(),
                hash.as_str().into(),
                prefix.as_str().into(),
                name.into(),
                scopes.to_vec().into(),
                expires.into(),
                limit.into(),
                by.into(),
            ],
        )
    })?
    .ok_or_else(|| Error::Internal("INSERT returned no id".into()))?;
    Ok((id, key))
}

fn put_key(call: &Call, id: Uuid, key: &str) -> Result<pg_sys::Datum> {
    call.begin_rows();
    call.put_row(
        &mut [fcall::datum(id), fcall::datum(key)],
        &mut [false, false],
    );
    Ok(fcall::void())
}

sql_function!(pgi_verify_api_key => verify_api_key);
/// `public.verify_api_key`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn verify_api_key(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    require_privileged("verify_api_key")?;
    let key: String = call.required(0, "p_api_key")?;
    let scope: Option<String> = call.text(1);
    if let Some(s) = &scope {
        if !is_scope(s) {
            return Err(Error::InvalidArgument(
                "p_scope must be resource:action (lower-case letters, digits and _)".into(),
            ));
        }
    }
    if key.len() != KEY_LEN || !key.starts_with(KEY_PREFIX) {
        return Err(invalid_key());
    }
    let hash = hash_hex(&key);
    let rel = direct::rel("public", "api_keys", COLUMNS)?;
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    type Found = (Uuid, Uuid, Vec<String>, i32, Option<(i64, u32)>);
    let found: Option<Found> = direct::find_in(
        c"public",
        c"api_keys_key_hash_key",
        &rel,
        &[direct::text_key(1, &hash)],
        |row| {
            let stored: Option<&str> = row.get(rel.att("key_hash")?);
            if !stored.is_some_and(|s| tokens::ct_eq(s.as_bytes(), hash.as_bytes())) {
                return Ok(None);
            }
            if row.get::<bool>(rel.att("is_active")?) != Some(true) {
                return Ok(None);
            }
            let expires: Option<pgrx::datum::TimestampWithTimeZone> =
                row.get(rel.att("expires_at")?);
            if expires.is_some_and(|e| i64::from(e) <= now) {
                return Ok(None);
            }
            let hour: Option<pgrx::datum::TimestampWithTimeZone> = row.get(rel.att("usage_hour")?);
            let in_hour: i32 = row.get(rel.att("usage_hour_count")?).unwrap_or(0);
            Ok(Some((
                row.get::<Uuid>(rel.att("id")?).ok_or_else(invalid_key)?,
                row.get::<Uuid>(rel.att("business_id")?)
                    .ok_or_else(invalid_key)?,
                row.get::<Vec<String>>(rel.att("scopes")?)
                    .unwrap_or_default(),
                row.get::<i32>(rel.att("rate_limit")?).unwrap_or(0),
                hour.map(|h| (i64::from(h), in_hour.max(0) as u32)),
            )))
        },
    )?;
    let Some((id, business, scopes, limit, persisted)) = found else {
        return Err(invalid_key());
    };
    if let Some(s) = &scope {
        if !scopes.iter().any(|have| have == s) {
            return Err(Error::NotAllowed(format!("API key lacks scope {s}")));
        }
    }
    // SAFETY: MyDatabaseId is set in every backend connected to a database.
    let database = unsafe { pg_sys::MyDatabaseId };
    match limiter::admit(database, id.as_bytes(), limit.max(0) as u32, persisted) {
        Admit::Allowed { at } => {
            let caller = tenancy::Caller::current();
            if !audit::queue_use(&caller, KIND, &business, &id, at)? {
                count_in_row(&id, at, false, limit)?;
            }
        }
        Admit::Limited { until } => return Err(over_limit(limit, until)),
        Admit::Elsewhere => count_in_row(&id, now, true, limit)?,
    }
    call.begin_rows();
    call.put_row(
        &mut [
            fcall::datum(id),
            fcall::datum(business),
            fcall::datum(scopes),
        ],
        &mut [false, false, false],
    );
    Ok(fcall::void())
}

fn over_limit(limit: i32, _until: i64) -> Error {
    Error::RateLimited {
        message: format!("API key over its rate limit of {limit} verifications per hour"),
        hint: "The limit renews at the start of the next clock hour (UTC).".into(),
    }
}

/// Count a use in the key's row (in the caller's transaction). `enforce`:
/// this row is the only counter of the key this hour (no shared memory), so
/// the limit is checked here too.
fn count_in_row(id: &Uuid, at: i64, enforce: bool, limit: i32) -> Result<()> {
    // SAFETY: reads a backend-local flag.
    if unsafe { pg_sys::XactReadOnly } {
        let hint = if limiter::available() {
            "This use could not be counted in shared memory: the rate limiter's table is full this hour (raise integrations.rate_limiter_keys), the audit queue is full or has no slot for this database, or this server is a hot standby. Verify in a read-write transaction on the primary."
        } else {
            "Add pg_integrations to shared_preload_libraries (uses are then counted in shared memory and written by a background writer), or verify in a read-write transaction."
        };
        return Err(Error::ReadOnly {
            message:
                "verify_api_key counts each use, which a read-only transaction cannot write here"
                    .into(),
            hint: hint.into(),
        });
    }
    let hour = limiter::hour_of(at);
    let counted = Spi::connect_mut(|c| {
        plans::write_returning_id(
            c,
            &COUNT_LIMITED,
            &[(*id).into(), at.into(), hour.into(), enforce.into()],
        )
    })?;
    if counted.is_none() {
        if enforce {
            return Err(over_limit(limit, hour + limiter::HOUR_US));
        }
        return Err(invalid_key());
    }
    Ok(())
}

static LIST: Statement = Statement {
    sql: "SELECT id, name, key_prefix, scopes, rate_limit, usage_count, last_used_at, expires_at, is_active, created_at, revoked_at \
          FROM public.api_keys WHERE business_id = $1 ORDER BY created_at DESC, id",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};

sql_function!(pgi_list_api_keys => list_api_keys);
/// `public.list_api_keys`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn list_api_keys(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    tenancy::authorize(&business)?;
    call.return_rows(&LIST, &[business.into()])
}

static KEY_BUSINESS: Statement = Statement {
    sql: "SELECT business_id FROM public.api_keys WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
// The row is locked and revoked by its whole key, (id, business_id): on
// Citus, one shard (a lock by id alone would ask every shard, which Citus
// refuses).
static KEY_ROW: Statement = Statement {
    sql:
        "SELECT business_id, is_active, name, scopes, expires_at, rate_limit FROM public.api_keys \
          WHERE id = $1 AND business_id = $2 FOR UPDATE",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID],
    mutating: true,
};
static REVOKE: Statement = Statement {
    sql: "UPDATE public.api_keys SET is_active = false, revoked_at = pg_catalog.now() \
          WHERE id = $1 AND business_id = $2 AND is_active RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID],
    mutating: true,
};

type KeyRow = (
    Uuid,
    bool,
    String,
    Vec<String>,
    Option<pgrx::datum::TimestampWithTimeZone>,
    i32,
);

/// The business of key `id` and the caller, if the caller may manage it;
/// `None` both for no such key and for a key of a business the caller may
/// not act on (one answer: other tenants' key ids cannot be probed, and their
/// rows are never locked by a stranger). 42501 for a member of the business.
fn managed(id: &Uuid) -> Result<Option<(Uuid, tenancy::Caller)>> {
    let business = Spi::connect(|c| -> Result<Option<Uuid>> {
        let plan = plans::plan(c, &KEY_BUSINESS)?;
        let rows = c.select(plan, Some(1), &[(*id).into()])?;
        Ok(if rows.is_empty() {
            None
        } else {
            rows.first().get::<Uuid>(1)?
        })
    })?;
    let Some(business) = business else {
        return Ok(None);
    };
    if !tenancy::can_access(&tenancy::Caller::current(), &business)? {
        return Ok(None);
    }
    Ok(Some((business, tenancy::authorize_manage(&business)?)))
}

/// The key's row, locked; `None` when there is no such key.
fn lock_key(id: &Uuid, business: &Uuid) -> Result<Option<KeyRow>> {
    Spi::connect_mut(|c| -> Result<Option<KeyRow>> {
        let plan = plans::plan(c, &KEY_ROW)?;
        let rows = c.update(plan, Some(1), &[(*id).into(), (*business).into()])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let r = rows.first();
        Ok(match r.get::<Uuid>(1)? {
            Some(b) => Some((
                b,
                r.get::<bool>(2)?.unwrap_or(false),
                r.get::<String>(3)?.unwrap_or_default(),
                r.get::<Vec<String>>(4)?.unwrap_or_default(),
                r.get(5)?,
                r.get::<i32>(6)?.unwrap_or(1000),
            )),
            None => None,
        })
    })
}

fn revoke(id: &Uuid, business: &Uuid) -> Result<bool> {
    Ok(Spi::connect_mut(|c| {
        plans::write_returning_id(c, &REVOKE, &[(*id).into(), (*business).into()])
    })?
    .is_some())
}

sql_function!(pgi_revoke_api_key => revoke_api_key);
/// `public.revoke_api_key`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn revoke_api_key(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_api_key_id")?;
    let Some((business, caller)) = managed(&id)? else {
        return Ok(fcall::datum(false));
    };
    if lock_key(&id, &business)?.is_none() {
        return Ok(fcall::datum(false));
    }
    let done = revoke(&id, &business)?;
    if done {
        audit::record(&caller, Action::Revoke, KIND, &business, None, Some(&id))?;
    }
    Ok(fcall::datum(done))
}

sql_function!(pgi_rotate_api_key => rotate_api_key);
/// `public.rotate_api_key`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn rotate_api_key(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_api_key_id")?;
    let not_found = || Error::NotFound("no active API key with this id".into());
    let (business, caller) = managed(&id)?.ok_or_else(not_found)?;
    let found = lock_key(&id, &business)?;
    let Some((_, active, name, scopes, expires, limit)) = found else {
        return Err(not_found());
    };
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    // an expired key is not rotated: its successor would be born expired
    if !active || expires.is_some_and(|e| i64::from(e) <= now) {
        return Err(not_found());
    }
    revoke(&id, &business)?;
    let (new_id, key) = insert_key(&business, &name, &scopes, expires, limit, caller.user_id)?;
    audit::record(&caller, Action::Revoke, KIND, &business, None, Some(&id))?;
    audit::record(
        &caller,
        Action::Rotate,
        KIND,
        &business,
        None,
        Some(&new_id),
    )?;
    put_key(call, new_id, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_resource_colon_action() {
        for ok in ["content:read", "a:b", "orders_v2:write_all"] {
            assert!(is_scope(ok), "{ok}");
        }
        for bad in [
            "",
            "content",
            ":read",
            "content:",
            "Content:read",
            "content:read:x",
            "1x:read",
            "content :read",
            "*:*",
        ] {
            assert!(!is_scope(bad), "{bad}");
        }
        let s = checked_scopes(Some(vec![
            Some("b:x".into()),
            Some("a:y".into()),
            Some("b:x".into()),
        ]))
        .unwrap();
        assert_eq!(s, ["a:y", "b:x"]);
        assert!(checked_scopes(Some(vec![])).is_err());
        assert!(checked_scopes(None).is_err());
        assert!(checked_scopes(Some(vec![None])).is_err());
    }

    #[test]
    fn keys_are_long_url_safe_and_stored_as_their_hash() {
        let (key, hash, prefix) = new_key().unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert!(key.starts_with(KEY_PREFIX));
        assert!(key[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(hash, hash_hex(&key));
        assert_eq!(hash.len(), 64);
        assert!(key.starts_with(&prefix) && prefix.len() == DISPLAY_LEN);
        assert_ne!(new_key().unwrap().0, key);
    }
}
