//! Relations the point reads keep open until the transaction ends.
//!
//! Why: a read opened and closed its table and index on every call
//! (`relation_open`, `index_open`, each a lock-table and a relcache lookup),
//! ~6% of a `get_*_integration` call (perf). The lock is kept to the end of
//! the transaction anyway, as a `SELECT`'s is; now the reference is too.
//!
//! The index scans of those reads are kept too (`with_scan`), as the executor
//! keeps a nested loop's inner index scan and only rescans it per outer row:
//! beginning and ending a B-tree scan on every call (its ~27 kB of scan state
//! allocated and freed, a slot made and dropped) was ~5% of a
//! `get_*_integration` call. So are the slots of the probes that look where a
//! row was last found (`with_slot`, for `recent`). Either is kept from its
//! second use in a transaction: one that reads once gains nothing from it.
//!
//! The references belong to the transaction's own resource owner, not to the
//! statement's: a statement or subtransaction that ends does not release
//! them. Nothing is pinned between calls: a kept scan is reset (its buffers
//! and slot released) when each use ends. A use that ends in an error leaves
//! the scan broken: the abort that follows releases its buffers, so it is
//! never touched again, only its references released and its memory freed.
//! Everything is closed before the transaction commits or prepares, and
//! before any utility statement (DDL on a relation still open in this session
//! fails with "is being used by active queries"); an abort releases it
//! itself, and it is forgotten.

use std::cell::RefCell;

use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

thread_local! {
    static HELD: RefCell<HashMap<pg_sys::Oid, pg_sys::Relation>> = RefCell::new(HashMap::default());
    static SCANS: RefCell<Vec<Scan>> = const { RefCell::new(Vec::new()) };
}

/// An index scan kept for the transaction with a slot for the table's rows,
/// or a slot alone (a probe's); in a memory context of their own under the
/// transaction's.
struct Scan {
    /// The index scanned, or the table of a kept slot without a scan.
    relid: pg_sys::Oid,
    /// The scan's number of keys, or [`SLOT_ONLY`].
    nkeys: i32,
    desc: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    context: pg_sys::MemoryContext,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    InUse,
    /// A use ended in an error: its buffers are the abort's to release.
    Broken,
    /// Used once in this transaction, by a scan of its own: none kept yet.
    Seen,
}

impl Scan {
    fn in_use(&self) -> ScanUse {
        ScanUse {
            desc: self.desc,
            slot: self.slot,
            context: self.context,
        }
    }

    fn seen(relid: pg_sys::Oid, nkeys: i32) -> Scan {
        Scan {
            relid,
            nkeys,
            desc: std::ptr::null_mut(),
            slot: std::ptr::null_mut(),
            context: std::ptr::null_mut(),
            state: State::Seen,
        }
    }
}

/// A use of an index scan: its rows, one at a time, in its slot.
pub struct ScanUse {
    desc: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// The memory the scan was made in. Its access method grows its state
    /// in the current memory context as it goes (B-tree allocates the list
    /// of dead entries to mark at the first one it meets), so a kept scan
    /// must only run in its own context, never in a call's.
    context: pg_sys::MemoryContext,
}

impl ScanUse {
    /// The slot the rows are put in.
    pub fn slot(&self) -> *mut pg_sys::TupleTableSlot {
        self.slot
    }

    /// Put the next matching row in the slot; false when there is none.
    pub fn next(&self) -> bool {
        let _memory = Memory::switch(self.context);
        // SAFETY: a scan positioned by with_scan, used inside its closure only.
        unsafe {
            pg_sys::index_getnext_slot(
                self.desc,
                pg_sys::ScanDirection::ForwardScanDirection,
                self.slot,
            )
        }
    }
}

/// The current memory context switched, until dropped (an error unwinding
/// included).
struct Memory(pg_sys::MemoryContext);

