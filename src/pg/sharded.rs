//! Tables whose rows are not in the relation itself: Citus tables
//! (distributed, reference, or Citus-local). On a Citus coordinator, a
//! distributed table is an empty shell and its rows are in shards on the
//! workers; a worker's copy is a shell too. The point reads and appends of
//! `direct` would see nothing there, silently, so for these tables they run
//! as SQL through SPI instead, which Citus routes to the shard holding the
//! row (on a worker inside a routed call: the local shard).
//!
//! Which relations are Citus tables is looked up once per relation and
//! backend, and forgotten with the relation's other cached facts on any
//! relcache invalidation (Citus sends one for a table it distributes).
//! Without the citus extension in the database the answer is always no, at
//! the cost of one hash lookup per read.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::rc::Rc;

use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

use super::spi::{check, connect};
use crate::core::error::{Error, Result};

thread_local! {
    static CITUS_TABLES: RefCell<HashMap<pg_sys::Oid, bool>> = RefCell::new(HashMap::default());
    /// SQL made for a (table, index, number of keys), or a table's INSERT.
    static QUERIES: RefCell<HashMap<(pg_sys::Oid, pg_sys::Oid, usize), Rc<Query>>> = RefCell::new(HashMap::default());
}

/// Forget what is cached about `relid` (all relations for InvalidOid).
pub fn forget_relation(relid: pg_sys::Oid) {
    let _ = CITUS_TABLES.with(|m| {
        m.try_borrow_mut().map(|mut m| {
            if relid == pg_sys::InvalidOid {
                m.clear()
            } else {
                m.remove(&relid);
            }
        })
    });
    let _ = QUERIES.with(|m| {
        m.try_borrow_mut().map(|mut m| {
            if relid == pg_sys::InvalidOid {
                m.clear()
            } else {
                m.retain(|k, _| k.0 != relid && k.1 != relid)
            }
        })
    });
}

/// Citus's `SubXactContext` (13.2, `distributed/transaction_management.h`):
/// the SET LOCAL commands of an enclosing (sub)transaction.
#[repr(C)]
struct SubXactContext {
    sub_id: pg_sys::SubTransactionId,
    set_local_cmds: pg_sys::StringInfo,
    propagated_objects: *mut std::ffi::c_void,
}

/// Where Citus keeps the SET LOCAL commands it replays on every connection it
/// opens to a worker in this transaction: its `activeSetStmts` and
/// `ActiveSubXactContexts()`, found in the loaded citus library.
#[derive(Clone, Copy)]
struct PropagatedSets {
    active: *const pg_sys::StringInfo,
    enclosing: SubXactContexts,
}

/// Citus's `List *ActiveSubXactContexts(void)`.
///
/// # Safety
/// Call it only inside a transaction of a backend that loaded Citus 13.2; the list
/// belongs to Citus and is only read.
type SubXactContexts = unsafe extern "C-unwind" fn() -> *mut pg_sys::List;

thread_local! {
    static PROPAGATED_SETS: std::cell::Cell<Option<PropagatedSets>> = const { std::cell::Cell::new(None) };
}

/// Fail unless Citus would open this transaction's connections to the workers
/// with the session's settings untouched.
///
/// With `citus.propagate_set_commands = 'local'` (any role may set it), every
/// SET LOCAL of a transaction block is replayed on every connection Citus
/// opens to a worker in that transaction, the owner's too: a `search_path`
/// naming the caller's schema first would let a type or operator of theirs
/// shadow the ones in the statements the extension's owner sends (Citus writes
/// `'…'::uuid` and `=` unqualified), and run their code as the owner there.
pub fn refuse_propagated_settings() -> Result<()> {
    let sets = match PROPAGATED_SETS.with(std::cell::Cell::get) {
        Some(s) => s,
        None => {
            // SAFETY: looks two symbols up in the already loaded citus library (NULL when
            // absent, checked); neither is called or read here.
            let (active, enclosing) = unsafe {
                let lib = c"citus";
                (
                    pg_sys::load_external_function(
                        lib.as_ptr(),
                        c"activeSetStmts".as_ptr(),
                        false,
                        std::ptr::null_mut(),
                    ),
                    pg_sys::load_external_function(
                        lib.as_ptr(),
                        c"ActiveSubXactContexts".as_ptr(),
                        false,
                        std::ptr::null_mut(),
                    ),
                )
            };
            if active.is_null() || enclosing.is_null() {
                return Err(Error::NotReady {
                    message: "this build of Citus does not show which SET commands it propagates to the workers".into(),
                    hint: "pg_integrations is tested with Citus 13.2; it refuses to run on a cluster it cannot check.".into(),
                });
            }
            let s = PropagatedSets {
                active: active as *const pg_sys::StringInfo,
                // SAFETY: Citus declares ActiveSubXactContexts as `List *(void)`.
                enclosing: unsafe {
                    std::mem::transmute::<*mut std::ffi::c_void, SubXactContexts>(enclosing)
                },
            };
            PROPAGATED_SETS.with(|c| c.set(Some(s)));
            s
        }
    };
    // SAFETY: `active` is the address of Citus's StringInfo variable (NULL or a live
    // StringInfo of this transaction); ActiveSubXactContexts returns Citus's list of
    // SubXactContext pointers (NIL outside subtransactions), read as Citus 13.2 lays them out.
    let propagated = unsafe {
        let pending = |si: pg_sys::StringInfo| !si.is_null() && (*si).len > 0;
        pending(*sets.active) || {
            let list = (sets.enclosing)();
            let n = if list.is_null() {
                0
            } else {
                (*list).length as usize
            };
            (0..n).any(|i| {
                let ctx = (*(*list).elements.add(i)).ptr_value as *const SubXactContext;
                !ctx.is_null() && pending((*ctx).set_local_cmds)
            })
        }
    };
    if propagated {
        return Err(Error::NotAllowed(
            "permission denied: this transaction propagates SET LOCAL commands to the Citus workers (citus.propagate_set_commands), which the extension's own statements there would run under; call it in a transaction without them".into(),
        ));
    }
    Ok(())
}

