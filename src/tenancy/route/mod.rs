//! Calls routed to the node that holds their business (Citus).
//!
//! Once `integrations.distribute()` has sharded the tables by business, every
//! row an RPC with a `p_business_id` touches is on one worker. Run on the
//! coordinator, each of the call's statements is a round trip to that worker
//! (four for a secret read); routed, the whole call is one statement there.
//! Citus's own routing (distributed functions) cannot carry PostgREST's calls:
//! it connects to the worker as the calling role (Supabase's API roles cannot
//! log in), leaves the JWT claims behind, and delegates only a bare
//! `SELECT f(...)` outside a transaction block.
//!
//! So the call routes itself. On the coordinator, as the function's owner:
//!
//! ```sql
//! SELECT integrations.route_call($1, $2) FROM <tenant table> WHERE <id> = $3
//! ```
//!
//! Citus's fast path sends that whole statement to the shard of business $3,
//! and `route_call` runs there: it takes on the caller (the role, as
//! PostgREST's `SET LOCAL ROLE`, and the signed-in user of its claims), runs
//! the function locally and answers with its rows. $2 is the call — caller
//! and arguments — sealed by the active data key for this function
//! ([`crate::core::crypto::DataKey::seal_call`]): Citus writes parameters into
//! the statement text it sends, and a failed statement is logged with its
//! text, so an API key passed to `set_*` must not be there in the clear. The
//! worker opens calls for superusers only (the owner's connection).
//!
//! Not routed, and run where they are called as before: calls with a NULL
//! business, calls from triggers and restricted operations, calls already on
//! a worker (inside a routed call or a Citus task), and a business the tenant
//! table does not have (no row comes back; the call then answers here as one
//! node would).

pub mod message;

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::IntoDatum;
use rustc_hash::FxHashMap as HashMap;

use crate::core::crypto;
use crate::core::error::{Error, Result};
use crate::core::gucs;
use crate::core::keyring;
use crate::pg::fcall::{self, Call};
use crate::pg::sharded;
use crate::pg::spi::{self, Spi};
use crate::pg::spi::{check, connect};
use crate::sql_function;
use crate::tenancy::caller;

/// What routing needs to know of one function, read from pg_proc once per
/// backend.
struct Route {
    /// `schema.name(types)`, as regprocedure prints it with the search path
    /// pinned: the name the coordinator sends and the worker looks up.
    signature: String,
    business_arg: usize,
    args: Vec<TypeIo>,
    retset: bool,
    /// For a function of one row (not a set): its row type, made from the
    /// columns the worker answers.
    row_type: Option<pg_sys::Oid>,
    /// Result columns (the live columns of a row type; one for a function of
    /// one value, none for void).
    results: Vec<TypeIo>,
    /// `SELECT * FROM f($1, ...)` or `SELECT f($1, ...)`: the call on the worker.
    local_call: CString,
    kept_local: Cell<pg_sys::SPIPlanPtr>,
    /// VOLATILE: the call may write.
    volatile: bool,
    /// The coordinator's statements for a tenant table (its OID), plain and
    /// counted as a write on the shard ([`counted_as_write`]), each prepared
    /// and kept on first use (a new tenant table leaves the old plans behind).
    forward: RefCell<[Option<(pg_sys::Oid, pg_sys::SPIPlanPtr)>; 2]>,
}

/// How values of a type travel: its output and input functions, text or binary.
#[derive(Clone, Copy)]
struct TypeIo {
    oid: pg_sys::Oid,
    text: bool,
    output: pg_sys::Oid,
    input: pg_sys::Oid,
    ioparam: pg_sys::Oid,
}

/// What is known of a function: the hash of its pg_proc entry (which
/// invalidations name) and its route, if it has one.
type Known = (u32, Option<Rc<Route>>);

