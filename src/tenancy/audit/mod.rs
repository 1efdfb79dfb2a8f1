//! The audit trail, `integrations.audit_log`: one row per set, delete and
//! secret read, with who did it — never the secret.
//!
//! Two ways a row gets there:
//! - **in the caller's transaction** (every change, and every secret read
//!   when the library is not preloaded): the row is appended straight to the
//!   heap (the table has no indexes, triggers or constraints), so it costs
//!   about a microsecond, commits with the change and vanishes with it;
//! - **through the queue** (secret reads, with `shared_preload_libraries =
//!   'pg_integrations'`): the read copies its record into shared memory
//!   (`queue.rs`) and the database's writer (`writer.rs`) appends the queued
//!   records in batches. The read stays a read: no transaction id, no WAL
//!   flush at commit, and it works in `READ ONLY` transactions. The record
//!   is queued before the secret is returned, so a read whose transaction
//!   rolls back is audited too. A full queue makes the reader wait for room
//!   (`integrations.audit_queue_wait`), then write in its own transaction;
//!   nothing is dropped.

use pgrx::pg_sys;
use pgrx::{IntoDatum, Uuid};

use crate::core::error::{Error, Result};
use crate::core::gucs;
use crate::pg::direct;
use crate::pg::fcall::{self, Call};
use crate::sql_function;
use crate::tenancy::Caller;

pub mod queue;
pub mod writer;

use queue::{Entry, Writer};

const COLUMNS: &[&str] = &[
    "at",
    "actor_user_id",
    "actor_role",
    "business_id",
    "action",
    "kind",
    "provider",
    "target_id",
];

/// What happened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Set,
    Delete,
    ReadSecret,
    /// A row copied in by `integrations.adopt_legacy_integrations()`: never copied again.
    Adopt,
    /// An API key made, revoked or replaced.
    Create,
    Revoke,
    Rotate,
    /// A counted use (a verified API key): queued like a secret read, but
    /// not an audit row: the writer hands it to the usage sink.
    Use,
}

const ACTIONS: [Action; 8] = [
    Action::Set,
    Action::Delete,
    Action::ReadSecret,
    Action::Adopt,
    Action::Create,
    Action::Revoke,
    Action::Rotate,
    Action::Use,
];

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Set => "set",
            Action::Delete => "delete",
            Action::ReadSecret => "read_secret",
            Action::Adopt => "adopt",
            Action::Create => "create",
            Action::Revoke => "revoke",
            Action::Rotate => "rotate",
            Action::Use => "use",
        }
    }
}

/// How secret reads are being audited in this server.
pub fn queued_mode() -> bool {
    queue::shared().is_some()
}

pub fn record(
    caller: &Caller,
    action: Action,
    kind: &str,
    business: &Uuid,
    provider: Option<&str>,
    target: Option<&Uuid>,
) -> Result<()> {
    // SAFETY: reads the running transaction's start time; no pointers involved.
    let at = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    if action == Action::ReadSecret {
        // SAFETY: reads shared recovery state; callable in any backend.
        if unsafe { pg_sys::RecoveryInProgress() } {
            return Err(Error::ReadOnly {
                message: "secret reads are audited, and this server is a hot standby that cannot write the audit log".into(),
                hint: "Read secrets on the primary.".into(),
            });
        }
        if let Some(shared) = queue::shared() {
            let role = caller.role_name();
            if let Some(entry) = entry(at, caller, &role, action, kind, business, provider, target)
            {
                if enqueue(shared, &entry)? {
                    return Ok(());
                }
            }
        }
        // SAFETY: reads a backend-local flag.
        if unsafe { pg_sys::XactReadOnly } {
            return Err(Error::ReadOnly {
                message: "secret reads are audited in integrations.audit_log, which a read-only transaction cannot write".into(),
                hint: if queued_mode() {
                    "The audit queue is full or has no writer: read in a read-write transaction, or see integrations.audit_status().".into()
                } else {
                    "Add pg_integrations to shared_preload_libraries (audited reads then work in read-only transactions), or read in a read-write transaction.".into()
                },
            });
        }
    }
    let rel = direct::rel("integrations", "audit_log", COLUMNS)?;
    direct::append(
        rel.relid,
        &[
            (rel.att("at")?, Some(pg_sys::Datum::from(at))),
            (
                rel.att("actor_user_id")?,
                caller.user_id.and_then(|u| u.into_datum()),
            ),
            (rel.att("actor_role")?, (*caller.role_name()).into_datum()),
            (rel.att("business_id")?, (*business).into_datum()),
            (rel.att("action")?, action.as_str().into_datum()),
            (rel.att("kind")?, kind.into_datum()),
            (rel.att("provider")?, provider.and_then(|p| p.into_datum())),
            (
                rel.att("target_id")?,
                target.and_then(|t| (*t).into_datum()),
            ),
        ],
    )
}

