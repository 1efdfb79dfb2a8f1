//! Point reads by a whole unique key of uuid columns that look first where
//! the row was found last time, and go through the index only when it is not
//! there.
//!
//! Why: an owner's call checks the tenant table before it reads its own row,
//! two index descents where a plain `SELECT` makes one. The check's descent,
//! with opening the index and beginning and ending its scan, was ~1.8 µs of a
//! ~5.7 µs `get_*_integration` (perf, 20,000 businesses). A secret read looks
//! its secret up by its primary key after the row that names it, likewise.
//!
//! Why the answer is the index's: the remembered place (block, line pointer,
//! buffer) is only a hint, never an answer. The page is used only while the
//! same buffer still holds that block of the relation's current file
//! (`ReadRecentBuffer`, no I/O, nothing past the end of a truncated table).
//! The row is taken only if the HOT chain that starts there holds a tuple
//! visible to the snapshot whose key equals the one asked for. Under an MVCC
//! snapshot a valid, immediate, non-partial unique index admits one visible
//! tuple per key, so that tuple is the one the index would have returned.
//! Anything else (a moved or vacuumed row, an evicted page, a serializable
//! transaction, which needs the index's predicate lock) reads the index, as
//! before, and remembers the new place.
//!
//! Seen from outside: a probe is no index scan, so `idx_scan` of the tenant
//! table's key and of `integrations.secrets_pkey` grows only on misses, and
//! a page read only by probes ages in the buffer pool (`ReadRecentBuffer`
//! does not raise its usage count) until a miss reads it through the index.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::Uuid;
use rustc_hash::FxHashMap as HashMap;

use super::direct;
use super::sharded;
use super::shmem;
use crate::core::error::Result;

/// Where a row was found: its HOT chain's root and the buffer that held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    block: pg_sys::BlockNumber,
    offset: pg_sys::OffsetNumber,
    buffer: pg_sys::Buffer,
}

impl Place {
    /// What an emptied slot holds (buffer 0 is never probed).
    const NONE: Place = Place {
        block: 0,
        offset: 0,
        buffer: 0,
    };
}

/// Remembered places per table in a backend, when the library is not
/// preloaded: a backend's working set of businesses, not the whole table;
/// dropped beyond this many (~60 bytes each with the map's own: ~1 MB).
const MAX_PLACES: usize = 16_384;

/// Slots of the places shared by all backends of a preloaded server, one
/// place per slot, in buckets of `WAYS` chosen by (database, table, key):
/// as many slots as shared buffers (32 bytes each per 8 KiB buffer, 0.4% of
/// `shared_buffers`; 512 KiB at the default 128 MB), at least 16,384. A fresh
/// backend (one per request without a pool) then finds the places the others
/// have seen. One slot per bucket lost a quarter of 20,000 businesses to
/// collisions, which then evicted each other on every sweep.
fn shared_slots() -> usize {
    // SAFETY: NBuffers is set from shared_buffers before shared memory is sized.
    let buffers = usize::try_from(unsafe { pg_sys::NBuffers }).unwrap_or(0);
    buffers.max(16_384).next_multiple_of(WAYS)
}
const WAYS: usize = 4;

/// One shared place, tagged by a hash of (database, table, key): a tag that
/// matches another row's only costs a probe that misses. `seq` is odd while a
/// writer fills the slot; a reader takes the slot only if `seq` was even and
/// unchanged around its reads, so it never sees half of one place and half of
/// another. Nothing in a slot is trusted: `probe` checks the buffer number's
/// range and the row itself. Four slots (a bucket) fill two cache lines:
/// with a slot of its own line per way, reading a bucket was 8% of a check.
#[repr(C, align(32))]
pub struct Slot {
    seq: AtomicU64,
    tag: AtomicU64,
    /// block << 32 | buffer
    place: AtomicU64,
    offset: AtomicU64,
}

// SAFETY: atomics only.
unsafe impl shmem::Atomic for Slot {}

/// The shared table's header: the seed of its bucket hash, drawn once per
/// server start, so nobody can pick keys that crowd one bucket (which would
/// only evict others' places: a matter of speed).
#[repr(C)]
pub struct Header {
    seed: AtomicU64,
}

// SAFETY: atomics only.
unsafe impl shmem::Atomic for Header {}

static SHARED: shmem::Region<Header, Slot> =
    shmem::Region::new(c"pg_integrations recent places", shared_slots);