impl Memory {
    fn switch(to: pg_sys::MemoryContext) -> Memory {
        // SAFETY: `to` is a live memory context; switching allocates nothing.
        Memory(unsafe { pg_sys::MemoryContextSwitchTo(to) })
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: the context that was current at the switch, which outlives it.
        unsafe { pg_sys::MemoryContextSwitchTo(self.0) };
    }
}

/// The transaction's resource owner made current, until dropped (an error
/// unwinding included): what is acquired meanwhile is released at the
/// transaction's end, not the statement's. A guard, not `PgTryBuilder`,
/// whose map of handlers was allocated and freed on every relation opened.
struct Owner(pg_sys::ResourceOwner);

impl Owner {
    fn transaction() -> Owner {
        // SAFETY: inside a transaction, whose resource owner outlives the guard; switching
        // owners sets a backend global and allocates nothing.
        unsafe {
            let previous = pg_sys::CurrentResourceOwner;
            pg_sys::CurrentResourceOwner = pg_sys::TopTransactionResourceOwner;
            Owner(previous)
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // SAFETY: the owner that was current at the switch, which outlives it.
        unsafe { pg_sys::CurrentResourceOwner = self.0 };
    }
}

/// Run `f` on an index scan of `idx` over `heap` positioned before the first
/// match of `keys`: the transaction's kept scan of that index when it is
/// free, else (a use of the same index nested in `f`) a scan of the call's
/// own.
///
/// # Safety
/// `heap` and `idx` are held (`open`) in this transaction, `idx` an index of
/// `heap`; `snapshot` stays valid, and `keys` and the values they point at
/// alive, while `f` runs.
pub unsafe fn with_scan<T>(
    heap: pg_sys::Relation,
    idx: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    keys: &mut [pg_sys::ScanKeyData],
    f: impl FnOnce(&ScanUse) -> T,
) -> T {
    let nkeys = keys.len() as i32;
    // SAFETY: reads the OID of an open relation.
    let index = unsafe { (*idx).rd_id };
    // SAFETY: the caller's contract.
    let kept = acquire(index, nkeys, || unsafe {
        begin_kept(heap, idx, snapshot, keys)
    });
    let Some(kept) = kept else {
        // SAFETY: the caller's contract; a scan and slot of this call's own, in its memory,
        // ended here (an error releases them at abort).
        return unsafe {
            let own = ScanUse {
                desc: begin_scan(heap, idx, snapshot, keys),
                slot: pg_sys::table_slot_create(heap, std::ptr::null_mut()),
                context: pg_sys::CurrentMemoryContext,
            };
            let out = f(&own);
            pg_sys::ExecDropSingleTupleTableSlot(own.slot);
            pg_sys::index_endscan(own.desc);
            out
        };
    };
    let _use = Use(&kept, nkeys);
    {
        let _memory = Memory::switch(kept.context);
        // SAFETY: an idle kept scan (no buffers pinned): it reads with this call's snapshot
        // (what the heap fetch and B-tree consult at the rescan and after) and keys.
        unsafe {
            let desc = kept.desc;
            (*desc).xs_snapshot = snapshot;
            pg_sys::index_rescan(desc, keys.as_mut_ptr(), nkeys, std::ptr::null_mut(), 0);
        }
    }
    f(&kept)
}

/// What a slot-only entry has for its number of keys.
const SLOT_ONLY: i32 = -1;

/// Run `f` on an empty slot for the rows of `heap` (a probe's, `recent`):
/// the transaction's kept slot of that table when it is free, kept as
/// [`with_scan`] keeps scans; else one of the call's own. Whatever `f` puts
/// in the slot is cleared after it.
///
/// # Safety
/// `heap` is held (`open`) in this transaction. `f` must not keep the slot.
pub unsafe fn with_slot<T>(
    heap: pg_sys::Relation,
    f: impl FnOnce(*mut pg_sys::TupleTableSlot) -> T,
) -> T {
    // SAFETY: reads the OID of an open relation.
    let table = unsafe { (*heap).rd_id };
    // SAFETY: the caller's contract.
    let kept = acquire(table, SLOT_ONLY, || unsafe { begin_kept_slot(heap) });
    let Some(kept) = kept else {
        // SAFETY: the caller's contract; a slot of the call's own, dropped here (an error
        // releases its pin and descriptor at abort).
        return unsafe {
            let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
            let out = f(slot);
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            out
        };
    };
    let _use = Use(&kept, SLOT_ONLY);
    f(kept.slot)
}

/// The kept entry of `relid` with `nkeys` for a use, marked in use: an idle
/// one, or a new one from `begin` when this is the relation's second use in
/// the transaction (a broken one released counts as a use). `None`: the use
/// gets its own.
fn acquire(relid: pg_sys::Oid, nkeys: i32, begin: impl FnOnce() -> Scan) -> Option<ScanUse> {
    let idle = SCANS.with(|s| {
        let mut s = s.borrow_mut();
        let k = s
            .iter_mut()
            .find(|k| k.relid == relid && k.nkeys == nkeys && k.state == State::Idle)?;
        k.state = State::InUse;
        Some(k.in_use())
    });
    idle.or_else(|| {
        let released = release_broken(Some(relid));
        let worth_keeping = SCANS.with(|s| {
            let mut s = s.borrow_mut();
            let same = |k: &Scan| k.relid == relid && k.nkeys == nkeys;
            if s.iter().any(|k| same(k) && k.state == State::InUse) {
                // a use of this relation nested in `f`: it gets one of its own
                return false;
            }
            // The first use in a transaction gets one of its own, as a
            // transaction that reads once (a PostgREST call) gains nothing
            // from keeping one and would pay for its memory context.
            if let Some(at) = s.iter().position(|k| same(k) && k.state == State::Seen) {
                s.swap_remove(at);
                return true;
            }
            if released == 0 {
                s.push(Scan::seen(relid, nkeys));
                return false;
            }
            true
        });
        if !worth_keeping {
            return None;
        }
        let k = begin();
        let out = k.in_use();
        SCANS.with(|s| s.borrow_mut().push(k));
        Some(out)
    })
}

/// Ends a use of a kept entry: resets it for the next one, or (an error is
/// unwinding) leaves it broken. It is marked broken before the reset, so a
/// reset that raises an error leaves it broken too.
struct Use<'a>(&'a ScanUse, i32);

