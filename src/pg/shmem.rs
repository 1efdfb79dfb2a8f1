//! Shared memory for the parts that live only in a preloaded library (the
//! audit queue, the API-key limiter, where rows were last found): each is one
//! region, a header then a fixed number of entries, guarded by one LWLock
//! (or, for entries made of atomics, read and written without it). A part declares its
//! `Region` as a static and calls `request` from `_PG_init`; the postmaster
//! sizes every region in one `shmem_request_hook` and maps them in one
//! `shmem_startup_hook`. A library loaded later (`LOAD`, a first call) gets
//! no region: `request` does nothing and `get` stays `None`, so the part
//! stays off. All-zero memory must be a valid empty header and entries.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;

use pgrx::pg_sys;

/// One part's shared memory: a header `H` and `len()` entries `E`.
pub struct Region<H, E> {
    name: &'static CStr,
    /// Read once, while the postmaster sizes shared memory (settings that
    /// size it are fixed at server start).
    len: fn() -> usize,
    mapped: UnsafeCell<Option<Mapped>>,
    _types: PhantomData<(H, E)>,
}

#[derive(Clone, Copy)]
struct Mapped {
    base: NonNull<u8>,
    lock: *mut pg_sys::LWLock,
    len: usize,
}

// SAFETY: `mapped` is written only while the postmaster maps the regions, single-threaded
// and before backends fork; afterwards it is only read. A backend is one thread.
unsafe impl<H, E> Sync for Region<H, E> {}

impl<H, E> Region<H, E> {
    /// `name` names the region in `ShmemInitStruct` and its LWLock tranche.
    pub const fn new(name: &'static CStr, len: fn() -> usize) -> Self {
        Region {
            name,
            len,
            mapped: UnsafeCell::new(None),
            _types: PhantomData,
        }
    }

    /// Where the entries start: after the header, aligned for `E`.
    const fn entries_offset() -> usize {
        std::mem::size_of::<H>().next_multiple_of(std::mem::align_of::<E>())
    }

    fn size_for(len: usize) -> usize {
        Self::entries_offset() + len * std::mem::size_of::<E>()
    }

    /// Ask for the region, from `_PG_init`; false (nothing asked) unless the
    /// library is being preloaded.
    pub fn request(&'static self) -> bool
    where
        H: 'static,
        E: 'static,
    {
        register(self)
    }

    /// The region, once mapped (the library was preloaded).
    pub fn get(&self) -> Option<&Self> {
        // SAFETY: see `Sync`: written before backends fork, read-only since.
        unsafe { (*self.mapped.get()).is_some().then_some(self) }
    }

    /// The region, locked until the guard is dropped. Only on a region
    /// returned by `get`.
    pub fn lock(&self) -> Held<'_, H, E> {
        // SAFETY: see `Sync`: written before backends fork, read-only since.
        let mapped = unsafe { *self.mapped.get() };
        let mapped = mapped.expect("lock() on a region that is not mapped");
        // SAFETY: the lock is this region's tranche's LWLock in shared memory; the guard
        // releases it, and an ERROR while held releases it too (LWLockReleaseAll at abort).
        unsafe { pg_sys::LWLockAcquire(mapped.lock, pg_sys::LWLockMode::LW_EXCLUSIVE) };
        Held {
            mapped,
            _region: PhantomData,
        }
    }
}

/// Entries that may be read and written without the region's lock: made of
/// atomics only, all-zero valid.
///
/// # Safety
/// The type holds nothing but atomics (shared `&` access from many processes
/// is then sound).
pub unsafe trait Atomic {}

impl<H: Atomic, E> Region<H, E> {
    /// The header, without the lock; only on a region returned by `get`.
    pub fn atomic_header(&self) -> &H {
        // SAFETY: see `Sync`: written before backends fork, read-only since.
        let mapped = unsafe { *self.mapped.get() };
        let mapped = mapped.expect("atomic_header() on a region that is not mapped");
        // SAFETY: the region starts with a zeroed H (`size_for`), made of atomics (`Atomic`).
        unsafe { &*mapped.base.as_ptr().cast::<H>() }
    }
}

impl<H, E: Atomic> Region<H, E> {
    /// The entries, without the lock; only on a region returned by `get`.
    pub fn atomic_entries(&self) -> &[E] {
        // SAFETY: see `Sync`: written before backends fork, read-only since.
        let mapped = unsafe { *self.mapped.get() };
        let mapped = mapped.expect("atomic_entries() on a region that is not mapped");
        // SAFETY: sized and zeroed for `len` entries at `entries_offset` (`size_for`); E is
        // made of atomics (`Atomic`), so shared references across processes are sound.
        unsafe {
            std::slice::from_raw_parts(
                mapped.base.as_ptr().add(Self::entries_offset()).cast::<E>(),
                mapped.len,
            )
        }
    }
}

/// A locked region: its header and entries may be read and changed while it lives.
pub struct Held<'a, H, E> {
    mapped: Mapped,
    _region: PhantomData<&'a Region<H, E>>,
}

