//! Connections (`integration_connections`, seed 002): several per provider per
//! business, each with an auth method, typed credentials kept in the secret
//! store (one secret per credential part), validated configuration and
//! capabilities, health and sync statistics.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::{JsonB, Uuid};
use serde_json::Value;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::store;
use crate::core::validate;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller::require_privileged;
use crate::tenancy::{self, Caller, Need};

pub const ENVIRONMENTS: &[&str] = &["development", "staging", "production"];
pub const STATUSES: &[&str] = &["active", "inactive", "error", "testing"];
pub use crate::platform::registry::AUTH_METHODS;
pub const SYNC_FREQUENCIES: &[&str] = &["realtime", "hourly", "daily", "weekly", "manual"];
/// Consecutive failed health checks that put a connection in `error`.
pub const FAILURES_BEFORE_ERROR: i32 = 3;

/// `connection_config`: an object with only `domain`, `api_version`,
/// `api_endpoint` (https), `timeout` (ms) and `rate_limit` (requests a minute).
pub fn check_connection_config(v: &Value) -> std::result::Result<(), String> {
    let arg = "p_connection_config";
    let obj = v
        .as_object()
        .ok_or(format!("{arg} must be a JSON object"))?;
    for (k, val) in obj {
        match k.as_str() {
            "domain" => {
                let d = val.as_str().ok_or(format!("{arg}.domain must be a string"))?;
                validate::url(&format!("{arg}.domain"), &format!("https://{d}"), true)
                    .map_err(|_| format!("{arg}.domain must be a host name"))?;
                if d.contains('/') || d.contains(':') {
                    return Err(format!("{arg}.domain must be a host name"));
                }
            }
            "api_version" => {
                let s = val.as_str().ok_or(format!("{arg}.api_version must be a string"))?;
                if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                    return Err(format!("{arg}.api_version must be 1 to 32 letters, digits, '.', '_' or '-'"));
                }
            }
            "api_endpoint" => {
                let s = val.as_str().ok_or(format!("{arg}.api_endpoint must be a string"))?;
                validate::url(&format!("{arg}.api_endpoint"), s, true)?;
            }
            "timeout" => {
                let n = val.as_i64().ok_or(format!("{arg}.timeout must be a whole number of milliseconds"))?;
                if !(1..=600_000).contains(&n) {
                    return Err(format!("{arg}.timeout must be between 1 and 600000 milliseconds"));
                }
            }
            "rate_limit" => {
                let n = val.as_i64().ok_or(format!("{arg}.rate_limit must be a whole number of requests a minute"))?;
                if !(1..=1_000_000).contains(&n) {
                    return Err(format!("{arg}.rate_limit must be between 1 and 1000000"));
                }
            }
            _ => {
                return Err(format!(
                    "{arg} has an unknown key; allowed: domain, api_version, api_endpoint, timeout, rate_limit (use p_metadata for anything else)"
                ))
            }
        }
    }
    Ok(())
}

/// Seed 002's camelCase names for the `connection_config` keys.
pub const CONFIG_ALIASES: &[(&str, &str)] = &[
    ("apiVersion", "api_version"),
    ("apiEndpoint", "api_endpoint"),
    ("rateLimit", "rate_limit"),
];
/// Seed 002's camelCase names for the `capabilities` keys.
pub const CAPABILITY_ALIASES: &[(&str, &str)] = &[
    ("canSync", "can_sync"),
    ("canPush", "can_push"),
    ("canWebhook", "can_webhook"),
    ("syncFrequency", "sync_frequency"),
];

/// `v` with seed 002's camelCase keys renamed to the canonical snake_case
/// ones, so both spellings are accepted and one form is stored; a key given
/// in both spellings is refused.
pub fn canonical_keys(
    v: Value,
    aliases: &[(&str, &str)],
    arg: &str,
) -> std::result::Result<Value, String> {
    let Value::Object(map) = v else {
        return Ok(v);
    };
    let mut out = serde_json::Map::new();
    for (k, val) in map {
        let key = aliases
            .iter()
            .find(|(camel, _)| *camel == k)
            .map_or(k.clone(), |(_, snake)| snake.to_string());
        if out.insert(key.clone(), val).is_some() {
            return Err(format!(
                "{arg}.{key} is given twice (in camelCase and snake_case)"
            ));
        }
    }
    Ok(Value::Object(out))
}

/// `capabilities`: an object with only the booleans `can_sync`, `can_push`,
/// `can_webhook` and `sync_frequency`.
pub fn check_capabilities(v: &Value) -> std::result::Result<(), String> {
    let arg = "p_capabilities";
    let obj = v
        .as_object()
        .ok_or(format!("{arg} must be a JSON object"))?;
    for (k, val) in obj {
        match k.as_str() {
            "can_sync" | "can_push" | "can_webhook" => {
                if !val.is_boolean() {
                    return Err(format!("{arg}.{k} must be true or false"));
                }
            }
            "sync_frequency" => {
                let s = val.as_str().ok_or(format!("{arg}.sync_frequency must be a string"))?;
                validate::one_of(&format!("{arg}.sync_frequency"), "sync frequency", s, SYNC_FREQUENCIES)?;
            }
            _ => return Err(format!("{arg} has an unknown key; allowed: can_sync, can_push, can_webhook, sync_frequency")),
        }
    }
    Ok(())
}

