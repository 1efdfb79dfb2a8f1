//! Point reads and appends that bypass SPI. The hot RPCs read one row by a
//! unique key; SPI's per-statement executor start-up (and the re-check of a
//! cached plan against the function's pinned search_path) would cost more than
//! the index lookup itself.
//!
//! Reads match what SPI gives a VOLATILE function: our own earlier writes in
//! this transaction are made visible (CommandCounterIncrement) and the scan runs
//! under a fresh transaction snapshot. Relation OIDs and attribute numbers are
//! looked up once per backend and forgotten on any relcache invalidation of the
//! relation (DDL, DROP/CREATE EXTENSION).

use std::cell::RefCell;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

use super::sharded;
use crate::core::error::{Error, Result};

/// A relation we read directly, with the attribute numbers it is read by.
pub struct RelInfo {
    pub relid: pg_sys::Oid,
    attnums: HashMap<&'static str, i16>,
    indexes: RefCell<HashMap<&'static CStr, pg_sys::Oid>>,
}

impl RelInfo {
    /// Attribute number of `column`; errors if the column is missing.
    pub fn att(&self, column: &'static str) -> Result<i16> {
        self.attnums
            .get(column)
            .copied()
            .ok_or_else(|| Error::Internal(format!("column {column} is missing")))
    }

    /// The OID of index `name` in the same schema, looked up once.
    pub fn index(&self, schema: &CStr, name: &'static CStr) -> Result<pg_sys::Oid> {
        if let Some(oid) = self.indexes.borrow().get(name) {
            return Ok(*oid);
        }
        let oid = relid(schema, name)?;
        self.indexes.borrow_mut().insert(name, oid);
        Ok(oid)
    }
}

thread_local! {
    /// Key columns per index OID (an index rebuilt with other columns gets a new OID).
    static KEY_COLUMNS: RefCell<HashMap<pg_sys::Oid, i16>> = RefCell::new(HashMap::default());
    static RELS: RefCell<HashMap<(&'static str, &'static str), Rc<RelInfo>>> = RefCell::new(HashMap::default());
}

/// Forget cached relation info; registered as a relcache callback.
pub fn forget_relation(relid: pg_sys::Oid) {
    super::sharded::forget_relation(relid);
    super::update::forget_relation(relid);
    super::recent::forget_relation(relid);
    RELS.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if relid == pg_sys::InvalidOid {
                r.clear();
            } else {
                r.retain(|_, info| info.relid != relid);
            }
        }
    });
}

/// # Safety
/// Called by PostgreSQL only, as the relcache invalidation callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    forget_relation(relid);
}

pub fn init() {
    // SAFETY: called once from _PG_init; the callback is a #[pg_guard] fn that lives as long as
    // the library.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0))
    };
}

/// The OID of `schema.name`, or an error naming it.
pub fn relid(schema: &CStr, name: &CStr) -> Result<pg_sys::Oid> {
    // SAFETY: both names are NUL-terminated C strings; missing_ok and get_relname_relid return
    // InvalidOid for a missing schema or relation (checked below).
    unsafe {
        let ns = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        let oid = if ns == pg_sys::InvalidOid {
            ns
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), ns)
        };
        if oid == pg_sys::InvalidOid {
            Err(Error::Internal(format!(
                "relation {}.{} is missing; is the extension installed?",
                schema.to_string_lossy(),
                name.to_string_lossy()
            )))
        } else {
            Ok(oid)
        }
    }
}