impl Use<'_> {
    fn mark(&self, state: State) {
        SCANS.with(|s| {
            if let Some(k) = s.borrow_mut().iter_mut().find(|k| k.slot == self.0.slot) {
                k.state = state;
            }
        });
    }
}

impl Drop for Use<'_> {
    fn drop(&mut self) {
        self.mark(State::Broken);
        if std::thread::panicking() {
            return;
        }
        let kept = self.0;
        let _memory = Memory::switch(kept.context);
        // SAFETY: the kept slot (and scan) of this use: the slot's pin released, and the rescan
        // without keys releases the scan's buffers (the next use gives keys).
        unsafe {
            pg_sys::ExecClearTuple(kept.slot);
            if !kept.desc.is_null() {
                pg_sys::index_rescan(
                    kept.desc,
                    std::ptr::null_mut(),
                    self.1,
                    std::ptr::null_mut(),
                    0,
                );
            }
        }
        self.mark(State::Idle);
    }
}

/// The kept entries' relations (index, or table for a slot) and states, for
/// the tests.
#[cfg(any(test, feature = "pg_test"))]
pub fn kept_scans() -> Vec<(pg_sys::Oid, &'static str)> {
    SCANS.with(|s| {
        s.borrow()
            .iter()
            .map(|k| {
                let state = match k.state {
                    State::Idle => "idle",
                    State::InUse => "in use",
                    State::Broken => "broken",
                    State::Seen => "seen",
                };
                (k.relid, state)
            })
            .collect()
    })
}

