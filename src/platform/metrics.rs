//! API call logs (`integration_api_logs`, partitioned by day so old days are
//! dropped, not deleted) and the hourly rollup (`integration_metrics_hourly`)
//! that API logs, health checks and explicit metrics feed.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::Uuid;

use crate::core::error::{Error, Result};
use crate::core::redact::{redact_text, redact_url};
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy;
use crate::tenancy::caller::require_privileged;

static OWNER: Statement = Statement {
    sql: "SELECT business_id FROM public.integration_connections WHERE id = $1",
    args: &[BuiltinOid::UUIDOID],
    mutating: false,
};
static METRIC: Statement = Statement {
    sql: "INSERT INTO public.integration_metrics_hourly AS m (integration_id, business_id, hour, calls, errors, total_latency_ms, max_latency_ms) \
          VALUES ($1, $2, pg_catalog.date_trunc('hour', pg_catalog.now()), 1, CASE WHEN $3 THEN 0 ELSE 1 END, COALESCE($4, 0), COALESCE($4, 0)) \
          ON CONFLICT ON CONSTRAINT integration_metrics_hourly_pkey DO UPDATE SET calls = m.calls + 1, errors = m.errors + EXCLUDED.errors, \
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

/// The business of a connection, after checking the caller may use it. A
/// connection of a business the caller may not act on gets the same answer
/// as an unknown id, so ids of other tenants cannot be probed.
fn authorized_business(c: &pgrx::spi::SpiClient<'_>, id: Uuid) -> Result<Uuid> {
    let not_found = || Error::NotFound(format!("integration {id} does not exist"));
    let plan = plans::plan(c, &OWNER)?;
    let rows = c.select(plan, Some(1), &[id.into()])?;
    if rows.is_empty() {
        return Err(not_found());
    }
    let business: Uuid = rows
        .first()
        .get(1)?
        .ok_or_else(|| Error::Internal("no business".into()))?;
    if !tenancy::can_access(&tenancy::Caller::current(), &business)? {
        return Err(not_found());
    }
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

fn latency_arg(call: &Call, n: usize) -> Result<Option<i32>> {
    let v: Option<i32> = call.arg(n);
    if v.is_some_and(|ms| ms < 0) {
        return Err(Error::InvalidArgument(
            "p_latency_ms must not be negative".into(),
        ));
    }
    Ok(v)
}

sql_function!(pgi_record_integration_metric => record_integration_metric);
/// `public.record_integration_metric`, declared in `sql/platform/metrics.sql`.
fn record_integration_metric(call: &Call) -> Result<pg_sys::Datum> {
    let id: Uuid = call.required(0, "p_integration_id")?;
    let success: bool = call.required(1, "p_success")?;
    let latency = latency_arg(call, 2)?;
    Spi::connect_mut(|c| {
        let business = authorized_business(c, id)?;
        record(c, id, business, success, latency)
    })?;
    Ok(fcall::void())
}

sql_function!(pgi_log_integration_api_call => log_integration_api_call);
/// `public.log_integration_api_call`, declared in `sql/platform/metrics.sql`.
fn log_integration_api_call(call: &Call) -> Result<pg_sys::Datum> {
    let invalid = Error::InvalidArgument;
    let id: Uuid = call.required(0, "p_integration_id")?;
    // Who may log for this connection is settled before any text is parsed.
    let business = Spi::connect(|c| authorized_business(c, id))?;
    let method = call
        .required::<String>(1, "p_method")?
        .trim()
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].contains(&method.as_str()) {
        return Err(invalid(
            "p_method must be an HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)".into(),
        ));
    }
    let url: String = call.required(2, "p_url")?;
    let url: String = redact_url(&url).chars().take(2048).collect();
    let status: Option<i32> = call.arg(3);
    if status.is_some_and(|s| !(100..=599).contains(&s)) {
        return Err(invalid(
            "p_status must be an HTTP status (100 to 599)".into(),
        ));
    }
    let latency = latency_arg(call, 4)?;
    let error: Option<String> = call
        .arg::<String>(5)
        .map(|e| redact_text(&e).chars().take(1000).collect());
    let success = error.is_none() && status.is_some_and(|s| s < 400);
    Spi::connect_mut(|c| -> Result<()> {
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

sql_function!(pgi_drop_old_api_logs => drop_old_api_logs);
/// `integrations.drop_old_api_logs`, declared in `sql/platform/metrics.sql`.
fn drop_old_api_logs(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("integrations.drop_old_api_logs")?;
    let keep_days: i32 = call.arg(0).unwrap_or(30);
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
        // Old rows that landed in the default partition go row by row. The
        // cutoff is a parameter: Citus refuses a STABLE cast (date to
        // timestamptz) next to a column in a DELETE on a distributed table.
        let cutoff = c
            .select(
                "SELECT (current_date - $1)::pg_catalog.timestamptz",
                Some(1),
                &[keep_days.into()],
            )?
            .first()
            .get::<pgrx::datum::TimestampWithTimeZone>(1)?;
        c.update(
            "DELETE FROM public.integration_api_logs_default WHERE logged_at < $1",
            None,
            &[cutoff.into()],
        )?;
        Ok(names.len() as i32)
    })?;
    Ok(fcall::datum(dropped))
}

sql_function!(pgi_create_api_log_partitions => create_api_log_partitions);
/// `integrations.create_api_log_partitions`, declared in `sql/platform/metrics.sql`.
fn create_api_log_partitions(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("integrations.create_api_log_partitions")?;
    let days: i32 = call.arg(0).unwrap_or(7);
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
            // Default privileges (Supabase grants everything on new public
            // tables to the API roles) must not open a partition: it is read
            // through the parent, its row level security and its grants.
            c.update(
                &format!(
                    "REVOKE ALL ON public.integration_api_logs_{suffix} FROM PUBLIC, anon, authenticated, service_role"
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
