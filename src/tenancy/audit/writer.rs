//! The audit writer: one background worker per database with queued audit
//! records, started by the first record and gone after half a second with
//! nothing to write (a worker connected to a database would hold up its
//! `DROP DATABASE` and its use as a template). Every flush interval, or when
//! a quarter of the ring is full, it writes everything queued in one
//! transaction, then drops it from the ring. Its commits are asynchronous and
//! it flushes the WAL itself once per interval: a synchronous commit per batch
//! cost a quarter of a core in fdatasync under a read storm on a virtio disk
//! and held 2-client pgbench of secret reads at 0.53x the floor (0.8x with
//! asynchronous commits). A crash loses at most the records of the last two
//! intervals and of the batch being committed.
//!
//! It runs as the bootstrap superuser. Audit records are heap appends to
//! `integrations.audit_log`, which has no triggers, indexes or rules; counted
//! API-key uses are held up to `integrations.usage_write_interval` (1 s) and
//! added to their keys' rows by one kept `UPDATE` (the usage sink), so a key
//! in steady use costs one row version a second, not one per batch.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::queue::{self, Entry, Writer};
use crate::core::error::log;
use crate::core::gucs;

/// Records per transaction at most.
const BATCH: usize = 4096;
/// Idle time after which the writer leaves.
const IDLE_EXIT: Duration = Duration::from_millis(500);
/// A writer registered but not running after this long is taken for lost.
pub const START_TIMEOUT_MS: i64 = 10_000;

/// Register a writer for queue slot `slot` with the postmaster. False when no
/// background worker slot is free (`max_worker_processes`).
pub fn start(slot: usize) -> bool {
    // SAFETY: a zeroed BackgroundWorker is a valid start (all fields plain data); the names
    // are NUL-terminated within their arrays; RegisterDynamicBackgroundWorker copies the
    // struct and may be called from any backend.
    unsafe {
        let mut w: pg_sys::BackgroundWorker = std::mem::zeroed();
        copy_name(&mut w.bgw_name, "pg_integrations audit writer");
        copy_name(&mut w.bgw_type, "pg_integrations audit writer");
        copy_name(&mut w.bgw_library_name, "pg_integrations");
        copy_name(&mut w.bgw_function_name, "pgi_audit_writer_main");
        w.bgw_flags =
            (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION) as i32;
        w.bgw_start_time = pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished;
        w.bgw_restart_time = pg_sys::BGW_NEVER_RESTART;
        w.bgw_main_arg = pg_sys::Datum::from(slot);
        w.bgw_notify_pid = 0;
        pg_sys::RegisterDynamicBackgroundWorker(&mut w, std::ptr::null_mut())
    }
}

fn copy_name(dst: &mut [std::ffi::c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as std::ffi::c_char;
    }
    dst[n] = 0;
}