/// Ask for the shared places when loaded by `shared_preload_libraries`.
pub fn init() {
    SHARED.request();
}

thread_local! {
    static PLACES: RefCell<HashMap<pg_sys::Oid, HashMap<[u8; 16 * MAX_KEYS], Place>>> = RefCell::new(HashMap::default());
    /// Per index: its table, and its key columns in the table if the index
    /// can vouch for a remembered place (see `key_columns`).
    static INDEXES: RefCell<HashMap<pg_sys::Oid, (pg_sys::Oid, Option<KeyColumns>)>> = RefCell::new(HashMap::default());
    /// Which way of a full bucket the next new place replaces.
    static NEXT_WAY: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Forget what is known of the indexes of `relid` (a table or an index);
/// of all of them for `InvalidOid`. Called on relcache invalidation. The
/// places stay: a stale one only misses, and a VACUUM or ANALYZE of the table
/// (a relcache invalidation each) must not send every backend to the index.
pub fn forget_relation(relid: pg_sys::Oid) {
    INDEXES.with(|i| {
        if let Ok(mut i) = i.try_borrow_mut() {
            if relid == pg_sys::InvalidOid {
                i.clear();
            } else {
                i.retain(|index, (table, _)| *index != relid && *table != relid);
            }
        }
    });
}

/// Key columns at most: (id, business_id) is the longest key read here.
const MAX_KEYS: usize = 2;

/// How many key columns an index has, and their attribute numbers in its table.
type KeyColumns = (usize, [i16; MAX_KEYS]);

/// The row of `table` whose `index`, a unique index on exactly these uuid
/// columns, holds `keys`, passed to `f` as [`direct::find`] would pass it:
/// `f`'s answer, or `None` if there is no such row in the snapshot.
pub fn find<T>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &[&Uuid],
    mut f: impl FnMut(&direct::Row) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let by_index = |f: &mut dyn FnMut(&direct::Row) -> Result<Option<T>>, remember: bool| {
        let scan_keys: Vec<direct::Key<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| direct::uuid_key(i as i16 + 1, k))
            .collect();
        let mut place = None;
        let found = direct::find(table, index, &scan_keys, |row| {
            place = row.place();
            f(row)
        })?;
        if remember {
            remember_place(table, keys, found.as_ref().and(place));
        }
        Ok(found)
    };
    // SAFETY: reads the backend's isolation level (and on 15 a server setting).
    let serializable = unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_SERIALIZABLE as i32;
    // With old_snapshot_threshold set, an index read may fail with "snapshot too old", which
    // a probe (no index page read) would not; PostgreSQL 17 removed the setting.
    #[cfg(not(feature = "pg18"))]
    // SAFETY: reads a server setting.
    let old_snapshots = unsafe { pg_sys::old_snapshot_threshold } >= 0;
    #[cfg(feature = "pg18")]
    let old_snapshots = false;
    if serializable || old_snapshots || keys.len() > MAX_KEYS || sharded::is_citus_table(table)? {
        return by_index(&mut f, false);
    }
    // Both locked before the verdict on the index is read: taking a lock first takes in the
    // invalidations of what committed before, so a dropped or changed index is seen. They
    // stay locked and open for the transaction (`held`); a change this transaction makes
    // later invalidates the verdict (relcache callback) and closes them (utility hook).
    // SAFETY: inside a transaction, with the catalog OIDs the caller read by.
    unsafe {
        super::held::open(table);
        super::held::open(index);
    }
    let Some(key_atts) = key_columns(table, index, keys.len()) else {
        return by_index(&mut f, false);
    };
    direct::with_snapshot(|| {
        if let Some(place) = remembered(table, keys) {
            // The slot is held's (kept from the table's second probe), empty when given and
            // cleared after: it keeps the row's buffer pinned while `f` reads it.
            // SAFETY: `table` is a catalog OID the caller read by, held above; key_atts are its
            // uuid columns the index is on; with_snapshot keeps an MVCC snapshot active.
            let hit = unsafe {
                let heap = super::held::open(table);
                super::held::with_slot(heap, |slot| {
                    probe(heap, slot, place, &key_atts[..keys.len()], keys)
                        .then(|| f(&direct::Row::of(slot)))
                })
            };
            if let Some(out) = hit {
                return out;
            }
        }
        by_index(&mut f, true)
    })
}

