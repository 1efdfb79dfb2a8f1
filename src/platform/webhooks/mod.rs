//! Webhooks (seed 003): a configuration per connection (endpoint token,
//! subscribed event types, signing secret in the secret store), events recorded
//! once per provider event id after their signature is verified — only the
//! body's SHA-256 and its object-storage key are stored, the body lives in
//! R2/S3 — a work queue for workers, and a log of who read a body and why.

use pgrx::pg_sys::BuiltinOid;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::store;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::sql_function;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller::require_privileged;
use crate::tenancy::{self, Caller};

pub mod signature;

use crate::pg::spi::Spi;
use signature::{kept_headers, verify};

/// Attempts before an event is given up (`dead`).
pub const MAX_ATTEMPTS: i32 = 5;

// Rows are locked by their whole key, (id, business_id), the business looked
// up first: on Citus one shard's row (Citus refuses to lock rows across
// shards, and joins distributed tables on the distribution column only).
static CONNECTION_BUSINESS: Statement = Statement {
    sql: "SELECT business_id FROM public.integration_connections WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static CONFIG_BUSINESS: Statement = Statement {
    sql: "SELECT business_id FROM public.integration_webhook_configs WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static CONFIG_FOR_CONNECTION: Statement = Statement {
    sql: "SELECT c.business_id, c.provider, p.webhook_signing, p.webhook_signature_header \
          FROM public.integration_connections c JOIN public.integration_providers p ON p.provider = c.provider \
          WHERE c.id = $1 AND c.business_id = $2 FOR NO KEY UPDATE OF c",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID],
    mutating: true,
};
static CONFIG_OF_CONNECTION: Statement = Statement {
    sql: "SELECT id, signing_secret_id FROM public.integration_webhook_configs WHERE integration_id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static INSERT_CONFIG: Statement = Statement {
    sql: "INSERT INTO public.integration_webhook_configs (integration_id, business_id, endpoint_token, event_types, is_active, \
              signing_secret_id, signing_scheme, signature_header) \
          VALUES ($1, $2, $3, COALESCE($4, '{}'), COALESCE($5, true), $6, $7, $8) RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::BOOLOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
    ],
    mutating: true,
};
static UPDATE_CONFIG: Statement = Statement {
    sql: "UPDATE public.integration_webhook_configs SET event_types = COALESCE($2, event_types), is_active = COALESCE($3, is_active), \
              signing_secret_id = COALESCE($4, signing_secret_id) WHERE id = $1 RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTARRAYOID, BuiltinOid::BOOLOID, BuiltinOid::UUIDOID],
    mutating: true,
};
// The connection is key-share locked here, before the event's foreign keys
// lock the configuration: the order a concurrent delete_integration locks
// them in (connection, then configuration), so the two cannot deadlock.
static CONFIG: Statement = Statement {
    sql: "SELECT w.integration_id, w.business_id, w.event_types, w.is_active, w.signing_secret_id, w.signing_scheme, \
                 w.signature_header \
          FROM public.integration_webhook_configs w \
          JOIN public.integration_connections c ON c.id = w.integration_id AND c.business_id = w.business_id \
          WHERE w.id = $1 AND w.business_id = $2 FOR KEY SHARE OF c",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID],
    mutating: true,
};

