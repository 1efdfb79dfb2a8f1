//! The V1 calling convention for the functions declared by hand in `sql/`
//! (the `public` RPCs, the tenancy helpers, triggers and CHECK helpers).
//! Declaring them in SQL keeps their exact seed signatures, defaults and
//! comments next to the tables, and lets the hot ones pass JSONB and rows
//! through as raw datums.
//!
//! An RPC is a plain, safe Rust function `fn name(call: &Call) -> Result<Datum>`
//! exported with one line, `sql_function!(pgi_name => name);`. [`Call`] is the
//! argument-helper family: typed optional and required arguments (the error
//! names the argument), raw datums, and the result-set helpers.

use pgrx::pg_sys;
use pgrx::{FromDatum, IntoDatum};

use crate::core::error::{Error, Result};
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;

/// Exports the safe function `$body` as the C symbol `$symbol` (the name the
/// SQL declaration gives after `'MODULE_PATHNAME'`), with its `pg_finfo_`
/// record. Errors returned by the body are raised after its frames have
/// unwound, as `#[pg_guard]` does.
#[macro_export]
macro_rules! sql_function {
    ($symbol:ident => $body:path) => {
        $crate::sql_function!(@export $symbol, |call| {
            // Runs the body as the function's owner, knowing who called; a
            // call routed to the node that holds its business runs there.
            let _as_owner = $crate::pg::definer::enter(call.fn_oid());
            match $crate::pg::fcall::route(call) {
                Ok(Some(d)) => Ok(d),
                Ok(None) => $body(call),
                Err(e) => Err(e),
            }
        });
    };
    // As the role that calls it, never routed: for a function that acts as
    // a role it is told of (a routed call arriving on a worker).
    ($symbol:ident => $body:path, as_invoker) => {
        $crate::sql_function!(@export $symbol, |call| $body(call));
    };
    (@export $symbol:ident, $run:expr) => {
        ::paste::paste! {
            #[no_mangle]
            #[doc(hidden)]
            pub extern "C" fn [<pg_finfo_ $symbol>]() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record =
                    ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }

            #[no_mangle]
            #[doc(hidden)]
            /// # Safety
            /// Called by PostgreSQL's function manager only, for a function
            /// declared `LANGUAGE c AS 'MODULE_PATHNAME', '<symbol>'` whose
            /// argument types are the ones its body reads.
            pub unsafe extern "C-unwind" fn $symbol(
                fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
            ) -> ::pgrx::pg_sys::Datum {
                // SAFETY: PostgreSQL passes a valid FunctionCallInfo for this
                // call, and the SQL declaration of `$symbol` gives the argument
                // types its body reads (the contract of `Call::new`).
                let call = unsafe { $crate::pg::fcall::Call::new(fcinfo) };
                // SAFETY: the guard is what #[pg_guard] wraps every extern
                // function in: it turns Rust panics (our raised errors among
                // them) into PostgreSQL errors at this FFI boundary.
                unsafe {
                    ::pgrx::pg_sys::submodules::panic::pgrx_extern_c_guard(move || {
                        let run: fn(&$crate::pg::fcall::Call) -> $crate::core::error::Result<::pgrx::pg_sys::Datum> = $run;
                        match run(&call) {
                            Ok(d) => d,
                            Err(e) => e.raise(),
                        }
                    })
                }
            }
        }
    };
}

/// Where a call runs instead of here, if anywhere: set once at load by the
/// layer that knows (tenancy's routing by business); `None` runs it here.
pub type Router = fn(&Call) -> Result<Option<pg_sys::Datum>>;

static ROUTER: std::sync::OnceLock<Router> = std::sync::OnceLock::new();

/// Install the router (from `_PG_init`).
pub fn set_router(router: Router) {
    let _ = ROUTER.set(router);
}

/// The call's result from where the router sent it, or `None` to run it here.
pub fn route(call: &Call) -> Result<Option<pg_sys::Datum>> {
    match ROUTER.get() {
        Some(router) => router(call),
        None => Ok(None),
    }
}

/// One call of a function declared in `sql/`: its arguments and result.
pub struct Call {
    fcinfo: pg_sys::FunctionCallInfo,
}

impl Call {
    /// Every argument read through the `Call` must be read as the type its
    /// SQL declaration gives it (`uuid` as `Uuid`, `text` as `String`/`&str`,
    /// `jsonb` as `JsonB` or a raw datum, ...).
    ///
    /// # Safety
    /// `fcinfo` is the running function's `FunctionCallInfo`; arguments as above.
    pub unsafe fn new(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        Self { fcinfo }
    }

    /// The OID of the function being called.
    pub fn fn_oid(&self) -> pg_sys::Oid {
        // SAFETY: `new`'s contract: fcinfo is valid, and so is its flinfo.
        unsafe { (*(*self.fcinfo).flinfo).fn_oid }
    }

    /// The raw `FunctionCallInfo`, for triggers that read their context.
    pub fn fcinfo(&self) -> pg_sys::FunctionCallInfo {
        self.fcinfo
    }