fn remembered(table: pg_sys::Oid, keys: &[&Uuid]) -> Option<Place> {
    if let Some(region) = SHARED.get() {
        let (ways, tag) = shared_ways(region, table, keys);
        return ways.iter().find_map(|slot| slot.read(tag));
    }
    PLACES.with(|p| p.borrow().get(&table)?.get(&local_key(keys)).copied())
}

fn remember_place(table: pg_sys::Oid, keys: &[&Uuid], place: Option<Place>) {
    if let Some(region) = SHARED.get() {
        let (ways, tag) = shared_ways(region, table, keys);
        let own = ways.iter().find(|s| s.holds(tag));
        let Some(place) = place else {
            // the row is gone (or its place unknown): no more probes that miss
            if let Some(slot) = own {
                slot.write(0, Place::NONE);
            }
            return;
        };
        // its own slot, else an empty one, else one in turn
        let slot = own
            .or_else(|| ways.iter().find(|s| s.holds(0)))
            .unwrap_or_else(|| {
                let turn = NEXT_WAY.with(|n| {
                    n.set(n.get().wrapping_add(1));
                    n.get()
                });
                &ways[turn % WAYS]
            });
        slot.write(tag, place);
        return;
    }
    PLACES.with(|p| {
        let mut p = p.borrow_mut();
        let places = p.entry(table).or_default();
        match place {
            Some(place) => {
                if places.len() >= MAX_PLACES {
                    places.clear();
                }
                places.insert(local_key(keys), place);
            }
            None => {
                places.remove(&local_key(keys));
            }
        }
    });
}

/// The key of a backend's own map (the unused part zero).
fn local_key(keys: &[&Uuid]) -> [u8; 16 * MAX_KEYS] {
    let mut out = [0u8; 16 * MAX_KEYS];
    for (i, k) in keys.iter().enumerate() {
        out[16 * i..16 * (i + 1)].copy_from_slice(k.as_bytes());
    }
    out
}

impl Slot {
    /// The place, if the slot holds `tag` and was not being written.
    fn read(&self, tag: u64) -> Option<Place> {
        if self.tag.load(Ordering::Relaxed) != tag {
            return None;
        }
        let seq = self.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return None;
        }
        let words = [
            self.tag.load(Ordering::Relaxed),
            self.place.load(Ordering::Relaxed),
            self.offset.load(Ordering::Relaxed),
        ];
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != seq || words[0] != tag {
            return None;
        }
        Some(Place {
            block: (words[1] >> 32) as u32,
            buffer: words[1] as u32 as i32,
            offset: words[2] as u16,
        })
    }

    fn holds(&self, tag: u64) -> bool {
        self.tag.load(Ordering::Relaxed) == tag
    }

    /// Fill the slot, unless another backend is writing it.
    fn write(&self, tag: u64, place: Place) {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        self.tag.store(tag, Ordering::Relaxed);
        self.place.store(
            u64::from(place.block) << 32 | u64::from(place.buffer as u32),
            Ordering::Relaxed,
        );
        self.offset
            .store(u64::from(place.offset), Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }
}

/// The shared table's hash seed: drawn by the first backend that needs it
/// (all-zero memory is the empty header), the same for all afterwards.
fn seed(region: &shmem::Region<Header, Slot>) -> u64 {
    let seed = &region.atomic_header().seed;
    let s = seed.load(Ordering::Relaxed);
    if s != 0 {
        return s;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: writes 8 random bytes into the local array.
    let drawn = unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) };
    let new = if drawn {
        u64::from_le_bytes(bytes) | 1
    } else {
        1
    };
    match seed.compare_exchange(0, new, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => new,
        Err(other) => other,
    }
}

/// The ways (slots) of the shared bucket of (this database, table, keys),
/// and the tag a slot of that row holds (never 0, an empty slot's).
fn shared_ways<'a>(
    region: &'a shmem::Region<Header, Slot>,
    table: pg_sys::Oid,
    keys: &[&Uuid],
) -> (&'a [Slot], u64) {
    // SAFETY: reads the backend's database OID, set before any function runs.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let mut h = rustc_hash::FxHasher::default();
    (seed(region), db, table.to_u32()).hash(&mut h);
    for k in keys {
        k.as_bytes().hash(&mut h);
    }
    let hash = h.finish();
    let slots = region.atomic_entries();
    // the bucket from the high bits, the tag from all of them
    let bucket = (hash >> 32) as usize % (slots.len() / WAYS);
    (&slots[bucket * WAYS..(bucket + 1) * WAYS], hash | 1)
}