// CHECK constraint helpers.
sql_function!(pgi_is_valid_connection_config => is_valid_connection_config);
/// `integrations.is_valid_connection_config`, declared in `sql/platform/connections.sql`.
fn is_valid_connection_config(call: &Call) -> Result<pg_sys::Datum> {
    Ok(fcall::datum(
        call.json(0)
            .is_none_or(|v| check_connection_config(&v).is_ok()),
    ))
}
sql_function!(pgi_is_valid_capabilities => is_valid_capabilities);
/// `integrations.is_valid_capabilities`, declared in `sql/platform/connections.sql`.
fn is_valid_capabilities(call: &Call) -> Result<pg_sys::Datum> {
    Ok(fcall::datum(
        call.json(0).is_none_or(|v| check_capabilities(&v).is_ok()),
    ))
}

/// The credential parts of a connection, checked against its auth method.
#[derive(Default)]
pub struct Credentials {
    pub api_key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

/// A key prefix is kept in clear, so it must stay a short prefix of the key it
/// describes (at most 16 characters and half the key), never the key itself.
pub fn check_key_prefix(prefix: &str, key: Option<&str>) -> std::result::Result<(), String> {
    match key {
        Some(k) if prefix.len() <= 16 && k.starts_with(prefix) && prefix.len() * 2 <= k.len() => Ok(()),
        Some(_) => Err("p_key_prefix must be a short prefix of p_api_key (at most 16 characters and half the key)".into()),
        None => Err("p_key_prefix goes with p_api_key: it describes an API key or bearer token".into()),
    }
}

fn non_empty(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

pub fn check_credentials(auth_method: &str, c: &Credentials) -> std::result::Result<(), String> {
    let given = |v: &Option<String>| v.is_some();
    match auth_method {
        "api_key" | "bearer_token" => {
            if !non_empty(&c.api_key) {
                return Err(format!(
                    "p_api_key is required for auth method {auth_method}"
                ));
            }
            if given(&c.password) || given(&c.access_token) || given(&c.refresh_token) {
                return Err(format!("auth method {auth_method} takes p_api_key only, not a password or OAuth tokens"));
            }
        }
        "basic_auth" => {
            if !non_empty(&c.username) || !non_empty(&c.password) {
                return Err(
                    "p_username and p_password are required for auth method basic_auth".into(),
                );
            }
            if given(&c.api_key) || given(&c.access_token) || given(&c.refresh_token) {
                return Err("auth method basic_auth takes p_username and p_password only".into());
            }
        }
        "oauth2" => {
            if !non_empty(&c.access_token) {
                return Err("p_access_token is required for auth method oauth2".into());
            }
            if given(&c.api_key) || given(&c.password) {
                return Err(
                    "auth method oauth2 takes OAuth tokens only, not an API key or a password"
                        .into(),
                );
            }
        }
        _ => validate::one_of("p_auth_method", "auth method", auth_method, AUTH_METHODS)?,
    }
    Ok(())
}

static PROVIDER: Statement = Statement {
    sql: "SELECT status, auth_methods FROM public.integration_providers WHERE provider = $1",
    args: &[BuiltinOid::TEXTOID],
    mutating: false,
};
static INSERT: Statement = Statement {
    sql: "INSERT INTO public.integration_connections (business_id, provider, name, environment, auth_method, key_prefix, \
              api_key_secret_id, basic_username, basic_password_secret_id, oauth_access_token_secret_id, \
              oauth_refresh_token_secret_id, token_expires_at, oauth_scopes, connection_config, capabilities, metadata) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13, '{}'), COALESCE($14, '{}'), \
                  COALESCE($15, '{}'), COALESCE($16, '{}')) \
          ON CONFLICT (business_id, provider, environment, name) DO NOTHING RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::TIMESTAMPTZOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::JSONBOID,
    ],
    mutating: true,
};
macro_rules! owner_sql {
    () => {
        "SELECT business_id, auth_method, provider, api_key_secret_id, basic_password_secret_id, \
                oauth_access_token_secret_id, oauth_refresh_token_secret_id \
         FROM public.integration_connections WHERE id = $1"
    };
}
static OWNER: Statement = Statement {
    sql: owner_sql!(),
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
/// The write paths lock the connection row before they touch its secrets or
/// webhook configuration: the order DELETE takes its locks in (connection,
/// then by cascade and trigger its configuration and secrets). A write racing
/// a delete then waits for it, or is waited for, instead of deadlocking; if
/// the delete wins, the row is gone and the call answers not found.
/// Locked by its whole key, (id, business_id): on Citus one shard's row
/// (a lock by id alone would have to ask every shard, which Citus refuses).
static OWNER_FOR_UPDATE: Statement = Statement {
    sql: concat!(owner_sql!(), " AND business_id = $2 FOR NO KEY UPDATE"),
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID],
    mutating: true,
};
/// A connection as the read RPCs show it: every column but the secret ids,
/// and whether it has credentials.
macro_rules! shown {
    () => {
        "to_jsonb(c.*) - '{api_key_secret_id,basic_password_secret_id,oauth_access_token_secret_id,oauth_refresh_token_secret_id}'::text[] \
         || jsonb_build_object('has_credentials', COALESCE(c.api_key_secret_id, c.basic_password_secret_id, c.oauth_access_token_secret_id) IS NOT NULL)"
    };
}
static GET: Statement = Statement {
    sql: concat!(
        "SELECT ",
        shown!(),
        " FROM public.integration_connections c WHERE c.id = $1"
    ),
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static LIST: Statement = Statement {
    sql: concat!(
        "SELECT ", shown!(), " FROM public.integration_connections c \
         WHERE c.business_id = $1 AND ($2::text IS NULL OR c.provider = $2) ORDER BY c.provider, c.environment, c.name"
    ),
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: false,
};
static BY_PROVIDER: Statement = Statement {
    sql: concat!(
        "SELECT ",
        shown!(),
        " FROM public.integration_connections c \
         WHERE c.business_id = $1 AND c.provider = $2 AND c.environment = $3 \
         ORDER BY (c.status = 'active') DESC, c.name LIMIT 1"
    ),
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
    ],
    mutating: false,
};
static DELETE: Statement = Statement {
    sql: "DELETE FROM public.integration_connections WHERE id = $1 RETURNING business_id, provider",
    args: &[BuiltinOid::UUIDOID],
    mutating: true,
};
static SYNC_STATS: Statement = Statement {
    sql: "UPDATE public.integration_connections SET total_records = $2, last_sync_count = $3, failed_sync_count = $4, \
              last_synced_at = pg_catalog.now() WHERE id = $1",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::INT8OID, BuiltinOid::INT8OID, BuiltinOid::INT8OID],
    mutating: true,
};
// A success clears the failure count and brings an errored connection back; the
// third failure in a row puts it in error. Inactive and testing stay as they are.
// The time is a parameter ($6, the transaction's start, as now()): Citus
// refuses a non-immutable function inside CASE on a distributed table.
static HEALTH: Statement = Statement {
    sql: "UPDATE public.integration_connections SET last_tested_at = $6, \
              last_success_at = CASE WHEN $2 THEN $6 ELSE last_success_at END, \
              last_error_at = CASE WHEN $2 THEN last_error_at ELSE $6 END, \
              error_message = CASE WHEN $2 THEN NULL ELSE $3 END, \
              last_response_time_ms = COALESCE($4, last_response_time_ms), \
              consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END, \
              status = CASE WHEN $2 AND status = 'error' THEN 'active' \
                            WHEN NOT $2 AND status = 'active' AND consecutive_failures + 1 >= $5 THEN 'error' \
                            ELSE status END \
          WHERE id = $1 AND business_id = $7",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::BOOLOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::INT4OID,
        BuiltinOid::INT4OID,
        BuiltinOid::TIMESTAMPTZOID,
        BuiltinOid::UUIDOID,
    ],
    mutating: true,
};
static SET_TOKENS: Statement = Statement {
    sql: "UPDATE public.integration_connections SET oauth_access_token_secret_id = $2, oauth_refresh_token_secret_id = $3, \
              token_expires_at = $4, oauth_scopes = COALESCE($5, oauth_scopes) WHERE id = $1",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::TIMESTAMPTZOID, BuiltinOid::TEXTARRAYOID],
    mutating: true,
};
static UPDATE: Statement = Statement {
    sql: "UPDATE public.integration_connections SET name = COALESCE($2, name), status = COALESCE($3, status), \
              connection_config = COALESCE($4, connection_config), capabilities = COALESCE($5, capabilities), \
              metadata = COALESCE($6, metadata), key_prefix = COALESCE($7, key_prefix), \
              basic_username = COALESCE($8, basic_username) \
          WHERE id = $1",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
    ],
    mutating: true,
};
static NEEDING_REFRESH: Statement = Statement {
    sql: "SELECT jsonb_build_object('id', c.id, 'business_id', c.business_id, 'provider', c.provider, 'environment', c.environment, \
                                    'name', c.name, 'token_expires_at', c.token_expires_at) \
          FROM public.integration_connections c \
          WHERE c.auth_method = 'oauth2' AND c.status IN ('active', 'error') AND c.oauth_refresh_token_secret_id IS NOT NULL \
            AND c.token_expires_at IS NOT NULL AND c.token_expires_at < pg_catalog.now() + $1 \
          ORDER BY c.token_expires_at",
    args: &[BuiltinOid::INTERVALOID],
    mutating: false,
};

