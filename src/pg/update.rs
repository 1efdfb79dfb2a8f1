//! Updating or deleting a row already read, without the executor: the hot
//! write paths (`set_*` re-saving an integration and re-sealing its secret,
//! `delete_*`). An `UPDATE`
//! through SPI pays executor start-up, finds the row again by its index, and
//! re-reads every CHECK constraint of the table from its stored text
//! (`stringToNode`, per statement): measured on `set_ai_avatar_integration`,
//! the three CHECK constraints alone were ~10 µs of ~50. Here the row is
//! written with `heap_update`, index entries are added when the update is not
//! HOT, and the CHECK constraints are evaluated with expression states kept
//! per backend (dropped on any relcache invalidation of the table and on any
//! change to `pg_proc`).
//!
//! Only where that is all an `UPDATE` would do. Otherwise
//! [`Outcome::NotPlain`], and the caller runs its SQL:
//! - a plain heap table: not partitioned, not a partition, no rules, not
//!   Citus, no generated columns;
//! - no row security for the current user;
//! - plain indexes only: no expressions, predicates, exclusion constraints or
//!   deferrable uniqueness;
//! - no trigger on UPDATE except `integrations.touch_updated_at`, whose work
//!   is done here, and foreign-key triggers on columns the update leaves alone.
//!
//! A delete needs no index or CHECK work: only no trigger on DELETE but
//! `integrations.delete_row_secrets` (whose work the caller does) and no
//! foreign key of another table referencing this one.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::FromDatum;
use rustc_hash::FxHashMap as HashMap;

use super::sharded;
use crate::core::error::{Error, Result};

/// A row as read, copied out of its buffer: the version to update.
pub struct Target {
    tuple: pg_sys::HeapTuple,
}

impl Target {
    /// Copy the row in `slot` (a table's slot holding a fetched tuple).
    ///
    /// # Safety
    /// `slot` holds a tuple fetched from a heap table.
    pub unsafe fn of(slot: *mut pg_sys::TupleTableSlot) -> Target {
        // SAFETY: the caller's contract; the copy is palloc'd in the current memory context and
        // carries the slot's tid, the version `heap_update` must find unchanged.
        unsafe {
            let tuple = pg_sys::ExecCopySlotHeapTuple(slot);
            (*tuple).t_self = (*slot).tts_tid;
            Target { tuple }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // On an error the memory context goes instead.
        if !std::thread::panicking() {
            // SAFETY: the tuple was palloc'd by ExecCopySlotHeapTuple and is freed once, here.
            unsafe { pg_sys::heap_freetuple(self.tuple) };
        }
    }
}

/// What [`update_row`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The row changed or went since it was read (or this command changed
    /// it): nothing written; SQL decides what happens.
    Changed,
    /// The table needs the executor (see the module notes): nothing written.
    NotPlain,
}

/// What a table needs beyond `heap_update` / `heap_delete`, worked out once
/// per backend.
struct Plan {
    /// Rows can be updated without the executor.
    updatable: bool,
    /// Rows can be deleted without the executor: no trigger on DELETE but
    /// `integrations.delete_row_secrets` on `secret_id` (whose work the caller
    /// does) and no foreign key of another table referencing this one.
    deletable: bool,
    /// Its states are evaluating a CHECK (a CHECK calling set_* on the same
    /// table would re-enter them): such a nested write takes the SQL path.
    busy: Cell<bool>,
    /// Holds the expression states and their context.
    memory: pg_sys::MemoryContext,
    econtext: *mut pg_sys::ExprContext,
    /// Each CHECK constraint, with its name for the error.
    checks: Vec<(*mut pg_sys::ExprState, String)>,
    indexes: Vec<pg_sys::Oid>,
    /// Columns that a foreign key of the table, or one referencing it, may
    /// look at (the update must not change them, or a trigger would check).
    key_columns: Vec<i16>,
    /// `updated_at`, set to the transaction's start as the trigger would.
    touched: Option<i16>,
}