thread_local! {
    /// By function OID; `None` for a function that is not routed.
    /// With the hash of the function's pg_proc entry, which invalidations name.
    static ROUTES: RefCell<HashMap<pg_sys::Oid, Known>> = RefCell::new(HashMap::default());
    /// Routed calls running in this backend: calls inside them stay here.
    static ROUTED_HERE: Cell<u32> = const { Cell::new(0) };
    /// The signed-in user of the routed call running here (`Some(None)`: none).
    static CARRIED_USER: Cell<Option<Option<[u8; 16]>>> = const { Cell::new(None) };
    /// This backend is sending a routed call: one that arrives back here (the
    /// business's shard is local) runs in the calling function instead.
    static SENDING: Cell<bool> = const { Cell::new(false) };
    /// Function OIDs by the signature a routed call names (forgotten with ROUTES).
    static SIGNATURES: RefCell<HashMap<String, pg_sys::Oid>> = RefCell::new(HashMap::default());
    /// `integrations.routed_writes` (InvalidOid before 0.7.0), once looked up.
    static ROUTED_WRITES: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
    /// `integrations.secrets`, once looked up (forgotten with ROUTES).
    static SECRETS: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

fn secrets_relid() -> Result<pg_sys::Oid> {
    let known = SECRETS.with(Cell::get);
    if known != pg_sys::InvalidOid {
        return Ok(known);
    }
    let relid = crate::pg::direct::relid(c"integrations", c"secrets")?;
    SECRETS.with(|s| s.set(relid));
    Ok(relid)
}

/// Forget what is known of functions (their pg_proc rows changed).
///
/// # Safety
/// Called by PostgreSQL only, as the syscache invalidation callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call; it touches no catalog.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, hash: u32) {
    // Only the functions named (0: all): any role can change pg_proc, with a
    // function of its own, and each forgotten route leaves its kept plans
    // behind (a few kilobytes; our functions change on upgrades only).
    let mut forgotten = Vec::new();
    ROUTES.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.retain(|oid, (h, _)| {
                let keep = hash != 0 && *h != hash;
                if !keep {
                    forgotten.push(*oid);
                }
                keep
            });
        }
    });
    if forgotten.is_empty() {
        return;
    }
    // our functions changed: the extension may have been dropped and made again
    SECRETS.with(|s| s.set(pg_sys::InvalidOid));
    ROUTED_WRITES.with(|s| s.set(None));
    SIGNATURES.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.retain(|_, oid| !forgotten.contains(oid));
        }
    });
}

pub fn init() {
    // SAFETY: called once from _PG_init; the callback is a #[pg_guard] fn that lives as long as
    // the library.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(proc_callback),
            pg_sys::Datum::from(0),
        );
    }
    fcall::set_router(forward);
}

/// Run `call` on the worker that holds its business, when this database is
/// distributed and the call can be routed: `Some(result)`; `None` runs it here.
pub fn forward(call: &Call) -> Result<Option<pg_sys::Datum>> {
    if ROUTED_HERE.with(Cell::get) > 0 {
        return Ok(None);
    }
    // first what needs no catalog: a trigger on a shard may not read a table
    if in_citus_task() {
        return Ok(None);
    }
    // Until distribute() has moved the extension's tables, their rows are
    // here (a distributed tenant table alone is not enough). One cached
    // lookup on a single node.
    let Ok(secrets) = secrets_relid() else {
        return Ok(None);
    };
    if !sharded::is_citus_table(secrets)? {
        return Ok(None);
    }
    // routed or not, the call's statements reach the workers as the owner
    sharded::refuse_propagated_settings()?;
    if caller::restricted() {
        return Ok(None);
    }
    // a tenant table that is not as it should be: the call runs here and says so
    let Ok(Some((tenant, tenant_index))) = super::tenant_relation() else {
        return Ok(None);
    };
    if !sharded::is_citus_table(tenant)? {
        return Ok(None);
    }
    let Some(route) = route_of(call.fn_oid())? else {
        return Ok(None);
    };
    let Some(business) = call.datum(route.business_arg) else {
        return Ok(None);
    };
    let message = message::Call {
        role: caller::role_name(caller::caller()).to_string(),
        user: super::current_user_id().map(|u| *u.as_bytes()),
        owner_reads: gucs::owner_can_read_secrets(),
        args: route
            .args
            .iter()
            .enumerate()
            .map(|(i, t)| call.datum(i).map(|d| send(t, d)))
            .collect(),
    };
    // the cached key without an SPI connection: most calls find it
    let key = match keyring::cached_active_key() {
        Some(k) => k,
        None => Spi::connect_mut(keyring::active_key)?,
    };
    let mut plain = message.encode();
    drop(message);
    let sealed = key
        .seal_call(route.signature.as_bytes(), std::mem::take(&mut plain))
        .map_err(|e| Error::Internal(format!("sealing a routed call failed: {e}")))?;
    struct Sent;
    impl Drop for Sent {
        fn drop(&mut self) {
            SENDING.with(|s| s.set(false));
        }
    }
    SENDING.with(|s| s.set(true));
    let sent = Sent;
    let reply = spi::pinned(|| run_forward(&route, tenant, tenant_index, &sealed, business));
    drop(sent);
    let Some(reply) = reply? else {
        return Ok(None);
    };
    // a secret read's answer: wiped when dropped
    let rows = zeroize::Zeroizing::new(
        message::decode_rows(&reply).map_err(|e| Error::Internal(e.to_string()))?,
    );
    if route.retset {
        call.begin_rows();
        let desc = call.result_desc();
        // SAFETY: the result set's descriptor, valid for the rest of the call.
        let (live, types) = unsafe { live_columns(desc) };
        let io = io_for(&types, &route.results);
        for row in rows.iter() {
            let (values, nulls) = receive_row(&io, row)?;
            let (mut values, mut nulls) = fcall::spread_over_live(&live, &values, &nulls);
            call.put_row(&mut values, &mut nulls);
        }
        return Ok(Some(fcall::void()));
    }
    if let Some(row_type) = route.row_type {
        // SELECT * FROM f(...) of a function of one row: a NULL row comes back as
        // a row of NULLs, and goes back to NULL
        let Some(row) = rows.first() else {
            return Ok(Some(call.null()));
        };
        if row.iter().all(Option::is_none) {
            return Ok(Some(call.null()));
        }
        return Ok(Some(form_row(row_type, row, &route.results)?));
    }
    let Some(result) = route.results.first() else {
        return Ok(Some(fcall::void()));
    };
    match rows.first().and_then(|r| r.first()) {
        Some(Some(bytes)) => Ok(Some(receive(result, bytes)?)),
        Some(None) => Ok(Some(call.null())),
        None => Err(Error::Internal("a routed call answered no value".into())),
    }
}