/// The business of the row `id` of the table `stmt` reads, if any.
fn business_of(
    c: &pgrx::spi::SpiClient<'_>,
    stmt: &'static Statement,
    id: Uuid,
) -> Result<Option<Uuid>> {
    let plan = plans::plan(c, stmt)?;
    let rows = c.select(plan, Some(1), &[id.into()])?;
    Ok(if rows.is_empty() {
        None
    } else {
        rows.first().get::<Uuid>(1)?
    })
}
// Replays: a token accepted once per configuration, and the same signed body
// under another event id (the event id is ours, not covered by a signature).
static SEEN_TOKEN: Statement = Statement {
    sql: "SELECT provider_event_id FROM public.integration_events WHERE config_id = $1 AND replay_key = $2 LIMIT 1",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::BYTEAOID],
    mutating: false,
};
static SEEN_BODY: Statement = Statement {
    sql: "SELECT provider_event_id FROM public.integration_events \
          WHERE config_id = $1 AND body_sha256 = $2 AND provider_event_id <> $3 \
            AND ($4::integer IS NULL OR received_at > pg_catalog.now() - pg_catalog.make_interval(secs => $4)) LIMIT 1",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::BYTEAOID, BuiltinOid::TEXTOID, BuiltinOid::INT4OID],
    mutating: false,
};
/// The INSERT of a verified event, with or without a replay key column.
macro_rules! insert_event {
    ($extra_column:literal, $extra_value:literal) => {
        concat!(
            "INSERT INTO public.integration_events (config_id, integration_id, business_id, provider_event_id, event_type, \
                 headers, body_sha256, body_object_key",
            $extra_column,
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8",
            $extra_value,
            ") ON CONFLICT ON CONSTRAINT unique_provider_event DO NOTHING RETURNING id"
        )
    };
}
const EVENT_ARGS: [BuiltinOid; 8] = [
    BuiltinOid::UUIDOID,
    BuiltinOid::UUIDOID,
    BuiltinOid::UUIDOID,
    BuiltinOid::TEXTOID,
    BuiltinOid::TEXTOID,
    BuiltinOid::JSONBOID,
    BuiltinOid::BYTEAOID,
    BuiltinOid::TEXTOID,
];
static INSERT_EVENT: Statement = Statement {
    sql: insert_event!(", replay_key", ", $9"),
    args: &[
        EVENT_ARGS[0],
        EVENT_ARGS[1],
        EVENT_ARGS[2],
        EVENT_ARGS[3],
        EVENT_ARGS[4],
        EVENT_ARGS[5],
        EVENT_ARGS[6],
        EVENT_ARGS[7],
        BuiltinOid::BYTEAOID,
    ],
    mutating: true,
};
/// [`INSERT_EVENT`] without a replay key, which a schema before 0.3.0 has no
/// column for.
static INSERT_EVENT_UNKEYED: Statement = Statement {
    sql: insert_event!("", ""),
    args: &EVENT_ARGS,
    mutating: true,
};
static EXISTING_EVENT: Statement = Statement {
    sql: "SELECT id, body_sha256 FROM public.integration_events WHERE config_id = $1 AND provider_event_id = $2",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: false,
};

fn new_endpoint_token() -> Result<String> {
    crate::platform::oauth::new_token()
}

sql_function!(pgi_set_webhook_config => set_webhook_config);
/// `public.set_webhook_config`, declared in `sql/platform/webhooks.sql`.
fn set_webhook_config(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let id: Uuid = call.required(0, "p_integration_id")?;
    let secret: Option<String> = call.arg(1);
    if secret.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(Error::InvalidArgument(
            "p_signing_secret must not be empty".into(),
        ));
    }
    let event_types: Option<Vec<String>> = call
        .arg::<Vec<Option<String>>>(2)
        .map(|v| v.into_iter().flatten().collect());
    let active: Option<bool> = call.arg(3);
    let (caller, business, provider, config_id) = Spi::connect_mut(
        |c| -> Result<(Caller, Uuid, String, Uuid)> {
            let owner = business_of(c, &CONNECTION_BUSINESS, id)?;
            let plan = plans::plan(c, &CONFIG_FOR_CONNECTION)?;
            let rows = c.update(plan, Some(1), &[id.into(), owner.into()])?;
            if rows.is_empty() {
                return Err(Error::NotFound(format!("integration {id} does not exist")));
            }
            let row = rows.first();
            let business: Uuid = row
                .get(1)?
                .ok_or_else(|| Error::Internal("no business".into()))?;
            // Another tenant's connection: the answer an unknown id gets.
            if !tenancy::can_access(&Caller::current(), &business)? {
                return Err(Error::NotFound(format!("integration {id} does not exist")));
            }
            let caller = tenancy::authorize_manage(&business)?;
            let provider: String = row.get(2)?.unwrap_or_default();
            let scheme: String = row.get(3)?.unwrap_or_default();
            let header: Option<String> = row.get(4)?;
            // Read the configuration again now that the connection is
            // locked: every writer of it holds that lock, so this sees the
            // latest one (the join above may show a version that a
            // concurrent call replaced while this one waited, whose
            // secret is already gone; trusting it would orphan the new one).
            let (existing, old_secret) = {
                let plan = plans::plan(c, &CONFIG_OF_CONNECTION)?;
                let rows = c.select(plan, Some(1), &[id.into()])?;
                if rows.is_empty() {
                    (None, None)
                } else {
                    let r = rows.first();
                    (r.get::<Uuid>(1)?, r.get::<Uuid>(2)?)
                }
            };
            let new_secret = match &secret {
                Some(s) => Some(store::create(
                    c,
                    business,
                    s.as_bytes().to_vec(),
                    "webhook signing secret",
                )?),
                None => None,
            };
            let config_id = match existing {
                Some(cfg) => {
                    plans::write_returning_id(
                        c,
                        &UPDATE_CONFIG,
                        &[
                            cfg.into(),
                            event_types.clone().into(),
                            active.into(),
                            new_secret.into(),
                        ],
                    )?;
                    if let (Some(old), Some(_)) = (old_secret, new_secret) {
                        store::delete(c, old)?;
                    }
                    cfg
                }
                None => {
                    if matches!(
                        scheme.as_str(),
                        "none" | "unverified" | "tap_hashstring" | "aes_256_gcm_body"
                    ) {
                        return Err(Error::InvalidArgument(format!(
                    "provider {provider} signs webhooks with {scheme}, which record_webhook_event cannot verify"
                )));
                    }
                    let secret = new_secret.ok_or_else(|| {
                        Error::InvalidArgument(
                            "p_signing_secret is required for a new webhook configuration".into(),
                        )
                    })?;
                    plans::write_returning_id(
                        c,
                        &INSERT_CONFIG,
                        &[
                            id.into(),
                            business.into(),
                            new_endpoint_token()?.into(),
                            event_types.clone().into(),
                            active.into(),
                            secret.into(),
                            scheme.as_str().into(),
                            header.as_deref().into(),
                        ],
                    )?
                    .ok_or_else(|| Error::Internal("no config id".into()))?
                }
            };
            Ok((caller, business, provider, config_id))
        },
    )?;
    audit::record(
        &caller,
        Action::Set,
        "webhook_config",
        &business,
        Some(&provider),
        Some(&config_id),
    )?;
    Ok(fcall::datum(config_id))
}