thread_local! {
    /// `None`: the table needs the executor.
    static PLANS: RefCell<HashMap<pg_sys::Oid, Option<Rc<Plan>>>> = RefCell::new(HashMap::default());
    /// Memory of forgotten plans, freed when no update is evaluating a check
    /// (an invalidation can arrive in the middle of one).
    static RETIRED: RefCell<Vec<pg_sys::MemoryContext>> = const { RefCell::new(Vec::new()) };
    static IN_USE: Cell<u32> = const { Cell::new(0) };
    static INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Forget the plan of `relid` (all plans for InvalidOid); from the relcache
/// and pg_proc invalidation callbacks.
pub fn forget_relation(relid: pg_sys::Oid) {
    INVALIDATIONS.with(|n| n.set(n.get() + 1));
    PLANS.with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        let gone: Vec<pg_sys::Oid> = if relid == pg_sys::InvalidOid {
            p.keys().copied().collect()
        } else {
            vec![relid]
        };
        for oid in gone {
            if let Some(Some(plan)) = p.remove(&oid) {
                retire(plan.memory);
            }
        }
    });
}

fn retire(memory: pg_sys::MemoryContext) {
    RETIRED.with(|r| r.borrow_mut().push(memory));
}

fn free_retired() {
    if IN_USE.with(|u| u.get()) > 0 {
        return;
    }
    let retired = RETIRED.with(|r| std::mem::take(&mut *r.borrow_mut()));
    for memory in retired {
        // SAFETY: a plan's own context, no longer in PLANS and used by no running update.
        unsafe { pg_sys::MemoryContextDelete(memory) };
    }
}

/// # Safety
/// Called by PostgreSQL only, as the pg_proc syscache callback registered in `init`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // A function a CHECK constraint calls may have been replaced.
    forget_relation(pg_sys::InvalidOid);
}

pub fn init() {
    // SAFETY: called once from _PG_init; the callback is a #[pg_guard] fn that lives as long as
    // the library. (Relcache invalidations reach us through direct::forget_relation.)
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(proc_callback),
            pg_sys::Datum::from(0),
        )
    };
}

/// Marks a plan in use while it evaluates; on an error (unwinding) the plan
/// is forgotten, since its states stopped half way.
struct InUse<'a>(pg_sys::Oid, &'a Cell<bool>);

impl<'a> InUse<'a> {
    fn enter(relid: pg_sys::Oid, busy: &'a Cell<bool>) -> InUse<'a> {
        IN_USE.with(|u| u.set(u.get() + 1));
        busy.set(true);
        InUse(relid, busy)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.1.set(false);
        IN_USE.with(|u| u.set(u.get() - 1));
        if std::thread::panicking() {
            forget_relation(self.0);
        }
    }
}

/// The elements of a PostgreSQL `List` of OIDs or pointers.
///
/// # Safety
/// `list` is NIL or a valid List whose cells hold values of the kind read.
unsafe fn cells(list: *mut pg_sys::List) -> &'static [pg_sys::ListCell] {
    if list.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract: `length` cells at `elements`, used before the list is freed.
    unsafe { std::slice::from_raw_parts((*list).elements, (*list).length as usize) }
}

/// The C name of trigger function `fn_oid` if it is one of this library's
/// (a C function has a library; by its C name, whatever its schema).
///
/// # Safety
/// Inside a transaction.
unsafe fn our_function(fn_oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup released before returning; the text datums are detoasted copies.
    unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(fn_oid),
        );
        if tup.is_null() {
            return None;
        }
        let mut null = false;
        let src = pg_sys::SysCacheGetAttr(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            tup,
            pg_sys::Anum_pg_proc_prosrc as i16,
            &mut null,
        );
        let src = (!null).then(|| String::from_datum(src, false)).flatten();
        let bin = pg_sys::SysCacheGetAttr(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            tup,
            pg_sys::Anum_pg_proc_probin as i16,
            &mut null,
        );
        let bin = (!null).then(|| String::from_datum(bin, false)).flatten();
        pg_sys::ReleaseSysCache(tup);
        src.filter(|_| bin.is_some_and(|b| b.contains("pg_integrations")))
    }
}