/// An index scan of `idx` over `heap` with `keys`, positioned before the
/// first match, to be ended with `index_endscan`. PostgreSQL 18 added the
/// instrumentation argument (NULL: these scans are not counted by EXPLAIN
/// ANALYZE).
///
/// # Safety
/// `heap` and `idx` are open and locked, `idx` an index of `heap`;
/// `snapshot` stays valid and `keys` alive until the scan is ended.
pub unsafe fn begin_scan(
    heap: pg_sys::Relation,
    idx: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    keys: &mut [pg_sys::ScanKeyData],
) -> pg_sys::IndexScanDesc {
    let n = keys.len() as i32;
    // SAFETY: the caller's contract.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        let scan = pg_sys::index_beginscan(heap, idx, snapshot, n, 0);
        #[cfg(feature = "pg18")]
        let scan = pg_sys::index_beginscan(heap, idx, snapshot, std::ptr::null_mut(), n, 0);
        pg_sys::index_rescan(scan, keys.as_mut_ptr(), n, std::ptr::null_mut(), 0);
        scan
    }
}

/// A scan to keep, made by [`make_kept`]; in use.
///
/// # Safety
/// As [`with_scan`].
unsafe fn begin_kept(
    heap: pg_sys::Relation,
    idx: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    keys: &mut [pg_sys::ScanKeyData],
) -> Scan {
    let nkeys = keys.len() as i32;
    // SAFETY: the caller's contract.
    let (context, (desc, slot)) = unsafe {
        make_kept(c"pg_integrations kept scan", 8 * 1024 * 1024, || {
            let desc = begin_scan(heap, idx, snapshot, keys);
            (desc, pg_sys::table_slot_create(heap, std::ptr::null_mut()))
        })
    };
    Scan {
        // SAFETY: reads the OID of an open relation.
        relid: unsafe { (*idx).rd_id },
        nkeys,
        desc,
        slot,
        context,
        state: State::InUse,
    }
}

/// A slot to keep for `heap`'s rows (no scan), made by [`make_kept`]; in use.
///
/// # Safety
/// `heap` is held in this transaction.
unsafe fn begin_kept_slot(heap: pg_sys::Relation) -> Scan {
    // SAFETY: the caller's contract.
    let (context, slot) = unsafe {
        make_kept(c"pg_integrations kept slot", 8 * 1024, || {
            pg_sys::table_slot_create(heap, std::ptr::null_mut())
        })
    };
    Scan {
        // SAFETY: reads the OID of an open relation.
        relid: unsafe { (*heap).rd_id },
        nkeys: SLOT_ONLY,
        desc: std::ptr::null_mut(),
        slot,
        context,
        state: State::InUse,
    }
}

/// What `make` returns, made in a new memory context of its own under the
/// transaction's (blocks up to `max_block` bytes), its references with the
/// transaction's resource owner; and that context. Owner and memory context
/// are restored on an error too (then the context goes with the abort).
///
/// # Safety
/// Inside a transaction; `make` is safe to run there.
unsafe fn make_kept<T>(
    name: &'static std::ffi::CStr,
    max_block: usize,
    make: impl FnOnce() -> T,
) -> (pg_sys::MemoryContext, T) {
    // SAFETY: the caller's contract; the previous owner and context outlive the call.
    unsafe {
        let context = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopTransactionContext,
            name.as_ptr(),
            0,
            1024,
            max_block,
        );
        let _memory = Memory::switch(context);
        let _owner = Owner::transaction();
        (context, make())
    }
}