/// The connection's business and secrets; authorizes the caller for it.
struct Owned {
    caller: Caller,
    business: Uuid,
    auth_method: String,
    provider: String,
    secrets: [Option<Uuid>; 4],
}

/// The connection `id`, if the caller may see it; `None` both when there is
/// no such connection and when it belongs to a business the caller may not
/// act on (the same answer, so ids of other tenants cannot be probed). 42501
/// when the caller sees it but `need` asks for more than its role allows.
fn owned(c: &pgrx::spi::SpiClient<'_>, id: Uuid, need: Need) -> Result<Option<Owned>> {
    let plan = plans::plan(c, &OWNER)?;
    owner_of(c.select(plan, Some(1), &[id.into()])?, need)
}

/// [`owned`] for the write paths: also locks the row (see `OWNER_FOR_UPDATE`).
fn owned_for_update(
    c: &mut pgrx::spi::SpiClient<'_>,
    id: Uuid,
    need: Need,
) -> Result<Option<Owned>> {
    // Authorized first, on a plain read: a caller who may not act on the
    // connection never holds its row lock (which would tell it the row
    // exists, and block the owner's writes).
    let Some(found) = owned(c, id, need)? else {
        return Ok(None);
    };
    let plan = plans::plan(c, &OWNER_FOR_UPDATE)?;
    owner_of(
        c.update(plan, Some(1), &[id.into(), found.business.into()])?,
        need,
    )
}