/// Cached info for `schema.table` with the given columns.
pub fn rel(
    schema: &'static str,
    table: &'static str,
    columns: &[&'static str],
) -> Result<Rc<RelInfo>> {
    if let Some(r) = RELS.with(|r| r.borrow().get(&(schema, table)).cloned()) {
        return Ok(r);
    }
    let s = std::ffi::CString::new(schema).expect("no NUL");
    let t = std::ffi::CString::new(table).expect("no NUL");
    let relid = relid(&s, &t)?;
    let mut attnums = HashMap::default();
    for c in columns {
        let cname = std::ffi::CString::new(*c).expect("no NUL");
        // SAFETY: relid was just looked up and cname is NUL-terminated; a missing column gives
        // InvalidAttrNumber (checked).
        let n = unsafe { pg_sys::get_attnum(relid, cname.as_ptr()) };
        if n <= 0 {
            return Err(Error::Internal(format!(
                "column {schema}.{table}.{c} is missing"
            )));
        }
        attnums.insert(*c, n);
    }
    let info = Rc::new(RelInfo {
        relid,
        attnums,
        indexes: RefCell::new(HashMap::default()),
    });
    RELS.with(|r| r.borrow_mut().insert((schema, table), info.clone()));
    Ok(info)
}

/// An equality condition on the `attno`-th column of an index; it borrows
/// the value its datum points at.
pub struct Key<'a> {
    index_column: i16,
    eq_proc: u32,
    value: pg_sys::Datum,
    _value: std::marker::PhantomData<&'a [u8]>,
}

/// `index_column = value` for a uuid column.
pub fn uuid_key(index_column: i16, value: &pgrx::Uuid) -> Key<'_> {
    Key {
        index_column,
        eq_proc: pg_sys::F_UUID_EQ,
        // A uuid datum is a pointer to its 16 bytes.
        value: pg_sys::Datum::from(value.as_bytes().as_ptr()),
        _value: std::marker::PhantomData,
    }
}

/// `index_column = value` for a bytea column. The key's datum is a copy in
/// the current memory context, which outlives the scan.
pub fn bytea_key(index_column: i16, value: &[u8]) -> Key<'static> {
    Key {
        index_column,
        eq_proc: pg_sys::F_BYTEAEQ,
        value: pgrx::IntoDatum::into_datum(value).unwrap_or(pg_sys::Datum::from(0)),
        _value: std::marker::PhantomData,
    }
}

/// `index_column = value` for a text column (compared under the index's
/// collation). The key's datum is a copy in the current memory context.
pub fn text_key(index_column: i16, value: &str) -> Key<'static> {
    Key {
        index_column,
        eq_proc: pg_sys::F_TEXTEQ,
        value: pgrx::IntoDatum::into_datum(value).unwrap_or(pg_sys::Datum::from(0)),
        _value: std::marker::PhantomData,
    }
}

/// A fetched row, valid inside the callback only.
pub struct Row {
    slot: *mut pg_sys::TupleTableSlot,
}

impl Row {
    /// The row a slot of a table's tuple holds.
    pub(super) fn of(slot: *mut pg_sys::TupleTableSlot) -> Row {
        Row { slot }
    }

    /// The raw datum of attribute `att` (None for NULL); points into a pinned
    /// buffer (or, for a Citus table's row, SPI's memory), so it must be used
    /// or copied before the callback returns.
    pub fn datum(&self, att: i16) -> Option<pg_sys::Datum> {
        // SAFETY: the slot is the scan's current tuple for the lifetime of this Row, and `att`
        // comes from RelInfo::att, a positive attribute number of that table, so index att - 1
        // is inside tts_values/tts_isnull once slot_getsomeattrs has filled them (up to the
        // descriptor's natts, which is at least att).
        unsafe {
            // A virtual slot (a Citus table's row, `sharded`) holds every attribute already.
            // Otherwise every attribute is deformed at the first read: the reads come in any
            // order, and deforming up to each one in turn cost a call per column.
            if ((*self.slot).tts_nvalid as i32) < att as i32 {
                let natts = (*(*self.slot).tts_tupleDescriptor).natts;
                pg_sys::slot_getsomeattrs_int(self.slot, natts.max(att as i32));
            }
            let i = (att - 1) as usize;
            if *(*self.slot).tts_isnull.add(i) {
                None
            } else {
                Some(*(*self.slot).tts_values.add(i))
            }
        }
    }