/// Release the broken entries (of `relid`, or all): their references, under
/// the resource owner that has them, and their memory; their buffers are
/// never touched. How many there were.
fn release_broken(relid: Option<pg_sys::Oid>) -> usize {
    let is_broken = |k: &Scan| k.state == State::Broken && relid.is_none_or(|i| k.relid == i);
    let broken: Vec<Scan> = SCANS.with(|s| {
        let mut s = s.borrow_mut();
        if !s.iter().any(is_broken) {
            // the common case, without moving the list
            return Vec::new();
        }
        let (broken, rest) = std::mem::take(&mut *s).into_iter().partition(is_broken);
        *s = rest;
        broken
    });
    let released = broken.len();
    for k in broken {
        {
            let _owner = Owner::transaction();
            // SAFETY: made by make_kept in this transaction, whose resource owner still has
            // the index reference and the slot's descriptor pin; the abort of the use's
            // (sub)transaction released its buffers, so neither slot nor scan is cleared.
            unsafe {
                let desc = (*k.slot).tts_tupleDescriptor;
                if !desc.is_null() && (*desc).tdrefcount >= 0 {
                    pg_sys::DecrTupleDescRefCount(desc);
                }
                if !k.desc.is_null() {
                    pg_sys::RelationDecrementReferenceCount((*k.desc).indexRelation);
                }
            }
        }
        // SAFETY: the entry's own context, which nothing else points into any more.
        unsafe { pg_sys::MemoryContextDelete(k.context) };
    }
    released
}

/// End the idle kept entries, release the broken ones and forget which were
/// seen. Before a commit no use can be under way, so one still marked in use
/// ended in an error its reset raised: broken. Before a utility statement
/// one in use (the statement runs inside a read) stays.
fn end_scans(at_commit: bool) {
    let only_seen = SCANS.with(|s| {
        let mut s = s.borrow_mut();
        let only_seen = s.iter().all(|k| k.state == State::Seen);
        if only_seen {
            // a transaction that read each relation once: nothing was kept
            s.clear();
        }
        only_seen
    });
    if only_seen {
        return;
    }
    if at_commit {
        SCANS.with(|s| {
            for k in s
                .borrow_mut()
                .iter_mut()
                .filter(|k| k.state == State::InUse)
            {
                k.state = State::Broken;
            }
        });
    }
    release_broken(None);
    let idle: Vec<Scan> = SCANS.with(|s| {
        let mut s = s.borrow_mut();
        let (idle, rest) = std::mem::take(&mut *s)
            .into_iter()
            .partition(|k| matches!(k.state, State::Idle | State::Seen));
        *s = rest;
        idle
    });
    for k in idle.into_iter().filter(|k| k.state == State::Idle) {
        {
            let _owner = Owner::transaction();
            // SAFETY: made by make_kept in this transaction and reset after its last use; its
            // references are the transaction resource owner's.
            unsafe {
                pg_sys::ExecDropSingleTupleTableSlot(k.slot);
                if !k.desc.is_null() {
                    pg_sys::index_endscan(k.desc);
                }
            }
        }
        // SAFETY: the entry's own context; its slot and scan are ended.
        unsafe { pg_sys::MemoryContextDelete(k.context) };
    }
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
    let rel = {
        let _owner = Owner::transaction();
        // SAFETY: the caller's contract; the reference and the lock go to the transaction's
        // resource owner, whose release at abort covers them (and `forget` drops our copy).
        unsafe { pg_sys::relation_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) }
    };
    HELD.with(|h| h.borrow_mut().insert(relid, rel));
    rel
}

/// End the kept scans and slots, then close every held relation (keeping the
/// locks), under the resource owner that remembers them.
fn close_all(at_commit: bool) {
    end_scans(at_commit);
    if SCANS.with(|s| !s.borrow().is_empty()) {
        // a scan still in use keeps its relations open
        return;
    }
    // taken out (not drained into a new list) and put back empty, so that a
    // transaction's end allocates nothing
    let mut held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    if held.is_empty() {
        return;
    }
    {
        let _owner = Owner::transaction();
        for rel in held.values() {
            // SAFETY: opened by `open` in this transaction under TopTransactionResourceOwner,
            // which still remembers it (the transaction has not ended).
            unsafe { pg_sys::relation_close(*rel, pg_sys::NoLock as pg_sys::LOCKMODE) };
        }
    }
    held.clear();
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_empty() {
            *h = held;
        }
    });
}

fn forget() {
    HELD.with(|h| h.borrow_mut().clear());
    SCANS.with(|s| s.borrow_mut().clear());
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
        | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => close_all(true),
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
        close_all(false);
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