fn owner_of(rows: pgrx::spi::SpiTupleTable<'_>, need: Need) -> Result<Option<Owned>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let row = rows.first();
    let business: Uuid = row
        .get(1)?
        .ok_or_else(|| Error::Internal("no business".into()))?;
    if !tenancy::can_access(&Caller::current(), &business)? {
        return Ok(None);
    }
    let caller = tenancy::authorize_to(&business, need)?;
    Ok(Some(Owned {
        caller,
        business,
        auth_method: row.get(2)?.unwrap_or_default(),
        provider: row.get(3)?.unwrap_or_default(),
        secrets: [row.get(4)?, row.get(5)?, row.get(6)?, row.get(7)?],
    }))
}

fn audit_connection(
    caller: &Caller,
    action: Action,
    business: &Uuid,
    provider: &str,
    id: &Uuid,
) -> Result<()> {
    audit::record(
        caller,
        action,
        "connection",
        business,
        Some(provider),
        Some(id),
    )
}

fn not_found(id: &Uuid) -> Error {
    Error::NotFound(format!("integration {id} does not exist"))
}

fn seal(
    c: &mut pgrx::spi::SpiClient<'_>,
    business: Uuid,
    v: &Option<String>,
    what: &str,
) -> Result<Option<Uuid>> {
    match v {
        Some(v) => Ok(Some(store::create(
            c,
            business,
            v.as_bytes().to_vec(),
            what,
        )?)),
        None => Ok(None),
    }
}

sql_function!(pgi_create_integration => create_integration);
/// `public.create_integration`, declared in `sql/platform/connections.sql`.
fn create_integration(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let invalid = Error::InvalidArgument;
    let provider = call.required::<String>(1, "p_provider")?;
    let name = call
        .text(2)
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("p_name must be 1 to 200 characters".into()));
    }
    let auth_method = call.required::<String>(3, "p_auth_method")?;
    validate::one_of("p_auth_method", "auth method", &auth_method, AUTH_METHODS)
        .map_err(invalid)?;
    let creds = Credentials {
        api_key: call.text(4),
        username: call.text(6),
        password: call.text(7),
        access_token: call.text(8),
        refresh_token: call.text(9),
    };
    check_credentials(&auth_method, &creds).map_err(invalid)?;
    let key_prefix = call.text(5);
    if let Some(p) = &key_prefix {
        check_key_prefix(p, creds.api_key.as_deref()).map_err(invalid)?;
    }
    let expires: Option<pgrx::datum::TimestampWithTimeZone> = call.arg(10);
    let scopes: Option<Vec<String>> = call
        .arg::<Vec<Option<String>>>(11)
        .map(|v| v.into_iter().flatten().collect());
    let environment = call.text(12).unwrap_or_else(|| "production".into());
    validate::one_of("p_environment", "environment", &environment, ENVIRONMENTS)
        .map_err(invalid)?;
    let config = call
        .json(13)
        .map(|v| canonical_keys(v, CONFIG_ALIASES, "p_connection_config"))
        .transpose()
        .map_err(invalid)?;
    if let Some(v) = &config {
        check_connection_config(v).map_err(invalid)?;
    }
    let capabilities = call
        .json(14)
        .map(|v| canonical_keys(v, CAPABILITY_ALIASES, "p_capabilities"))
        .transpose()
        .map_err(invalid)?;
    if let Some(v) = &capabilities {
        check_capabilities(v).map_err(invalid)?;
    }
    let metadata = call.json(15);
    if metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(invalid("p_metadata must be a JSON object".into()));
    }
    let id = Spi::connect_mut(|c| -> Result<Uuid> {
        let plan = plans::plan(c, &PROVIDER)?;
        let rows = c.select(plan, Some(1), &[provider.as_str().into()])?;
        if rows.is_empty() {
            return Err(invalid("p_provider is not a registered provider".into()));
        }
        let row = rows.first();
        if row.get::<String>(1)?.as_deref() != Some("active") {
            return Err(invalid("p_provider is not active".into()));
        }
        let supported: Vec<String> = row
            .get::<Vec<Option<String>>>(2)?
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        if !supported.is_empty() && !supported.contains(&auth_method) {
            return Err(invalid(format!(
                "p_auth_method: this provider supports {}",
                supported.join(", ")
            )));
        }
        let api_key = seal(c, business, &creds.api_key, "connection API key")?;
        let password = seal(c, business, &creds.password, "connection password")?;
        let access = seal(c, business, &creds.access_token, "OAuth access token")?;
        let refresh = seal(c, business, &creds.refresh_token, "OAuth refresh token")?;
        let inserted = plans::write_returning_id(
            c,
            &INSERT,
            &[
                business.into(),
                provider.as_str().into(),
                name.as_str().into(),
                environment.as_str().into(),
                auth_method.as_str().into(),
                key_prefix.as_deref().into(),
                api_key.into(),
                creds.username.as_deref().into(),
                password.into(),
                access.into(),
                refresh.into(),
                expires.into(),
                scopes.into(),
                config.map(JsonB).into(),
                capabilities.map(JsonB).into(),
                metadata.map(JsonB).into(),
            ],
        )?;
        match inserted {
            Some(id) => Ok(id),
            None => Err(Error::Conflict(format!(
            "business {business} already has a {environment} {provider} connection named \"{name}\""
        ))),
        }
    })?;
    audit_connection(&caller, Action::Set, &business, &provider, &id)?;
    Ok(fcall::datum(id))
}

