//! Prepared SPI statements kept for the life of the backend.
//!
//! Every hot statement is a point lookup or write on a unique key, and is
//! written so that only that key's indexes fit it (a table may have others:
//! the seeds index `provider` and `status`): its plan is then an index scan on
//! that key whatever the table held when it was prepared (an empty table
//! included), also the generic plan that takes over after five executions. Plans survive aborted transactions (`SPI_keepplan`), and the plan
//! cache re-plans them by itself after DDL, e.g. `DROP EXTENSION` followed by
//! `CREATE EXTENSION`, because every name in them is schema-qualified.

use std::cell::RefCell;

use pgrx::pg_sys::{BuiltinOid, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use rustc_hash::FxHashMap as HashMap;

use crate::core::error::Result;

/// A statement to prepare once: its SQL, argument types and whether it writes.
pub struct Statement {
    pub sql: &'static str,
    pub args: &'static [BuiltinOid],
    pub mutating: bool,
}

thread_local! {
    /// Keyed by the address of the `Statement`, which is a `static`.
    static PLANS: RefCell<HashMap<usize, &'static OwnedPreparedStatement>> =
        RefCell::new(HashMap::default());
}

/// The kept plan for `stmt`, prepared on first use.
pub fn plan(
    client: &SpiClient<'_>,
    stmt: &'static Statement,
) -> Result<&'static OwnedPreparedStatement> {
    let key = stmt as *const Statement as usize;
    if let Some(p) = PLANS.with(|m| m.borrow().get(&key).copied()) {
        return Ok(p);
    }
    let args: Vec<PgOid> = stmt.args.iter().map(|o| PgOid::BuiltIn(*o)).collect();
    let prepared = if stmt.mutating {
        client.prepare_mut(stmt.sql, &args)?
    } else {
        client.prepare(stmt.sql, &args)?
    };
    // Leaked on purpose: a kept plan lives as long as the backend.
    let kept: &'static OwnedPreparedStatement = Box::leak(Box::new(prepared.keep()));
    PLANS.with(|m| m.borrow_mut().insert(key, kept));
    Ok(kept)
}

/// Run the kept plan of a writing statement whose first output column is a
/// uuid (`RETURNING id`); that uuid of its first row, or `None` for no row.
pub fn write_returning_id(
    client: &mut SpiClient<'_>,
    stmt: &'static Statement,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Result<Option<pgrx::Uuid>> {
    let plan = plan(client, stmt)?;
    let rows = client.update(plan, None, args)?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(rows.first().get::<pgrx::Uuid>(1)?)
}

/// A timestamp parameter: PostgreSQL's microseconds since 2000 (`None` out of range). The
/// statements that Citus may run take their times as parameters: it refuses non-immutable
/// functions such as now() inside CASE, or over a column, in an UPDATE.
pub fn timestamp(micros: i64) -> Option<pgrx::datum::TimestampWithTimeZone> {
    pgrx::datum::TimestampWithTimeZone::try_from(micros).ok()
}

/// [`timestamp`] of the transaction's start: the value of now().
pub fn transaction_start() -> Option<pgrx::datum::TimestampWithTimeZone> {
    // SAFETY: reads the transaction's start time, a backend global; no pointers involved.
    timestamp(unsafe { pgrx::pg_sys::GetCurrentTransactionStartTimestamp() })
}