impl<H, E> Held<'_, H, E> {
    /// The header and the entries, both borrowed from the held lock.
    pub fn parts(&mut self) -> (&mut H, &mut [E]) {
        let base = self.mapped.base.as_ptr();
        // SAFETY: the region was sized for the header and `len` entries at
        // `entries_offset` (`Region::size_for`), zeroed when created (a valid value of both),
        // and the lock is held, so no other process touches it.
        unsafe {
            let entries = base.add(Region::<H, E>::entries_offset()).cast::<E>();
            (
                &mut *base.cast::<H>(),
                std::slice::from_raw_parts_mut(entries, self.mapped.len),
            )
        }
    }

    pub fn header(&mut self) -> &mut H {
        self.parts().0
    }

    pub fn entries(&mut self) -> &mut [E] {
        self.parts().1
    }
}

impl<H, E> Drop for Held<'_, H, E> {
    fn drop(&mut self) {
        // SAFETY: taken in `Region::lock`.
        unsafe { pg_sys::LWLockRelease(self.mapped.lock) };
    }
}

/// What the hooks need of a region, whatever its types.
trait Map: Sync {
    fn name(&self) -> &'static CStr;
    /// Bytes for this many entries.
    fn size(&self, len: usize) -> usize;
    fn len(&self) -> usize;
    /// # Safety
    /// In the postmaster's `shmem_startup_hook` only, with the region's memory (sized for
    /// `len` entries) and lock.
    unsafe fn map(&self, base: NonNull<u8>, lock: *mut pg_sys::LWLock, len: usize);
}

impl<H, E> Map for Region<H, E> {
    fn name(&self) -> &'static CStr {
        self.name
    }
    fn size(&self, len: usize) -> usize {
        Self::size_for(len)
    }
    fn len(&self) -> usize {
        (self.len)()
    }
    /// # Safety
    /// As the trait's: from the postmaster's `shmem_startup_hook` only.
    unsafe fn map(&self, base: NonNull<u8>, lock: *mut pg_sys::LWLock, len: usize) {
        // SAFETY: the caller is the startup hook: single-threaded, before backends fork.
        unsafe { *self.mapped.get() = Some(Mapped { base, lock, len }) };
    }
}

const MAX_REGIONS: usize = 4;

static mut REGIONS: [Option<&'static dyn Map>; MAX_REGIONS] = [None; MAX_REGIONS];
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

// Through raw pointers: a plain reference to a `static mut` is refused by the compiler.
#[allow(clippy::deref_addrof)]
fn register(region: &'static dyn Map) -> bool {
    // SAFETY: _PG_init runs before any other code of this library, single-threaded, so
    // the statics are not read meanwhile; the saved hooks are called in turn.
    unsafe {
        if !pg_sys::process_shared_preload_libraries_in_progress {
            return false;
        }
        let regions = &mut *(&raw mut REGIONS);
        let Some(free) = regions.iter_mut().find(|r| r.is_none()) else {
            panic!("pg/shmem.rs: more than {MAX_REGIONS} shared-memory regions");
        };
        *free = Some(region);
        if regions.iter().flatten().count() == 1 {
            PREV_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(on_request);
            PREV_STARTUP = pg_sys::shmem_startup_hook;
            pg_sys::shmem_startup_hook = Some(on_startup);
        }
    }
    true
}

#[allow(clippy::deref_addrof)]
fn regions() -> impl Iterator<Item = &'static dyn Map> {
    // SAFETY: REGIONS is written only in `register`, from _PG_init, before any hook runs.
    unsafe { (*(&raw const REGIONS)).iter().flatten().copied() }
}

/// # Safety
/// Called by the postmaster as `shmem_request_hook`, once, while shared memory is sized.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: the previous hook expects to be called from here; the requests are allowed
    // only in this hook, where we are.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        for r in regions() {
            pg_sys::RequestAddinShmemSpace(r.size(r.len()));
            pg_sys::RequestNamedLWLockTranche(r.name().as_ptr(), 1);
        }
    }
}

/// # Safety
/// Called by the postmaster (and again after a crash) as `shmem_startup_hook`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: the postmaster, single-threaded, before backends fork (`map`'s condition);
    // AddinShmemInitLock (MainLWLockArray[21]) serialises ShmemInitStruct; each region and
    // tranche was requested in `on_request`; the previous hook expects to be called here.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for r in regions() {
            // the same length as requested: the settings it reads are fixed at start
            let len = r.len();
            let mut found = false;
            let base = pg_sys::ShmemInitStruct(r.name().as_ptr(), r.size(len), &mut found);
            if !found {
                std::ptr::write_bytes(base.cast::<u8>(), 0, r.size(len));
            }
            let lock = &raw mut (*pg_sys::GetNamedLWLockTranche(r.name().as_ptr())).lock;
            r.map(NonNull::new_unchecked(base.cast::<u8>()), lock, len);
        }
        pg_sys::LWLockRelease(init_lock);
    }
}