/// Single-use tokens need `integration_events.replay_key` (0.3.0): a schema
/// not updated yet refuses them rather than accept a token twice.
fn replay_key_column() -> Result<()> {
    crate::pg::direct::rel("public", "integration_events", &["replay_key"])
        .map(|_| ())
        .map_err(|_| Error::NotReady {
            message: "this webhook's tokens can be used once only from version 0.3.0 of the extension's schema on".into(),
            hint: "Run ALTER EXTENSION pg_integrations UPDATE;".into(),
        })
}

/// Whether the configuration recorded this body under another event id
/// within `window` seconds (`None`: ever). An index read by construction
/// (the generic plan of a kept SPI statement, prepared while the table was
/// small, would be a scan of every event); SQL on a schema before 0.3.0,
/// which has no index on the body digest.
fn body_seen(
    c: &pgrx::spi::SpiClient<'_>,
    config_id: Uuid,
    digest: &[u8],
    event_id: &str,
    window: Option<i32>,
) -> Result<bool> {
    use crate::pg::direct;
    let rel = direct::rel(
        "public",
        "integration_events",
        &["provider_event_id", "received_at"],
    )?;
    if rel
        .index(c"public", c"integration_events_body_idx")
        .is_err()
    {
        let plan = plans::plan(c, &SEEN_BODY)?;
        let args = [
            config_id.into(),
            digest.into(),
            event_id.into(),
            window.into(),
        ];
        return Ok(!c.select(plan, Some(1), &args)?.is_empty());
    }
    let (event, received) = (rel.att("provider_event_id")?, rel.att("received_at")?);
    // SAFETY: reads the backend's clock; no pointers involved.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let since = window.map(|w| now.saturating_sub(i64::from(w).saturating_mul(1_000_000)));
    let found = direct::find_in(
        c"public",
        c"integration_events_body_idx",
        &rel,
        &[
            direct::uuid_key(1, &config_id),
            direct::bytea_key(2, digest),
        ],
        |row| {
            if row.get::<&str>(event) == Some(event_id) {
                return Ok(None);
            }
            // A timestamptz datum is its microseconds since 2000, by value.
            let at = row.datum(received).map(|d| d.value() as i64);
            Ok(match (since, at) {
                (Some(since), Some(at)) if at <= since => None,
                _ => Some(()),
            })
        },
    )?;
    Ok(found.is_some())
}

