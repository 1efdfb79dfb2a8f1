//! Webhooks (seed 003): a configuration per connection (endpoint token,
//! subscribed event types, signing secret in the secret store), events recorded
//! once per provider event id after their signature is verified — only the
//! body's SHA-256 and its object-storage key are stored, the body lives in
//! R2/S3 — a work queue for workers, and a log of who read a body and why.

use base64::Engine;
use hmac::{Hmac, Mac};
use pgrx::pg_sys::BuiltinOid;
use pgrx::prelude::*;
use pgrx::{JsonB, Uuid};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::access::require_privileged;
use crate::audit::{self, Action};
use crate::error::{statement_holds_secret, Error, Result};
use crate::fcall;
use crate::plans::{self, Statement};
use crate::secrets;
use crate::sql_function;
use crate::tenancy::{self, Caller};

/// How far a Stripe-style signed timestamp may be from now.
pub const STRIPE_TOLERANCE_SECONDS: i64 = 300;
/// Attempts before an event is given up (`dead`).
pub const MAX_ATTEMPTS: i32 = 5;

/// Paymob's transaction-callback HMAC: the values of these fields of `obj`,
/// in this order, concatenated.
const PAYMOB_FIELDS: &[&str] = &[
    "amount_cents",
    "created_at",
    "currency",
    "error_occured",
    "has_parent_transaction",
    "id",
    "integration_id",
    "is_3d_secure",
    "is_auth",
    "is_capture",
    "is_refunded",
    "is_standalone_payment",
    "is_voided",
    "order.id",
    "owner",
    "pending",
    "source_data.pan",
    "source_data.sub_type",
    "source_data.type",
    "success",
];

/// Why a signature was refused (never with the secret or the expected value).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingHeader(String),
    Mismatch,
    Stale,
    Malformed(&'static str),
    Unsupported(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::MissingHeader(h) => write!(f, "the signature header {h} is missing"),
            Refusal::Mismatch => write!(f, "the signature does not match the body"),
            Refusal::Stale => write!(
                f,
                "the signed timestamp is more than {STRIPE_TOLERANCE_SECONDS} seconds from now"
            ),
            Refusal::Malformed(what) => write!(f, "the signature header is malformed: {what}"),
            Refusal::Unsupported(s) => write!(f, "the signing scheme {s} is not supported"),
        }
    }
}