fn read_json(
    stmt: &'static Statement,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Result<Vec<JsonB>> {
    Spi::connect(|c| -> Result<Vec<JsonB>> {
        let plan = plans::plan(c, stmt)?;
        let mut out = Vec::new();
        for row in c.select(plan, None, args)? {
            out.extend(row.get::<JsonB>(1)?);
        }
        Ok(out)
    })
}

sql_function!(pgi_update_integration => update_integration);
/// `public.update_integration`, declared in `sql/platform/connections.sql`.
fn update_integration(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let invalid = Error::InvalidArgument;
    let name = call.text(1).map(|n| n.trim().to_string());
    if name
        .as_ref()
        .is_some_and(|n| n.is_empty() || n.chars().count() > 200)
    {
        return Err(invalid("p_name must be 1 to 200 characters".into()));
    }
    let status = call.text(2);
    if let Some(st) = &status {
        validate::one_of("p_status", "status", st, STATUSES).map_err(invalid)?;
    }
    let config = call
        .json(3)
        .map(|v| canonical_keys(v, CONFIG_ALIASES, "p_connection_config"))
        .transpose()
        .map_err(invalid)?;
    if let Some(v) = &config {
        check_connection_config(v).map_err(invalid)?;
    }
    let capabilities = call
        .json(4)
        .map(|v| canonical_keys(v, CAPABILITY_ALIASES, "p_capabilities"))
        .transpose()
        .map_err(invalid)?;
    if let Some(v) = &capabilities {
        check_capabilities(v).map_err(invalid)?;
    }
    let metadata = call.json(5);
    if metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(invalid("p_metadata must be a JSON object".into()));
    }
    let api_key = call.text(6);
    let key_prefix = call.text(7);
    let username = call.text(8);
    let password = call.text(9);
    let (caller, business, provider) = Spi::connect_mut(|c| -> Result<(Caller, Uuid, String)> {
        let o = owned_for_update(c, id, Need::Manage)?.ok_or_else(|| not_found(&id))?;
        let keyed = matches!(o.auth_method.as_str(), "api_key" | "bearer_token");
        if (api_key.is_some() || key_prefix.is_some()) && !keyed {
            return Err(invalid(format!(
                "p_api_key: this integration uses {}",
                o.auth_method
            )));
        }
        if let Some(p) = &key_prefix {
            // Checked only against a key passed in the same call: comparing it
            // with the stored key would answer "is this the key's prefix?" to
            // callers who may not read the key.
            check_key_prefix(p, api_key.as_deref()).map_err(invalid)?;
        }
        if (username.is_some() || password.is_some()) && o.auth_method != "basic_auth" {
            return Err(invalid(format!(
                "p_username and p_password: this integration uses {}",
                o.auth_method
            )));
        }
        for (v, arg) in [
            (&api_key, "p_api_key"),
            (&username, "p_username"),
            (&password, "p_password"),
        ] {
            if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(invalid(format!("{arg} must not be empty")));
            }
        }
        // Credentials are re-sealed in place (same secret id), or sealed anew.
        for (value, slot, what, column) in [
            (&api_key, 0usize, "connection API key", "api_key_secret_id"),
            (
                &password,
                1,
                "connection password",
                "basic_password_secret_id",
            ),
        ] {
            let Some(v) = value else { continue };
            let replaced = match o.secrets[slot] {
                Some(s) => store::replace(c, s, o.business, v.as_bytes().to_vec())?,
                None => false,
            };
            if !replaced {
                let s = store::create(c, o.business, v.as_bytes().to_vec(), what)?;
                c.update(
                    &format!(
                        "UPDATE public.integration_connections SET {column} = $2 WHERE id = $1"
                    ),
                    None,
                    &[id.into(), s.into()],
                )?;
            }
        }
        let plan = plans::plan(c, &UPDATE)?;
        c.update(
            plan,
            None,
            &[
                id.into(),
                name.as_deref().into(),
                status.as_deref().into(),
                config.clone().map(JsonB).into(),
                capabilities.clone().map(JsonB).into(),
                metadata.clone().map(JsonB).into(),
                key_prefix.as_deref().into(),
                username.as_deref().into(),
            ],
        )?;
        Ok((o.caller, o.business, o.provider))
    })?;
    audit_connection(&caller, Action::Set, &business, &provider, &id)?;
    Ok(fcall::void())
}