/// What `build` needs of one enabled trigger, copied out of the relcache
/// entry before any catalog lookup (which may rebuild the entry and free its
/// trigger descriptor).
struct TriggerInfo {
    function: pg_sys::Oid,
    tgtype: u32,
    deferrable: bool,
    /// An `UPDATE OF` column list or a `WHEN` condition.
    conditional: bool,
    args: Vec<std::ffi::CString>,
}

/// The enabled triggers of open relation `rel`, copied.
///
/// # Safety
/// `rel` is open; nothing between reading `trigdesc` and copying it looks up a catalog.
unsafe fn triggers_of(rel: pg_sys::Relation) -> Vec<TriggerInfo> {
    // SAFETY: the caller's contract: `numtriggers` triggers, each with tgnargs C strings.
    unsafe {
        let td = (*rel).trigdesc;
        if td.is_null() {
            return Vec::new();
        }
        (0..(*td).numtriggers as usize)
            .map(|i| &*(*td).triggers.add(i))
            .filter(|t| t.tgenabled as u8 != pg_sys::TRIGGER_DISABLED)
            .map(|t| TriggerInfo {
                function: t.tgfoid,
                tgtype: t.tgtype as u32,
                deferrable: t.tgdeferrable,
                conditional: t.tgnattr > 0 || !t.tgqual.is_null(),
                args: (0..t.tgnargs as usize)
                    .map(|i| CStr::from_ptr(*t.tgargs.add(i)).to_owned())
                    .collect(),
            })
            .collect()
    }
}

/// Whether trigger `t` deletes the secrets of `secret_id` (no arguments, or that one).
///
/// # Safety
/// Inside a transaction.
unsafe fn deletes_secret_ids(t: &TriggerInfo) -> bool {
    (t.args.is_empty() || (t.args.len() == 1 && t.args[0].as_c_str() == c"secret_id"))
        && !t.conditional
        // SAFETY: the caller's contract.
        && unsafe { our_function(t.function) }.as_deref() == Some("pgi_delete_row_secrets")
}

/// Attribute `i` (from 0) of a tuple descriptor.
///
/// # Safety
/// `desc` is a valid tuple descriptor with more than `i` attributes.
pub(super) unsafe fn attribute(
    desc: pg_sys::TupleDesc,
    i: usize,
) -> &'static pg_sys::FormData_pg_attribute {
    // SAFETY: the caller's contract; 18 keeps the attributes after its compact ones.
    unsafe {
        #[cfg(feature = "pg18")]
        return &*pg_sys::TupleDescAttr(desc, i as i32);
        #[cfg(not(feature = "pg18"))]
        return &*(*desc).attrs.as_ptr().add(i);
    }
}

/// Attribute number of a live column named `name`.
///
/// # Safety
/// `desc` is a valid tuple descriptor.
unsafe fn attnum(desc: pg_sys::TupleDesc, name: &CStr) -> Option<i16> {
    // SAFETY: `natts` attributes follow the descriptor.
    unsafe {
        (0..(*desc).natts as usize)
            .find(|&i| {
                let a = attribute(desc, i);
                !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == name
            })
            .map(|i| i as i16 + 1)
    }
}