/// Constant-time comparison of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn header<'a>(headers: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn json_field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn paymob_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// Verify a webhook's signature with the provider's scheme. `now` is Unix time.
pub fn verify(
    scheme: &str,
    header_name: Option<&str>,
    secret: &[u8],
    headers: &serde_json::Map<String, Value>,
    body: &[u8],
    now: i64,
) -> std::result::Result<(), Refusal> {
    let need = |default: &str| -> std::result::Result<&str, Refusal> {
        let name = header_name.unwrap_or(default);
        header(headers, name).ok_or_else(|| Refusal::MissingHeader(name.to_string()))
    };
    match scheme {
        "hmac_sha256_hex" => {
            let given = need("Signature")?.trim();
            let given = given.strip_prefix("sha256=").unwrap_or(given);
            let given = hex::decode(given).map_err(|_| Refusal::Malformed("not hex"))?;
            ct_eq(&given, &hmac_sha256(secret, &[body]))
                .then_some(())
                .ok_or(Refusal::Mismatch)
        }
        "hmac_sha256_base64" => {
            let given = base64::engine::general_purpose::STANDARD
                .decode(need("X-Signature")?.trim())
                .map_err(|_| Refusal::Malformed("not base64"))?;
            ct_eq(&given, &hmac_sha256(secret, &[body]))
                .then_some(())
                .ok_or(Refusal::Mismatch)
        }
        "stripe_v1" => {
            let value = need("Stripe-Signature")?;
            let mut t: Option<i64> = None;
            let mut sigs = Vec::new();
            for part in value.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", v)) => {
                        t = Some(
                            v.parse()
                                .map_err(|_| Refusal::Malformed("t is not a number"))?,
                        )
                    }
                    Some(("v1", v)) => {
                        sigs.push(hex::decode(v).map_err(|_| Refusal::Malformed("v1 is not hex"))?)
                    }
                    _ => {}
                }
            }
            let t = t.ok_or(Refusal::Malformed("no t="))?;
            if sigs.is_empty() {
                return Err(Refusal::Malformed("no v1="));
            }
            if (now - t).abs() > STRIPE_TOLERANCE_SECONDS {
                return Err(Refusal::Stale);
            }
            let expected = hmac_sha256(secret, &[t.to_string().as_bytes(), b".", body]);
            sigs.iter()
                .any(|s| ct_eq(s, &expected))
                .then_some(())
                .ok_or(Refusal::Mismatch)
        }
        "paymob_hmac_sha512" => {
            let given =
                hex::decode(need("hmac")?.trim()).map_err(|_| Refusal::Malformed("not hex"))?;
            let json: Value = serde_json::from_slice(body)
                .map_err(|_| Refusal::Malformed("the body is not JSON"))?;
            let obj = json.get("obj").unwrap_or(&json);
            let concatenated: String = PAYMOB_FIELDS
                .iter()
                .map(|f| paymob_value(json_field(obj, f)))
                .collect();
            let mut m =
                <Hmac<Sha512> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            m.update(concatenated.as_bytes());
            ct_eq(&given, &m.finalize().into_bytes())
                .then_some(())
                .ok_or(Refusal::Mismatch)
        }
        "static_header" | "shared_secret_token" => {
            let given = need("Authorization")?;
            ct_eq(given.trim().as_bytes(), secret)
                .then_some(())
                .ok_or(Refusal::Mismatch)
        }
        "jwt_hs256" => {
            let given = need("Authorization")?.trim();
            let token = given.strip_prefix("Bearer ").unwrap_or(given);
            let (signed, sig) = token
                .rsplit_once('.')
                .ok_or(Refusal::Malformed("not a JWT"))?;
            if signed.split('.').count() != 2 {
                return Err(Refusal::Malformed("not a JWT"));
            }
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .map_err(|_| Refusal::Malformed("not base64url"))?;
            ct_eq(&sig, &hmac_sha256(secret, &[signed.as_bytes()]))
                .then_some(())
                .ok_or(Refusal::Mismatch)
        }
        other => Err(Refusal::Unsupported(other.to_string())),
    }
}