sql_function!(pgi_get_integration => get_integration);
/// `public.get_integration`, declared in `sql/platform/connections.sql`.
fn get_integration(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let found = Spi::connect(|c| owned(c, id, Need::Use))?;
    if found.is_none() {
        return Ok(call.null());
    }
    Ok(match read_json(&GET, &[id.into()])?.pop() {
        Some(j) => fcall::datum(j),
        None => call.null(),
    })
}

sql_function!(pgi_list_integrations => list_integrations);
/// `public.list_integrations`, declared in `sql/platform/connections.sql`.
fn list_integrations(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    tenancy::authorize(&business)?;
    let provider = call.text(1);
    let rows = read_json(&LIST, &[business.into(), provider.as_deref().into()])?;
    call.begin_rows();
    for j in rows {
        call.put_row(&mut [fcall::datum(j)], &mut [false]);
    }
    Ok(fcall::void())
}

sql_function!(pgi_get_integration_by_provider => get_integration_by_provider);
/// `public.get_integration_by_provider`, declared in `sql/platform/connections.sql`.
fn get_integration_by_provider(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    tenancy::authorize(&business)?;
    let provider = call.required::<String>(1, "p_provider")?;
    let environment = call.text(2).unwrap_or_else(|| "production".into());
    validate::one_of("p_environment", "environment", &environment, ENVIRONMENTS)
        .map_err(Error::InvalidArgument)?;
    Ok(
        match read_json(
            &BY_PROVIDER,
            &[
                business.into(),
                provider.as_str().into(),
                environment.as_str().into(),
            ],
        )?
        .pop()
        {
            Some(j) => fcall::datum(j),
            None => call.null(),
        },
    )
}

sql_function!(pgi_get_integration_credentials => get_integration_credentials);
/// `public.get_integration_credentials`, declared in `sql/platform/connections.sql`.
fn get_integration_credentials(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("get_integration_credentials")?;
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let Some(o) = Spi::connect(|c| owned(c, id, Need::Use))? else {
        return Ok(call.null());
    };
    let open = |s: Option<Uuid>| -> Result<Value> {
        Ok(match s {
            Some(s) => store::read_of(s, o.business)?
                .map(|v| Value::String(v.to_string()))
                .unwrap_or(Value::Null),
            None => Value::Null,
        })
    };
    let row = read_json(&GET, &[id.into()])?
        .pop()
        .map(|j| j.0)
        .unwrap_or(Value::Null);
    let mut out = serde_json::Map::new();
    out.insert("auth_method".into(), Value::String(o.auth_method.clone()));
    let key_name = if o.auth_method == "bearer_token" {
        "bearer_token"
    } else {
        "api_key"
    };
    out.insert(key_name.into(), open(o.secrets[0])?);
    out.insert(
        "username".into(),
        row.get("basic_username").cloned().unwrap_or(Value::Null),
    );
    out.insert("password".into(), open(o.secrets[1])?);
    out.insert("access_token".into(), open(o.secrets[2])?);
    out.insert("refresh_token".into(), open(o.secrets[3])?);
    out.insert(
        "token_expires_at".into(),
        row.get("token_expires_at").cloned().unwrap_or(Value::Null),
    );
    out.insert(
        "scopes".into(),
        row.get("oauth_scopes").cloned().unwrap_or(Value::Null),
    );
    // What seed 002's getDecryptedCredentials returns besides the secrets.
    let config = row.get("connection_config").cloned().unwrap_or(Value::Null);
    out.insert(
        "domain".into(),
        config.get("domain").cloned().unwrap_or(Value::Null),
    );
    out.insert("connection_config".into(), config);
    audit_connection(&o.caller, Action::ReadSecret, &o.business, &o.provider, &id)?;
    Ok(fcall::datum(JsonB(Value::Object(out))))
}