/// On a distributed database, outside Citus's own backends: fail if this
/// transaction propagates SET commands to the workers, under which the
/// owner's statements there would run ([`sharded::refuse_propagated_settings`]).
/// For the privileged calls that do not route.
pub fn refuse_propagated_settings() -> Result<()> {
    if ROUTED_HERE.with(Cell::get) > 0 || in_citus_task() {
        return Ok(());
    }
    let Ok(secrets) = secrets_relid() else {
        return Ok(());
    };
    if !sharded::is_citus_table(secrets)? {
        return Ok(());
    }
    sharded::refuse_propagated_settings()
}

/// The signed-in user of the routed call running in this backend, if one is:
/// `Some(None)` for a call without one.
pub fn carried_user() -> Option<Option<pgrx::Uuid>> {
    CARRIED_USER
        .with(Cell::get)
        .map(|u| u.map(pgrx::Uuid::from_bytes))
}

/// Whether the extension's tables are distributed and this backend is not
/// one of Citus's on a worker: then what a call leaves on the workers (their
/// queued audit records) is reached from here with [`on_every_worker`].
pub fn coordinates_workers() -> Result<bool> {
    Ok(!in_citus_task()
        && ROUTED_HERE.with(Cell::get) == 0
        && sharded::is_citus_table(secrets_relid()?)?)
}

/// Run `sql` (a statement returning one boolean) in this database on every
/// worker, as the current user: whether it returned true on all of them.
pub fn on_every_worker(sql: &str) -> Result<bool> {
    spi::pinned(|| {
        Spi::connect(|c| -> Result<bool> {
            let rows = c.select(
                "SELECT coalesce(bool_and(success AND result = 't'), true) FROM run_command_on_workers($1)",
                Some(1),
                &[sql.into()],
            )?;
            Ok(rows
                .into_iter()
                .next()
                .map(|r| r.get::<bool>(1))
                .transpose()?
                .flatten()
                .unwrap_or(false))
        })
    })
}

/// How Citus names the connections it opens to a node (its
/// `connection_management.h`): tasks and delegated calls, the rebalancer,
/// `run_command_on_workers`, shard moves.
const CITUS_CONNECTIONS: [&[u8]; 4] = [
    b"citus_internal gpid=",
    b"citus_rebalancer gpid=",
    b"citus_run_command gpid=",
    b"citus_shard_",
];

/// Whether this backend is one Citus opened (a task on a shard, a call it
/// delegated, a command it runs on every worker): the call is where it was
/// sent, and runs here. (A client naming itself so only loses routing.)
fn in_citus_task() -> bool {
    // SAFETY: application_name is the setting's variable, a NUL-terminated string the GUC
    // machinery keeps valid while we read it (or NULL, checked). Read directly: looking the
    // setting up by name (GetConfigOption) was 4% of a secret read, which asks on every call.
    unsafe {
        let v = pg_sys::application_name;
        !v.is_null() && {
            let name = CStr::from_ptr(v).to_bytes();
            CITUS_CONNECTIONS.iter().any(|p| name.starts_with(p))
        }
    }
}