    /// Argument `n`, converted; `None` for SQL NULL.
    pub fn arg<T: FromDatum>(&self, n: usize) -> Option<T> {
        // SAFETY: `new`'s contract: fcinfo is valid and argument n has type T.
        unsafe { pgrx::fcinfo::pg_getarg::<T>(self.fcinfo, n) }
    }

    /// Argument `n`, which must not be NULL; the error names it.
    pub fn required<T: FromDatum>(&self, n: usize, name: &str) -> Result<T> {
        self.arg(n).ok_or_else(|| null_argument(name))
    }

    /// Argument `n` as text; `None` for SQL NULL.
    pub fn text(&self, n: usize) -> Option<String> {
        self.arg::<String>(n)
    }

    /// A `jsonb` argument parsed into a JSON value; `None` for SQL NULL.
    pub fn json(&self, n: usize) -> Option<serde_json::Value> {
        self.arg::<pgrx::JsonB>(n).map(|j| j.0)
    }

    /// The size in bytes of varlena argument `n` as stored (uncompressed),
    /// read from its header without detoasting; `None` for SQL NULL. For caps
    /// checked before a large value is parsed.
    pub fn stored_size(&self, n: usize) -> Option<usize> {
        let d = self.datum(n)?;
        // SAFETY: callers pass a varlena-typed argument (text, jsonb, bytea) of this call;
        // toast_raw_datum_size reads the varlena or TOAST pointer header only.
        Some(unsafe { pg_sys::toast_raw_datum_size(d) })
    }

    /// Argument `n` as a raw datum; `None` for SQL NULL.
    pub fn datum(&self, n: usize) -> Option<pg_sys::Datum> {
        // SAFETY: `new`'s contract: fcinfo is valid and has argument n.
        unsafe {
            if pgrx::fcinfo::pg_arg_is_null(self.fcinfo, n) {
                None
            } else {
                Some(pgrx::fcinfo::pg_getarg_datum_raw(self.fcinfo, n))
            }
        }
    }

    /// A `jsonb` argument that must be a JSON object, as a raw datum; `None`
    /// for SQL NULL.
    pub fn object(&self, n: usize, name: &str) -> Result<Option<JsonbDatum>> {
        match self.datum(n) {
            None => Ok(None),
            // SAFETY: `new`'s contract: argument n is declared jsonb.
            Some(d) if unsafe { jsonb_is_object(d) } => Ok(Some(JsonbDatum(d))),
            Some(_) => Err(Error::InvalidArgument(format!(
                "{name} must be a JSON object"
            ))),
        }
    }