sql_function!(pgi_delete_integration => delete_integration);
/// `public.delete_integration`, declared in `sql/platform/connections.sql`.
fn delete_integration(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let deleted = Spi::connect_mut(|c| -> Result<Option<(Caller, Uuid, String)>> {
        let Some(o) = owned_for_update(c, id, Need::Manage)? else {
            return Ok(None);
        };
        let plan = plans::plan(c, &DELETE)?;
        let rows = c.update(plan, None, &[id.into()])?;
        Ok((!rows.is_empty()).then_some((o.caller, o.business, o.provider)))
    })?;
    let Some((caller, business, provider)) = deleted else {
        return Ok(fcall::datum(false));
    };
    audit_connection(&caller, Action::Delete, &business, &provider, &id)?;
    Ok(fcall::datum(true))
}

sql_function!(pgi_update_integration_sync_stats => update_integration_sync_stats);
/// `public.update_integration_sync_stats`, declared in `sql/platform/connections.sql`.
fn update_integration_sync_stats(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let mut counts = [0i64; 3];
    for (i, name) in [
        "p_total_records",
        "p_last_sync_count",
        "p_failed_sync_count",
    ]
    .iter()
    .enumerate()
    {
        let v: i64 = call.required(i + 1, name)?;
        if v < 0 {
            return Err(Error::InvalidArgument(format!(
                "{name} must not be negative"
            )));
        }
        counts[i] = v;
    }
    Spi::connect_mut(|c| -> Result<()> {
        owned_for_update(c, id, Need::Use)?.ok_or_else(|| not_found(&id))?;
        let plan = plans::plan(c, &SYNC_STATS)?;
        c.update(
            plan,
            None,
            &[
                id.into(),
                counts[0].into(),
                counts[1].into(),
                counts[2].into(),
            ],
        )?;
        Ok(())
    })?;
    Ok(fcall::void())
}

sql_function!(pgi_update_integration_health => update_integration_health);
/// `public.update_integration_health`, declared in `sql/platform/connections.sql`.
fn update_integration_health(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let success: bool = call.required(1, "p_success")?;
    // Kept short and redacted: an error text is for people, and may quote a
    // request or a response.
    let message: Option<String> = call.text(2).map(|m| {
        crate::core::redact::redact_text(&m)
            .chars()
            .take(1000)
            .collect()
    });
    let response_ms: Option<i32> = call.arg(3);
    if response_ms.is_some_and(|ms| ms < 0) {
        return Err(Error::InvalidArgument(
            "p_response_time_ms must not be negative".into(),
        ));
    }
    Spi::connect_mut(|c| -> Result<()> {
        let o = owned_for_update(c, id, Need::Use)?.ok_or_else(|| not_found(&id))?;
        let plan = plans::plan(c, &HEALTH)?;
        c.update(
            plan,
            None,
            &[
                id.into(),
                success.into(),
                message.as_deref().into(),
                response_ms.into(),
                FAILURES_BEFORE_ERROR.into(),
                plans::transaction_start().into(),
                o.business.into(),
            ],
        )?;
        // Health checks count in the hourly metrics too.
        crate::platform::metrics::record(c, id, o.business, success, response_ms)?;
        Ok(())
    })?;
    Ok(fcall::void())
}

sql_function!(pgi_set_integration_oauth_tokens => set_integration_oauth_tokens);
/// `public.set_integration_oauth_tokens`, declared in `sql/platform/connections.sql`.
fn set_integration_oauth_tokens(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let access = call.text(1);
    if !non_empty(&access) {
        return Err(Error::InvalidArgument(
            "p_access_token must not be null or empty".into(),
        ));
    }
    let refresh = call.text(2);
    let expires: Option<pgrx::datum::TimestampWithTimeZone> = call.arg(3);
    let scopes: Option<Vec<String>> = call
        .arg::<Vec<Option<String>>>(4)
        .map(|v| v.into_iter().flatten().collect());
    let (caller, business, provider) = Spi::connect_mut(|c| -> Result<(Caller, Uuid, String)> {
        let o = owned_for_update(c, id, Need::Manage)?.ok_or_else(|| not_found(&id))?;
        if o.auth_method != "oauth2" {
            return Err(Error::InvalidArgument(format!(
                "p_integration_id: this integration uses {}, not oauth2",
                o.auth_method
            )));
        }
        let new_access = seal(c, o.business, &access, "OAuth access token")?;
        // A refresh token left NULL keeps the one stored.
        let new_refresh = match &refresh {
            Some(_) => seal(c, o.business, &refresh, "OAuth refresh token")?,
            None => o.secrets[3],
        };
        let plan = plans::plan(c, &SET_TOKENS)?;
        c.update(
            plan,
            None,
            &[
                id.into(),
                new_access.into(),
                new_refresh.into(),
                expires.into(),
                scopes.into(),
            ],
        )?;
        for (old, replaced) in [(o.secrets[2], true), (o.secrets[3], refresh.is_some())] {
            if let (Some(old), true) = (old, replaced) {
                store::delete(c, old)?;
            }
        }
        Ok((o.caller, o.business, o.provider))
    })?;
    audit_connection(&caller, Action::Set, &business, &provider, &id)?;
    Ok(fcall::void())
}