/// The route of function `fn_oid`, or `None` if it is not routed: only the
/// `public` RPCs implemented here that take a `uuid` `p_business_id` among
/// their leading input arguments.
fn route_of(fn_oid: pg_sys::Oid) -> Result<Option<Rc<Route>>> {
    if let Some((_, known)) = ROUTES.with(|r| r.borrow().get(&fn_oid).cloned()) {
        return Ok(known);
    }
    let route = spi::pinned(|| load_route(fn_oid))?.map(Rc::new);
    // SAFETY: hashes the OID as the syscache does for this cache's invalidations; no lookup.
    let hash = unsafe {
        pg_sys::GetSysCacheHashValue(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(fn_oid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    };
    ROUTES.with(|r| r.borrow_mut().insert(fn_oid, (hash, route.clone())));
    Ok(route)
}

const ROUTE_SQL: &str = "\
SELECT p.oid::regprocedure::text, quote_ident(n.nspname) || '.' || quote_ident(p.proname), \
       (SELECT x.o - 1 FROM unnest(p.proargnames) WITH ORDINALITY x(name, o) WHERE x.name = 'p_business_id')::int4, \
       p.proargtypes::oid[], p.proretset, CASE WHEN t.typrelid <> 0 THEN p.prorettype END, p.provolatile = 'v', \
       CASE WHEN p.proallargtypes IS NOT NULL THEN \
              (SELECT array_agg(x.t ORDER BY x.o) FROM unnest(p.proallargtypes, p.proargmodes::text[]) WITH ORDINALITY x(t, m, o) WHERE x.m IN ('o', 'b', 't')) \
            WHEN t.typrelid <> 0 THEN \
              (SELECT array_agg(a.atttypid ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) \
            WHEN p.prorettype = 'void'::regtype THEN '{}'::oid[] \
            ELSE ARRAY[p.prorettype] END, \
       n.nspname = 'public' AND l.lanname = 'c' AND p.prorettype <> 'trigger'::regtype \
         AND (p.proretset OR p.prorettype <> 'record'::regtype) \
         AND EXISTS (SELECT FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' \
                        AND e.extname = 'pg_integrations') \
         AND (p.proargmodes IS NULL OR NOT EXISTS (SELECT FROM unnest(p.proargmodes[1:p.pronargs]) m WHERE m <> 'i')) \
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
  JOIN pg_type t ON t.oid = p.prorettype JOIN pg_language l ON l.oid = p.prolang \
 WHERE p.oid = $1";

fn load_route(fn_oid: pg_sys::Oid) -> Result<Option<Route>> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<Vec<pg_sys::Oid>>,
        Option<bool>,
        Option<pg_sys::Oid>,
        Option<bool>,
        Option<Vec<pg_sys::Oid>>,
        Option<bool>,
    );
    let row: Option<Row> = Spi::connect(|c| -> Result<Option<Row>> {
        let rows = c.select(ROUTE_SQL, Some(1), &[fn_oid.into()])?;
        let Some(r) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some((
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        )))
    })?;
    let Some((
        Some(signature),
        Some(name),
        Some(position),
        Some(arg_types),
        Some(retset),
        row_type,
        Some(volatile),
        results,
        Some(true),
    )) = row
    else {
        return Ok(None);
    };
    let business_arg = position as usize;
    if position < 0 || arg_types.get(business_arg) != Some(&pg_sys::UUIDOID) {
        return Ok(None);
    }
    let placeholders: Vec<String> = (1..=arg_types.len()).map(|i| format!("${i}")).collect();
    let local_call = if retset || row_type.is_some() {
        format!("SELECT * FROM {name}({})", placeholders.join(", "))
    } else {
        format!("SELECT {name}({})", placeholders.join(", "))
    };
    Ok(Some(Route {
        signature,
        business_arg,
        args: arg_types.iter().map(|t| type_io(*t)).collect(),
        retset,
        row_type: if retset { None } else { row_type },
        results: results
            .unwrap_or_default()
            .iter()
            .map(|t| type_io(*t))
            .collect(),
        local_call: CString::new(local_call).expect("no NUL in quoted names"),
        kept_local: Cell::new(std::ptr::null_mut()),
        volatile,
        forward: RefCell::new([None, None]),
    }))
}