/// How long a signed body can be replayed under a new event id, in seconds:
/// the signed timestamp's tolerance for Stripe, a token's age for HS256 JWTs;
/// `None` (for ever) for schemes that sign only the body.
fn replay_window(scheme: &str) -> Option<i32> {
    match scheme {
        "stripe_v1" => i32::try_from(signature::STRIPE_TOLERANCE_SECONDS).ok(),
        "jwt_hs256" => i32::try_from(signature::JWT_MAX_AGE_SECONDS).ok(),
        _ => None,
    }
}

sql_function!(pgi_record_webhook_event => record_webhook_event);
/// `public.record_webhook_event`, declared in `sql/platform/webhooks.sql`.
fn record_webhook_event(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("record_webhook_event")?;
    let invalid = Error::InvalidArgument;
    let config_id: Uuid = call.required(0, "p_config_id")?;
    let event_id: String = call
        .arg::<String>(1)
        .filter(|s| !s.trim().is_empty() && s.len() <= 255)
        .ok_or_else(|| invalid("p_provider_event_id must be 1 to 255 characters".into()))?;
    let event_type: Option<String> = call.arg(2);
    let headers = match call.arg::<JsonB>(3).map(|j| j.0) {
        Some(Value::Object(m)) => m,
        None => serde_json::Map::new(),
        Some(_) => return Err(invalid("p_headers must be a JSON object".into())),
    };
    let body: Vec<u8> = call.required(4, "p_body")?;
    let object_key: Option<String> = call.arg(5);
    let digest = Sha256::digest(&body).to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let recorded = Spi::connect_mut(|c| -> Result<Option<(Uuid, Uuid, bool)>> {
        let owner = business_of(c, &CONFIG_BUSINESS, config_id)?;
        let plan = plans::plan(c, &CONFIG)?;
        let rows = c.update(plan, Some(1), &[config_id.into(), owner.into()])?;
        if rows.is_empty() {
            return Err(Error::NotFound(format!(
                "webhook configuration {config_id} does not exist"
            )));
        }
        let row = rows.first();
        let integration: Uuid = row
            .get(1)?
            .ok_or_else(|| Error::Internal("no integration".into()))?;
        let business: Uuid = row
            .get(2)?
            .ok_or_else(|| Error::Internal("no business".into()))?;
        let types: Vec<String> = row
            .get::<Vec<Option<String>>>(3)?
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        let active: bool = row.get(4)?.unwrap_or(false);
        let secret_id: Option<Uuid> = row.get(5)?;
        let scheme: String = row.get(6)?.unwrap_or_default();
        let header_name: Option<String> = row.get(7)?;
        if !active {
            return Err(Error::InvalidArgument(
                "this webhook configuration is not active".into(),
            ));
        }
        let secret = match secret_id {
            // Gone since the row was read: the configuration (or its
            // connection) was deleted by a transaction that committed
            // meanwhile, which is a not-found, not a fault.
            Some(s) => store::read_of(s, business)?.ok_or_else(|| {
                Error::NotFound(format!("webhook configuration {config_id} does not exist"))
            })?,
            None => {
                return Err(Error::Internal(
                    "the webhook configuration has no signing secret".into(),
                ))
            }
        };
        let verified = verify(
            &scheme,
            header_name.as_deref(),
            secret.as_bytes(),
            &headers,
            &body,
            now,
        )
        .map_err(|r| Error::NotAllowed(format!("webhook refused: {r}")))?;
        if let Some(t) = &event_type {
            if !types.is_empty() && !types.contains(t) {
                return Ok(None);
            }
        }
        let replay_key = verified.replay_key.map(|k| k.to_vec());
        if replay_key.is_some() {
            replay_key_column()?;
        }
        if let Some(key) = &replay_key {
            let plan = plans::plan(c, &SEEN_TOKEN)?;
            let seen = c.select(plan, Some(1), &[config_id.into(), key.as_slice().into()])?;
            if !seen.is_empty()
                && seen.first().get::<String>(1)?.as_deref() != Some(event_id.as_str())
            {
                return Err(Error::NotAllowed(
                    "webhook refused: this signed token was already used for another event".into(),
                ));
            }
        }
        if !verified.signs_event_id
            && body_seen(c, config_id, &digest, &event_id, replay_window(&scheme))?
        {
            return Err(Error::NotAllowed(
                "webhook refused: the same signed body was already recorded under another event id"
                    .into(),
            ));
        }
        let mut args: Vec<pgrx::datum::DatumWithOid<'_>> = vec![
            config_id.into(),
            integration.into(),
            business.into(),
            event_id.as_str().into(),
            event_type.as_deref().into(),
            JsonB(Value::Object(kept_headers(&headers))).into(),
            digest.as_slice().into(),
            object_key.as_deref().into(),
        ];
        let insert = match &replay_key {
            Some(key) => {
                args.push(key.as_slice().into());
                &INSERT_EVENT
            }
            None => &INSERT_EVENT_UNKEYED,
        };
        let inserted = plans::write_returning_id(c, insert, &args)?;
        match inserted {
            Some(id) => Ok(Some((id, business, true))),
            None => {
                // A replay: the same provider event id again. Same body: the same event.
                let plan = plans::plan(c, &EXISTING_EVENT)?;
                let row = c
                    .select(plan, Some(1), &[config_id.into(), event_id.as_str().into()])?
                    .first();
                let id: Uuid = row
                    .get(1)?
                    .ok_or_else(|| Error::Internal("no event".into()))?;
                let stored: Vec<u8> = row.get(2)?.unwrap_or_default();
                if stored != digest {
                    return Err(Error::Conflict(format!(
                        "provider event {event_id} was already recorded with a different body"
                    )));
                }
                Ok(Some((id, business, false)))
            }
        }
    })?;
    Ok(match recorded {
        Some((id, _, _)) => fcall::datum(id),
        None => call.null(),
    })
}

