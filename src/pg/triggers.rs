//! Trigger and CHECK-constraint functions used by the tables' DDL.

use std::ffi::CStr;

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
        // raw pointers: 15 declares these arguments mutable, 18 const
        let tuple = pg_sys::heap_modify_tuple_by_cols(
            new,
            tupdesc,
            1,
            &raw mut att,
            &raw mut value,
            &raw mut isnull,
        );
        Ok(pg_sys::Datum::from(tuple))
    }
}

/// The non-NULL uuids of `column` in the OLD transition table of the AFTER
/// statement trigger this call is (`REFERENCING OLD TABLE AS ...`).
pub fn old_table_uuids(call: &Call, column: &CStr) -> Result<Vec<pgrx::Uuid>> {
    // SAFETY: fcinfo is valid for this call; its context is checked to be a TriggerData node
    // before it is read as one.
    let trigdata = unsafe { (*call.fcinfo()).context } as *mut pg_sys::TriggerData;
    // SAFETY: a non-NULL context is a Node, whose first field is its tag.
    if trigdata.is_null() || unsafe { (*trigdata).type_ } != pg_sys::NodeTag::T_TriggerData {
        return Err(Error::Internal("must be called as a trigger".into()));
    }
    // SAFETY: trigdata is the executor's TriggerData for this firing: its relation and
    // transition tuplestore stay valid until we return. The tuplestore is read through a read
    // pointer of our own (as a scan of the transition table in SQL would), so other readers'
    // positions are untouched; the slot is dropped before returning, and a PostgreSQL error
    // in between frees it with the memory context.
    unsafe {
        let store = (*trigdata).tg_oldtable;
        if store.is_null() {
            return Err(Error::Internal(
                "the trigger needs REFERENCING OLD TABLE".into(),
            ));
        }
        let tupdesc = (*(*trigdata).tg_relation).rd_att;
        let att = pg_sys::SPI_fnumber(tupdesc, column.as_ptr());
        if att <= 0 {
            return Err(Error::Internal(format!(
                "the table has no column {}",
                column.to_string_lossy()
            )));
        }
        let ptr = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, ptr);
        pg_sys::tuplestore_rescan(store);
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
        let mut out = Vec::new();
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            pg_sys::slot_getsomeattrs_int(slot, att);
            let i = (att - 1) as usize;
            if !*(*slot).tts_isnull.add(i) {
                let d = *(*slot).tts_values.add(i);
                if let Some(u) = <pgrx::Uuid as pgrx::FromDatum>::from_datum(d, false) {
                    out.push(u);
                }
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::tuplestore_select_read_pointer(store, 0);
        Ok(out)
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
