//! OAuth state for authorization-code flows (`integration_oauth_states`).
//!
//! `create_oauth_state` hands out a random, URL-safe state token and keeps only
//! its SHA-256; the PKCE code verifier, a secret, goes to the secret store.
//! `consume_oauth_state` is single-use: it marks the state used in the same
//! statement that finds it, returns what the callback needs (verifier
//! included) and deletes the verifier.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::Uuid;

use crate::core::error::{statement_holds_secret, Error, Result};
use crate::core::store;
use crate::core::tokens::{self, token_hash};
use crate::core::validate;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::caller::require_privileged;

/// How long a state stays valid.
pub const STATE_TTL_SECONDS: i32 = 600;

/// A new state token: 32 random bytes, base64url without padding (43 chars).
/// A new state token.
pub fn new_token() -> Result<String> {
    tokens::new_token().map_err(|e| Error::Internal(e.to_string()))
}

/// RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~].
pub fn is_pkce_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// An https redirect URI, or http on localhost for development.
/// A redirect URI, parsed (not prefix-matched): https, or plain http only on
/// exactly `localhost`, `127.0.0.1` or `[::1]`.
pub fn check_redirect_uri(v: &str) -> std::result::Result<(), String> {
    validate::redirect_uri("p_redirect_uri", v)
}

static PROVIDER_OAUTH: Statement = Statement {
    sql: "SELECT status, 'oauth2' = ANY (auth_methods) FROM public.integration_providers WHERE provider = $1",
    args: &[BuiltinOid::TEXTOID],
    mutating: false,
};
static INSERT_STATE: Statement = Statement {
    sql: "INSERT INTO public.integration_oauth_states \
              (business_id, provider, state_hash, redirect_uri, scopes, code_verifier_secret_id, created_by, expires_at) \
          VALUES ($1, $2, $3, $4, COALESCE($5, '{}'), $6, $7, pg_catalog.now() + pg_catalog.make_interval(secs => $8)) \
          RETURNING id",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::BYTEAOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTARRAYOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::INT4OID,
    ],
    mutating: true,
};
// The business a state was made for: the statement below then works on that
// business's rows only (on Citus, one shard: Citus refuses to lock rows
// across shards).
static STATE_BUSINESS: Statement = Statement {
    sql: "SELECT business_id FROM public.integration_oauth_states WHERE state_hash = $1",
    args: &[BuiltinOid::BYTEAOID],
    mutating: false,
};
// Single use: only an unused, unexpired state is marked, in one statement.
// The clock is a parameter ($3): Citus refuses volatile functions in the
// statement.
static CONSUME: Statement = Statement {
    sql: "WITH old AS (SELECT id, code_verifier_secret_id FROM public.integration_oauth_states \
                     WHERE state_hash = $1 AND business_id = $2 AND consumed_at IS NULL AND expires_at > $3 FOR UPDATE) \
          UPDATE public.integration_oauth_states s SET consumed_at = $3, code_verifier_secret_id = NULL \
          FROM old WHERE s.id = old.id AND s.business_id = $2 \
          RETURNING s.id, s.business_id, s.provider, s.redirect_uri, s.scopes, old.code_verifier_secret_id",
    args: &[BuiltinOid::BYTEAOID, BuiltinOid::UUIDOID, BuiltinOid::TIMESTAMPTZOID],
    mutating: true,
};
static WHY_NOT: Statement = Statement {
    sql: "SELECT consumed_at IS NOT NULL, expires_at FROM public.integration_oauth_states WHERE state_hash = $1",
    args: &[BuiltinOid::BYTEAOID],
    mutating: false,
};
static CLEANUP: Statement = Statement {
    sql: "DELETE FROM public.integration_oauth_states \
          WHERE expires_at <= pg_catalog.now() OR consumed_at < pg_catalog.now() - interval '1 day' \
          RETURNING code_verifier_secret_id",
    args: &[],
    mutating: true,
};

sql_function!(pgi_create_oauth_state => create_oauth_state);
/// `public.create_oauth_state`, declared in `sql/platform/oauth.sql`.
fn create_oauth_state(call: &Call) -> Result<pg_sys::Datum> {
    statement_holds_secret();
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize(&business)?;
    let provider: String = call.required(1, "p_provider")?;
    let redirect: String = call.required(2, "p_redirect_uri")?;
    check_redirect_uri(&redirect).map_err(Error::InvalidArgument)?;
    let scopes: Option<Vec<Option<String>>> = call.arg(3);
    let scopes: Option<Vec<String>> =
        scopes.map(|s| s.into_iter().flatten().filter(|s| !s.is_empty()).collect());
    let verifier: Option<String> = call.arg(4);
    if let Some(v) = &verifier {
        if !is_pkce_verifier(v) {
            return Err(Error::InvalidArgument(
            "p_code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_', '~' (RFC 7636)".into(),
        ));
        }
    }
    let token = new_token()?;
    let id = Spi::connect_mut(|c| -> Result<Option<Uuid>> {
        let plan = plans::plan(c, &PROVIDER_OAUTH)?;
        let rows = c.select(plan, Some(1), &[provider.as_str().into()])?;
        if rows.is_empty() {
            return Err(Error::InvalidArgument(
                "p_provider is not a registered provider".into(),
            ));
        }
        let row = rows.first();
        if row.get::<String>(1)?.as_deref() != Some("active") {
            return Err(Error::InvalidArgument("p_provider is not active".into()));
        }
        if row.get::<bool>(2)? != Some(true) {
            return Err(Error::InvalidArgument(
                "p_provider does not support oauth2".into(),
            ));
        }
        let secret = match verifier {
            Some(v) => Some(store::create(
                c,
                business,
                v.into_bytes(),
                "PKCE code verifier",
            )?),
            None => None,
        };
        plans::write_returning_id(
            c,
            &INSERT_STATE,
            &[
                business.into(),
                provider.as_str().into(),
                token_hash(&token).into(),
                redirect.as_str().into(),
                scopes.into(),
                secret.into(),
                caller.user_id.into(),
                STATE_TTL_SECONDS.into(),
            ],
        )
    })?;
    audit::record(
        &caller,
        Action::Set,
        "oauth_state",
        &business,
        Some(&provider),
        id.as_ref(),
    )?;
    Ok(fcall::datum(token))
}

