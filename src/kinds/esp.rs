//! `esp_integrations` (seed 004): one e-mail service provider integration per
//! business and provider of the registry's `email` category. The credentials
//! object is sealed as one secret; the row keeps only its field names. Its
//! own shape (a JSON object rather than one key), so not the keyed kinds'
//! engine in `mod.rs`.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::Uuid;
use serde_json::Value;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::gucs;
use crate::core::store;
use crate::pg::fcall::{self, Call};
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy;
use crate::tenancy::audit::{self, Action};

const KIND: &str = "esp";
const MAX_FIELDS: usize = 32;
const MAX_CREDENTIALS_BYTES: usize = 16 * 1024;
const MAX_ERROR_BYTES: usize = 8 * 1024;
const SYNC_STATUSES: &[&str] = &["in_progress", "success", "error"];
const SEALED: &str = "[sealed]";

/// The credentials argument checked: its sealed bytes and the descriptor
/// stored in the row (each field name mapped to `"[sealed]"`).
pub fn checked_credentials(v: &Value) -> std::result::Result<(Vec<u8>, Value), String> {
    let Value::Object(fields) = v else {
        return Err("p_credentials must be a JSON object".into());
    };
    if fields.is_empty() || fields.len() > MAX_FIELDS {
        return Err(format!("p_credentials must have 1 to {MAX_FIELDS} fields"));
    }
    // (the name is not quoted back: a key pasted where a name goes must not
    // reach the error, nor the server log with it)
    if let Some(k) = fields.keys().find(|k| k.is_empty() || k.len() > 64) {
        return Err(format!(
            "p_credentials: field names must be 1 to 64 bytes (one has {})",
            k.len()
        ));
    }
    let sealed = serde_json::to_vec(v).map_err(|e| e.to_string())?;
    if sealed.len() > MAX_CREDENTIALS_BYTES {
        return Err(format!(
            "p_credentials must be at most {MAX_CREDENTIALS_BYTES} bytes"
        ));
    }
    let descriptor = fields
        .keys()
        .map(|k| (k.clone(), Value::from(SEALED)))
        .collect();
    Ok((sealed, Value::Object(descriptor)))
}

static PROVIDER: Statement = Statement {
    sql: "SELECT category, status FROM public.integration_providers WHERE provider = $1",
    args: &[BuiltinOid::TEXTOID],
    mutating: false,
};
static LOCK_ROW: Statement = Statement {
    sql: "SELECT id, secret_id FROM public.esp_integrations WHERE business_id = $1 AND provider = $2 FOR UPDATE",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: true,
};
static UPDATE: Statement = Statement {
    sql: "UPDATE public.esp_integrations SET credentials = COALESCE($2, credentials), settings = COALESCE($3, settings) \
          WHERE id = $1 RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::JSONBOID, BuiltinOid::JSONBOID],
    mutating: true,
};
static INSERT: Statement = Statement {
    sql: "INSERT INTO public.esp_integrations (business_id, provider, credentials, secret_id, settings) \
          VALUES ($1, $2, $3, $4, COALESCE($5, '{}')) ON CONFLICT (business_id, provider) DO NOTHING RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::JSONBOID, BuiltinOid::UUIDOID, BuiltinOid::JSONBOID],
    mutating: true,
};

fn check_provider(c: &pgrx::spi::SpiClient<'_>, provider: &str) -> Result<()> {
    let plan = plans::plan(c, &PROVIDER)?;
    let rows = c.select(plan, Some(1), &[provider.into()])?;
    let ok = !rows.is_empty() && {
        let r = rows.first();
        r.get::<String>(1)?.as_deref() == Some("email")
            && r.get::<String>(2)?.as_deref() == Some("active")
    };
    if !ok {
        return Err(Error::InvalidArgument(
            "p_provider must be an active provider of the registry's email category (mailerlite, mailchimp, brevo, convertkit, klaviyo, ...)".into(),
        ));
    }
    Ok(())
}

