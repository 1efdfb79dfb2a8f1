//! Running a step in a subtransaction, as PL/pgSQL's `EXCEPTION` block does:
//! a failed step is rolled back alone and its error comes back as a message,
//! while the surrounding transaction goes on (the audit writer must not lose
//! a batch of audit rows, nor restart forever, because one part of it fails).

use pgrx::pg_sys;
use pgrx::PgTryBuilder;

use crate::core::error::Result;

/// Why a step failed: its message, and whether trying it again later may
/// work (it lost a lock wait, a deadlock or a serialization conflict, or was
/// cancelled by a timeout).
#[derive(Debug)]
pub struct Failed {
    pub message: String,
    pub transient: bool,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Run `f` in a subtransaction: kept if it returns `Ok`, rolled back (and why
/// returned) if it returns an error or raises one.
pub fn run<F: FnOnce() -> Result<()>>(f: F) -> std::result::Result<(), Failed> {
    // SAFETY: inside a transaction (the caller's); the memory context and resource owner are
    // saved before and restored after, on both paths, as PL/pgSQL's exec_stmt_block does.
    let (context, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    let restore = move |keep: bool| {
        // SAFETY: the subtransaction begun above is the current one; context and owner are the
        // ones saved before it began, which outlive it.
        unsafe {
            if keep {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        }
    };
    // Nothing `f` borrows is looked at again after an error: it is rolled back.
    let f = std::panic::AssertUnwindSafe(f);
    PgTryBuilder::new(move || match { f }.0() {
        Ok(()) => {
            restore(true);
            Ok(())
        }
        Err(e) => {
            restore(false);
            Err(Failed {
                message: e.to_string(),
                transient: false,
            })
        }
    })
    .catch_others(|e| {
        // SAFETY: the error's state is discarded as PL/pgSQL does before rolling back.
        unsafe { pg_sys::FlushErrorState() };
        restore(false);
        let report = match e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r)
            | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r,
            pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport,
        };
        use pgrx::PgSqlErrorCode::*;
        Err(Failed {
            message: report.message().to_string(),
            transient: matches!(
                report.sql_error_code(),
                ERRCODE_LOCK_NOT_AVAILABLE
                    | ERRCODE_T_R_DEADLOCK_DETECTED
                    | ERRCODE_T_R_SERIALIZATION_FAILURE
                    | ERRCODE_QUERY_CANCELED
            ),
        })
    })
    .execute()
}