/// Counted uses of one thing (an API key's id) within one clock hour, as the
/// writer hands them on: how many, the last, and where the oldest of them
/// stood in the queue.
#[derive(Clone, Copy)]
pub struct Use {
    pub target: Uuid,
    /// The last of them.
    pub at: pg_sys::TimestampTz,
    pub n: u32,
    /// The queue position of the oldest (what `flush_audit_log` waits for).
    pub since: u64,
}

/// An hour in timestamp units: held uses merge per thing and clock hour.
const HOUR_US: i64 = 3_600_000_000;

/// Where queued uses go, in the writer's transaction: set by the part that
/// counts them (the platform's API keys), which tenancy must not import.
/// Returns how many rows it updated and the uses it could not write yet
/// (their rows were locked by others).
pub type UsageSink = fn(&[Use]) -> Result<(u64, Vec<Use>)>;

static USAGE_SINK: std::sync::OnceLock<UsageSink> = std::sync::OnceLock::new();

type Held = rustc_hash::FxHashMap<(Uuid, i64), Use>;

thread_local! {
    /// In the writer: counted uses taken off the queue and not yet in their
    /// rows, merged per thing and hour (so memory grows with the keys in use,
    /// not with the uses), and when the oldest of them was taken.
    static HELD: std::cell::RefCell<(Held, Option<std::time::Instant>)> =
        std::cell::RefCell::new((Held::default(), None));
}

fn hold(u: Use) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.0.is_empty() {
            h.1 = Some(std::time::Instant::now());
        }
        let hour = u.at.div_euclid(HOUR_US);
        h.0.entry((u.target, hour))
            .and_modify(|e| {
                e.n = e.n.saturating_add(u.n);
                e.at = e.at.max(u.at);
                e.since = e.since.min(u.since);
            })
            .or_insert(u);
    });
}

/// In the writer: whether held uses are due for their rows (`force`: a
/// flush is waited for, or the writer is leaving).
pub fn held_uses_due(force: bool) -> bool {
    HELD.with(|h| {
        let h = h.borrow();
        let interval = std::time::Duration::from_millis(gucs::usage_write_interval_ms() as u64);
        !h.0.is_empty() && (force || h.1.is_some_and(|since| since.elapsed() >= interval))
    })
}

/// In the writer: the queue position before which every use is in its row
/// (`tail` when none is held).
pub fn uses_written_up_to(tail: u64) -> u64 {
    HELD.with(|h| h.borrow().0.values().map(|u| u.since).min().unwrap_or(tail))
}

/// In the writer: how many things' uses are held.
pub fn held_uses_count() -> usize {
    HELD.with(|h| h.borrow().0.len())
}

/// In the writer's transaction: add the held uses to their rows (through the
/// sink, in a subtransaction, so nothing of it stays if it fails). Uses whose
/// rows others hold, or that lost to a lock timeout, a deadlock or a cancel,
/// are held again for the next interval; any other failure is logged and the
/// uses dropped, never retried into a double count. How many rows it updated.
pub fn write_held_uses() -> u64 {
    let uses: Vec<Use> = HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.1 = None;
        std::mem::take(&mut h.0).into_values().collect()
    });
    let Some(sink) = USAGE_SINK.get() else {
        return 0;
    };
    if uses.is_empty() {
        return 0;
    }
    let mut result = (0, Vec::new());
    let written = crate::pg::subxact::run(|| {
        result = sink(&uses)?;
        Ok(())
    });
    match written {
        Ok(()) => {
            let (rows, later) = result;
            later.into_iter().for_each(hold);
            rows
        }
        Err(why) if why.transient => {
            crate::core::error::log(format!(
                "pg_integrations: uses of {} API keys wait for the next interval: {why}",
                uses.len()
            ));
            uses.into_iter().for_each(hold);
            0
        }
        Err(why) => {
            crate::core::error::log(format!(
                "pg_integrations: uses of {} API keys were not counted: {why}",
                uses.len()
            ));
            0
        }
    }
}