sql_function!(pgi_set_esp_integration => set_esp_integration);
/// `public.set_esp_integration`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn set_esp_integration(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let provider: String = call.required(1, "p_provider")?;
    let credentials = match call.json(2) {
        Some(v) => Some(checked_credentials(&v).map_err(Error::InvalidArgument)?),
        None => None,
    };
    let settings = call.object(3, "p_settings")?;
    let descriptor = credentials.as_ref().map(|(_, d)| d.clone());
    let id = Spi::connect_mut(|c| -> Result<Uuid> {
        check_provider(c, &provider)?;
        // Two tries: a concurrent first set may insert between our look and our insert.
        for _ in 0..2 {
            let plan = plans::plan(c, &LOCK_ROW)?;
            let rows = c.update(plan, Some(1), &[business.into(), provider.as_str().into()])?;
            if !rows.is_empty() {
                let r = rows.first();
                let id: Uuid = fcall::required(r.get(1)?, "id")?;
                let secret: Uuid = fcall::required(r.get(2)?, "secret_id")?;
                if let Some((bytes, _)) = &credentials {
                    store::replace(c, secret, business, bytes.clone())?;
                }
                plans::write_returning_id(
                    c,
                    &UPDATE,
                    &[
                        id.into(),
                        descriptor.clone().map(pgrx::JsonB).into(),
                        fcall::jsonb_param(settings),
                    ],
                )?;
                return Ok(id);
            }
            let Some((bytes, _)) = &credentials else {
                return Err(Error::InvalidArgument(
                    "p_credentials must not be null for a new integration".into(),
                ));
            };
            let secret = store::create(
                c,
                business,
                bytes.clone(),
                "E-mail service provider credentials",
            )?;
            let inserted = plans::write_returning_id(
                c,
                &INSERT,
                &[
                    business.into(),
                    provider.as_str().into(),
                    descriptor.clone().map(pgrx::JsonB).into(),
                    secret.into(),
                    fcall::jsonb_param(settings),
                ],
            )?;
            if let Some(id) = inserted {
                return Ok(id);
            }
            store::delete(c, secret)?;
        }
        Err(Error::Conflict(
            "the integration was changed concurrently; try again".into(),
        ))
    })?;
    audit::record(
        &caller,
        Action::Set,
        KIND,
        &business,
        Some(&provider),
        Some(&id),
    )?;
    Ok(fcall::datum(id))
}

static LIST: Statement = Statement {
    sql: "SELECT id, provider, ARRAY(SELECT pg_catalog.jsonb_object_keys(credentials) ORDER BY 1), settings, last_sync_at, \
                 sync_status, error_log, created_at, updated_at \
          FROM public.esp_integrations WHERE business_id = $1 ORDER BY provider",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};

sql_function!(pgi_get_esp_integrations => get_esp_integrations);
/// `public.get_esp_integrations`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn get_esp_integrations(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    tenancy::authorize(&business)?;
    call.return_rows(&LIST, &[business.into()])
}

static SECRET_OF: Statement = Statement {
    sql:
        "SELECT id, secret_id FROM public.esp_integrations WHERE business_id = $1 AND provider = $2",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: false,
};

sql_function!(pgi_get_esp_credentials => get_esp_credentials);
/// `public.get_esp_credentials`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn get_esp_credentials(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize(&business)?;
    if !caller.privileged && !gucs::owner_can_read_secrets() {
        return Err(Error::NotAllowed(
            "permission denied: get_esp_credentials is for service_role, integrations_admin and superusers (integrations.owner_can_read_secrets is off)".into(),
        ));
    }
    if !caller.privileged {
        tenancy::authorize_manage(&business)?;
    }
    let provider: String = call.required(1, "p_provider")?;
    let row = Spi::connect(|c| -> Result<Option<(Uuid, Uuid)>> {
        let plan = plans::plan(c, &SECRET_OF)?;
        let rows = c.select(plan, Some(1), &[business.into(), provider.as_str().into()])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let r = rows.first();
        Ok(r.get::<Uuid>(1)?.zip(r.get::<Uuid>(2)?))
    })?;
    let Some((id, secret)) = row else {
        return Ok(call.null());
    };
    let Some(text) = store::read_of(secret, business)? else {
        return Ok(call.null());
    };
    let value: Value = serde_json::from_str(&text).map_err(|_| {
        Error::Corrupted(format!("the credentials of integration {id} are not JSON"))
    })?;
    audit::record(
        &caller,
        Action::ReadSecret,
        KIND,
        &business,
        Some(&provider),
        Some(&id),
    )?;
    Ok(fcall::datum(pgrx::JsonB(value)))
}