/// Headers worth keeping with an event: everything but credentials and signatures.
pub fn kept_headers(headers: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !(k.contains("signature")
                || k.contains("hmac")
                || k.contains("authorization")
                || k.contains("token")
                || k.contains("secret")
                || k == "cookie"
                || k.contains("api-key")
                || k.contains("apikey"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

static CONFIG_FOR_CONNECTION: Statement = Statement {
    sql: "SELECT c.business_id, c.provider, p.webhook_signing, p.webhook_signature_header \
          FROM public.integration_connections c JOIN public.integration_providers p ON p.provider = c.provider \
          WHERE c.id = $1 FOR NO KEY UPDATE OF c",
    args: &[BuiltinOid::UUIDOID],
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
          FROM public.integration_webhook_configs w JOIN public.integration_connections c ON c.id = w.integration_id \
          WHERE w.id = $1 FOR KEY SHARE OF c",
    args: &[BuiltinOid::UUIDOID],
    mutating: true,
};
static INSERT_EVENT: Statement = Statement {
    sql: "INSERT INTO public.integration_events (config_id, integration_id, business_id, provider_event_id, event_type, \
              headers, body_sha256, body_object_key) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (config_id, provider_event_id) DO NOTHING RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::BYTEAOID,
        BuiltinOid::TEXTOID,
    ],
    mutating: true,
};
static EXISTING_EVENT: Statement = Statement {
    sql: "SELECT id, body_sha256 FROM public.integration_events WHERE config_id = $1 AND provider_event_id = $2",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: false,
};

fn new_endpoint_token() -> Result<String> {
    crate::oauth::new_token()
}

sql_function!(
    pg_finfo_pgi_set_webhook_config,
    pgi_set_webhook_config,
    |fcinfo| {
        statement_holds_secret();
        let id: Uuid = fcall::arg(fcinfo, 0)
            .ok_or_else(|| Error::InvalidArgument("p_integration_id must not be null".into()))?;
        let secret: Option<String> = fcall::arg(fcinfo, 1);
        if secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(Error::InvalidArgument(
                "p_signing_secret must not be empty".into(),
            ));
        }
        let event_types: Option<Vec<String>> =
            fcall::arg::<Vec<Option<String>>>(fcinfo, 2).map(|v| v.into_iter().flatten().collect());
        let active: Option<bool> = fcall::arg(fcinfo, 3);
        let (caller, business, provider, config_id) = Spi::connect_mut(
            |c| -> Result<(Caller, Uuid, String, Uuid)> {
                let plan = plans::plan(c, &CONFIG_FOR_CONNECTION)?;
                let rows = c.update(plan, Some(1), &[id.into()])?;
                if rows.is_empty() {
                    return Err(Error::NotFound(format!("integration {id} does not exist")));
                }
                let row = rows.first();
                let business: Uuid = row
                    .get(1)?
                    .ok_or_else(|| Error::Internal("no business".into()))?;
                let caller = tenancy::authorize(&business)?;
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
                    Some(s) => Some(secrets::create(
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
                            secrets::delete(c, old)?;
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
                                "p_signing_secret is required for a new webhook configuration"
                                    .into(),
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
);

sql_function!(
    pg_finfo_pgi_record_webhook_event,
    pgi_record_webhook_event,
    |fcinfo| {
        require_privileged("record_webhook_event")?;
        let invalid = Error::InvalidArgument;
        let config_id: Uuid =
            fcall::arg(fcinfo, 0).ok_or_else(|| invalid("p_config_id must not be null".into()))?;
        let event_id: String = fcall::arg::<String>(fcinfo, 1)
            .filter(|s| !s.trim().is_empty() && s.len() <= 255)
            .ok_or_else(|| invalid("p_provider_event_id must be 1 to 255 characters".into()))?;
        let event_type: Option<String> = fcall::arg(fcinfo, 2);
        let headers = match fcall::arg::<JsonB>(fcinfo, 3).map(|j| j.0) {
            Some(Value::Object(m)) => m,
            None => serde_json::Map::new(),
            Some(_) => return Err(invalid("p_headers must be a JSON object".into())),
        };
        let body: Vec<u8> =
            fcall::arg(fcinfo, 4).ok_or_else(|| invalid("p_body must not be null".into()))?;
        let object_key: Option<String> = fcall::arg(fcinfo, 5);
        let digest = Sha256::digest(&body).to_vec();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let recorded = Spi::connect_mut(|c| -> Result<Option<(Uuid, Uuid, bool)>> {
            let plan = plans::plan(c, &CONFIG)?;
            let rows = c.update(plan, Some(1), &[config_id.into()])?;
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
                Some(s) => secrets::read(s)?.map(|(v, _)| v).ok_or_else(|| {
                    Error::NotFound(format!(
                        "webhook configuration {config_id} does not exist"
                    ))
                })?,
                None => {
                    return Err(Error::Internal(
                        "the webhook configuration has no signing secret".into(),
                    ))
                }
            };
            verify(
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
            let inserted = plans::write_returning_id(
                c,
                &INSERT_EVENT,
                &[
                    config_id.into(),
                    integration.into(),
                    business.into(),
                    event_id.as_str().into(),
                    event_type.as_deref().into(),
                    JsonB(Value::Object(kept_headers(&headers))).into(),
                    digest.as_slice().into(),
                    object_key.as_deref().into(),
                ],
            )?;
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
            None => fcall::null(fcinfo),
        })
    }
);

static CLAIM: Statement = Statement {
    sql: "UPDATE public.integration_events e SET status = 'processing', attempts = e.attempts + 1, claimed_at = pg_catalog.now() \
          WHERE e.id IN (SELECT id FROM public.integration_events \
                         WHERE status IN ('pending', 'failed') AND next_attempt_at <= pg_catalog.now() \
                         ORDER BY next_attempt_at, received_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
          RETURNING e.*",
    args: &[BuiltinOid::INT4OID],
    mutating: true,
};
static COMPLETE: Statement = Statement {
    sql: "UPDATE public.integration_events SET \
              status = CASE WHEN $2 THEN 'done' WHEN attempts >= $4 THEN 'dead' ELSE 'failed' END, \
              processed_at = CASE WHEN $2 THEN pg_catalog.now() ELSE processed_at END, \
              last_error = CASE WHEN $2 THEN NULL ELSE $3 END, \
              next_attempt_at = CASE WHEN $2 THEN next_attempt_at \
                                     ELSE pg_catalog.now() + pg_catalog.make_interval(mins => (2 ^ LEAST(attempts, 10))::int) END \
          WHERE id = $1 AND status = 'processing' RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::BOOLOID, BuiltinOid::TEXTOID, BuiltinOid::INT4OID],
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

sql_function!(
    pg_finfo_pgi_claim_integration_events,
    pgi_claim_integration_events,
    |fcinfo| {
        require_privileged("claim_integration_events")?;
        let limit: i32 = fcall::arg(fcinfo, 0).unwrap_or(10);
        if !(1..=1000).contains(&limit) {
            return Err(Error::InvalidArgument(
                "p_limit must be between 1 and 1000".into(),
            ));
        }
        fcall::begin_rows(fcinfo);
        Spi::connect_mut(|c| -> Result<()> {
            let plan = plans::plan(c, &CLAIM)?;
            let rows = c.update(plan, None, &[limit.into()])?;
            fcall::put_spi_rows(fcinfo, rows.len());
            Ok(())
        })?;
        Ok(fcall::void())
    }
);

sql_function!(
    pg_finfo_pgi_complete_integration_event,
    pgi_complete_integration_event,
    |fcinfo| {
        require_privileged("complete_integration_event")?;
        let id: Uuid = fcall::arg(fcinfo, 0)
            .ok_or_else(|| Error::InvalidArgument("p_event_id must not be null".into()))?;
        let success: bool = fcall::arg(fcinfo, 1)
            .ok_or_else(|| Error::InvalidArgument("p_success must not be null".into()))?;
        let error: Option<String> = fcall::arg::<String>(fcinfo, 2)
            .map(|e| crate::metrics::redact_text(&e).chars().take(1000).collect());
        Spi::connect_mut(|c| -> Result<()> {
            if plans::write_returning_id(
                c,
                &COMPLETE,
                &[
                    id.into(),
                    success.into(),
                    error.as_deref().into(),
                    MAX_ATTEMPTS.into(),
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
);

sql_function!(
    pg_finfo_pgi_log_webhook_body_access,
    pgi_log_webhook_body_access,
    |fcinfo| {
        let id: Uuid = fcall::arg(fcinfo, 0)
            .ok_or_else(|| Error::InvalidArgument("p_event_id must not be null".into()))?;
        let purpose: String = fcall::arg::<String>(fcinfo, 1)
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
            let caller = tenancy::authorize(&business)?;
            plans::write_returning_id(
                c,
                &ACCESS_LOG,
                &[
                    id.into(),
                    business.into(),
                    caller.user_id.into(),
                    caller.role_name().into(),
                    purpose.as_str().into(),
                ],
            )
        })?;
        Ok(match log_id {
            Some(l) => fcall::datum(l),
            None => fcall::null(fcinfo),
        })
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn hmac_sha256_hex_like_checkout_and_paytabs() {
        let body = br#"{"id":"evt_1","type":"payment_approved"}"#;
        let sig = hex::encode(hmac_sha256(b"whsec", &[body]));
        let ok = headers(json!({"cko-signature": sig}));
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"whsec",
                &ok,
                body,
                0
            ),
            Ok(())
        );
        let gh = headers(json!({"X-Hub-Signature-256": format!("sha256={sig}")}));
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("X-Hub-Signature-256"),
                b"whsec",
                &gh,
                body,
                0
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"other",
                &ok,
                body,
                0
            ),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"whsec",
                &ok,
                b"tampered",
                0
            ),
            Err(Refusal::Mismatch)
        );
        assert!(matches!(
            verify(
                "hmac_sha256_hex",
                Some("Cko-Signature"),
                b"whsec",
                &headers(json!({})),
                body,
                0
            ),
            Err(Refusal::MissingHeader(_))
        ));
    }

    #[test]
    fn hmac_sha256_base64_like_shopify() {
        let body = b"{}";
        let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(b"shpss", &[body]));
        let h = headers(json!({"X-Shopify-Hmac-Sha256": sig}));
        assert_eq!(
            verify(
                "hmac_sha256_base64",
                Some("X-Shopify-Hmac-Sha256"),
                b"shpss",
                &h,
                body,
                0
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                "hmac_sha256_base64",
                Some("X-Shopify-Hmac-Sha256"),
                b"x",
                &h,
                body,
                0
            ),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn stripe_signatures_with_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000i64;
        let v1 = hex::encode(hmac_sha256(
            b"whsec_test",
            &[t.to_string().as_bytes(), b".", body],
        ));
        let h = headers(json!({"Stripe-Signature": format!("t={t},v1=deadbeef,v1={v1},v0=abc")}));
        assert_eq!(
            verify("stripe_v1", None, b"whsec_test", &h, body, t + 10),
            Ok(())
        );
        assert_eq!(
            verify("stripe_v1", None, b"whsec_test", &h, body, t + 301),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify("stripe_v1", None, b"wrong", &h, body, t),
            Err(Refusal::Mismatch)
        );
        let h = headers(json!({"Stripe-Signature": format!("v1={v1}")}));
        assert!(matches!(
            verify("stripe_v1", None, b"whsec_test", &h, body, t),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn paymob_hmac_over_ordered_fields() {
        let body = json!({"type": "TRANSACTION", "obj": {
            "amount_cents": 10000, "created_at": "2024-01-01T10:00:00", "currency": "EGP", "error_occured": false,
            "has_parent_transaction": false, "id": 123, "integration_id": 456, "is_3d_secure": true, "is_auth": false,
            "is_capture": false, "is_refunded": false, "is_standalone_payment": true, "is_voided": false,
            "order": {"id": 789}, "owner": 42, "pending": false,
            "source_data": {"pan": "2346", "sub_type": "MasterCard", "type": "card"}, "success": true}});
        let concatenated = "100002024-01-01T10:00:00EGPfalsefalse123456truefalsefalsefalsetruefalse78942false2346MasterCardcardtrue";
        let mut m = <Hmac<Sha512> as Mac>::new_from_slice(b"paymob").unwrap();
        m.update(concatenated.as_bytes());
        let h = headers(json!({"hmac": hex::encode(m.finalize().into_bytes())}));
        let raw = serde_json::to_vec(&body).unwrap();
        assert_eq!(
            verify("paymob_hmac_sha512", Some("hmac"), b"paymob", &h, &raw, 0),
            Ok(())
        );
        let mut forged = body.clone();
        forged["obj"]["amount_cents"] = json!(1);
        let raw = serde_json::to_vec(&forged).unwrap();
        assert_eq!(
            verify("paymob_hmac_sha512", Some("hmac"), b"paymob", &h, &raw, 0),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn jwt_and_static_headers() {
        let signed = "eyJhbGciOiJIUzI1NiJ9.eyJvcmRlcl9pZCI6IjEifQ";
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(hmac_sha256(b"tamara", &[signed.as_bytes()]));
        let h = headers(json!({"Authorization": format!("Bearer {signed}.{sig}")}));
        assert_eq!(verify("jwt_hs256", None, b"tamara", &h, b"{}", 0), Ok(()));
        assert_eq!(
            verify("jwt_hs256", None, b"nope", &h, b"{}", 0),
            Err(Refusal::Mismatch)
        );
        let s = headers(json!({"authorization": "s3cr3t"}));
        assert_eq!(
            verify("static_header", None, b"s3cr3t", &s, b"{}", 0),
            Ok(())
        );
        assert_eq!(
            verify("static_header", None, b"s3cr3x", &s, b"{}", 0),
            Err(Refusal::Mismatch)
        );
        assert!(matches!(
            verify("aes_256_gcm_body", None, b"k", &s, b"{}", 0),
            Err(Refusal::Unsupported(_))
        ));
    }

    #[test]
    fn signatures_and_credentials_are_not_kept() {
        let kept = kept_headers(&headers(
            json!({"Stripe-Signature": "t=1", "Authorization": "Bearer x",
            "Content-Type": "application/json", "X-Shopify-Hmac-Sha256": "y", "X-Request-Id": "r1"}),
        ));
        let mut keys: Vec<&String> = kept.keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["Content-Type", "X-Request-Id"]);
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}