/// The table columns `index` is on, if the index can vouch for a remembered
/// place: unique, valid, checked immediately (a deferred one lets duplicates
/// stand until commit), usable by every snapshot (`indcheckxmin` unset), with
/// no predicate, on exactly `n` plain uuid columns of a permanent or unlogged
/// heap table (what `probe` reads).
fn key_columns(table: pg_sys::Oid, index: pg_sys::Oid, n: usize) -> Option<[i16; MAX_KEYS]> {
    if let Some((_, atts)) = INDEXES.with(|i| i.borrow().get(&index).copied()) {
        return atts.filter(|(len, _)| *len == n).map(|(_, a)| a);
    }
    // SAFETY: catalog OIDs the caller locked, opened and closed here with their locks kept;
    // rd_index and rd_indextuple are set for an open index, indkey has indnatts entries, and
    // key columns are checked against the table's natts before their attributes are read.
    let atts = unsafe {
        let heap = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let idx = pg_sys::index_open(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let form = &*(*heap).rd_rel;
        let desc = (*heap).rd_att;
        let i = &*(*idx).rd_index;
        let len = i.indnkeyatts as usize;
        let cols = i.indkey.values.as_slice(i.indnatts as usize);
        let uuid_column = |c: i16| {
            c > 0
                && i32::from(c) <= (*desc).natts
                && super::update::attribute(desc, (c - 1) as usize).atttypid == pg_sys::UUIDOID
        };
        let plain = form.relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
            && form.relam == pg_sys::HEAP_TABLE_AM_OID
            && form.relpersistence != pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char
            && i.indisunique
            && i.indisvalid
            && i.indimmediate
            && !i.indcheckxmin
            && i.indrelid == table
            && (1..=MAX_KEYS).contains(&len)
            && cols[..len].iter().all(|c| uuid_column(*c))
            && pg_sys::heap_attisnull(
                (*idx).rd_indextuple,
                pg_sys::Anum_pg_index_indpred as i32,
                std::ptr::null_mut(),
            );
        let atts = plain.then(|| {
            let mut a = [0i16; MAX_KEYS];
            a[..len].copy_from_slice(&cols[..len]);
            (len, a)
        });
        pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        atts
    };
    INDEXES.with(|i| i.borrow_mut().insert(index, (table, atts)));
    atts.filter(|(len, _)| *len == n).map(|(_, a)| a)
}

/// Put in `slot` the row at `place`, if it is still there, visible, and
/// holds `keys` in `key_atts`; whether it did.
///
/// # Safety
/// `heap` is a table held (`held`) by this transaction and `slot` an empty
/// slot for its rows; `key_atts` are attribute numbers of its uuid columns;
/// runs under an active MVCC snapshot.
unsafe fn probe(
    heap: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    place: Place,
    key_atts: &[i16],
    keys: &[&Uuid],
) -> bool {
    // SAFETY: the caller's contract. The buffer is pinned only if it still holds this block of
    // this relation's file, and read under its share lock. The slot keeps a pin of its own,
    // as an index scan's slot does, so the tuple stays put after the lock is released. The
    // relation stays open and locked until the transaction ends (`held`).
    unsafe {
        #[cfg(not(feature = "pg18"))]
        let file = (*heap).rd_node;
        #[cfg(feature = "pg18")]
        let file = (*heap).rd_locator;
        let mut out = false;
        // a shared slot is only a hint: a buffer number outside the pool is never passed on
        let in_pool = place.buffer >= 1 && place.buffer <= pg_sys::NBuffers;
        if in_pool
            && pg_sys::ReadRecentBuffer(
                file,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                place.block,
                place.buffer,
            )
        {
            pg_sys::LockBuffer(place.buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
            let tuple = &raw mut (*slot.cast::<pg_sys::BufferHeapTupleTableSlot>())
                .base
                .tupdata;
            let mut tid: pg_sys::ItemPointerData = std::mem::zeroed();
            pgrx::itemptr::item_pointer_set_all(&mut tid, place.block, place.offset);
            let visible = pg_sys::heap_hot_search_buffer(
                &mut tid,
                heap,
                place.buffer,
                pg_sys::GetActiveSnapshot(),
                tuple,
                std::ptr::null_mut(),
                true,
            );
            let desc = (*heap).rd_att;
            let same = visible
                && key_atts.iter().zip(keys).all(|(att, key)| {
                    let mut null = false;
                    let d = pg_sys::heap_getattr(tuple, *att as i32, desc, &mut null);
                    !null
                        && std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), 16) == key.as_bytes()
                });
            if same {
                pg_sys::ExecStoreBufferHeapTuple(tuple, slot, place.buffer);
                out = true;
            }
            pg_sys::UnlockReleaseBuffer(place.buffer);
        }
        out
    }
}