static BUSINESS_OF: Statement = Statement {
    sql: "SELECT business_id FROM public.esp_integrations WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static RECORD_SYNC: Statement = Statement {
    sql: "UPDATE public.esp_integrations SET sync_status = $2, \
              last_sync_at = COALESCE($4, last_sync_at), \
              error_log = CASE WHEN $2 = 'success' THEN NULL WHEN $2 = 'error' THEN $3 ELSE error_log END \
          WHERE id = $1 RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::JSONBOID,
        BuiltinOid::TIMESTAMPTZOID,
    ],
    mutating: true,
};

fn not_found() -> Error {
    Error::NotFound("no e-mail service provider integration with this id".into())
}

sql_function!(pgi_record_esp_sync => record_esp_sync);
/// `public.record_esp_sync`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`.
fn record_esp_sync(call: &Call) -> Result<pg_sys::Datum> {
    let id = call.required::<Uuid>(0, "p_integration_id")?;
    let status: String = call.required(1, "p_status")?;
    crate::core::validate::one_of("p_status", "sync status", &status, SYNC_STATUSES)
        .map_err(Error::InvalidArgument)?;
    // a bound before parsing: redaction keeps a text's size within a small factor
    if call.stored_size(2).is_some_and(|n| n > 8 * MAX_ERROR_BYTES) {
        return Err(Error::InvalidArgument(format!(
            "p_error must be at most {MAX_ERROR_BYTES} bytes"
        )));
    }
    let error = call.json(2);
    if error.is_some() && status != "error" {
        return Err(Error::InvalidArgument(
            "p_error goes with p_status 'error' only".into(),
        ));
    }
    let error = error.map(|e| crate::core::redact::redact_json(&e));
    if let Some(e) = &error {
        if e.to_string().len() > MAX_ERROR_BYTES {
            return Err(Error::InvalidArgument(format!(
                "p_error must be at most {MAX_ERROR_BYTES} bytes"
            )));
        }
    }
    let business = Spi::connect(|c| -> Result<Option<Uuid>> {
        let plan = plans::plan(c, &BUSINESS_OF)?;
        let rows = c.select(plan, Some(1), &[id.into()])?;
        Ok(if rows.is_empty() {
            None
        } else {
            rows.first().get::<Uuid>(1)?
        })
    })?
    .ok_or_else(not_found)?;
    // a business the caller may not act on: the unknown id's answer (no probing)
    if !tenancy::can_access(&tenancy::Caller::current(), &business)? {
        return Err(not_found());
    }
    tenancy::authorize(&business)?;
    Spi::connect_mut(|c| {
        plans::write_returning_id(
            c,
            &RECORD_SYNC,
            &[
                id.into(),
                status.as_str().into(),
                error.map(pgrx::JsonB).into(),
                // a finished sync's time, the transaction's now(); passed rather than
                // written as CASE ... now(), which Citus refuses on a distributed table
                matches!(status.as_str(), "success" | "error")
                    .then(pgrx::datetime::now)
                    .into(),
            ],
        )
    })?;
    Ok(fcall::void())
}

static DELETE: Statement = Statement {
    sql:
        "DELETE FROM public.esp_integrations WHERE business_id = $1 AND provider = $2 RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: true,
};

sql_function!(pgi_delete_esp_integration => delete_esp_integration);
/// `public.delete_esp_integration`, declared in `sql/pg_integrations--0.4.0--0.5.0.sql`;
/// the table's trigger deletes the sealed credentials.
fn delete_esp_integration(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let provider: String = call.required(1, "p_provider")?;
    let id = Spi::connect_mut(|c| {
        plans::write_returning_id(c, &DELETE, &[business.into(), provider.as_str().into()])
    })?;
    if let Some(id) = &id {
        audit::record(
            &caller,
            Action::Delete,
            KIND,
            &business,
            Some(&provider),
            Some(id),
        )?;
    }
    Ok(fcall::datum(id.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_a_small_object_and_only_their_names_are_kept() {
        let (sealed, descriptor) =
            checked_credentials(&json!({"api_key": "sk-1", "list_id": 7})).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&sealed).unwrap(),
            json!({"api_key": "sk-1", "list_id": 7})
        );
        assert_eq!(
            descriptor,
            json!({"api_key": "[sealed]", "list_id": "[sealed]"})
        );
        assert!(!descriptor.to_string().contains("sk-1"));
        for bad in [
            json!({}),
            json!([1]),
            json!("k"),
            json!({"": 1}),
            json!({"k": "x".repeat(20_000)}),
        ] {
            assert!(checked_credentials(&bad).is_err(), "{bad}");
        }
    }
}