fn type_io(oid: pg_sys::Oid) -> TypeIo {
    let mut io = TypeIo {
        oid,
        text: false,
        output: pg_sys::InvalidOid,
        input: pg_sys::InvalidOid,
        ioparam: pg_sys::InvalidOid,
    };
    // SAFETY: catalog lookups by type OID that write into the locals; a type without the I/O
    // functions asked for raises an error (none of the RPCs' types lacks them).
    unsafe {
        let element = pg_sys::get_element_type(oid);
        let base = if element == pg_sys::InvalidOid {
            oid
        } else {
            element
        };
        let mut category: std::ffi::c_char = 0;
        let mut preferred = false;
        pg_sys::get_type_category_preferred(base, &mut category, &mut preferred);
        // Binary forms of strings (text, JSON, enums, and arrays or rows of them)
        // are in the session's client_encoding, which each end sets as it likes;
        // text forms of times and numbers depend on DateStyle, TimeZone and
        // extra_float_digits. So: numbers, times, booleans and UUIDs travel in
        // binary, everything else as the server-encoded text of its output function.
        io.text = !(matches!(category as u8, b'B' | b'D' | b'N' | b'T') || base == pg_sys::UUIDOID);
        let mut varlena = false;
        if io.text {
            pg_sys::getTypeOutputInfo(oid, &mut io.output, &mut varlena);
            pg_sys::getTypeInputInfo(oid, &mut io.input, &mut io.ioparam);
        } else {
            pg_sys::getTypeBinaryOutputInfo(oid, &mut io.output, &mut varlena);
            pg_sys::getTypeBinaryInputInfo(oid, &mut io.input, &mut io.ioparam);
        }
    }
    io
}

/// `datum` (of type `t`) as it travels: see [`type_io`].
fn send(t: &TypeIo, datum: pg_sys::Datum) -> Vec<u8> {
    // SAFETY: datum is a value of type t (an argument of the declared type, or a column of
    // that type); the output function returns a palloc'd C string, the send function a
    // palloc'd bytea, each read and freed here.
    unsafe {
        if t.text {
            let c = pg_sys::OidOutputFunctionCall(t.output, datum);
            let bytes = CStr::from_ptr(c).to_bytes().to_vec();
            pg_sys::pfree(c.cast());
            return bytes;
        }
        let b = pg_sys::OidSendFunctionCall(t.output, datum);
        let bytes = varlena_bytes(b.cast());
        pg_sys::pfree(b.cast());
        bytes
    }
}

/// # Safety
/// `v` points at a detoasted varlena.
unsafe fn varlena_bytes(v: *const pg_sys::varlena) -> Vec<u8> {
    // SAFETY: the caller's contract; the length comes from its header.
    unsafe {
        let len = pgrx::varsize_any_exhdr(v);
        std::slice::from_raw_parts(pgrx::vardata_any(v) as *const u8, len).to_vec()
    }
}

/// A value of type `t` from what [`send`] made, in the current memory context.
fn receive(t: &TypeIo, bytes: &[u8]) -> Result<pg_sys::Datum> {
    if t.text {
        let text = CString::new(bytes)
            .map_err(|_| Error::Internal("a routed value with a NUL byte".into()))?;
        // SAFETY: a NUL-terminated string for the type's input function, which raises an
        // error for a malformed value.
        return Ok(unsafe {
            pg_sys::OidInputFunctionCall(t.input, text.as_ptr().cast_mut(), t.ioparam, -1)
        });
    }
    // SAFETY: the buffer is a StringInfo PostgreSQL allocates and NUL-terminates; the receive
    // function reads from it, and what it leaves unread is refused below.
    unsafe {
        let mut buf: pg_sys::StringInfoData = std::mem::zeroed();
        pg_sys::initStringInfo(&mut buf);
        pg_sys::appendBinaryStringInfo(&mut buf, bytes.as_ptr().cast(), bytes.len() as i32);
        let d = pg_sys::OidReceiveFunctionCall(t.input, &mut buf, t.ioparam, -1);
        let whole = buf.cursor == buf.len;
        pg_sys::pfree(buf.data.cast());
        if !whole {
            return Err(Error::Internal(
                "a routed value with bytes left over".into(),
            ));
        }
        Ok(d)
    }
}

/// Which columns of `desc` are live, and their types.
///
/// # Safety
/// `desc` is a valid tuple descriptor.
unsafe fn live_columns(desc: pg_sys::TupleDesc) -> (Vec<bool>, Vec<pg_sys::Oid>) {
    // SAFETY: the caller's contract; read through PgTupleDesc (its layout differs between 15
    // and 18) without copying or releasing it.
    let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked(desc) };
    let live = desc.iter().map(|a| !a.attisdropped).collect();
    let types = desc
        .iter()
        .filter(|a| !a.attisdropped)
        .map(|a| a.atttypid)
        .collect();
    (live, types)
}

/// The I/O of `types`: the cached one when the types are still those it was
/// made for (an ALTER TABLE changes a row type without touching pg_proc).
fn io_for<'a>(types: &[pg_sys::Oid], cached: &'a [TypeIo]) -> std::borrow::Cow<'a, [TypeIo]> {
    if types.len() == cached.len() && types.iter().zip(cached).all(|(t, c)| *t == c.oid) {
        std::borrow::Cow::Borrowed(cached)
    } else {
        std::borrow::Cow::Owned(types.iter().map(|t| type_io(*t)).collect())
    }
}