    /// A `name` argument (a fixed-size C string, not a varlena).
    pub fn name(&self, n: usize) -> Option<String> {
        self.datum(n).map(|d| {
            // SAFETY: a `name` datum points at a NUL-terminated NAMEDATALEN buffer.
            unsafe { std::ffi::CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>()) }
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The SQL NULL result.
    pub fn null(&self) -> pg_sys::Datum {
        // SAFETY: `new`'s contract: fcinfo is valid; this sets its isnull flag.
        unsafe { pgrx::fcinfo::pg_return_null(self.fcinfo) }
    }

    /// Start a materialized result set for a `RETURNS TABLE`/`SETOF`
    /// function; add rows with [`Call::put_row`], then return [`void`].
    pub fn begin_rows(&self) {
        // SAFETY: fcinfo is valid; resultinfo is either NULL or a node, checked to be the
        // executor's ReturnSetInfo before it is used as one. The tuplestore is made in the
        // query's memory, as InitMaterializedSRF makes it, and the executor ends it.
        unsafe {
            let rsinfo = (*self.fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            // When the executor gives the row type it expects, the rows are
            // formed with that descriptor and none is returned (`setDesc` NULL:
            // both of the executor's callers then skip their check and free).
            // InitMaterializedSRF would copy it on every call: with its free,
            // ~2% of a get_*_integration call.
            if !rsinfo.is_null()
                && (*(rsinfo as *mut pg_sys::Node)).type_ == pg_sys::NodeTag::T_ReturnSetInfo
                && (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32
                    != 0
                && !(*rsinfo).expectedDesc.is_null()
                && !(*rsinfo).econtext.is_null()
            {
                let random = (*rsinfo).allowedModes
                    & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32
                    != 0;
                let old =
                    pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
                (*rsinfo).setResult =
                    pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
                pg_sys::MemoryContextSwitchTo(old);
                (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
                (*rsinfo).setDesc = std::ptr::null_mut();
                return;
            }
            // Anything else: PostgreSQL's own, which raises the error when the
            // caller cannot accept a set.
            pg_sys::InitMaterializedSRF(self.fcinfo, 0);
        }
    }

    /// Add one row (of the function's result type) to the result set.
    pub fn put_row(&self, values: &mut [pg_sys::Datum], nulls: &mut [bool]) {
        // SAFETY: begin_rows set up setResult and the descriptor; values and nulls have one
        // entry per column of it (the callers' arrays are sized by the declared RETURNS TABLE).
        unsafe {
            let rsinfo = (*self.fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            pg_sys::tuplestore_putvalues(
                (*rsinfo).setResult,
                self.result_desc(),
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
        }
    }

    /// The descriptor of the result set [`Call::begin_rows`] started: a
    /// table's row type keeps its dropped columns there.
    pub fn result_desc(&self) -> pg_sys::TupleDesc {
        // SAFETY: begin_rows set resultinfo's setDesc, or left it NULL with expectedDesc set
        // (InitMaterializedSRF raises an error otherwise); either stays valid for the call.
        unsafe {
            let rsinfo = (*self.fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            if (*rsinfo).setDesc.is_null() {
                (*rsinfo).expectedDesc
            } else {
                (*rsinfo).setDesc
            }
        }
    }

    /// The rows of a kept statement as this call's result set (they must have
    /// the function's result type); a writing statement runs as an update.
    pub fn return_rows(
        &self,
        stmt: &'static Statement,
        args: &[pgrx::datum::DatumWithOid<'_>],
    ) -> Result<pg_sys::Datum> {
        self.return_rows_each(stmt, std::iter::once(args))
    }

    /// [`Call::return_rows`] of the statement run once per argument list, in turn.
    pub fn return_rows_each<'a, 'd: 'a>(
        &self,
        stmt: &'static Statement,
        arg_lists: impl IntoIterator<Item = &'a [pgrx::datum::DatumWithOid<'d>]>,
    ) -> Result<pg_sys::Datum> {
        self.begin_rows();
        Spi::connect_mut(|c| -> Result<()> {
            let plan = plans::plan(c, stmt)?;
            for args in arg_lists {
                let rows = if stmt.mutating {
                    c.update(plan, None, args)?
                } else {
                    c.select(plan, None, args)?
                };
                self.put_spi_rows(rows.len());
            }
            Ok(())
        })?;
        Ok(void())
    }

    /// Add every row of the last SPI result to the result set (the rows must
    /// have the function's result type, e.g. `SELECT t.*` of its table).
    pub fn put_spi_rows(&self, n: usize) {
        // SAFETY: begin_rows set up setResult; SPI_tuptable holds the last
        // SPI result, which has at least n rows (the caller passes its count).
        unsafe {
            let rsinfo = (*self.fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
            let table = pg_sys::SPI_tuptable;
            for i in 0..n {
                pg_sys::tuplestore_puttuple((*rsinfo).setResult, *(*table).vals.add(i));
            }
        }
    }
}

/// Values of the live columns, spread over every column of a descriptor
/// (`live[i]`: column i is not dropped); dropped columns and any missing
/// value are NULL.
pub fn spread_over_live(
    live: &[bool],
    values: &[pg_sys::Datum],
    nulls: &[bool],
) -> (Vec<pg_sys::Datum>, Vec<bool>) {
    let mut given = values.iter().zip(nulls);
    live.iter()
        .map(|l| match (l, if *l { given.next() } else { None }) {
            (true, Some((v, n))) => (*v, *n),
            _ => (pg_sys::Datum::from(0), true),
        })
        .unzip()
}

/// The error for a NULL where a value is required.
pub fn null_argument(name: &str) -> Error {
    Error::InvalidArgument(format!("{name} must not be null"))
}

/// A required value from an optional one; the error names the argument.
pub fn required<T>(v: Option<T>, name: &str) -> Result<T> {
    v.ok_or_else(|| null_argument(name))
}

/// The result of a `void` function, or of one that returned its rows through
/// [`Call::begin_rows`].
pub fn void() -> pg_sys::Datum {
    pgrx::fcinfo::pg_return_void()
}

/// A Rust value as a result datum.
pub fn datum<T: IntoDatum>(v: T) -> pg_sys::Datum {
    v.into_datum().unwrap_or(pg_sys::Datum::from(0))
}

/// A `jsonb` argument's datum, passed on to SPI without converting it.
#[derive(Clone, Copy)]
pub struct JsonbDatum(pg_sys::Datum);

impl JsonbDatum {
    /// The argument's datum, valid for this call.
    pub fn datum(self) -> pg_sys::Datum {
        self.0
    }
}

/// Whether a JSONB datum is an object (its root container header says so).
///
/// # Safety
/// `d` must be a non-NULL `jsonb` datum.
unsafe fn jsonb_is_object(d: pg_sys::Datum) -> bool {
    const JB_FOBJECT: u32 = 0x2000_0000;
    // SAFETY: the caller passes a non-NULL jsonb datum; detoasting gives a varlena
    // whose data starts with the 4-byte root container header.
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        let data = pgrx::varlena::vardata_any(v) as *const u8;
        let header = u32::from_ne_bytes([*data, *data.add(1), *data.add(2), *data.add(3)]);
        header & JB_FOBJECT != 0
    }
}

/// A raw `jsonb` datum (or NULL) as an SPI argument.
pub fn jsonb_param<'a>(d: Option<JsonbDatum>) -> pgrx::datum::DatumWithOid<'a> {
    match d {
        // SAFETY: a JsonbDatum is only made from a jsonb argument of this call.
        Some(JsonbDatum(d)) => unsafe { pgrx::datum::DatumWithOid::new(d, pg_sys::JSONBOID) },
        None => pgrx::datum::DatumWithOid::null_oid(pg_sys::JSONBOID),
    }
}