sql_function!(pgi_consume_oauth_state => consume_oauth_state);
/// `public.consume_oauth_state`, declared in `sql/platform/oauth.sql`.
fn consume_oauth_state(call: &Call) -> Result<pg_sys::Datum> {
    let token: String = call.required(0, "p_state")?;
    let hash = token_hash(token.trim());
    let consumed = Spi::connect_mut(|c| -> Result<_> {
        let plan = plans::plan(c, &STATE_BUSINESS)?;
        let found = c.select(plan, Some(1), &[hash.as_slice().into()])?;
        let business: Option<Uuid> = if found.is_empty() {
            None
        } else {
            found.first().get(1)?
        };
        // SAFETY: reads the clock; no pointers involved.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let plan = plans::plan(c, &CONSUME)?;
        let rows = c.update(
            plan,
            None,
            &[
                hash.as_slice().into(),
                business.into(),
                pgrx::datum::TimestampWithTimeZone::try_from(now)
                    .ok()
                    .into(),
            ],
        )?;
        if rows.is_empty() {
            let plan = plans::plan(c, &WHY_NOT)?;
            let why = c.select(plan, Some(1), &[hash.as_slice().into()])?;
            if why.is_empty() {
                return Err(Error::NotFound("unknown OAuth state".into()));
            }
            return Err(if why.first().get::<bool>(1)? == Some(true) {
                Error::InvalidArgument("p_state was already used".into())
            } else {
                Error::InvalidArgument("p_state has expired; start the authorization again".into())
            });
        }
        let row = rows.first();
        let id: Option<Uuid> = row.get(1)?;
        let business: Uuid = row
            .get(2)?
            .ok_or_else(|| Error::Internal("no business".into()))?;
        let provider: Option<String> = row.get(3)?;
        let redirect: Option<String> = row.get(4)?;
        let scopes: Option<Vec<Option<String>>> = row.get(5)?;
        let secret: Option<Uuid> = row.get(6)?;
        Ok((id, business, provider, redirect, scopes, secret))
    })?;
    let (id, business, provider, redirect, scopes, secret) = consumed;
    // The callback runs as a back-end role, or as the signed-in user who began
    // the flow for this business.
    let caller = tenancy::authorize(&business)?;
    let verifier = match secret {
        Some(s) => {
            let v = store::read_of(s, business)?;
            Spi::connect_mut(|c| store::delete(c, s))?;
            v
        }
        None => None,
    };
    audit::record(
        &caller,
        Action::Delete,
        "oauth_state",
        &business,
        provider.as_deref(),
        id.as_ref(),
    )?;
    call.begin_rows();
    let scopes: Vec<String> = scopes.unwrap_or_default().into_iter().flatten().collect();
    let mut nulls = [
        false,
        provider.is_none(),
        redirect.is_none(),
        false,
        verifier.is_none(),
    ];
    let or_null = |v: Option<&str>| v.map(fcall::datum).unwrap_or(pg_sys::Datum::from(0));
    let mut values = [
        fcall::datum(business),
        or_null(provider.as_deref()),
        or_null(redirect.as_deref()),
        fcall::datum(scopes),
        or_null(verifier.as_deref().map(|v| v.as_str())),
    ];
    call.put_row(&mut values, &mut nulls);
    Ok(fcall::void())
}

sql_function!(pgi_cleanup_expired_oauth_states => cleanup_expired_oauth_states);
/// `public.cleanup_expired_oauth_states`, declared in `sql/platform/oauth.sql`.
fn cleanup_expired_oauth_states(call: &Call) -> Result<pg_sys::Datum> {
    let _ = call;
    require_privileged("cleanup_expired_oauth_states")?;
    let n = Spi::connect_mut(|c| -> Result<i32> {
        let plan = plans::plan(c, &CLEANUP)?;
        let mut secrets_to_drop = Vec::new();
        let mut n = 0;
        for row in c.update(plan, None, &[])? {
            n += 1;
            secrets_to_drop.extend(row.get::<Uuid>(1)?);
        }
        for s in secrets_to_drop {
            store::delete(c, s)?;
        }
        Ok(n)
    })?;
    Ok(fcall::datum(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_verifiers_follow_rfc_7636() {
        assert!(is_pkce_verifier(&"a".repeat(43)));
        assert!(is_pkce_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!is_pkce_verifier(&"a".repeat(42)));
        assert!(!is_pkce_verifier(&"a".repeat(129)));
        assert!(!is_pkce_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirect_uris() {
        assert!(check_redirect_uri("https://app.example.com/oauth/callback").is_ok());
        assert!(check_redirect_uri("http://localhost:3000/callback").is_ok());
        assert!(check_redirect_uri("http://app.example.com/callback").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
    }
}