/// Register the usage sink; called once from `_PG_init`.
pub fn set_usage_sink(sink: UsageSink) {
    let _ = USAGE_SINK.set(sink);
}

/// Queue a counted use of `target` for the background writer. False when it
/// cannot be queued (not preloaded, a hot standby, no slot or writer, no
/// room within `integrations.audit_queue_wait`): the caller then counts it in
/// its own transaction.
pub fn queue_use(
    caller: &Caller,
    kind: &str,
    business: &Uuid,
    target: &Uuid,
    at: pg_sys::TimestampTz,
) -> Result<bool> {
    let Some(shared) = queue::shared() else {
        return Ok(false);
    };
    // SAFETY: reads shared recovery state; callable in any backend.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Ok(false);
    }
    let role = caller.role_name();
    match entry(
        at,
        caller,
        &role,
        Action::Use,
        kind,
        business,
        None,
        Some(target),
    ) {
        Some(e) => enqueue(shared, &e),
        None => Ok(false),
    }
}

/// The queued form of a record; `None` if a name does not fit (it is then
/// written in the caller's transaction, never cut short).
#[allow(clippy::too_many_arguments)]
fn entry(
    at: pg_sys::TimestampTz,
    caller: &Caller,
    role: &str,
    action: Action,
    kind: &str,
    business: &Uuid,
    provider: Option<&str>,
    target: Option<&Uuid>,
) -> Option<Entry> {
    // SAFETY: Entry is plain data (integers, bools and byte arrays); all-zero is valid.
    let mut e: Entry = unsafe { std::mem::zeroed() };
    e.at = at;
    e.action = ACTIONS.iter().position(|a| *a == action)? as u8;
    e.business.copy_from_slice(business.as_bytes());
    if let Some(u) = caller.user_id {
        e.has_user = true;
        e.user.copy_from_slice(u.as_bytes());
    }
    if let Some(t) = target {
        e.has_target = true;
        e.target.copy_from_slice(t.as_bytes());
    }
    e.kind_len = queue::fill(&mut e.kind, kind)?;
    e.role_len = queue::fill(&mut e.role, role)?;
    if let Some(p) = provider {
        if p.is_empty() {
            return None;
        }
        e.provider_len = queue::fill(&mut e.provider, p)?;
    }
    Some(e)
}

fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Sleep a millisecond on our latch, answering interrupts (a cancelled read
/// returns no secret).
fn nap() {
    // SAFETY: MyLatch is this backend's latch; WL_EXIT_ON_PM_DEATH ends the backend if the
    // postmaster is gone.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            1,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}

/// Make sure the slot has a writer (registering one if none is running or a
/// start was lost). False if none can be started.
fn ensure_writer(shared: &queue::Shared, slot: usize) -> bool {
    {
        let mut l = shared.lock();
        let s = l.slot(slot);
        let lost =
            s.writer == Writer::Starting && now() - s.since > writer::START_TIMEOUT_MS * 1000;
        if s.writer != Writer::Absent && !lost {
            return true;
        }
        s.writer = Writer::Starting;
        s.since = now();
    }
    if writer::start(slot) {
        return true;
    }
    let mut l = shared.lock();
    let s = l.slot(slot);
    if s.writer == Writer::Starting {
        s.writer = Writer::Absent;
    }
    false
}

fn database() -> pg_sys::Oid {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    unsafe { pg_sys::MyDatabaseId }
}

/// Queue `e`; false if it must be written in the caller's transaction (no
/// slot for this database, no writer can start, or no room within the wait).
fn enqueue(shared: &queue::Shared, e: &Entry) -> Result<bool> {
    // The common case under one acquisition of the lock: the database has a
    // slot with a running writer and room. (Three acquisitions cost a read
    // about 0.3 µs.)
    let fast = {
        let mut l = shared.lock();
        match l.slot_for(database()) {
            None => return Ok(false),
            Some(slot) if l.slot(slot).writer == Writer::Running && l.push(slot, e) => {
                let s = l.slot(slot);
                let wake = s.queued() >= queue::CAPACITY / 4;
                Ok(if wake { s.latch } else { std::ptr::null_mut() })
            }
            Some(slot) => Err(slot),
        }
    };
    let slot = match fast {
        Ok(latch) => {
            if !latch.is_null() {
                // SAFETY: a latch in a PGPROC, which stays in shared memory even if its
                // writer has left meanwhile (a stray wake-up is harmless).
                unsafe { pg_sys::SetLatch(latch) };
            }
            return Ok(true);
        }
        Err(slot) => slot,
    };
    if !ensure_writer(shared, slot) {
        return Ok(false);
    }
    let deadline = now() + i64::from(gucs::audit_queue_wait_ms()) * 1000;
    let mut waited = false;
    loop {
        let (pushed, latch) = {
            let mut l = shared.lock();
            if l.slot(slot).database != database() {
                return Ok(false);
            }
            let pushed = l.push(slot, e);
            let s = l.slot(slot);
            if !pushed && !waited {
                s.waits += 1;
            }
            let wake = !pushed || s.queued() >= queue::CAPACITY / 4;
            (pushed, if wake { s.latch } else { std::ptr::null_mut() })
        };
        if !latch.is_null() {
            // SAFETY: a latch in a PGPROC, which stays in shared memory even if its writer has
            // left meanwhile (a stray wake-up is harmless).
            unsafe { pg_sys::SetLatch(latch) };
        }
        if pushed {
            return Ok(true);
        }
        if now() > deadline || !ensure_writer(shared, slot) {
            return Ok(false);
        }
        waited = true;
        nap();
    }
}

/// Append queued records (in the writer's transaction). False if the audit
/// log is gone from this database.
pub fn append_queued(batch: &[Entry], base: u64) -> Result<bool> {
    let use_index = ACTIONS
        .iter()
        .position(|a| *a == Action::Use)
        .map(|i| i as u8);
    if batch.iter().any(|e| Some(e.action) == use_index) {
        for (i, e) in batch.iter().enumerate() {
            if Some(e.action) == use_index {
                hold(Use {
                    target: Uuid::from_bytes(e.target),
                    at: e.at,
                    n: 1,
                    since: base + i as u64,
                });
            }
        }
        let rows: Vec<Entry> = batch
            .iter()
            .filter(|e| Some(e.action) != use_index)
            .copied()
            .collect();
        return if rows.is_empty() {
            Ok(true)
        } else {
            append_rows(&rows)
        };
    }
    append_rows(batch)
}

fn append_rows(batch: &[Entry]) -> Result<bool> {
    let rel = match direct::rel("integrations", "audit_log", COLUMNS) {
        Ok(rel) => rel,
        Err(_) => return Ok(false),
    };
    let atts = [
        rel.att("at")?,
        rel.att("actor_user_id")?,
        rel.att("actor_role")?,
        rel.att("business_id")?,
        rel.att("action")?,
        rel.att("kind")?,
        rel.att("provider")?,
        rel.att("target_id")?,
    ];
    direct::append_many(rel.relid, batch.len(), |i, set| {
        let e = &batch[i];
        let action = ACTIONS
            .get(e.action as usize)
            .copied()
            .unwrap_or(Action::ReadSecret);
        set(atts[0], Some(pg_sys::Datum::from(e.at)));
        set(
            atts[1],
            e.has_user
                .then(|| Uuid::from_bytes(e.user))
                .and_then(|u| u.into_datum()),
        );
        set(atts[2], e.role().into_datum());
        set(atts[3], Uuid::from_bytes(e.business).into_datum());
        set(atts[4], action.as_str().into_datum());
        set(atts[5], e.kind().into_datum());
        set(atts[6], e.provider().and_then(|p| p.into_datum()));
        set(
            atts[7],
            e.has_target
                .then(|| Uuid::from_bytes(e.target))
                .and_then(|t| t.into_datum()),
        );
    })?;
    Ok(true)
}

sql_function!(pgi_audit_status => audit_status);
/// `integrations.audit_status()`, declared in `sql/tenancy/audit.sql`: how
/// secret reads are audited here, and this database's queue.
fn audit_status(call: &Call) -> Result<pg_sys::Datum> {
    crate::tenancy::caller::require_privileged("integrations.audit_status")?;
    let mut row = serde_json::Map::new();
    let mode = if queued_mode() {
        "queued"
    } else {
        "in_transaction"
    };
    row.insert("mode".into(), mode.into());
    if let Some(shared) = queue::shared() {
        let mut l = shared.lock();
        let found = (0..queue::SLOTS).find(|i| l.slot(*i).database == database());
        row.insert("capacity".into(), queue::CAPACITY.into());
        row.insert(
            "flush_interval_ms".into(),
            gucs::audit_flush_interval_ms().into(),
        );
        if let Some(i) = found {
            let s = l.slot(i);
            row.insert("queued".into(), s.queued().into());
            row.insert("queued_total".into(), s.head.into());
            row.insert("written_total".into(), s.tail.into());
            row.insert("full_waits".into(), s.waits.into());
            row.insert("use_row_updates".into(), s.use_row_updates.into());
            let writer = match s.writer {
                Writer::Absent => "absent",
                Writer::Starting => "starting",
                Writer::Running => "running",
            };
            row.insert("writer".into(), writer.into());
            row.insert("writer_pid".into(), s.writer_pid.into());
        } else {
            row.insert("queued".into(), 0.into());
            row.insert("writer".into(), "absent".into());
        }
    }
    let _ = call;
    Ok(fcall::datum(pgrx::JsonB(serde_json::Value::Object(row))))
}

sql_function!(pgi_flush_audit_log => flush_audit_log);
/// `integrations.flush_audit_log(p_timeout_ms)`, declared in
/// `sql/tenancy/audit.sql`: wait until every secret read queued in this
/// database before the call is in `integrations.audit_log` (committed).
fn flush_audit_log(call: &Call) -> Result<pg_sys::Datum> {
    let timeout: i32 = call.arg(0).unwrap_or(5000);
    if !(0..=600_000).contains(&timeout) {
        return Err(Error::InvalidArgument(
            "p_timeout_ms must be between 0 and 600000".into(),
        ));
    }
    let here = flush_here(timeout)?;
    // On a Citus cluster the reads routed to the workers queue their records there.
    if crate::tenancy::route::coordinates_workers()? {
        let workers = crate::tenancy::route::on_every_worker(&format!(
            "SELECT integrations.flush_audit_log({timeout})"
        ))?;
        return Ok(fcall::datum(here && workers));
    }
    Ok(fcall::datum(here))
}

/// Wait for this node's queue: whether it was written in time.
fn flush_here(timeout: i32) -> Result<bool> {
    let Some(shared) = queue::shared() else {
        return Ok(true);
    };
    let (slot, target) = {
        let mut l = shared.lock();
        match (0..queue::SLOTS).find(|i| l.slot(*i).database == database()) {
            Some(i) => (i, l.slot(i).head),
            None => return Ok(true),
        }
    };
    let deadline = now() + i64::from(timeout) * 1000;
    loop {
        let latch = {
            let mut l = shared.lock();
            let s = l.slot(slot);
            if s.database != database() || (s.tail >= target && s.uses_written >= target) {
                return Ok(true);
            }
            s.uses_wanted = s.uses_wanted.max(target);
            s.latch
        };
        if !latch.is_null() {
            // SAFETY: as in `enqueue`: a PGPROC latch in shared memory.
            unsafe { pg_sys::SetLatch(latch) };
        }
        if now() > deadline || !ensure_writer(shared, slot) {
            return Ok(false);
        }
        nap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(key: u8, at: i64, since: u64) -> Use {
        Use {
            target: Uuid::from_bytes([key; 16]),
            at,
            n: 1,
            since,
        }
    }

    #[test]
    fn held_uses_merge_per_key_and_hour_and_remember_the_oldest_position() {
        let hour = HOUR_US * 400_000;
        for (i, at) in [hour + 5, hour + 9, hour + 7].into_iter().enumerate() {
            hold(one(1, at, 100 + i as u64));
        }
        hold(one(2, hour + 1, 90));
        hold(one(1, hour + HOUR_US + 1, 50)); // the next hour: apart
        assert_eq!(held_uses_count(), 3);
        assert_eq!(uses_written_up_to(500), 50);
        let held: Vec<Use> = HELD.with(|h| h.borrow().0.values().copied().collect());
        let first = held
            .iter()
            .find(|u| u.target == Uuid::from_bytes([1; 16]) && u.at < hour + HOUR_US)
            .unwrap();
        assert_eq!((first.n, first.at, first.since), (3, hour + 9, 100));
        HELD.with(|h| h.borrow_mut().0.clear());
        assert_eq!(uses_written_up_to(500), 500);
    }
}
