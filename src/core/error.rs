//! One error type for the extension, mapped to SQLSTATEs, plus the log hygiene
//! that keeps secrets out of the server log.
//!
//! Errors travel as Rust panics carrying a pgrx `ErrorReport`, so every Rust frame
//! unwinds (and zeroizes its keys) before Postgres sees the error. Two things pgrx
//! cannot express are done in an `emit_log_hook`, which runs just before the error
//! is written to the log and sent to the client:
//! - `hide_stmt` for our errors, for any error in a transaction that passed a
//!   secret to one of our functions, and for any failing statement whose text
//!   names a function of this extension (the names come from the catalog, not
//!   a list kept by hand), so `log_min_error_statement` never writes a
//!   statement text that may hold a secret to the server log;
//! - our not-found errors reach clients as `PT404`, which PostgREST turns into
//!   HTTP 404 (inside the database they are `P0002`, `no_data_found`, so a
//!   PL/pgSQL caller can still catch them by that name).

use std::cell::Cell;
use std::ffi::CStr;

use crate::pg::spi::Spi;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The message domain our errors carry; the log hook recognises them by it.
const DOMAIN: &str = "pg_integrations";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 42501: the caller may not do this.
    #[error("{0}")]
    NotAllowed(String),
    /// P0002 inside the database, PT404 (HTTP 404) at the client.
    #[error("{0}")]
    NotFound(String),
    /// 22023: an argument is wrong; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// 23505: the change conflicts with an existing row.
    #[error("{0}")]
    Conflict(String),
    /// 23514: a business already holds the most of something it may hold.
    #[error("{0}")]
    TooMany(String),
    /// 23503: rows refer to a business the tenant table does not have.
    #[error("{message}")]
    MissingReference { message: String, hint: String },
    /// 55000: the master key, the keyring or the tenant table is not usable
    /// as configured (the hint says what to run).
    #[error("{message}")]
    NotReady { message: String, hint: String },
    /// 25006: the call would have to write and cannot (a hot standby, or a
    /// read-only transaction where the audit record has nowhere else to go).
    #[error("{message}")]
    ReadOnly { message: String, hint: String },
    /// 53400 inside the database, PT429 (HTTP 429) at the client: a rate
    /// limit is used up (the hint says when it renews).
    #[error("{message}")]
    RateLimited { message: String, hint: String },
    /// 40001: a concurrent change conflicts with this REPEATABLE READ or
    /// SERIALIZABLE transaction; retry the transaction.
    #[error("{0}")]
    Serialization(String),
    /// XX001: stored ciphertext or key material failed authentication.
    #[error("{0}")]
    Corrupted(String),
    /// XX000: a bug or an unexpected failure of the database API.
    #[error("{0}")]
    Internal(String),
    /// 23514: a row would break a CHECK constraint.
    #[error("{0}")]
    CheckViolation(String),
    /// 23502: a row would have NULL in a NOT NULL column.
    #[error("{0}")]
    NullViolation(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::NotAllowed(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Error::NotFound(_) => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            Error::InvalidArgument(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Conflict(_) => PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            Error::TooMany(_) => PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            Error::MissingReference { .. } => PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
            Error::NotReady { .. } => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Error::ReadOnly { .. } => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            Error::RateLimited { .. } => PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            Error::Serialization(_) => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            Error::Corrupted(_) => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            Error::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            Error::CheckViolation(_) => PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
            Error::NullViolation(_) => PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
        }
    }

    /// Raise this error as a Postgres ERROR. Never returns.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_integrations")
            .set_domain(DOMAIN);
        if let Error::NotReady { hint, .. }
        | Error::MissingReference { hint, .. }
        | Error::ReadOnly { hint, .. }
        | Error::RateLimited { hint, .. } = &self
        {
            report = report.set_hint(hint.clone());
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

impl From<pgrx::spi::SpiError> for Error {
    fn from(e: pgrx::spi::SpiError) -> Self {
        Error::Internal(format!("SPI: {e}"))
    }
}

/// Write a LOG line to the server log (never with the statement text).
pub fn log(message: String) {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message,
        "pg_integrations",
    )
    .set_domain(DOMAIN)
    .report(PgLogLevel::LOG);
}

/// Unwrap a result or raise its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}

thread_local! {
    /// Set when a statement of the current transaction handed a secret to one of
    /// our functions; cleared when the transaction ends.
    static SECRET_IN_STATEMENT: Cell<bool> = const { Cell::new(false) };
}

thread_local! {
    /// The names of every function of this extension (lower case), read from
    /// the catalog in the first call of one of them in this backend; `None`
    /// until then, and again after any change to pg_proc.
    static FUNCTION_NAMES: std::cell::RefCell<Option<Vec<Vec<u8>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Read the names of the extension's functions, unless known. Called at the
/// entry of every function of the extension (inside a transaction, so the
/// catalog can be read); errors are not raised from here: the names stay
/// unknown and the log hook keeps hiding every failing statement's text.
pub fn learn_function_names() {
    if FUNCTION_NAMES.with(|n| n.borrow().is_some()) {
        return;
    }
    let names = Spi::connect(
        |c| -> std::result::Result<Vec<Vec<u8>>, pgrx::spi::SpiError> {
            let mut out = Vec::new();
            for row in c.select(
            "SELECT DISTINCT lower(p.proname::text) FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations' \
             JOIN pg_catalog.pg_proc p ON p.oid = d.objid \
             WHERE d.classid = 'pg_catalog.pg_proc'::regclass \
               AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'",
            None,
            &[],
        )? {
            if let Some(n) = row.get::<String>(1)? {
                out.push(n.into_bytes());
            }
        }
            Ok(out)
        },
    );
    if let Ok(names) = names {
        if !names.is_empty() {
            FUNCTION_NAMES.with(|n| *n.borrow_mut() = Some(names));
        }
    }
}

/// Forget the names when pg_proc changes (a function created or dropped:
/// ALTER EXTENSION UPDATE, DROP/CREATE EXTENSION).
/// # Safety
/// Called by PostgreSQL only, as the syscache invalidation callback
/// registered in `init`.
#[pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    FUNCTION_NAMES.with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            *n = None;
        }
    });
}