/// MaxHeapTuplesPerPage (291 with 8 KiB pages), with room to spare: page
/// header and line pointers of 24 and 4 bytes, tuple headers of 24 at least.
const MAX_HEAP_TUPLES: usize = (pg_sys::BLCKSZ as usize - 24) / (24 + 4) + 1;

impl Place {
    /// The place of the HOT chain of the tuple a heap slot holds: its root,
    /// where the index points.
    ///
    /// # Safety
    /// `slot` holds a tuple fetched from a heap table, its buffer pinned and
    /// not locked by this backend.
    pub(super) unsafe fn of(slot: *mut pg_sys::TupleTableSlot) -> Option<Place> {
        // SAFETY: the caller's contract; a buffer heap slot's struct starts with the base slot.
        // The page is read under a share lock of the buffer the slot keeps pinned.
        unsafe {
            if !std::ptr::eq((*slot).tts_ops, &pg_sys::TTSOpsBufferHeapTuple) {
                return None;
            }
            let b = slot.cast::<pg_sys::BufferHeapTupleTableSlot>();
            let (tuple, buffer) = ((*b).base.tuple, (*b).buffer);
            if tuple.is_null() || buffer == pg_sys::InvalidBuffer as pg_sys::Buffer {
                return None;
            }
            let (block, mut offset) = pgrx::itemptr::item_pointer_get_both((*slot).tts_tid);
            if (*(*tuple).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0 {
                // a later version in a HOT chain: its root is where the next probe starts
                let mut roots =
                    [pg_sys::InvalidOffsetNumber as pg_sys::OffsetNumber; MAX_HEAP_TUPLES];
                pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
                pg_sys::heap_get_root_tuples(pg_sys::BufferGetPage(buffer), roots.as_mut_ptr());
                pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                offset = *roots.get(usize::from(offset).checked_sub(1)?)?;
                if offset == pg_sys::InvalidOffsetNumber as pg_sys::OffsetNumber {
                    return None;
                }
            }
            Some(Place {
                block,
                offset,
                buffer,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Slot {
        Slot {
            seq: AtomicU64::new(0),
            tag: AtomicU64::new(0),
            place: AtomicU64::new(0),
            offset: AtomicU64::new(0),
        }
    }

    const PLACE: Place = Place {
        block: 4_000_000_000,
        offset: 291,
        buffer: 524_288,
    };

    #[test]
    fn a_slot_gives_back_its_place_for_its_tag_only() {
        let slot = empty();
        assert_eq!(slot.read(7), None);
        slot.write(7, PLACE);
        assert_eq!(slot.read(7), Some(PLACE));
        assert_eq!(slot.read(9), None);
        let moved = Place { block: 1, ..PLACE };
        slot.write(9, moved);
        assert_eq!((slot.read(7), slot.read(9)), (None, Some(moved)));
        assert_eq!(slot.seq.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_slot_being_written_is_neither_read_nor_written() {
        let slot = empty();
        slot.write(7, PLACE);
        slot.seq.fetch_add(1, Ordering::Relaxed); // a writer in the middle
        assert_eq!(slot.read(7), None);
        slot.write(9, Place { block: 1, ..PLACE });
        assert_eq!(slot.tag.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn an_emptied_slot_is_taken_again_first() {
        let slot = empty();
        slot.write(7, PLACE);
        slot.write(0, Place::NONE);
        assert_eq!(slot.read(7), None);
        assert!(slot.holds(0));
    }

    #[test]
    fn local_keys_tell_one_and_two_columns_apart() {
        let (a, b) = (Uuid::from_bytes([1; 16]), Uuid::from_bytes([2; 16]));
        let zero = Uuid::from_bytes([0; 16]);
        assert_ne!(local_key(&[&a]), local_key(&[&a, &b]));
        assert_ne!(local_key(&[&a, &b]), local_key(&[&b, &a]));
        // a second column of zeros is the only collision, and a probe checks the row's key
        assert_eq!(local_key(&[&a]), local_key(&[&a, &zero]));
    }
}