/// A datum of row type `row_type` from the values of its live columns.
fn form_row(
    row_type: pg_sys::Oid,
    row: &[Option<Vec<u8>>],
    cached: &[TypeIo],
) -> Result<pg_sys::Datum> {
    // SAFETY: lookup_rowtype_tupdesc pins the type's descriptor, released on every path; the
    // values are received as its live columns' current types, in order (receive_row checks
    // the count), spread over every column; the tuple is copied into a datum in the current
    // memory context.
    unsafe {
        let desc = pg_sys::lookup_rowtype_tupdesc(row_type, -1);
        let (live, types) = live_columns(desc);
        let received = receive_row(&io_for(&types, cached), row);
        let out = received.map(|(values, nulls)| {
            let (mut all_values, mut all_nulls) = fcall::spread_over_live(&live, &values, &nulls);
            let tuple =
                pg_sys::heap_form_tuple(desc, all_values.as_mut_ptr(), all_nulls.as_mut_ptr());
            pg_sys::heap_copy_tuple_as_datum(tuple, desc)
        });
        if (*desc).tdrefcount >= 0 {
            pg_sys::DecrTupleDescRefCount(desc);
        }
        out
    }
}

fn receive_row(
    types: &[TypeIo],
    row: &[Option<Vec<u8>>],
) -> Result<(Vec<pg_sys::Datum>, Vec<bool>)> {
    if row.len() != types.len() {
        return Err(Error::Internal(format!(
            "a routed call answered {} columns, not {}",
            row.len(),
            types.len()
        )));
    }
    let mut values = Vec::with_capacity(row.len());
    let mut nulls = Vec::with_capacity(row.len());
    for (t, v) in types.iter().zip(row) {
        match v {
            Some(b) => {
                values.push(receive(t, b)?);
                nulls.push(false);
            }
            None => {
                values.push(pg_sys::Datum::from(0));
                nulls.push(true);
            }
        }
    }
    Ok((values, nulls))
}

/// Send the sealed call through the tenant table's row of `business`: its
/// reply, or `None` if there is no such row.
fn run_forward(
    route: &Route,
    tenant: pg_sys::Oid,
    tenant_index: pg_sys::Oid,
    sealed: &[u8],
    business: pg_sys::Datum,
) -> Result<Option<Vec<u8>>> {
    let plan = forward_plan(route, tenant, tenant_index, counted_as_write(route)?)?;
    let signature = route.signature.as_str().into_datum().expect("text");
    let call = sealed.into_datum().expect("bytea");
    let mut values = [signature, call, business];
    let nulls = [b' ' as std::ffi::c_char; 3];
    // SAFETY: the kept plan takes (text, bytea, uuid), the datums made above; the reply is
    // copied out before SPI_finish frees the result. On a PostgreSQL error the abort
    // releases the SPI connection.
    unsafe {
        connect()?;
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 1);
        let out = check(rc, "routing a call").map(|_| {
            if pg_sys::SPI_processed == 0 {
                return None;
            }
            let tt = pg_sys::SPI_tuptable;
            let mut null = false;
            let d = pg_sys::SPI_getbinval(*(*tt).vals, (*tt).tupdesc, 1, &mut null);
            if null {
                // the call came back to this backend (see SENDING): run it here
                return None;
            }
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            Some(varlena_bytes(v))
        });
        pg_sys::SPI_finish();
        out
    }
}

/// Whether the call goes as a statement Citus counts as a write on the
/// business's shard (see `integrations.routed_writes`): a function that may
/// write, in a read-write transaction block (in autocommit no later statement
/// shares the transaction), once the table is distributed (after an upgrade,
/// from the next `distribute()`).
fn counted_as_write(route: &Route) -> Result<bool> {
    // SAFETY: reads two backend globals.
    let (block, read_only) = unsafe { (pg_sys::IsTransactionBlock(), pg_sys::XactReadOnly) };
    if !route.volatile || !block || read_only {
        return Ok(false);
    }
    let relid = match ROUTED_WRITES.with(Cell::get) {
        Some(r) => r,
        None => {
            let r = crate::pg::direct::relid(c"integrations", c"routed_writes")
                .unwrap_or(pg_sys::InvalidOid);
            ROUTED_WRITES.with(|c| c.set(Some(r)));
            r
        }
    };
    Ok(relid != pg_sys::InvalidOid && sharded::is_citus_table(relid)?)
}