static CLAIM: Statement = Statement {
    sql: "UPDATE public.integration_events e SET status = 'processing', attempts = e.attempts + 1, claimed_at = pg_catalog.now() \
          WHERE e.id IN (SELECT id FROM public.integration_events \
                         WHERE status IN ('pending', 'failed') AND next_attempt_at <= pg_catalog.now() \
                         ORDER BY next_attempt_at, received_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
          RETURNING e.*",
    args: &[BuiltinOid::INT4OID],
    mutating: true,
};
/// On Citus: the due events, unlocked (Citus cannot lock rows across
/// shards), then each claimed by its whole key if it is still due. A claimer
/// waits for another that holds the same event, then finds it taken.
static CLAIM_CANDIDATES: Statement = Statement {
    sql: "SELECT id, business_id FROM public.integration_events \
          WHERE status IN ('pending', 'failed') AND next_attempt_at <= $2 \
          ORDER BY next_attempt_at, received_at LIMIT $1",
    args: &[BuiltinOid::INT4OID, BuiltinOid::TIMESTAMPTZOID],
    mutating: false,
};
static CLAIM_ONE: Statement = Statement {
    sql: "UPDATE public.integration_events e SET status = 'processing', attempts = e.attempts + 1, claimed_at = $3 \
          WHERE e.id = $1 AND e.business_id = $2 AND e.status IN ('pending', 'failed') AND e.next_attempt_at <= $3 \
          RETURNING e.*",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::TIMESTAMPTZOID],
    mutating: true,
};
// The time is a parameter ($5, the transaction's start, as now(); $6 the same
// in seconds since 1970 for the retry time, through the immutable
// to_timestamp): Citus refuses non-immutable functions inside CASE.
static COMPLETE: Statement = Statement {
    sql: "UPDATE public.integration_events SET \
              status = CASE WHEN $2 THEN 'done' WHEN attempts >= $4 THEN 'dead' ELSE 'failed' END, \
              processed_at = CASE WHEN $2 THEN $5 ELSE processed_at END, \
              last_error = CASE WHEN $2 THEN NULL ELSE $3 END, \
              next_attempt_at = CASE WHEN $2 THEN next_attempt_at \
                                     ELSE pg_catalog.to_timestamp($6 + 60 * (2 ^ LEAST(attempts, 10))) END \
          WHERE id = $1 AND status = 'processing' RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::BOOLOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::INT4OID,
        BuiltinOid::TIMESTAMPTZOID,
        BuiltinOid::FLOAT8OID,
    ],
    mutating: true,
};

static EVENT_BUSINESS: Statement = Statement {
    sql: "SELECT business_id, status FROM public.integration_events WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static ACCESS_LOG: Statement = Statement {
    sql: "INSERT INTO public.webhook_access_logs (event_id, business_id, accessed_by_user, accessed_by_role, purpose) \
          VALUES ($1, $2, $3, $4, $5) RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::TEXTOID],
    mutating: true,
};