    pub fn get<T: pgrx::FromDatum>(&self, att: i16) -> Option<T> {
        self.datum(att)
            // SAFETY: `d` is a non-NULL datum of the column; every caller reads a column as the
            // Rust type of its SQL type (uuid as Uuid, text as &str/String, ...), the same
            // contract as SPI's typed getters.
            .and_then(|d| unsafe { T::from_datum(d, false) })
    }

    /// A copy of the row, to update it with [`super::update::update_row`].
    pub fn target(&self) -> super::update::Target {
        // SAFETY: the slot holds the scan's current tuple of the scanned table.
        unsafe { super::update::Target::of(self.slot) }
    }

    /// Where the row is, for [`super::recent`] to look there first next time.
    pub fn place(&self) -> Option<super::recent::Place> {
        // SAFETY: the slot holds the scan's current tuple of the scanned table.
        unsafe { super::recent::Place::of(self.slot) }
    }

    /// The whole row as a composite datum of the table's row type (a copy).
    pub fn composite(&self) -> pg_sys::Datum {
        // SAFETY: the slot holds the scan's current tuple; the result is a palloc'd copy.
        unsafe { pg_sys::ExecFetchSlotHeapTupleDatum(self.slot) }
    }
}

thread_local! {
    static SNAPSHOT_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

struct SnapshotScope;

impl Drop for SnapshotScope {
    fn drop(&mut self) {
        let depth = SNAPSHOT_DEPTH.with(|d| {
            d.set(d.get() - 1);
            d.get()
        });
        // On an error the transaction abort pops the snapshot stack itself.
        if depth == 0 && !std::thread::panicking() {
            // SAFETY: pops the snapshot the outermost with_snapshot pushed; on an error the
            // abort unwinds the stack instead (checked by `panicking`).
            unsafe { pg_sys::PopActiveSnapshot() };
        }
    }
}

/// Run `f` with one snapshot for all the direct reads inside it (an RPC that
/// checks ownership and then reads a row takes one snapshot, not two).
pub fn with_snapshot<T>(f: impl FnOnce() -> T) -> T {
    let outer = SNAPSHOT_DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v
    });
    if outer == 0 {
        // SAFETY: runs inside a transaction (we are in a function call); the pushed snapshot is
        // popped by SnapshotScope or by the abort.
        unsafe {
            if pg_sys::GetCurrentTransactionIdIfAny() != pg_sys::InvalidTransactionId {
                pg_sys::CommandCounterIncrement();
            }
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            pg_sys::UpdateActiveSnapshotCommandId();
        }
    }
    let _scope = SnapshotScope;
    f()
}

/// Run `f` with the calling statement's snapshot for all the direct reads
/// inside it, as PostgreSQL runs a STABLE function (no new snapshot per call,
/// no command counter advance); a fresh one as [`with_snapshot`] when there is
/// none. For the STABLE readers (`get_*_integration`): taking a snapshot was
/// ~3% of a call.
pub fn with_statement_snapshot<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: reads whether the snapshot stack has an entry; no pointers kept.
    if SNAPSHOT_DEPTH.with(|d| d.get()) > 0 || !unsafe { pg_sys::ActiveSnapshotSet() } {
        return with_snapshot(f);
    }
    // The active snapshot stays pushed for the whole call (the executor's);
    // nested with_snapshot calls see the depth and use it.
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            SNAPSHOT_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    SNAPSHOT_DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}

/// Scan `index` of `table` for rows matching `keys`, calling `f` on each until
/// it returns `Some`.
pub fn find<T>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &[Key<'_>],
    mut f: impl FnMut(&Row) -> Result<Option<T>>,
) -> Result<Option<T>> {
    if sharded::is_citus_table(table)? {
        return sharded::find(table, index, &leading_keys(keys)?, |slot| f(&Row { slot }));
    }
    with_snapshot(|| scan(table, index, keys, f))
}