sql_function!(pgi_list_integrations_needing_refresh => list_integrations_needing_refresh);
/// `public.list_integrations_needing_refresh`, declared in `sql/platform/connections.sql`.
fn list_integrations_needing_refresh(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("list_integrations_needing_refresh")?;
    let within: pgrx::datum::Interval = call.required(0, "p_within")?;
    let rows = read_json(&NEEDING_REFRESH, &[within.into()])?;
    call.begin_rows();
    for j in rows {
        call.put_row(&mut [fcall::datum(j)], &mut [false]);
    }
    Ok(fcall::void())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connection_config_is_validated() {
        for ok in [
            json!({}),
            json!({"domain": "mystore.myshopify.com", "api_version": "2024-01", "timeout": 30000}),
            json!({"api_endpoint": "https://api.circuly.io/api/2025-01", "rate_limit": 120}),
        ] {
            assert_eq!(check_connection_config(&ok), Ok(()), "{ok}");
        }
        for (bad, field) in [
            (json!([]), "p_connection_config must be a JSON object"),
            (
                json!({"api_endpoint": "http://api.example.com"}),
                "p_connection_config.api_endpoint",
            ),
            (json!({"timeout": 0}), "p_connection_config.timeout"),
            (json!({"timeout": "30s"}), "p_connection_config.timeout"),
            (
                json!({"domain": "https://shop.example.com"}),
                "p_connection_config.domain",
            ),
            (
                json!({"api_version": "2024 01"}),
                "p_connection_config.api_version",
            ),
            (
                json!({"secret": "x"}),
                "p_connection_config has an unknown key",
            ),
        ] {
            let e = check_connection_config(&bad).unwrap_err();
            assert!(e.starts_with(field), "{bad}: {e}");
        }
    }

    #[test]
    fn capabilities_are_validated() {
        assert!(check_capabilities(
            &json!({"can_sync": true, "can_push": false, "sync_frequency": "hourly"})
        )
        .is_ok());
        assert!(check_capabilities(&json!({"can_sync": "yes"})).is_err());
        assert!(check_capabilities(&json!({"sync_frequency": "every minute"})).is_err());
        assert!(check_capabilities(&json!({"can_fly": true})).is_err());
    }

    #[test]
    fn key_prefixes_never_hold_the_key() {
        assert!(check_key_prefix("shpat_", Some("shpat_0123456789")).is_ok());
        assert!(check_key_prefix("shpat_0123456789", Some("shpat_0123456789")).is_err());
        assert!(check_key_prefix("sk_", Some("shpat_0123456789")).is_err());
        assert!(
            check_key_prefix("0123456789abcdefg", Some(&"0123456789abcdefg".repeat(4))).is_err()
        );
        assert!(check_key_prefix("shpat_", None).is_err());
    }

    #[test]
    fn credentials_must_fit_the_auth_method() {
        let key = Credentials {
            api_key: Some("shpat_x".into()),
            ..Default::default()
        };
        assert!(check_credentials("api_key", &key).is_ok());
        assert!(check_credentials("bearer_token", &key).is_ok());
        assert!(check_credentials("basic_auth", &key).is_err());
        assert!(check_credentials("oauth2", &key).is_err());
        let basic = Credentials {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        assert!(check_credentials("basic_auth", &basic).is_ok());
        assert!(check_credentials("api_key", &basic).is_err());
        let oauth = Credentials {
            access_token: Some("a".into()),
            refresh_token: Some("r".into()),
            ..Default::default()
        };
        assert!(check_credentials("oauth2", &oauth).is_ok());
        assert!(check_credentials("oauth2", &Credentials::default()).is_err());
        assert!(check_credentials("magic", &key).is_err());
    }

    #[test]
    fn seed_002_camel_case_keys_are_stored_in_one_form() {
        let v = json!({"apiVersion": "2024-01", "rateLimit": 40, "domain": "x.myshopify.com"});
        let c = canonical_keys(v, CONFIG_ALIASES, "p_connection_config").unwrap();
        assert_eq!(
            c,
            json!({"api_version": "2024-01", "rate_limit": 40, "domain": "x.myshopify.com"})
        );
        assert_eq!(check_connection_config(&c), Ok(()));
        let caps = canonical_keys(
            json!({"canSync": true, "syncFrequency": "hourly"}),
            CAPABILITY_ALIASES,
            "p_capabilities",
        )
        .unwrap();
        assert_eq!(caps, json!({"can_sync": true, "sync_frequency": "hourly"}));
        assert_eq!(check_capabilities(&caps), Ok(()));
        let twice = canonical_keys(
            json!({"canSync": true, "can_sync": false}),
            CAPABILITY_ALIASES,
            "p_capabilities",
        );
        assert!(twice.unwrap_err().contains("given twice"));
    }
}