/// The coordinator's statement for the tenant table, prepared once.
fn forward_plan(
    route: &Route,
    tenant: pg_sys::Oid,
    tenant_index: pg_sys::Oid,
    write: bool,
) -> Result<pg_sys::SPIPlanPtr> {
    if let Some((t, plan)) = route.forward.borrow()[write as usize] {
        if t == tenant {
            return Ok(plan);
        }
    }
    let (table, key): (Option<String>, Option<String>) = Spi::connect(|c| -> Result<_> {
        let rows = c.select(
            "SELECT $1::regclass::text, quote_ident(a.attname) FROM pg_index i \
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
              WHERE i.indexrelid = $2",
            Some(1),
            &[tenant.into(), tenant_index.into()],
        )?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("the tenant table's id index is missing".into()))?;
        Ok((r.get(1)?, r.get(2)?))
    })?;
    let (Some(table), Some(key)) = (table, key) else {
        return Err(Error::Internal(
            "the tenant table's id index is missing".into(),
        ));
    };
    let written = if write {
        "WITH written AS (DELETE FROM integrations.routed_writes \
           WHERE business_id OPERATOR(pg_catalog.=) $3 RETURNING 1) "
    } else {
        ""
    };
    let sql = CString::new(format!(
        "{written}SELECT integrations.route_call($1, $2) FROM {table} WHERE {key} OPERATOR(pg_catalog.=) $3"
    ))
    .expect("no NUL in quoted names");
    let mut types = [pg_sys::TEXTOID, pg_sys::BYTEAOID, pg_sys::UUIDOID];
    // SAFETY: prepares and keeps a statement with three parameters of the types given; the
    // kept plan lives for the backend's life (SPI_keepplan), never freed.
    let plan = unsafe {
        connect()?;
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), 3, types.as_mut_ptr());
        let kept = !plan.is_null() && pg_sys::SPI_keepplan(plan) == 0;
        pg_sys::SPI_finish();
        if !kept {
            return Err(Error::Internal("could not prepare a routed call".into()));
        }
        plan
    };
    route.forward.borrow_mut()[write as usize] = Some((tenant, plan));
    Ok(plan)
}

sql_function!(pgi_route_call => route_call, as_invoker);
/// `integrations.route_call(p_function text, p_call bytea)`: a routed call,
/// run on the node that received it (see the module's notes). Superusers only:
/// it acts as the role the sealed call names.
fn route_call(call: &Call) -> Result<pg_sys::Datum> {
    // Sent by this very backend: the business's shard is on this node, and
    // Citus ran the statement here, inside the calling function, whose caller
    // is still in force. NULL tells it to run the call itself.
    if SENDING.with(Cell::get) {
        return Ok(call.null());
    }
    caller::require_superuser("integrations.route_call")?;
    let signature: String = call.required(0, "p_function")?;
    let sealed: Vec<u8> = call.required(1, "p_call")?;
    let oid = match SIGNATURES.with(|m| m.borrow().get(&signature).copied()) {
        Some(oid) => Some(oid),
        None => {
            let oid = spi::pinned(|| {
                Spi::connect(|c| -> Result<Option<pg_sys::Oid>> {
                    let rows = c.select(
                        "SELECT to_regprocedure($1)::oid",
                        Some(1),
                        &[signature.as_str().into()],
                    )?;
                    Ok(rows
                        .into_iter()
                        .next()
                        .map(|r| r.get(1))
                        .transpose()?
                        .flatten())
                })
            })?;
            if let Some(oid) = oid {
                SIGNATURES.with(|m| m.borrow_mut().insert(signature.clone(), oid));
            }
            oid
        }
    };
    let route = match oid {
        Some(oid) => route_of(oid)?.filter(|r| r.signature == signature),
        None => None,
    }
    .ok_or_else(|| Error::InvalidArgument(format!("{signature} is not a call that is routed")))?;
    // SAFETY: the nest level brackets GUC_ACTION_SAVE changes that AtEOXact_GUC(true, level)
    // undoes at the end; on error, the (sub)transaction's abort undoes them (as for a
    // function's SET clause).
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    // SAFETY: GetConfigOption returns NULL for a setting that does not exist (no Citus).
    let nested = unsafe {
        pg_sys::GetConfigOption(
            c"citus.allow_nested_distributed_execution".as_ptr(),
            true,
            false,
        )
    };
    // This runs inside Citus's task on a shard: the call's statements (the
    // keyring's too) reach their tables through Citus again.
    if !nested.is_null() {
        // SAFETY: inside the nest level opened above.
        unsafe { set(c"citus.allow_nested_distributed_execution", c"on") };
    }
    let key_id = crypto::call_key_id(&sealed)
        .map_err(|_| Error::InvalidArgument("p_call is not a sealed call".into()))?;
    // as on the coordinator: the cached key without an SPI connection
    let key = match keyring::cached_data_key(key_id) {
        Some(k) => k,
        None => Spi::connect(|c| keyring::data_key(c, key_id))?,
    };
    let plain = key.open_call(signature.as_bytes(), &sealed).map_err(|_| {
        Error::NotAllowed("a routed call that does not open with its data key".into())
    })?;
    let message =
        message::Call::decode(&plain).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    drop(plain);
    if message.args.len() != route.args.len() {
        return Err(Error::InvalidArgument(format!(
            "a routed call of {signature} with {} arguments",
            message.args.len()
        )));
    }
    let mut values = Vec::with_capacity(route.args.len());
    let mut nulls = Vec::with_capacity(route.args.len());
    for (t, a) in route.args.iter().zip(&message.args) {
        match a {
            Some(b) => {
                values.push(receive(t, b)?);
                nulls.push(b' ' as std::ffi::c_char);
            }
            None => {
                values.push(pg_sys::Datum::from(0));
                nulls.push(b'n' as std::ffi::c_char);
            }
        }
    }
    let user = message
        .user
        .map(|u| pgrx::Uuid::from_bytes(u).to_string())
        .unwrap_or_default();
    let settings: [(&CStr, CString); 4] = [
        // the caller, as PostgREST makes it: SET LOCAL ROLE, then the claims
        (
            c"role",
            CString::new(message.role.as_str())
                .map_err(|_| Error::InvalidArgument("a role name with NUL".into()))?,
        ),
        (
            c"request.jwt.claim.sub",
            CString::new(user).expect("a UUID"),
        ),
        // what the caller's transaction may have propagated here: never read
        // for the user (carried_user), cleared for anything else that looks
        (c"request.jwt.claims", CString::default()),
        (
            c"integrations.owner_can_read_secrets",
            CString::new(if message.owner_reads { "on" } else { "off" }).expect("no NUL"),
        ),
    ];
    for (name, value) in &settings {
        // SAFETY: inside the nest level opened above. Setting `role` checks that the session's
        // user may become it.
        unsafe { set(name, value) };
    }
    ROUTED_HERE.with(|d| d.set(d.get() + 1));
    let outer_user = CARRIED_USER.with(|u| u.replace(Some(message.user)));
    struct Leave(Option<Option<[u8; 16]>>);
    impl Drop for Leave {
        fn drop(&mut self) {
            ROUTED_HERE.with(|d| d.set(d.get().saturating_sub(1)));
            CARRIED_USER.with(|u| u.set(self.0));
        }
    }
    let leave = Leave(outer_user);
    let rows = run_local(&route, &mut values, &nulls);
    drop(leave);
    // SAFETY: closes the nest level opened above, restoring the role and settings.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    let rows = zeroize::Zeroizing::new(rows?);
    Ok(message::encode_rows(&rows).into_datum().expect("bytea"))
}