/// Whether `relid` is a Citus table, so its rows are reached through SQL only.
pub fn is_citus_table(relid: pg_sys::Oid) -> Result<bool> {
    if let Some(known) = CITUS_TABLES.with(|m| m.borrow().get(&relid).copied()) {
        return Ok(known);
    }
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid.
    let citus = unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) };
    let known = citus != pg_sys::InvalidOid && in_citus_metadata(relid)?;
    CITUS_TABLES.with(|m| m.borrow_mut().insert(relid, known));
    Ok(known)
}

fn in_citus_metadata(relid: pg_sys::Oid) -> Result<bool> {
    super::spi::pinned(|| in_citus_metadata_pinned(relid))
}

fn in_citus_metadata_pinned(relid: pg_sys::Oid) -> Result<bool> {
    let sql = c"SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass";
    let mut types = [pg_sys::REGCLASSOID];
    let mut values = [pg_sys::Datum::from(relid)];
    let nulls = [b' ' as std::ffi::c_char];
    // SAFETY: one read-only statement with one regclass argument, in its own SPI connection;
    // nothing of its result is used after SPI_finish but the row count.
    unsafe {
        connect()?;
        let rc = pg_sys::SPI_execute_with_args(
            sql.as_ptr(),
            1,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            true,
            1,
        );
        let found = pg_sys::SPI_processed > 0;
        pg_sys::SPI_finish();
        check(rc, "looking up the Citus metadata")?;
        Ok(found)
    }
}

/// SQL for one table and index: the columns it reads (attribute numbers in
/// table order), the condition on the index's leading key columns, and the
/// types of its parameters.
struct Query {
    table: String,
    select: CString,
    condition: String,
    columns: Vec<i16>,
    arg_types: Vec<pg_sys::Oid>,
    /// The SELECT's plan, prepared on first use and kept for the backend's
    /// life (a query made again after DDL on the table leaves its old plan
    /// behind, a few kilobytes, rather than free it from an invalidation
    /// callback or at exit).
    kept: std::cell::Cell<pg_sys::SPIPlanPtr>,
}

/// `schema.table`, quoted.
///
/// # Safety
/// `relid` is a relation OID that exists.
unsafe fn qualified_name(relid: pg_sys::Oid) -> Result<String> {
    // SAFETY: the caller's contract; both lookups return NULL for a missing relation (checked).
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if name.is_null() || ns.is_null() {
            return Err(Error::Internal(format!("relation {relid:?} is missing")));
        }
        let q = pg_sys::quote_qualified_identifier(ns, name);
        Ok(CStr::from_ptr(q).to_string_lossy().into_owned())
    }
}

fn quote(name: &CStr) -> String {
    // SAFETY: quote_identifier takes a NUL-terminated name and returns it or a palloc'd copy.
    unsafe {
        CStr::from_ptr(pg_sys::quote_identifier(name.as_ptr()))
            .to_string_lossy()
            .into_owned()
    }
}