/// The plan of open relation `rel`, or `None` when every write needs the executor.
///
/// # Safety
/// `rel` is open and locked.
unsafe fn build(rel: pg_sys::Relation) -> Option<Plan> {
    // SAFETY: the relation is open and locked; what its relcache entry holds is copied before
    // any catalog lookup (a lookup may process invalidations and rebuild the entry, freeing
    // its trigger descriptor or replacing its tuple descriptor); indexes are opened and closed
    // here (locks kept); the expression states are made in the plan's own context.
    unsafe {
        let form = (*rel).rd_rel;
        if (*form).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
            || (*form).relam != pg_sys::HEAP_TABLE_AM_OID
            || (*form).relispartition
            || (*form).relhassubclass
            || !(*rel).rd_rules.is_null()
        {
            return None;
        }
        let mut updatable = true;
        let mut deletable = true;
        let constr = (*(*rel).rd_att).constr;
        // CHECK constraints, as text, to plan once the lookups below are done
        let mut check_texts = Vec::new();
        if !constr.is_null() {
            updatable &= !(*constr).has_generated_stored;
            #[cfg(feature = "pg18")]
            {
                updatable &= !(*constr).has_generated_virtual;
            }
            for i in 0..(*constr).num_check as usize {
                let check = &*(*constr).check.add(i);
                #[cfg(feature = "pg18")]
                if !check.ccenforced {
                    continue;
                }
                check_texts.push((
                    CStr::from_ptr(check.ccbin).to_owned(),
                    CStr::from_ptr(check.ccname).to_owned(),
                ));
            }
        }
        let updated_at = attnum((*rel).rd_att, c"updated_at");
        let mut touched = None;
        let mut foreign_keys = false;
        for t in triggers_of(rel) {
            let ri = pg_sys::RI_FKey_trigger_type(t.function);
            if t.tgtype & pg_sys::TRIGGER_TYPE_UPDATE != 0 {
                let row_before = pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE;
                if ri != pg_sys::RI_TRIGGER_NONE as i32 {
                    foreign_keys = true;
                    // a deferred check may be due on a row this transaction wrote,
                    // whatever the update changes: the executor queues it, we would not
                    updatable &= !t.deferrable;
                } else if t.tgtype & row_before == row_before
                    && !t.conditional
                    && our_function(t.function).as_deref() == Some("pgi_touch_updated_at")
                {
                    touched = updated_at;
                    updatable &= touched.is_some();
                } else {
                    updatable = false;
                }
            }
            if t.tgtype & pg_sys::TRIGGER_TYPE_DELETE != 0 && !deletes_secret_ids(&t) {
                // another table's foreign key (its ON DELETE action), or a user's trigger
                deletable = false;
            }
        }
        let mut key_columns = Vec::new();
        let mut indexes = Vec::new();
        for cell in cells(pg_sys::RelationGetIndexList(rel)) {
            let oid = cell.oid_value;
            let idx = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let info = pg_sys::BuildIndexInfo(idx);
            let index = &*(*idx).rd_index;
            updatable &= (*info).ii_Expressions.is_null()
                && (*info).ii_Predicate.is_null()
                && (*info).ii_ExclusionOps.is_null()
                && (!index.indisunique || index.indimmediate);
            if index.indisunique && foreign_keys {
                // a foreign key elsewhere may reference these columns
                key_columns.extend_from_slice(
                    &(&*info).ii_IndexAttrNumbers[..(*info).ii_NumIndexKeyAttrs as usize],
                );
            }
            pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
            indexes.push(oid);
        }
        if foreign_keys {
            // the relcache's list, read through without a lookup in between
            for cell in cells(pg_sys::RelationGetFKeyList(rel)) {
                let fk = &*(cell.ptr_value as *const pg_sys::ForeignKeyCacheInfo);
                key_columns.extend_from_slice(&fk.conkey[..fk.nkeys as usize]);
            }
        }
        let memory = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CacheMemoryContext,
            c"pg_integrations update plan".as_ptr(),
            pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        );
        let old = pg_sys::MemoryContextSwitchTo(memory);
        let econtext = pg_sys::CreateStandaloneExprContext();
        let mut checks = Vec::new();
        if updatable {
            for (text, name) in &check_texts {
                let expr = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Expr;
                let state =
                    pg_sys::ExecInitExpr(pg_sys::expression_planner(expr), std::ptr::null_mut());
                checks.push((state, name.to_string_lossy().into_owned()));
            }
        }
        pg_sys::MemoryContextSwitchTo(old);
        Some(Plan {
            updatable,
            deletable,
            busy: Cell::new(false),
            memory,
            econtext,
            checks,
            indexes,
            key_columns,
            touched,
        })
    }
}

/// The plan of open relation `rel`, made on first use.
///
/// # Safety
/// `rel` is open and locked.
unsafe fn plan_of(rel: pg_sys::Relation) -> Option<Rc<Plan>> {
    // SAFETY: reads the open relation's OID.
    let relid = unsafe { (*rel).rd_id };
    if let Some(p) = PLANS.with(|p| p.borrow().get(&relid).cloned()) {
        return p;
    }
    let before = INVALIDATIONS.with(|n| n.get());
    // SAFETY: the caller's contract.
    let plan = unsafe { build(rel) }.map(Rc::new);
    if INVALIDATIONS.with(|n| n.get()) == before {
        PLANS.with(|p| p.borrow_mut().insert(relid, plan.clone()));
    } else if let Some(p) = &plan {
        // made while the catalogs changed: used once, then freed
        retire(p.memory);
    }
    plan
}