sql_function!(pgi_claim_integration_events => claim_integration_events);
/// `public.claim_integration_events`, declared in `sql/platform/webhooks.sql`.
fn claim_integration_events(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("claim_integration_events")?;
    let limit: i32 = call.arg(0).unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(Error::InvalidArgument(
            "p_limit must be between 1 and 1000".into(),
        ));
    }
    let events = crate::pg::direct::relid(c"public", c"integration_events")?;
    if !crate::pg::sharded::is_citus_table(events)? {
        return call.return_rows(&CLAIM, &[limit.into()]);
    }
    let now = plans::transaction_start();
    let due = Spi::connect(|c| -> Result<Vec<(Uuid, Uuid)>> {
        let plan = plans::plan(c, &CLAIM_CANDIDATES)?;
        let mut due = Vec::new();
        for r in c.select(plan, None, &[limit.into(), now.into()])? {
            if let (Some(id), Some(b)) = (r.get::<Uuid>(1)?, r.get::<Uuid>(2)?) {
                due.push((id, b));
            }
        }
        Ok(due)
    })?;
    let args: Vec<Vec<pgrx::datum::DatumWithOid<'_>>> = due
        .into_iter()
        .map(|(id, b)| vec![id.into(), b.into(), now.into()])
        .collect();
    call.return_rows_each(&CLAIM_ONE, args.iter().map(|a| a.as_slice()))
}

sql_function!(pgi_complete_integration_event => complete_integration_event);
/// `public.complete_integration_event`, declared in `sql/platform/webhooks.sql`.
fn complete_integration_event(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("complete_integration_event")?;
    let id: Uuid = call.required(0, "p_event_id")?;
    let success: bool = call.required(1, "p_success")?;
    let error: Option<String> = call.arg::<String>(2).map(|e| {
        crate::core::redact::redact_text(&e)
            .chars()
            .take(1000)
            .collect()
    });
    Spi::connect_mut(|c| -> Result<()> {
        if plans::write_returning_id(
            c,
            &COMPLETE,
            &[
                id.into(),
                success.into(),
                error.as_deref().into(),
                MAX_ATTEMPTS.into(),
                plans::transaction_start().into(),
                // seconds since 1970 of the same time (PostgreSQL counts microseconds since 2000)
                plans::transaction_start()
                    .map(|t| (pg_sys::TimestampTz::from(t) as f64) / 1e6 + 946_684_800.0)
                    .into(),
            ],
        )?
        .is_none()
        {
            let plan = plans::plan(c, &EVENT_BUSINESS)?;
            let rows = c.select(plan, Some(1), &[id.into()])?;
            if rows.is_empty() {
                return Err(Error::NotFound(format!("event {id} does not exist")));
            }
            return Err(Error::InvalidArgument(
                "p_event_id: the event is not being processed (claim it first)".into(),
            ));
        }
        Ok(())
    })?;
    Ok(fcall::void())
}

sql_function!(pgi_log_webhook_body_access => log_webhook_body_access);
/// `public.log_webhook_body_access`, declared in `sql/platform/webhooks.sql`.
fn log_webhook_body_access(call: &Call) -> Result<pg_sys::Datum> {
    let id: Uuid = call.required(0, "p_event_id")?;
    let purpose: String = call
        .arg::<String>(1)
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() && p.chars().count() <= 500)
        .ok_or_else(|| {
            Error::InvalidArgument("p_purpose must say why, in 1 to 500 characters".into())
        })?;
    let log_id = Spi::connect_mut(|c| -> Result<Option<Uuid>> {
        let plan = plans::plan(c, &EVENT_BUSINESS)?;
        let rows = c.select(plan, Some(1), &[id.into()])?;
        if rows.is_empty() {
            return Err(Error::NotFound(format!("event {id} does not exist")));
        }
        let business: Uuid = rows
            .first()
            .get(1)?
            .ok_or_else(|| Error::Internal("no business".into()))?;
        // Another tenant's event: the answer an unknown id gets.
        if !tenancy::can_access(&Caller::current(), &business)? {
            return Err(Error::NotFound(format!("event {id} does not exist")));
        }
        let caller = tenancy::authorize(&business)?;
        plans::write_returning_id(
            c,
            &ACCESS_LOG,
            &[
                id.into(),
                business.into(),
                caller.user_id.into(),
                (*caller.role_name()).into(),
                purpose.as_str().into(),
            ],
        )
    })?;
    Ok(match log_id {
        Some(l) => fcall::datum(l),
        None => call.null(),
    })
}