/// # Safety
/// Inside a transaction, between `NewGUCNestLevel` and `AtEOXact_GUC`.
unsafe fn set(name: &CStr, value: &CStr) {
    // SAFETY: the caller's contract; set_config_option raises an error for a refused value.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// Run the call here; its rows in binary form.
fn run_local(
    route: &Route,
    values: &mut [pg_sys::Datum],
    nulls: &[std::ffi::c_char],
) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
    let mut types: Vec<pg_sys::Oid> = route.args.iter().map(|t| t.oid).collect();
    // SAFETY: the statement takes the arguments' types, the datums received above; the plan
    // is kept for the backend's life; every row is copied out before SPI_finish. On a
    // PostgreSQL error the abort releases the SPI connection.
    unsafe {
        connect()?;
        let mut plan = route.kept_local.get();
        if plan.is_null() {
            plan = pg_sys::SPI_prepare(
                route.local_call.as_ptr(),
                types.len() as i32,
                types.as_mut_ptr(),
            );
            if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                pg_sys::SPI_finish();
                return Err(Error::Internal("could not prepare a routed call".into()));
            }
            route.kept_local.set(plan);
        }
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        let out = check(rc, "running a routed call").map(|_| {
            let tt = pg_sys::SPI_tuptable;
            let natts = (*(*tt).tupdesc).natts;
            let columns: Vec<TypeIo> = (1..=natts)
                .map(|i| type_io(pg_sys::SPI_gettypeid((*tt).tupdesc, i)))
                .collect();
            (0..pg_sys::SPI_processed as usize)
                .map(|r| {
                    let tuple = *(*tt).vals.add(r);
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut null = false;
                            let d = pg_sys::SPI_getbinval(
                                tuple,
                                (*tt).tupdesc,
                                i as i32 + 1,
                                &mut null,
                            );
                            (!null).then(|| send(t, d))
                        })
                        .collect()
                })
                .collect()
        });
        pg_sys::SPI_finish();
        out
    }
}
