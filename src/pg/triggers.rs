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

/// The deleted rows' non-NULL uuids in `columns`, each paired with the row's
/// `business_id`: from the OLD transition table when this call is an AFTER
/// statement trigger (`REFERENCING OLD TABLE AS ...`), from the OLD row when
/// it is a row trigger (on a table Citus distributes, whose shards cannot
/// run statement triggers with transition tables).
pub fn deleted_uuids(call: &Call, columns: &[&CStr]) -> Result<Vec<(pgrx::Uuid, pgrx::Uuid)>> {
    // SAFETY: fcinfo is valid for this call; its context is checked to be a TriggerData node
    // before it is read as one.
    let trigdata = unsafe { (*call.fcinfo()).context } as *mut pg_sys::TriggerData;
    // SAFETY: a non-NULL context is a Node, whose first field is its tag.
    if trigdata.is_null() || unsafe { (*trigdata).type_ } != pg_sys::NodeTag::T_TriggerData {
        return Err(Error::Internal("must be called as a trigger".into()));
    }
    // SAFETY: this firing's TriggerData (relation, OLD row, transition store) is valid until
    // we return; the store is read through a read pointer of our own, leaving others' alone;
    // the slot is dropped before returning, or freed with its context on an error.
    unsafe {
        let tupdesc = (*(*trigdata).tg_relation).rd_att;
        let mut atts = Vec::with_capacity(columns.len());
        for column in columns.iter().chain(std::iter::once(&c"business_id")) {
            let att = pg_sys::SPI_fnumber(tupdesc, column.as_ptr());
            if att <= 0 {
                return Err(Error::Internal(format!(
                    "the table has no column {}",
                    column.to_string_lossy()
                )));
            }
            atts.push(att);
        }
        let business_att = atts.pop().expect("business_id");
        let mut out = Vec::new();
        let mut take = |slot: *mut pg_sys::TupleTableSlot| {
            let max = atts
                .iter()
                .copied()
                .chain([business_att])
                .max()
                .unwrap_or(1);
            pg_sys::slot_getsomeattrs_int(slot, max);
            let uuid = |att: i32| {
                let i = (att - 1) as usize;
                if *(*slot).tts_isnull.add(i) {
                    None
                } else {
                    <pgrx::Uuid as pgrx::FromDatum>::from_datum(*(*slot).tts_values.add(i), false)
                }
            };
            let Some(business) = uuid(business_att) else {
                return;
            };
            for att in &atts {
                if let Some(id) = uuid(*att) {
                    out.push((id, business));
                }
            }
        };
        let event = (*trigdata).tg_event;
        if event & pg_sys::TRIGGER_EVENT_ROW != 0 {
            let row = (*trigdata).tg_trigtuple;
            if row.is_null() {
                return Err(Error::Internal(
                    "an AFTER DELETE row trigger has no OLD row".into(),
                ));
            }
            let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsHeapTuple);
            pg_sys::ExecStoreHeapTuple(row, slot, false);
            take(slot);
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            return Ok(out);
        }
        let store = (*trigdata).tg_oldtable;
        if store.is_null() {
            return Err(Error::Internal(
                "the statement trigger needs REFERENCING OLD TABLE".into(),
            ));
        }
        let ptr = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, ptr);
        pg_sys::tuplestore_rescan(store);
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            take(slot);
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::tuplestore_select_read_pointer(store, 0);
        Ok(out)
    }
}

/// The trigger's arguments (`EXECUTE FUNCTION f('a', 'b')`) as C strings.
pub fn trigger_args(call: &Call) -> Vec<std::ffi::CString> {
    // SAFETY: as in `deleted_uuids`: the context is a TriggerData node (checked), whose
    // trigger's tgargs holds tgnargs NUL-terminated strings.
    unsafe {
        let trigdata = (*call.fcinfo()).context as *mut pg_sys::TriggerData;
        if trigdata.is_null() || (*trigdata).type_ != pg_sys::NodeTag::T_TriggerData {
            return Vec::new();
        }
        let trigger = (*trigdata).tg_trigger;
        (0..(*trigger).tgnargs as usize)
            .map(|i| CStr::from_ptr(*(*trigger).tgargs.add(i)).to_owned())
            .collect()
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