/// The datums of `keys`, which must be on the index's leading columns in
/// order (as every caller gives them), for the SQL that reads Citus tables.
fn leading_keys(keys: &[Key<'_>]) -> Result<Vec<pg_sys::Datum>> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            if k.index_column as usize == i + 1 {
                Ok(k.value)
            } else {
                Err(Error::Internal(
                    "keys not on the index's leading columns".into(),
                ))
            }
        })
        .collect()
}

fn scan<T>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &[Key<'_>],
    mut f: impl FnMut(&Row) -> Result<Option<T>>,
) -> Result<Option<T>> {
    // SAFETY: catalog OIDs (RelInfo) held open (`held`) with their locks; the scan and slot are
    // held's, used only inside its closure. The scan keys borrow the caller's values (Key<'_>)
    // for the whole scan.
    unsafe {
        let heap = super::held::open(table);
        let idx = super::held::open(index);
        let mut scankeys = scan_keys(idx, keys)?;
        super::held::with_scan(
            heap,
            idx,
            pg_sys::GetActiveSnapshot(),
            &mut scankeys,
            |scan| {
                while scan.next() {
                    match f(&Row { slot: scan.slot() }) {
                        Ok(None) => continue,
                        other => return other,
                    }
                }
                Ok(None)
            },
        )
        // Table and index stay open, and locked, until the transaction ends (`held`), as a
        // SELECT's locks do.
    }
}