/// Open `table` for `command` (`UPDATE` or `DELETE`) and run `f` on it with
/// its plan, unless it is a Citus table or has none ([`Outcome::NotPlain`]).
/// The lock stays to the end of the transaction, as the command's would.
fn with_plan(
    table: pg_sys::Oid,
    command: &CStr,
    f: impl FnOnce(pg_sys::Relation, &Plan) -> Result<Outcome>,
) -> Result<Outcome> {
    const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    if sharded::is_citus_table(table)? {
        return Ok(Outcome::NotPlain);
    }
    free_retired();
    // SAFETY: `table` is a catalog OID (RelInfo), opened here with RowExclusiveLock and closed
    // (lock kept) after `f`, which gets it open.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(command.as_ptr());
        let rel = pg_sys::relation_open(table, LOCK);
        // In `replica` mode triggers fire by other rules; a plan in use is not re-entered.
        let replica =
            pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
        let out = match plan_of(rel) {
            Some(plan) if !replica && !plan.busy.get() && !row_security_applies(rel) => {
                f(rel, &plan)
            }
            _ => Ok(Outcome::NotPlain),
        };
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        out
    }
}

/// Whether row level security applies to the current user on open `rel`.
///
/// # Safety
/// `rel` is open.
unsafe fn row_security_applies(rel: pg_sys::Relation) -> bool {
    // SAFETY: the caller's contract; check_enable_rls reads the catalogs.
    unsafe {
        (*(*rel).rd_rel).relrowsecurity
            && pg_sys::check_enable_rls((*rel).rd_id, pg_sys::InvalidOid, false)
                == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

/// A column [`update_row`] sets: its attribute number, the type its value is
/// of, the value (`None`: NULL).
pub struct Set {
    pub att: i16,
    pub type_oid: pg_sys::Oid,
    pub value: Option<pg_sys::Datum>,
}

/// Write a new version of `target`, a row of `table` read in this
/// transaction, with the columns in `set` replaced (each of exactly its
/// column's type, without a type modifier or a domain, or the table needs
/// SQL's coercion: [`Outcome::NotPlain`]), as `UPDATE ... WHERE ctid = ...` would: NOT NULL and
/// CHECK constraints checked, index entries added, the command counter
/// advanced so the rest of the transaction sees it. A concurrent update
/// makes it [`Outcome::Changed`] with nothing written.
pub fn update_row(table: pg_sys::Oid, target: &Target, set: &[Set]) -> Result<Outcome> {
    with_plan(table, c"UPDATE", |rel, plan| {
        if !plan.updatable {
            return Ok(Outcome::NotPlain);
        }
        // SAFETY: `rel` is open with RowExclusiveLock, `plan` is its plan and `target` one of
        // its rows.
        unsafe { update_with(rel, plan, target, set) }
    })
}

/// Delete `target`, a row of `table` read in this transaction, as `DELETE
/// ... WHERE ctid = ...` would, when [`Plan::deletable`]: the caller deletes
/// the row's secret (the work of its `delete_row_secrets` trigger). A
/// concurrent update or delete makes it [`Outcome::Changed`], nothing deleted.
pub fn delete_row(table: pg_sys::Oid, target: &Target) -> Result<Outcome> {
    with_plan(table, c"DELETE", |rel, plan| {
        if !plan.deletable {
            return Ok(Outcome::NotPlain);
        }
        // SAFETY: `rel` is open with RowExclusiveLock; `target` is a copied row of it, whose
        // tid heap_delete finds unchanged or reports changed.
        unsafe {
            pg_sys::CheckCmdReplicaIdentity(rel, pg_sys::CmdType::CMD_DELETE);
            let mut tid = (*target.tuple).t_self;
            let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
            match pg_sys::heap_delete(
                rel,
                &mut tid,
                pg_sys::GetCurrentCommandId(true),
                std::ptr::null_mut(),
                true,
                &mut tmfd,
                false,
            ) {
                pg_sys::TM_Result::TM_Ok => {
                    pg_sys::CommandCounterIncrement();
                    Ok(Outcome::Done)
                }
                pg_sys::TM_Result::TM_SelfModified
                | pg_sys::TM_Result::TM_Updated
                | pg_sys::TM_Result::TM_Deleted => Ok(Outcome::Changed),
                other => Err(Error::Internal(format!(
                    "unexpected result {other} deleting a row"
                ))),
            }
        }
    })
}

/// # Safety
/// `rel` is open with RowExclusiveLock; `plan` is its plan; `target` a row of it.
unsafe fn update_with(
    rel: pg_sys::Relation,
    plan: &Plan,
    target: &Target,
    set: &[Set],
) -> Result<Outcome> {
    // SAFETY: the caller's contract. `values`/`nulls` have one entry per attribute and are
    // filled by heap_deform_tuple from the copied old row (whose storage outlives their use);
    // attribute numbers in `set` are checked against natts; the new tuple and its slot are
    // freed before returning.
    unsafe {
        let relid = (*rel).rd_id;
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        for c in set {
            let i = (c.att - 1) as usize;
            if c.att < 1 || i >= natts {
                return Err(Error::Internal(format!("no attribute {} to update", c.att)));
            }
            let attr = attribute(desc, i);
            if attr.attisdropped || attr.atttypid != c.type_oid || attr.atttypmod != -1 {
                return Ok(Outcome::NotPlain);
            }
        }
        if let Some(a) = plan.touched {
            let attr = attribute(desc, (a - 1) as usize);
            if attr.atttypid != pg_sys::TIMESTAMPTZOID {
                return Ok(Outcome::NotPlain);
            }
        }
        let mut changed: Vec<i16> = set.iter().map(|c| c.att).collect();
        changed.extend(plan.touched);
        if changed.iter().any(|a| plan.key_columns.contains(a)) {
            return Ok(Outcome::NotPlain);
        }
        pg_sys::CheckCmdReplicaIdentity(rel, pg_sys::CmdType::CMD_UPDATE);
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        pg_sys::heap_deform_tuple(target.tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let now = pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        for (att, value) in set
            .iter()
            .map(|c| (c.att, c.value))
            .chain(plan.touched.map(|a| (a, Some(now))))
        {
            let i = (att - 1) as usize;
            values[i] = value.unwrap_or(pg_sys::Datum::from(0));
            nulls[i] = value.is_none();
        }
        // every NOT NULL column, as ExecConstraints checks them
        for (i, null) in nulls.iter().enumerate() {
            let attr = attribute(desc, i);
            if *null && attr.attnotnull && !attr.attisdropped {
                return Err(Error::NullViolation(format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    CStr::from_ptr(attr.attname.data.as_ptr()).to_string_lossy(),
                    CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy()
                )));
            }
        }
        let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        (*tuple).t_tableOid = relid;
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsHeapTuple);
        pg_sys::ExecStoreHeapTuple(tuple, slot, false);
        let out = write(rel, plan, target, tuple, slot, &changed);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::heap_freetuple(tuple);
        out
    }
}

/// Check, write and index `tuple` (also in `slot`) as the new version of `target`.
///
/// # Safety
/// As [`update_with`]; `tuple` is a new row of `rel`, stored in `slot`.
unsafe fn write(
    rel: pg_sys::Relation,
    plan: &Plan,
    target: &Target,
    tuple: pg_sys::HeapTuple,
    slot: *mut pg_sys::TupleTableSlot,
    changed: &[i16],
) -> Result<Outcome> {
    // SAFETY: the caller's contract; the expression states belong to `plan`, whose memory is not
    // freed while InUse is held; indexes are opened and closed here with RowExclusiveLock kept.
    unsafe {
        if !plan.checks.is_empty() {
            let _in_use = InUse::enter((*rel).rd_id, &plan.busy);
            (*plan.econtext).ecxt_scantuple = slot;
            let failed = plan
                .checks
                .iter()
                .find(|(state, _)| !pg_sys::ExecCheck(*state, plan.econtext));
            let failed = failed.map(|(_, name)| name.clone());
            (*plan.econtext).ecxt_scantuple = std::ptr::null_mut();
            pg_sys::MemoryContextReset((*plan.econtext).ecxt_per_tuple_memory);
            if let Some(name) = failed {
                return Err(Error::CheckViolation(format!(
                    "new row for relation \"{}\" violates check constraint \"{name}\"",
                    CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy()
                )));
            }
        }
        let mut otid = (*target.tuple).t_self;
        let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
        let mut lockmode: pg_sys::LockTupleMode::Type = 0;
        let cid = pg_sys::GetCurrentCommandId(true);
        #[cfg(not(feature = "pg18"))]
        let result = pg_sys::heap_update(
            rel,
            &mut otid,
            tuple,
            cid,
            std::ptr::null_mut(),
            true,
            &mut tmfd,
            &mut lockmode,
        );
        #[cfg(feature = "pg18")]
        let mut update_indexes: pg_sys::TU_UpdateIndexes::Type = pg_sys::TU_UpdateIndexes::TU_None;
        #[cfg(feature = "pg18")]
        let result = pg_sys::heap_update(
            rel,
            &mut otid,
            tuple,
            cid,
            std::ptr::null_mut(),
            true,
            &mut tmfd,
            &mut lockmode,
            &mut update_indexes,
        );
        match result {
            pg_sys::TM_Result::TM_Ok => {}
            pg_sys::TM_Result::TM_SelfModified
            | pg_sys::TM_Result::TM_Updated
            | pg_sys::TM_Result::TM_Deleted => return Ok(Outcome::Changed),
            other => {
                return Err(Error::Internal(format!(
                    "unexpected result {other} updating a row"
                )))
            }
        }
        #[cfg(not(feature = "pg18"))]
        let (indexed, summarizing_only) = (
            (*(*tuple).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE == 0,
            false,
        );
        #[cfg(feature = "pg18")]
        let (indexed, summarizing_only) = (
            update_indexes != pg_sys::TU_UpdateIndexes::TU_None,
            update_indexes == pg_sys::TU_UpdateIndexes::TU_Summarizing,
        );
        if indexed {
            insert_index_entries(rel, plan, tuple, slot, changed, summarizing_only);
        }
        pg_sys::CommandCounterIncrement();
        Ok(Outcome::Done)
    }
}

/// The new version's entries in every ready index (summarizing ones only, if so told).
///
/// # Safety
/// As [`write`], after a successful `heap_update` of `tuple`.
unsafe fn insert_index_entries(
    rel: pg_sys::Relation,
    plan: &Plan,
    tuple: pg_sys::HeapTuple,
    slot: *mut pg_sys::TupleTableSlot,
    changed: &[i16],
    summarizing_only: bool,
) {
    const LOCK: pg_sys::LOCKMODE = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    let mut values = [pg_sys::Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
    let mut nulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
    // SAFETY: the caller's contract; each index is a plain one of `rel` (the plan), so
    // FormIndexDatum reads only the slot's columns (no expression state needs an EState).
    unsafe {
        for &oid in &plan.indexes {
            let idx = pg_sys::index_open(oid, LOCK);
            let index = &*(*idx).rd_index;
            #[cfg(feature = "pg18")]
            let skip = summarizing_only && !(*(*idx).rd_indam).amsummarizing;
            #[cfg(not(feature = "pg18"))]
            let skip = summarizing_only;
            if index.indisready && !skip {
                let info = pg_sys::BuildIndexInfo(idx);
                pg_sys::FormIndexDatum(
                    info,
                    slot,
                    std::ptr::null_mut(),
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                );
                let columns = &(&*info).ii_IndexAttrNumbers[..(*info).ii_NumIndexAttrs as usize];
                let unchanged = !columns.iter().any(|c| changed.contains(c));
                pg_sys::index_insert(
                    idx,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                    &mut (*tuple).t_self,
                    rel,
                    if index.indisunique {
                        pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
                    } else {
                        pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
                    },
                    unchanged,
                    info,
                );
                // 17 and later: an index AM may keep state (BRIN keeps a pinned buffer)
                #[cfg(feature = "pg18")]
                pg_sys::index_insert_cleanup(idx, info);
            }
            pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}
