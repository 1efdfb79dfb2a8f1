//! Trigger and CHECK-constraint functions used by the tables' DDL.

use pgrx::pg_sys;

use crate::core::error::{Error, Result};
use crate::core::validate;
use crate::pg::fcall::{self, Call};
use crate::sql_function;

sql_function!(pgi_touch_updated_at => touch_updated_at);
/// BEFORE UPDATE row trigger `integrations.touch_updated_at()`: sets
/// NEW.updated_at to the transaction's start time (the seeds' updated_at
/// trigger, without a PL/pgSQL call on every update).
fn touch_updated_at(call: &Call) -> Result<pg_sys::Datum> {
    // SAFETY: fcinfo is valid for this call; its context is checked to be a
    // TriggerData node before it is read as one.
    let trigdata = unsafe { (*call.fcinfo()).context } as *mut pg_sys::TriggerData;
    // SAFETY: a non-NULL context is a Node, whose first field is its tag.
    if trigdata.is_null() || unsafe { (*trigdata).type_ } != pg_sys::NodeTag::T_TriggerData {
        return Err(Error::Internal(
            "touch_updated_at must be called as a trigger".into(),
        ));
    }
    // SAFETY: trigdata is the executor's TriggerData for this firing: its
    // relation, descriptor and new tuple stay valid until we return.
    unsafe {
        let rel = (*trigdata).tg_relation;
        let tupdesc = (*rel).rd_att;
        let new = (*trigdata).tg_newtuple;
        if new.is_null() {
            return Err(Error::Internal(
                "touch_updated_at is a BEFORE UPDATE row trigger".into(),
            ));
        }
        let mut att = pg_sys::SPI_fnumber(tupdesc, c"updated_at".as_ptr());
        if att <= 0 {
            return Err(Error::Internal("the table has no updated_at column".into()));
        }
        let mut value = pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let mut isnull = false;
        let tuple =
            pg_sys::heap_modify_tuple_by_cols(new, tupdesc, 1, &mut att, &mut value, &mut isnull);
        Ok(pg_sys::Datum::from(tuple))
    }
}

sql_function!(pgi_is_valid_email => is_valid_email);
/// `integrations.is_valid_email(text)`: the CHECK helper with the RPCs' rule.
fn is_valid_email(call: &Call) -> Result<pg_sys::Datum> {
    let v: Option<&str> = call.arg(0);
    Ok(fcall::datum(
        v.is_none_or(|v| validate::email("", v).is_ok()),
    ))
}

sql_function!(pgi_is_valid_http_url => is_valid_http_url);
/// `integrations.is_valid_http_url(text)`: the CHECK helper with the RPCs' rule.
fn is_valid_http_url(call: &Call) -> Result<pg_sys::Datum> {
    let v: Option<&str> = call.arg(0);
    Ok(fcall::datum(
        v.is_none_or(|v| validate::url("", v, false).is_ok()),
    ))
}
