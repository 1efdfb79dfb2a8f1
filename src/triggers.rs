//! Trigger and constraint functions used by the tables' DDL.

use pgrx::pg_sys;

use crate::error::Error;
use crate::sql_function;
use crate::validate;

// BEFORE UPDATE: set NEW.updated_at to now() (the seeds' updated_at trigger,
// without a PL/pgSQL call on every update).
sql_function!(
    pg_finfo_pgi_touch_updated_at,
    pgi_touch_updated_at,
    |fcinfo| {
        let trigdata = (*fcinfo).context as *mut pg_sys::TriggerData;
        if trigdata.is_null() || (*trigdata).type_ != pg_sys::NodeTag::T_TriggerData {
            return Err(Error::Internal(
                "touch_updated_at must be called as a trigger".into(),
            ));
        }
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
);

// CHECK constraint helpers, the same rules as the RPCs' validation.
sql_function!(pg_finfo_pgi_is_valid_email, pgi_is_valid_email, |fcinfo| {
    let v: Option<&str> = crate::fcall::arg(fcinfo, 0);
    Ok(crate::fcall::datum(
        v.is_none_or(|v| validate::email("", v).is_ok()),
    ))
});

sql_function!(
    pg_finfo_pgi_is_valid_http_url,
    pgi_is_valid_http_url,
    |fcinfo| {
        let v: Option<&str> = crate::fcall::arg(fcinfo, 0);
        Ok(crate::fcall::datum(
            v.is_none_or(|v| validate::url("", v, false).is_ok()),
        ))
    }
);