/// The live columns of `rel` as (attribute number, quoted name, type).
///
/// # Safety
/// `rel` is open.
unsafe fn live_columns(rel: pg_sys::Relation) -> Vec<(i16, String, pg_sys::Oid)> {
    // SAFETY: the caller's contract: rd_att is the open relation's descriptor, which outlives
    // this borrow (PgTupleDesc::from_pg_unchecked neither copies nor releases it); its layout
    // differs between 15 and 18, which PgTupleDesc knows.
    unsafe {
        let desc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        desc.iter()
            .filter(|a| !a.attisdropped)
            .map(|a| {
                (
                    a.attnum,
                    quote(CStr::from_ptr(a.attname.data.as_ptr())),
                    a.atttypid,
                )
            })
            .collect()
    }
}

/// The query on the first `nkeys` key columns of `index` (at most its key
/// columns, never its INCLUDE ones), made once per backend.
fn query(table: pg_sys::Oid, index: pg_sys::Oid, nkeys: usize) -> Result<Rc<Query>> {
    const LOCK: pg_sys::LOCKMODE = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: both OIDs come from RelInfo; the name is looked up before anything is opened,
    // both are opened with a read's lock (taken first, so a concurrent DDL's invalidation has
    // already reached the cache below) and closed on every path, locks kept.
    unsafe {
        let name = qualified_name(table)?;
        let heap = pg_sys::relation_open(table, LOCK);
        let idx = pg_sys::index_open(index, LOCK);
        let made = (|| {
            if let Some(q) = QUERIES.with(|m| m.borrow().get(&(table, index, nkeys)).cloned()) {
                return Ok(q);
            }
            let key_columns = (*(*idx).rd_index).indnkeyatts as usize;
            if nkeys == 0 || nkeys > key_columns {
                return Err(Error::Internal(format!(
                    "{nkeys} keys on an index with {key_columns} key columns"
                )));
            }
            let columns = live_columns(heap);
            let indkey = &(*(*idx).rd_index).indkey;
            let key_atts = indkey.values.as_slice(indkey.dim1 as usize);
            let mut conditions = Vec::new();
            let mut arg_types = Vec::new();
            for (i, att) in key_atts.iter().take(nkeys).enumerate() {
                let Some((_, column, ty)) = columns.iter().find(|c| c.0 == *att) else {
                    return Err(Error::Internal("an index key is not a column".into()));
                };
                // qualified: the statement runs as the extension's owner
                conditions.push(format!("{column} OPERATOR(pg_catalog.=) ${}", i + 1));
                arg_types.push(*ty);
            }
            let list: Vec<&str> = columns.iter().map(|c| c.1.as_str()).collect();
            let condition = conditions.join(" AND ");
            let q = Rc::new(Query {
                select: CString::new(format!(
                    "SELECT {} FROM {name} WHERE {condition}",
                    list.join(", ")
                ))
                .expect("no NUL in quoted names"),
                table: name.clone(),
                condition,
                columns: columns.iter().map(|c| c.0).collect(),
                arg_types,
                kept: std::cell::Cell::new(std::ptr::null_mut()),
            });
            QUERIES.with(|m| m.borrow_mut().insert((table, index, nkeys), q.clone()));
            Ok(q)
        })();
        pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        made
    }
}

/// The rows of `table` whose `index` columns equal `keys` (datums of the
/// columns' types), each given to `f` as a slot in the table's own layout
/// (dropped columns NULL), until `f` returns `Some`.
pub fn find<T>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &[pg_sys::Datum],
    f: impl FnMut(*mut pg_sys::TupleTableSlot) -> Result<Option<T>>,
) -> Result<Option<T>> {
    // the search path pinned: the statement runs as the extension's owner
    super::spi::pinned(|| find_pinned(table, index, keys, f))
}

fn find_pinned<T>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &[pg_sys::Datum],
    mut f: impl FnMut(*mut pg_sys::TupleTableSlot) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let q = query(table, index, keys.len())?;
    let mut types = q.arg_types.clone();
    let mut values = keys.to_vec();
    let nulls = vec![b' ' as std::ffi::c_char; keys.len()];
    // SAFETY: the key datums match the kept plan's parameter types; the slot and what `f`
    // copies live in the caller's context, past SPI_finish, and SPI rows are read before it;
    // on a PostgreSQL error the abort releases the SPI connection, relation and memory.
    unsafe {
        let heap = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let desc = (*heap).rd_att;
        let natts = (*desc).natts as usize;
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsVirtual);
        let caller = pg_sys::CurrentMemoryContext;
        if let Err(e) = connect() {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            return Err(e);
        }
        let mut plan = q.kept.get();
        if plan.is_null() {
            plan = pg_sys::SPI_prepare(q.select.as_ptr(), types.len() as i32, types.as_mut_ptr());
            if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                pg_sys::SPI_finish();
                pg_sys::ExecDropSingleTupleTableSlot(slot);
                pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
                return Err(Error::Internal(
                    "could not prepare a read of a Citus table".into(),
                ));
            }
            q.kept.set(plan);
        }
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        let mut out = check(rc, "reading a Citus table").map(|_| None);
        if out.is_ok() {
            let tt = pg_sys::SPI_tuptable;
            let n = pg_sys::SPI_processed as usize;
            for r in 0..n {
                let tuple = *(*tt).vals.add(r);
                pg_sys::ExecClearTuple(slot);
                let vals = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
                let isnull = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
                isnull.fill(true);
                for (j, att) in q.columns.iter().enumerate() {
                    let mut null = false;
                    let d = pg_sys::SPI_getbinval(tuple, (*tt).tupdesc, j as i32 + 1, &mut null);
                    vals[(*att - 1) as usize] = d;
                    isnull[(*att - 1) as usize] = null;
                }
                pg_sys::ExecStoreVirtualTuple(slot);
                let spi = pg_sys::MemoryContextSwitchTo(caller);
                let r = f(slot);
                pg_sys::MemoryContextSwitchTo(spi);
                match r {
                    Ok(None) => continue,
                    other => {
                        out = other;
                        break;
                    }
                }
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::SPI_finish();
        pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        out
    }
}