/// `table` opened with `lock`, its `index` with AccessShareLock, and the scan
/// keys on it; nothing is left open on an error.
///
/// # Safety
/// `table` and `index` are catalog OIDs (RelInfo), the index one of the table's.
unsafe fn open_with_keys(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    lock: pg_sys::LOCKMODE,
    keys: &[Key<'_>],
) -> Result<(pg_sys::Relation, pg_sys::Relation, Vec<pg_sys::ScanKeyData>)> {
    // SAFETY: the caller's contract; on an error both are closed again, locks kept.
    unsafe {
        let heap = pg_sys::relation_open(table, lock);
        let idx = pg_sys::index_open(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        match scan_keys(idx, keys) {
            Ok(k) => Ok((heap, idx, k)),
            Err(e) => {
                pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
                pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
                Err(e)
            }
        }
    }
}

/// Equality scan keys on `keys`, in the index's own collations; an error for
/// a key on no key column of the index.
///
/// # Safety
/// `idx` is an open index.
unsafe fn scan_keys(idx: pg_sys::Relation, keys: &[Key<'_>]) -> Result<Vec<pg_sys::ScanKeyData>> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        // SAFETY: an open index has its pg_index row and one collation per key
        // column (rd_indcollation); the column is checked to be one of them
        // before it is read, and ScanKeyInit fills the zeroed key.
        unsafe {
            let key_columns = (*(*idx).rd_index).indnkeyatts;
            if k.index_column < 1 || k.index_column > key_columns {
                return Err(Error::Internal(format!(
                    "scan key on column {} of an index with {key_columns} key columns",
                    k.index_column
                )));
            }
            let mut sk: pg_sys::ScanKeyData = std::mem::zeroed();
            pg_sys::ScanKeyInit(
                &mut sk,
                k.index_column,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::Oid::from(k.eq_proc),
                k.value,
            );
            // ScanKeyInit assumes "C": a text key must be compared as the
            // index orders it.
            sk.sk_collation = *(*idx).rd_indcollation.add((k.index_column - 1) as usize);
            out.push(sk);
        }
    }
    Ok(out)
}

/// The first row of `schema.table` whose `index` matches `keys`.
pub fn find_in<T>(
    schema: &'static CStr,
    index: &'static CStr,
    table: &RelInfo,
    keys: &[Key<'_>],
    f: impl FnMut(&Row) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let index = table.index(schema, index)?;
    find(table.relid, index, keys, f)
}

/// Append a row to a table that has no indexes, triggers or constraints to run
/// (the audit log), without the executor. `values` pairs attribute numbers with
/// datums; other columns are NULL. Refused in a read-only transaction, as an
/// INSERT would be. A Citus table gets an INSERT.
pub fn append(table: pg_sys::Oid, values: &[(i16, Option<pg_sys::Datum>)]) -> Result<()> {
    const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    if sharded::is_citus_table(table)? {
        return sharded::insert(table, &[values.to_vec()]);
    }
    // SAFETY: `table` is the audit log's OID from RelInfo; `values` pairs valid attribute
    // numbers (from RelInfo::att) with datums of their columns' types, so the formed tuple
    // matches rd_att; the relation is closed with the lock it was opened with.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(c"INSERT".as_ptr());
        let rel = pg_sys::relation_open(table, LOCK);
        let natts = (*(*rel).rd_att).natts as usize;
        let mut datums = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        for (att, d) in values {
            if let Some(d) = d {
                datums[(*att - 1) as usize] = *d;
                nulls[(*att - 1) as usize] = false;
            }
        }
        let tuple = pg_sys::heap_form_tuple((*rel).rd_att, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(rel, tuple);
        pg_sys::heap_freetuple(tuple);
        pg_sys::relation_close(rel, LOCK);
    }
    Ok(())
}

/// Delete the row of `table` whose unique `index` matches `keys`, without
/// the executor; false if there is none. For a table nothing references and
/// nothing fires on (the secret store): a kept `DELETE` statement cost a
/// `delete_*` call ~10 µs of executor start-up for a one-row delete.
///
/// Like `DELETE` in READ COMMITTED, a row updated concurrently is looked up
/// again and its newest version deleted; one deleted concurrently (or already
/// by this command) counts as gone. In REPEATABLE READ and SERIALIZABLE the
/// row is looked up in the transaction's snapshot and a concurrent update or
/// delete fails with 40001, as `DELETE` does there.
pub fn delete_unique(table: pg_sys::Oid, index: pg_sys::Oid, keys: &[Key<'_>]) -> Result<bool> {
    const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    if sharded::is_citus_table(table)? {
        return sharded::delete(table, index, &leading_keys(keys)?);
    }
    // SAFETY: catalog OIDs opened here, locks kept; `tid` is copied, deleted under RowExclusiveLock.
    // Each scan runs under the active snapshot (kept by the running statement) or the latest
    // one, valid until the next GetLatestSnapshot call (none while the scan runs).
    unsafe {
        pg_sys::PreventCommandIfReadOnly(c"DELETE".as_ptr());
        let xact_snapshot = pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32;
        let (heap, idx, mut scankeys) = open_with_keys(table, index, LOCK, keys)?;
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let mut out = Ok(false);
        // A row updated concurrently moves; a few retries find its last version.
        for _ in 0..100 {
            let snapshot = if xact_snapshot {
                pg_sys::GetActiveSnapshot()
            } else {
                pg_sys::GetLatestSnapshot()
            };
            let scan = super::held::begin_scan(heap, idx, snapshot, &mut scankeys);
            let found =
                pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            let mut tid = (*slot).tts_tid;
            pg_sys::ExecClearTuple(slot);
            pg_sys::index_endscan(scan);
            if !found {
                break;
            }
            let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
            let r = pg_sys::heap_delete(
                heap,
                &mut tid,
                pg_sys::GetCurrentCommandId(true),
                std::ptr::null_mut(),
                true,
                &mut tmfd,
                false,
            );
            match r {
                pg_sys::TM_Result::TM_Ok => {
                    out = Ok(true);
                    break;
                }
                pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted if xact_snapshot => {
                    out = Err(Error::Serialization(
                        "could not serialize access due to a concurrent change of a secret".into(),
                    ));
                    break;
                }
                pg_sys::TM_Result::TM_Updated => continue,
                pg_sys::TM_Result::TM_Deleted | pg_sys::TM_Result::TM_SelfModified => break,
                other => {
                    out = Err(Error::Internal(format!(
                        "unexpected result {other} deleting a row"
                    )));
                    break;
                }
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        out
    }
}

/// Append `n` rows to a table like [`append`], in pages' worth at a time
/// (`heap_multi_insert`: one WAL record per page, not per row). `fill(i, set)`
/// gives row `i`'s values by calling `set(attribute, datum)`; other columns are
/// NULL. The audit writer's batches: row by row, writing the audit of 15,000
/// secret reads a second took a third of a core.
pub fn append_many(
    table: pg_sys::Oid,
    n: usize,
    mut fill: impl FnMut(usize, &mut dyn FnMut(i16, Option<pg_sys::Datum>)),
) -> Result<()> {
    const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    const CHUNK: usize = 1000;
    if n == 0 {
        return Ok(());
    }
    if sharded::is_citus_table(table)? {
        let rows: Vec<Vec<(i16, Option<pg_sys::Datum>)>> = (0..n)
            .map(|i| {
                let mut row = Vec::new();
                fill(i, &mut |att, d| row.push((att, d)));
                row
            })
            .collect();
        return sharded::insert(table, &rows);
    }
    // SAFETY: `table` from RelInfo, opened here with RowExclusiveLock; slots dropped before it.
    // Each value `fill` sets is a datum of its attribute's type (numbers from RelInfo::att,
    // checked against natts), valid until heap_multi_insert has copied it into the page.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(c"INSERT".as_ptr());
        let rel = pg_sys::relation_open(table, LOCK);
        // The slots get a copy of the descriptor that is not reference-counted: 1,000 pins of
        // the relation's own in the resource owner took a fifth of the audit writer's time
        // (its hash of remembered pins probes linearly past equal entries).
        let desc = pg_sys::CreateTupleDescCopy((*rel).rd_att);
        let natts = (*desc).natts as usize;
        let mut slots: Vec<*mut pg_sys::TupleTableSlot> = (0..n.min(CHUNK))
            .map(|_| pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsVirtual))
            .collect();
        let cid = pg_sys::GetCurrentCommandId(true);
        let mut done = 0;
        while done < n {
            let m = (n - done).min(CHUNK);
            for (k, slot) in slots.iter().take(m).enumerate() {
                let slot = *slot;
                pg_sys::ExecClearTuple(slot);
                let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
                let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
                nulls.fill(true);
                fill(done + k, &mut |att, d| {
                    let i = (att - 1) as usize;
                    if let (Some(d), true) = (d, i < natts) {
                        values[i] = d;
                        nulls[i] = false;
                    }
                });
                pg_sys::ExecStoreVirtualTuple(slot);
            }
            pg_sys::heap_multi_insert(
                rel,
                slots.as_mut_ptr(),
                m as i32,
                cid,
                0,
                std::ptr::null_mut(),
            );
            done += m;
        }
        for slot in slots {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
        pg_sys::FreeTupleDesc(desc);
        pg_sys::relation_close(rel, LOCK);
    }
    Ok(())
}

/// How many key columns `index` has (looked up once per index).
pub fn index_key_columns(index: pg_sys::Oid) -> i16 {
    if let Some(n) = KEY_COLUMNS.with(|m| m.borrow().get(&index).copied()) {
        return n;
    }
    // SAFETY: an index OID from RelInfo, opened and closed here with its lock kept.
    let n = unsafe {
        let idx = pg_sys::index_open(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let n = (*(*idx).rd_index).indnkeyatts;
        pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        n
    };
    KEY_COLUMNS.with(|m| m.borrow_mut().insert(index, n));
    n
}

/// Take an ACCESS SHARE lock on relation `relid` until the transaction ends:
/// a relation checked by OID and then used by name cannot be renamed (and a
/// view put in its place) in between.
pub fn lock_relation(relid: pg_sys::Oid) {
    // SAFETY: locks an OID in the lock manager; a missing relation is only
    // an unused lock tag, found missing by the checks that follow.
    unsafe { pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
}
