//! API call logs (`integration_api_logs`, partitioned by day so old days are
//! dropped, not deleted) and the hourly rollup (`integration_metrics_hourly`)
//! that API logs, health checks and explicit metrics feed.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::prelude::*;
use pgrx::Uuid;

use crate::access::require_privileged;
use crate::error::{Error, Result};
use crate::fcall;
use crate::plans::{self, Statement};
use crate::sql_function;
use crate::tenancy;

/// Query parameters whose values are credentials (compared case-insensitively,
/// `-` and `_` alike).
const SECRET_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth",
    "authorization",
    "signature",
    "sig",
    "secret",
    "client_secret",
    "password",
    "pass",
    "pwd",
    "code",
    "code_verifier",
    "hmac",
    "x_api_key",
    "private_key",
    "session",
    "sessionid",
];
const REDACTED: &str = "REDACTED";

fn is_secret_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('-', "_");
    SECRET_PARAMS.contains(&n.as_str())
}

/// A URL with credentials removed: `user:password@` and the values of secret
/// query parameters (and fragment parameters) become `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let (base, rest) = match url.find(['?', '#']) {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    // userinfo
    let base = match base.find("://") {
        Some(scheme_end) => {
            let after = &base[scheme_end + 3..];
            let authority_end = after.find('/').unwrap_or(after.len());
            match after[..authority_end].rfind('@') {
                Some(at) => format!(
                    "{}{}@{}",
                    &base[..scheme_end + 3],
                    REDACTED,
                    &after[at + 1..]
                ),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let mut out = base;
    let mut rest = rest;
    while !rest.is_empty() {
        let sep = &rest[..1];
        let body_end = rest[1..].find(['#', '?']).map_or(rest.len(), |i| i + 1);
        let body = &rest[1..body_end];
        out.push_str(sep);
        let parts: Vec<String> = body
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(&percent_decode(k)) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
        rest = &rest[body_end..];
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Free text (an error message, a response excerpt) with credentials removed:
/// `Bearer …`/`Basic …` tokens, `name=value` and `"name": "value"` pairs of
/// secret names, and URLs in it.
pub fn redact_text(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut redact_next = false;
    for word in text.split(' ') {
        if redact_next && !word.is_empty() {
            words.push(REDACTED.to_string());
            redact_next = false;
            continue;
        }
        let lower = word.to_ascii_lowercase();
        if lower == "bearer" || lower == "basic" || lower == "token" {
            redact_next = true;
            words.push(word.to_string());
            continue;
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            words.push(redact_url(word));
            continue;
        }
        let w = match word.split_once('=').or_else(|| word.split_once(':')) {
            Some((k, v))
                if is_secret_name(
                    k.trim_matches(|c: char| c == '"' || c == '\'' || c == '{' || c == ','),
                ) && !v.is_empty() =>
            {
                let sep = if word.contains('=') { "=" } else { ":" };
                format!("{k}{sep}{REDACTED}")
            }
            _ => word.to_string(),
        };
        // a quoted JSON value after `"secret":` arrives as the next word
        if let Some(stripped) = lower.trim_end_matches(':').strip_suffix('"') {
            if word.ends_with(':') && is_secret_name(stripped.trim_start_matches(['"', '{', ','])) {
                redact_next = true;
            }
        }
        words.push(w);
    }
    words.join(" ")
}

static OWNER: Statement = Statement {
    sql: "SELECT business_id FROM public.integration_connections WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static METRIC: Statement = Statement {
    sql: "INSERT INTO public.integration_metrics_hourly AS m (integration_id, business_id, hour, calls, errors, total_latency_ms, max_latency_ms) \
          VALUES ($1, $2, pg_catalog.date_trunc('hour', pg_catalog.now()), 1, CASE WHEN $3 THEN 0 ELSE 1 END, COALESCE($4, 0), COALESCE($4, 0)) \
          ON CONFLICT (integration_id, hour) DO UPDATE SET calls = m.calls + 1, errors = m.errors + EXCLUDED.errors, \
              total_latency_ms = m.total_latency_ms + EXCLUDED.total_latency_ms, \
              max_latency_ms = GREATEST(m.max_latency_ms, EXCLUDED.max_latency_ms)",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::UUIDOID, BuiltinOid::BOOLOID, BuiltinOid::INT4OID],
    mutating: true,
};
static LOG: Statement = Statement {
    sql: "INSERT INTO public.integration_api_logs (integration_id, business_id, method, url, status, latency_ms, error) \
          VALUES ($1, $2, $3, $4, $5, $6, $7)",
    args: &[
        BuiltinOid::UUIDOID,
        BuiltinOid::UUIDOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::TEXTOID,
        BuiltinOid::INT4OID,
        BuiltinOid::INT4OID,
        BuiltinOid::TEXTOID,
    ],
    mutating: true,
};

/// The business of a connection, after checking the caller may act on it.
fn authorized_business(c: &pgrx::spi::SpiClient<'_>, id: Uuid) -> Result<Uuid> {
    let plan = plans::plan(c, &OWNER)?;
    let rows = c.select(plan, Some(1), &[id.into()])?;
    if rows.is_empty() {
        return Err(Error::NotFound(format!("integration {id} does not exist")));
    }
    let business: Uuid = rows
        .first()
        .get(1)?
        .ok_or_else(|| Error::Internal("no business".into()))?;
    tenancy::authorize(&business)?;
    Ok(business)
}

/// Add one call to the connection's hourly rollup.
pub fn record(
    c: &mut pgrx::spi::SpiClient<'_>,
    id: Uuid,
    business: Uuid,
    success: bool,
    latency_ms: Option<i32>,
) -> Result<()> {
    let plan = plans::plan(c, &METRIC)?;
    c.update(
        plan,
        None,
        &[
            id.into(),
            business.into(),
            success.into(),
            latency_ms.into(),
        ],
    )?;
    Ok(())
}

fn latency_arg(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Result<Option<i32>> {
    let v: Option<i32> = unsafe { fcall::arg(fcinfo, n) };
    if v.is_some_and(|ms| ms < 0) {
        return Err(Error::InvalidArgument(
            "p_latency_ms must not be negative".into(),
        ));
    }
    Ok(v)
}

sql_function!(
    pg_finfo_pgi_record_integration_metric,
    pgi_record_integration_metric,
    |fcinfo| {
        let id: Uuid = fcall::arg(fcinfo, 0)
            .ok_or_else(|| Error::InvalidArgument("p_integration_id must not be null".into()))?;
        let success: bool = fcall::arg(fcinfo, 1)
            .ok_or_else(|| Error::InvalidArgument("p_success must not be null".into()))?;
        let latency = latency_arg(fcinfo, 2)?;
        Spi::connect_mut(|c| {
            let business = authorized_business(c, id)?;
            record(c, id, business, success, latency)
        })?;
        Ok(fcall::void())
    }
);

sql_function!(
    pg_finfo_pgi_log_integration_api_call,
    pgi_log_integration_api_call,
    |fcinfo| {
        let invalid = Error::InvalidArgument;
        let id: Uuid = fcall::arg(fcinfo, 0)
            .ok_or_else(|| invalid("p_integration_id must not be null".into()))?;
        let method: String = fcall::arg::<String>(fcinfo, 1)
            .map(|m| m.trim().to_ascii_uppercase())
            .ok_or_else(|| invalid("p_method must not be null".into()))?;
        if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].contains(&method.as_str())
        {
            return Err(invalid(
                "p_method must be an HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)"
                    .into(),
            ));
        }
        let url: String =
            fcall::arg(fcinfo, 2).ok_or_else(|| invalid("p_url must not be null".into()))?;
        let url: String = redact_url(&url).chars().take(2048).collect();
        let status: Option<i32> = fcall::arg(fcinfo, 3);
        if status.is_some_and(|s| !(100..=599).contains(&s)) {
            return Err(invalid(
                "p_status must be an HTTP status (100 to 599)".into(),
            ));
        }
        let latency = latency_arg(fcinfo, 4)?;
        let error: Option<String> =
            fcall::arg::<String>(fcinfo, 5).map(|e| redact_text(&e).chars().take(1000).collect());
        let success = error.is_none() && status.is_some_and(|s| s < 400);
        Spi::connect_mut(|c| -> Result<()> {
            let business = authorized_business(c, id)?;
            let plan = plans::plan(c, &LOG)?;
            c.update(
                plan,
                None,
                &[
                    id.into(),
                    business.into(),
                    method.as_str().into(),
                    url.as_str().into(),
                    status.into(),
                    latency.into(),
                    error.as_deref().into(),
                ],
            )?;
            record(c, id, business, success, latency)
        })?;
        Ok(fcall::void())
    }
);

sql_function!(
    pg_finfo_pgi_drop_old_api_logs,
    pgi_drop_old_api_logs,
    |fcinfo| {
        require_privileged("integrations.drop_old_api_logs")?;
        let keep_days: i32 = fcall::arg(fcinfo, 0).unwrap_or(30);
        if !(1..=3650).contains(&keep_days) {
            return Err(Error::InvalidArgument(
                "p_keep_days must be between 1 and 3650".into(),
            ));
        }
        // Whole days go by dropping their partitions: no row-by-row delete.
        let dropped = Spi::connect_mut(|c| -> Result<i32> {
            let mut names = Vec::new();
            for row in c.select(
                "SELECT i.inhrelid::regclass::text FROM pg_catalog.pg_inherits i \
             JOIN pg_catalog.pg_class p ON p.oid = i.inhrelid \
             WHERE i.inhparent = 'public.integration_api_logs'::regclass \
               AND p.relname ~ '^integration_api_logs_[0-9]{8}$' \
               AND to_date(right(p.relname, 8), 'YYYYMMDD') < current_date - $1",
                None,
                &[keep_days.into()],
            )? {
                names.extend(row.get::<String>(1)?);
            }
            for n in &names {
                c.update(&format!("DROP TABLE {n}"), None, &[])?;
            }
            // Old rows that landed in the default partition go row by row.
            c.update(
            "DELETE FROM public.integration_api_logs_default WHERE logged_at < current_date - $1",
            None,
            &[keep_days.into()],
        )?;
            Ok(names.len() as i32)
        })?;
        Ok(fcall::datum(dropped))
    }
);

sql_function!(
    pg_finfo_pgi_create_api_log_partitions,
    pgi_create_api_log_partitions,
    |fcinfo| {
        require_privileged("integrations.create_api_log_partitions")?;
        let days: i32 = fcall::arg(fcinfo, 0).unwrap_or(7);
        if !(1..=366).contains(&days) {
            return Err(Error::InvalidArgument(
                "p_days must be between 1 and 366".into(),
            ));
        }
        let created = Spi::connect_mut(|c| -> Result<i32> {
            let mut n = 0;
            for d in 0..days {
                // A day whose rows already went to the default partition keeps them there.
                let row = c
                .select(
                    "SELECT to_char(current_date + $1, 'YYYYMMDD'), (current_date + $1)::text, (current_date + $1 + 1)::text, \
                     to_regclass('public.integration_api_logs_' || to_char(current_date + $1, 'YYYYMMDD')) IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM public.integration_api_logs_default d \
                                     WHERE d.logged_at >= current_date + $1 AND d.logged_at < current_date + $1 + 1)",
                    Some(1),
                    &[d.into()],
                )?
                .first();
                let (Some(suffix), Some(from), Some(to), Some(true)) = (
                    row.get::<String>(1)?,
                    row.get::<String>(2)?,
                    row.get::<String>(3)?,
                    row.get::<bool>(4)?,
                ) else {
                    continue;
                };
                c.update(
                &format!(
                    "CREATE TABLE public.integration_api_logs_{suffix} PARTITION OF public.integration_api_logs \
                     FOR VALUES FROM ('{from}') TO ('{to}')"
                ),
                None,
                &[],
            )?;
                for (name, columns) in [
                    ("integration", "integration_id, logged_at"),
                    ("business", "business_id"),
                ] {
                    c.update(
                    &format!(
                        "CREATE INDEX integration_api_logs_{suffix}_{name}_idx ON public.integration_api_logs_{suffix} ({columns})"
                    ),
                    None,
                    &[],
                )?;
                }
                n += 1;
            }
            Ok(n)
        })?;
        Ok(fcall::datum(created))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        let cases = [
            ("https://api.example.com/v1/orders?limit=5&api_key=sk_live_1&page=2",
             "https://api.example.com/v1/orders?limit=5&api_key=REDACTED&page=2"),
            ("https://user:pa55@api.example.com/x", "https://REDACTED@api.example.com/x"),
            ("https://api.example.com/cb?code=abc&state=xyz#access_token=t1&token_type=bearer",
             "https://api.example.com/cb?code=REDACTED&state=xyz#access_token=REDACTED&token_type=bearer"),
            ("https://api.example.com/x?Access-Token=t&X-Api-Key=k&sig=s", "https://api.example.com/x?Access-Token=REDACTED&X-Api-Key=REDACTED&sig=REDACTED"),
            ("https://api.example.com/x?a%63cess_token=t", "https://api.example.com/x?a%63cess_token=REDACTED"),
            ("https://api.example.com/plain", "https://api.example.com/plain"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn text_loses_its_credentials() {
        let t = redact_text("401 from https://api.x.com/y?token=abc: Authorization: Bearer sk_live_123 rejected; api_key=k9 bad");
        assert!(
            !t.contains("abc") && !t.contains("sk_live_123") && !t.contains("k9"),
            "{t}"
        );
        assert!(t.contains("401") && t.contains("rejected"), "{t}");
        let j = redact_text(r#"{"error": "bad", "client_secret": "cs_1"}"#);
        assert!(!j.contains("cs_1"), "{j}");
    }
}
