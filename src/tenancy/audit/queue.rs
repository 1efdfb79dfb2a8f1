//! The audit queue: a ring of audit records per database in shared memory,
//! filled by the backends that read secrets and emptied by that database's
//! writer (`writer.rs`). It exists only when the library is in
//! `shared_preload_libraries` (shared memory is sized before the postmaster
//! forks); otherwise `shared()` is `None` and records go into the caller's
//! transaction.
//!
//! Layout: one header (an LWLock and `SLOTS` slots) followed by `SLOTS`
//! rings of `CAPACITY` fixed-size records. `head` and `tail` count records
//! ever queued and ever written, so `head - tail` is the queue's length and
//! a flush waits for `tail` to pass the `head` it saw. All of a slot is read
//! and written under the one lock, held for a copy of a record or a batch.

use pgrx::pg_sys;

use crate::pg::shmem;

/// Databases whose reads can be queued at once; a further database's reads
/// are recorded in the reader's transaction until a slot is free.
pub const SLOTS: usize = 4;
/// Records per database: at 50,000 audited reads a second, 160 ms of them.
pub const CAPACITY: usize = 8192;

const TRANCHE: &std::ffi::CStr = c"pg_integrations audit queue";

/// One audit record, as written by `audit::record`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Entry {
    pub at: i64,
    pub action: u8,
    pub has_user: bool,
    pub has_target: bool,
    pub kind_len: u8,
    pub provider_len: u8,
    pub role_len: u8,
    pub business: [u8; 16],
    pub user: [u8; 16],
    pub target: [u8; 16],
    pub kind: [u8; 32],
    pub provider: [u8; 64],
    pub role: [u8; 64],
}

impl Entry {
    pub fn kind(&self) -> &str {
        std::str::from_utf8(&self.kind[..self.kind_len as usize]).unwrap_or("")
    }
    pub fn provider(&self) -> Option<&str> {
        (self.provider_len > 0)
            .then(|| std::str::from_utf8(&self.provider[..self.provider_len as usize]).ok())
            .flatten()
    }
    pub fn role(&self) -> &str {
        std::str::from_utf8(&self.role[..self.role_len as usize]).unwrap_or("")
    }
}

/// Copy `s` into `buf`; `None` if it does not fit (the caller then records
/// the read in its own transaction, never a truncated name).
pub fn fill(buf: &mut [u8], s: &str) -> Option<u8> {
    if s.len() > buf.len() || s.len() > u8::MAX as usize {
        return None;
    }
    buf[..s.len()].copy_from_slice(s.as_bytes());
    Some(s.len() as u8)
}

/// The writer of a slot.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// None: the next record starts one.
    Absent = 0,
    /// Registered with the postmaster, not yet running (since `since`).
    Starting = 1,
    Running = 2,
}

#[repr(C)]
pub struct Slot {
    /// The database served; `InvalidOid` when the slot is free.
    pub database: pg_sys::Oid,
    pub writer: Writer,
    pub writer_pid: i32,
    /// When `writer` last changed (for a start that never happened).
    pub since: pg_sys::TimestampTz,
    /// The running writer's latch, in its PGPROC (shared memory).
    pub latch: *mut pg_sys::Latch,
    /// Records ever queued and ever written for this database.
    pub head: u64,
    pub tail: u64,
    /// Times a reader found the ring full and waited.
    pub waits: u64,
    /// Records whose counted uses (API keys) are in their keys' rows too: the
    /// writer holds uses back up to `integrations.usage_write_interval`.
    pub uses_written: u64,
    /// Set by `flush_audit_log`: write the held-back uses up to here now.
    pub uses_wanted: u64,
    /// Key rows the writer has updated with uses (one per key per write).
    pub use_row_updates: u64,
}

impl Slot {
    /// Records queued and not yet written.
    pub fn queued(&self) -> usize {
        (self.head - self.tail) as usize
    }
}

#[repr(C)]
pub struct Header {
    slots: [Slot; SLOTS],
}

/// The queue in shared memory, and locked: slots and rings may be read and
/// changed while a `Locked` lives.
pub type Shared = shmem::Region<Header, Entry>;
pub type Locked<'a> = shmem::Held<'a, Header, Entry>;

static REGION: Shared = Shared::new(TRANCHE, || SLOTS * CAPACITY);

/// Ask for the queue's shared memory when loaded by `shared_preload_libraries`;
/// a library loaded later cannot add shared memory, so the queue stays off.
pub fn init() {
    REGION.request();
}

/// The queue, when the library was preloaded.
pub fn shared() -> Option<&'static Shared> {
    REGION.get()
}

impl Locked<'_> {
    pub fn slot(&mut self, i: usize) -> &mut Slot {
        &mut self.header().slots[i]
    }

    /// The slot serving `database`, or a free one claimed for it.
    pub fn slot_for(&mut self, database: pg_sys::Oid) -> Option<usize> {
        let mut free = None;
        for i in 0..SLOTS {
            let s = self.slot(i);
            if s.database == database {
                return Some(i);
            }
            let reusable = s.database == pg_sys::InvalidOid
                || (s.writer == Writer::Absent && s.head == s.tail);
            if free.is_none() && reusable {
                free = Some(i);
            }
        }
        let i = free?;
        let s = self.slot(i);
        s.database = database;
        s.writer = Writer::Absent;
        s.latch = std::ptr::null_mut();
        s.writer_pid = 0;
        s.uses_written = s.tail;
        s.uses_wanted = s.tail;
        Some(i)
    }

    fn ring(&mut self, slot: usize) -> &mut [Entry] {
        &mut self.entries()[slot * CAPACITY..(slot + 1) * CAPACITY]
    }

    /// Append to the slot's ring; false if it is full.
    pub fn push(&mut self, slot: usize, e: &Entry) -> bool {
        let s = self.slot(slot);
        if s.queued() >= CAPACITY {
            return false;
        }
        let at = (s.head % CAPACITY as u64) as usize;
        s.head += 1;
        self.ring(slot)[at] = *e;
        true
    }

    /// Copy up to `max` of the oldest records (not removed: `advance` does
    /// that once they are committed).
    /// Returns the queue position of the first.
    pub fn peek(&mut self, slot: usize, max: usize, out: &mut Vec<Entry>) -> u64 {
        let (tail, n) = {
            let s = self.slot(slot);
            (s.tail, s.queued().min(max))
        };
        out.clear();
        let ring = self.ring(slot);
        for k in 0..n as u64 {
            out.push(ring[((tail + k) % CAPACITY as u64) as usize]);
        }
        tail
    }

    pub fn advance(&mut self, slot: usize, n: usize) {
        let s = self.slot(slot);
        s.tail = (s.tail + n as u64).min(s.head);
    }
}