/// Whether the running statement's text names a function of this extension
/// (and so may hold an argument meant for it: a key, a token). While the
/// names are not known yet, every statement counts: fail closed.
fn statement_names_extension_function() -> bool {
    // SAFETY: reads a backend global pointer; NULL is checked below.
    let p = unsafe { pg_sys::debug_query_string };
    if p.is_null() {
        return false;
    }
    // SAFETY: a non-NULL debug_query_string is the NUL-terminated text of the running
    // statement.
    let text = unsafe { CStr::from_ptr(p) }.to_bytes().to_ascii_lowercase();
    FUNCTION_NAMES.with(|n| match n.try_borrow() {
        Ok(names) => match &*names {
            Some(names) => names
                .iter()
                .any(|f| text.windows(f.len()).any(|w| w == f.as_slice())),
            None => true,
        },
        Err(_) => true,
    })
}

/// Mark the running statement as one whose text holds a secret: if anything in
/// this transaction fails from now on, its statement text stays out of the log.
pub fn statement_holds_secret() {
    SECRET_IN_STATEMENT.with(|f| f.set(true));
}

const fn sqlstate(code: &[u8; 5]) -> i32 {
    let mut v = 0i32;
    let mut i = 0;
    while i < 5 {
        v |= (((code[i] as i32) - ('0' as i32)) & 0x3F) << (6 * i);
        i += 1;
    }
    v
}

const NO_DATA_FOUND: i32 = sqlstate(b"P0002");
const PT404: i32 = sqlstate(b"PT404");
const CONFIGURATION_LIMIT_EXCEEDED: i32 = sqlstate(b"53400");
const PT429: i32 = sqlstate(b"PT429");

static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// # Safety
/// Called by PostgreSQL only, as the `emit_log_hook` registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pg_guard]
unsafe extern "C-unwind" fn emit_log_hook(edata: *mut pg_sys::ErrorData) {
    // SAFETY: edata is NULL or the ErrorData being emitted, which PostgreSQL
    // owns for this call; its domain is NULL or a NUL-terminated string.
    if let Some(e) = unsafe { edata.as_mut() } {
        let ours = !e.domain.is_null()
            // SAFETY: a non-NULL domain is a NUL-terminated string (checked above).
            && unsafe { CStr::from_ptr(e.domain) }.to_bytes() == DOMAIN.as_bytes();
        // Any level: a LOG line is written with its statement too.
        if ours || SECRET_IN_STATEMENT.with(|f| f.get()) || statement_names_extension_function() {
            e.hide_stmt = true;
            // The CONTEXT of an error raised while the arguments were being
            // converted quotes them ("JSON data, line 1: {...p_api_key...").
            e.hide_ctx = true;
        }
        if ours && e.elevel >= PgLogLevel::ERROR as i32 && e.sqlerrcode == NO_DATA_FOUND {
            e.sqlerrcode = PT404;
        }
        if ours
            && e.elevel >= PgLogLevel::ERROR as i32
            && e.sqlerrcode == CONFIGURATION_LIMIT_EXCEEDED
        {
            e.sqlerrcode = PT429;
        }
    }
    // SAFETY: PREV_EMIT_LOG_HOOK is written once in init, before this hook
    // is installed; the previous hook gets the same ErrorData.
    unsafe {
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
    }
}

/// # Safety
/// Called by PostgreSQL only, as the transaction callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
            | XACT_EVENT_PREPARE
    ) {
        SECRET_IN_STATEMENT.with(|f| f.set(false));
    }
}

/// Install the log hook; called once from `_PG_init`.
pub fn init() {
    // SAFETY: called once from _PG_init, in a single-threaded backend, before any error can be
    // emitted through the hook; the previous hook is kept and chained.
    unsafe {
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(emit_log_hook);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(proc_callback),
            pg_sys::Datum::from(0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::sqlstate;

    #[test]
    fn sqlstates_encode_like_postgres() {
        // MAKE_SQLSTATE('4','2','5','0','1') from utils/errcodes.h
        assert_eq!(
            sqlstate(b"42501"),
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32
        );
        assert_eq!(
            sqlstate(b"P0002"),
            pgrx::PgSqlErrorCode::ERRCODE_NO_DATA_FOUND as i32
        );
        assert_ne!(sqlstate(b"PT404"), sqlstate(b"P0002"));
        assert_eq!(
            sqlstate(b"53400"),
            pgrx::PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED as i32
        );
    }
}
