//! The V1 calling convention for the functions declared by hand in `sql/`
//! (the `public` RPCs and the tenancy helpers). Declaring them in SQL keeps
//! their exact seed signatures, defaults and comments next to the tables, and
//! lets the hot ones pass JSONB and rows through as raw datums.

use pgrx::pg_sys;
use pgrx::FromDatum;

/// Declares `extern "C"` entry point `$name` (with its `pg_finfo_` record)
/// whose body returns `Result<pg_sys::Datum>`; errors are raised after the
/// body's frames have unwound.
#[macro_export]
macro_rules! sql_function {
    ($finfo:ident, $name:ident, |$fcinfo:ident| $body:block) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(
            $fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            // What #[pg_guard] does: Rust panics (our errors among them) become
            // PostgreSQL errors once the closure's frames have unwound.
            unsafe {
                ::pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(move || {
                    let result: $crate::error::Result<::pgrx::pg_sys::Datum> = (|| $body)();
                    match result {
                        Ok(d) => d,
                        Err(e) => e.raise(),
                    }
                })
            }
        }
    };
}

/// Argument `n`, converted; `None` for SQL NULL.
pub unsafe fn arg<T: FromDatum>(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<T> {
    unsafe { pgrx::fcinfo::pg_getarg::<T>(fcinfo, n) }
}

/// Argument `n` as a raw datum; `None` for SQL NULL.
pub unsafe fn arg_datum(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<pg_sys::Datum> {
    unsafe {
        if pgrx::fcinfo::pg_arg_is_null(fcinfo, n) {
            None
        } else {
            Some(pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, n))
        }
    }
}

pub unsafe fn null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { pgrx::fcinfo::pg_return_null(fcinfo) }
}

pub fn void() -> pg_sys::Datum {
    pgrx::fcinfo::pg_return_void()
}

pub fn datum<T: pgrx::IntoDatum>(v: T) -> pg_sys::Datum {
    v.into_datum().unwrap_or(pg_sys::Datum::from(0))
}

/// Start a materialized result set for a `RETURNS TABLE`/`SETOF` function;
/// add rows with [`put_row`], then return [`void`]'s datum.
pub unsafe fn begin_rows(fcinfo: pg_sys::FunctionCallInfo) {
    // The executor's expected row type, when it gives one, saves rebuilding
    // the RETURNS TABLE descriptor from pg_proc on every call.
    const MAT_SRF_USE_EXPECTED_DESC: u32 = 0x01;
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        let flags = if !rsinfo.is_null() && !(*rsinfo).expectedDesc.is_null() {
            MAT_SRF_USE_EXPECTED_DESC
        } else {
            0
        };
        pg_sys::InitMaterializedSRF(fcinfo, flags);
    }
}

pub unsafe fn put_row(
    fcinfo: pg_sys::FunctionCallInfo,
    values: &mut [pg_sys::Datum],
    nulls: &mut [bool],
) {
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        pg_sys::tuplestore_putvalues(
            (*rsinfo).setResult,
            (*rsinfo).setDesc,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
    }
}

/// Add every row of the last SPI result to the materialized result set (the
/// rows must have the function's result type, e.g. `SELECT t.*` of its table).
pub unsafe fn put_spi_rows(fcinfo: pg_sys::FunctionCallInfo, n: usize) {
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        let table = pg_sys::SPI_tuptable;
        for i in 0..n {
            pg_sys::tuplestore_puttuple((*rsinfo).setResult, *(*table).vals.add(i));
        }
    }
}

/// Whether a JSONB datum is an object (its root container header says so).
pub unsafe fn jsonb_is_object(d: pg_sys::Datum) -> bool {
    const JB_FOBJECT: u32 = 0x2000_0000;
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        let data = pgrx::varlena::vardata_any(v) as *const u8;
        let header = u32::from_ne_bytes([*data, *data.add(1), *data.add(2), *data.add(3)]);
        header & JB_FOBJECT != 0
    }
}

/// A `name` argument (a fixed-size C string, not a varlena).
pub unsafe fn arg_name(fcinfo: pg_sys::FunctionCallInfo, n: usize) -> Option<String> {
    unsafe {
        arg_datum(fcinfo, n).map(|d| {
            std::ffi::CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>())
                .to_string_lossy()
                .into_owned()
        })
    }
}