/// `INSERT INTO table (columns) VALUES (...)`, one row per `rows` entry,
/// each pairing attribute numbers with datums of their types (absent: NULL).
pub fn insert(table: pg_sys::Oid, rows: &[Vec<(i16, Option<pg_sys::Datum>)>]) -> Result<()> {
    // the search path pinned: the statement runs as the extension's owner
    super::spi::pinned(|| insert_pinned(table, rows))
}

fn insert_pinned(table: pg_sys::Oid, rows: &[Vec<(i16, Option<pg_sys::Datum>)>]) -> Result<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let atts: Vec<i16> = first.iter().map(|(a, _)| *a).collect();
    // SAFETY: the table is opened to read its columns' names and types, then closed with its
    // lock kept; every row has the same attributes as the first (checked), given as datums of
    // their types, and the statement runs in its own SPI connection.
    unsafe {
        let heap = pg_sys::relation_open(table, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let columns = live_columns(heap);
        pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        let mut names = Vec::new();
        let mut types = Vec::new();
        for a in &atts {
            let Some((_, name, ty)) = columns.iter().find(|c| c.0 == *a) else {
                return Err(Error::Internal(format!("attribute {a} is not a column")));
            };
            names.push(name.clone());
            types.push(*ty);
        }
        let params: Vec<String> = (1..=atts.len()).map(|i| format!("${i}")).collect();
        let sql = CString::new(format!(
            "INSERT INTO {} ({}) VALUES ({})",
            qualified_name(table)?,
            names.join(", "),
            params.join(", ")
        ))
        .expect("no NUL in quoted names");
        connect()?;
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            pg_sys::SPI_finish();
            return Err(Error::Internal("could not prepare an INSERT".into()));
        }
        for row in rows {
            if row.len() != atts.len() || row.iter().zip(&atts).any(|((a, _), b)| a != b) {
                pg_sys::SPI_finish();
                return Err(Error::Internal("rows of different columns".into()));
            }
            let mut values: Vec<pg_sys::Datum> = row
                .iter()
                .map(|(_, d)| d.unwrap_or(pg_sys::Datum::from(0)))
                .collect();
            let nulls: Vec<std::ffi::c_char> = row
                .iter()
                .map(|(_, d)| if d.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
                .collect();
            let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
            if let Err(e) = check(rc, "writing a Citus table") {
                pg_sys::SPI_finish();
                return Err(e);
            }
        }
        pg_sys::SPI_finish();
        Ok(())
    }
}

/// `DELETE FROM table WHERE <index columns> = keys`; whether a row went.
pub fn delete(table: pg_sys::Oid, index: pg_sys::Oid, keys: &[pg_sys::Datum]) -> Result<bool> {
    let q = query(table, index, keys.len())?;
    let delete =
        CString::new(format!("DELETE FROM {} WHERE {}", q.table, q.condition)).expect("no NUL");
    let mut types = q.arg_types.clone();
    let mut values = keys.to_vec();
    let nulls = vec![b' ' as std::ffi::c_char; keys.len()];
    super::spi::pinned(|| {
        // SAFETY: one statement with the key datums as its parameters, of the types it was made
        // with, in its own SPI connection; only the row count is read before SPI_finish.
        unsafe {
            connect()?;
            let rc = pg_sys::SPI_execute_with_args(
                delete.as_ptr(),
                values.len() as i32,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                false,
                0,
            );
            let deleted = pg_sys::SPI_processed > 0;
            pg_sys::SPI_finish();
            check(rc, "deleting from a Citus table")?;
            Ok(deleted)
        }
    })
}