/// The worker's entry point, named in `start`.
///
/// # Safety
/// Called by the postmaster's background-worker start-up only, with `start`'s slot number.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pgi_audit_writer_main(arg: pg_sys::Datum) {
    let slot = arg.value();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let Some(shared) = queue::shared() else {
        return;
    };
    if slot >= queue::SLOTS {
        return;
    }
    let database = shared.lock().slot(slot).database;
    // SAFETY: a background worker with BGWORKER_BACKEND_DATABASE_CONNECTION, connecting
    // once; InvalidOid as user is the bootstrap superuser.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(database, pg_sys::InvalidOid, 0);
    }
    {
        let mut l = shared.lock();
        let s = l.slot(slot);
        if s.database != database {
            return; // the slot went to another database meanwhile
        }
        if s.writer == Writer::Running && s.writer_pid != 0 {
            // a writer registered again after a slow start found its predecessor
            // running: two would write the same records twice
            return;
        }
        s.writer = Writer::Running;
        // SAFETY: MyProcPid and MyLatch are set for this process before its main function runs.
        unsafe {
            s.writer_pid = pg_sys::MyProcPid;
            s.latch = pg_sys::MyLatch;
        }
    }
    // SAFETY: registers a callback that runs at this process's exit, error exits included;
    // the slot number is passed by value.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(slot)) };
    // SAFETY: sets a GUC of this process only, with NUL-terminated literals; at
    // PGC_S_OVERRIDE a reload of postgresql.conf does not undo it.
    unsafe {
        pg_sys::SetConfigOption(
            c"synchronous_commit".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }

    let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
    let mut idle_since = Instant::now();
    let mut flushed_at = Instant::now();
    let mut unflushed: pg_sys::XLogRecPtr = 0;
    loop {
        let interval = gucs::audit_flush_interval_ms();
        // SAFETY: MyLatch is this process's latch; WL_EXIT_ON_PM_DEATH exits if the
        // postmaster dies, so the loop never outlives it.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                interval as std::ffi::c_long,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: re-reads postgresql.conf in this process, as PostgreSQL's own workers do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let stopping = BackgroundWorker::sigterm_received();
        let mut wrote = 0;
        loop {
            let base = shared.lock().peek(slot, BATCH, &mut batch);
            if batch.is_empty() {
                break;
            }
            write(&batch, base);
            // SAFETY: set by this process's commit just above; read in the same process.
            unflushed = unsafe { pg_sys::XactLastCommitEnd };
            shared.lock().advance(slot, batch.len());
            wrote += batch.len();
            // a ring that never empties still gets its held uses written on time
            if super::held_uses_due(false) {
                unflushed = write_held_uses(shared, slot);
            }
        }
        let leaving = stopping || (wrote == 0 && idle_since.elapsed() >= IDLE_EXIT);
        // Counted uses go to their rows once per integrations.usage_write_interval, or
        // now when a flush_audit_log() waits or the writer leaves.
        let wanted = {
            let mut l = shared.lock();
            let s = l.slot(slot);
            s.uses_wanted > s.uses_written
        };
        if super::held_uses_due(leaving || wanted) {
            unflushed = write_held_uses(shared, slot);
        }
        {
            let mut l = shared.lock();
            let s = l.slot(slot);
            s.uses_written = super::uses_written_up_to(s.tail);
        }
        if unflushed != 0
            && (leaving || flushed_at.elapsed() >= Duration::from_millis(interval as u64))
        {
            // SAFETY: flushes WAL up to a commit record this process wrote; a no-op when
            // the WAL writer got there first.
            unsafe { pg_sys::XLogFlush(unflushed) };
            unflushed = 0;
            flushed_at = Instant::now();
        }
        if stopping {
            if super::held_uses_count() > 0 {
                log(format!(
                    "pg_integrations: the counted uses of {} API keys were not written at shutdown: their rows were locked",
                    super::held_uses_count()
                ));
            }
            return;
        }
        if wrote > 0 {
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= IDLE_EXIT {
            let mut l = shared.lock();
            let s = l.slot(slot);
            // (not while uses wait for a locked row: they would be lost)
            if s.head == s.tail && super::held_uses_count() == 0 {
                s.writer = Writer::Absent;
                s.writer_pid = 0;
                s.latch = std::ptr::null_mut();
                return;
            }
        }
    }
}

/// Add the held uses to their keys' rows in a transaction of their own; the
/// end of its commit record, for the WAL flush.
fn write_held_uses(shared: &queue::Shared, slot: usize) -> pg_sys::XLogRecPtr {
    let rows = BackgroundWorker::transaction(super::write_held_uses);
    shared.lock().slot(slot).use_row_updates += rows;
    // SAFETY: set by this process's commit just above; read in the same process.
    unsafe { pg_sys::XactLastCommitEnd }
}

/// # Safety
/// Called by PostgreSQL at this process's exit, with the slot number registered.
#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    let Some(shared) = queue::shared() else {
        return;
    };
    // SAFETY: MyProcPid is this process's pid, set before any exit callback runs.
    let me = unsafe { pg_sys::MyProcPid };
    let mut l = shared.lock();
    let s = l.slot(arg.value());
    if s.writer_pid == me {
        s.writer = Writer::Absent;
        s.writer_pid = 0;
        s.latch = std::ptr::null_mut();
    }
}

/// Write one batch in its own transaction. If the extension is gone from the
/// database (DROP EXTENSION with reads still queued), the records have no
/// table to go to: the server log says how many were dropped.
fn write(batch: &[Entry], base: u64) {
    BackgroundWorker::transaction(|| {
        match super::append_queued(batch, base) {
        Ok(true) => {}
        Ok(false) => log(format!(
            "pg_integrations: {} queued audit records dropped: integrations.audit_log no longer exists in this database",
            batch.len()
        )),
        Err(e) => e.raise(),
    }
    });
}
