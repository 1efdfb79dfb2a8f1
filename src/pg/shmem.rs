//! Shared memory for the parts that live only in a preloaded library (the
//! audit queue, the API-key limiter): each asks for one region of a fixed
//! size with one LWLock, from `_PG_init`; the postmaster sizes them all in one
//! `shmem_request_hook` and hands each its memory in one `shmem_startup_hook`.
//! A library loaded later (`LOAD`, first call) gets no region: `request` then
//! does nothing and the part stays off.

use std::ffi::CStr;
use std::ptr::NonNull;

use pgrx::pg_sys;

/// One part's shared memory.
pub struct Region {
    /// The region's name, in `ShmemInitStruct` and as its LWLock tranche.
    pub name: &'static CStr,
    pub size: fn() -> usize,
    /// Given the region (zeroed the first time: `fresh`) and its lock, in the
    /// postmaster before backends fork, and again after a crash reset.
    pub attach: fn(base: NonNull<u8>, lock: *mut pg_sys::LWLock, fresh: bool),
}

const MAX_REGIONS: usize = 4;

static mut REGIONS: [Option<&'static Region>; MAX_REGIONS] = [None; MAX_REGIONS];
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// Ask for `region`, from `_PG_init`; false (and nothing asked) unless the
/// library is being preloaded.
pub fn request(region: &'static Region) -> bool {
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

fn regions() -> impl Iterator<Item = &'static Region> {
    // SAFETY: REGIONS is written only in `request`, from _PG_init, before any hook runs.
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
            pg_sys::RequestAddinShmemSpace((r.size)());
            pg_sys::RequestNamedLWLockTranche(r.name.as_ptr(), 1);
        }
    }
}

/// # Safety
/// Called by the postmaster (and again after a crash) as `shmem_startup_hook`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: the previous hook expects to be called from here. AddinShmemInitLock
    // (MainLWLockArray[21]) serialises ShmemInitStruct as PostgreSQL's own modules do;
    // each region was sized in `on_request` and is zeroed the first time; its tranche
    // was requested there too, so GetNamedLWLockTranche finds it.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for r in regions() {
            let mut found = false;
            let base = pg_sys::ShmemInitStruct(r.name.as_ptr(), (r.size)(), &mut found);
            if !found {
                std::ptr::write_bytes(base.cast::<u8>(), 0, (r.size)());
            }
            let lock = &raw mut (*pg_sys::GetNamedLWLockTranche(r.name.as_ptr())).lock;
            (r.attach)(NonNull::new_unchecked(base.cast::<u8>()), lock, !found);
        }
        pg_sys::LWLockRelease(init_lock);
    }
}
