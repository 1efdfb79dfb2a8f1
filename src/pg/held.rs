//! Relations the point reads keep open until the transaction ends.
//!
//! Why: a read opened and closed its table and index on every call
//! (`relation_open`, `index_open`, each a lock-table and a relcache lookup),
//! ~6% of a `get_*_integration` call (perf). The lock is kept to the end of
//! the transaction anyway, as a `SELECT`'s is; now the reference is too.
//!
//! The references belong to the transaction's own resource owner, not to the
//! statement's: a statement or subtransaction that ends does not release
//! them, and nothing is pinned between calls (the scans are begun and ended
//! per call). They are closed before the transaction commits or prepares,
//! and before any utility statement (DDL on a relation still open in this
//! session fails with "is being used by active queries"); an abort releases
//! them itself, and they are forgotten.

use std::cell::RefCell;

use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

thread_local! {
    static HELD: RefCell<HashMap<pg_sys::Oid, pg_sys::Relation>> = RefCell::new(HashMap::default());
}

/// `relid` (a table or an index) opened with AccessShareLock, for the rest
/// of the transaction; not to be closed by the caller.
///
/// # Safety
/// Inside a transaction; `relid` is a relation's OID.
pub unsafe fn open(relid: pg_sys::Oid) -> pg_sys::Relation {
    if let Some(rel) = HELD.with(|h| h.borrow().get(&relid).copied()) {
        return rel;
    }
    // SAFETY: the caller's contract; the reference and the lock go to the transaction's
    // resource owner, whose release at abort covers them (and `forget` drops our copy).
    let rel = unsafe {
        let statement_owner = pg_sys::CurrentResourceOwner;
        pg_sys::CurrentResourceOwner = pg_sys::TopTransactionResourceOwner;
        let rel = pgrx::PgTryBuilder::new(|| {
            pg_sys::relation_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
        })
        .finally(|| pg_sys::CurrentResourceOwner = statement_owner)
        .execute();
        rel
    };
    HELD.with(|h| h.borrow_mut().insert(relid, rel));
    rel
}

/// Close every held relation (keeping the locks), under the resource owner
/// that remembers them.
fn close_all() {
    let held: Vec<pg_sys::Relation> =
        HELD.with(|h| h.borrow_mut().drain().map(|(_, r)| r).collect());
    if held.is_empty() {
        return;
    }
    // SAFETY: each was opened by `open` in this transaction under TopTransactionResourceOwner,
    // which still remembers it (the transaction has not ended).
    unsafe {
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::CurrentResourceOwner = pg_sys::TopTransactionResourceOwner;
        for rel in held {
            pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::CurrentResourceOwner = owner;
    }
}

fn forget() {
    HELD.with(|h| h.borrow_mut().clear());
}

/// # Safety
/// Called by PostgreSQL only, as the transaction callback registered in `init`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_PRE_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => close_all(),
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => forget(),
        _ => {}
    }
}

static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// # Safety
/// Called by PostgreSQL only, as `ProcessUtility_hook`, with its arguments.
#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // a utility statement runs in a transaction (or starts one): close what this one holds
    // SAFETY: checks the transaction state before closing under its resource owner.
    if unsafe { pg_sys::IsTransactionState() } {
        close_all();
    }
    // SAFETY: the previous hook, or PostgreSQL's own, with the arguments we were given.
    unsafe {
        match PREV_UTILITY {
            Some(prev) => prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}

/// Register the callbacks; from `_PG_init`.
pub fn init() {
    // SAFETY: _PG_init runs once per backend before any of this library's functions; the
    // callbacks are #[pg_guard] fns that live as long as the library, and the previous
    // utility hook is called in turn.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}
