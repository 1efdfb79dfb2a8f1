//! SPI, always under `search_path = pg_catalog, pg_temp`. Every statement
//! the extension runs goes through here (`clippy.toml` forbids pgrx's `Spi`
//! elsewhere), so a function need not pin its search path in its SQL
//! declaration: the hot readers (`get_*_secret`, `get_*_integration`,
//! `read_secret`) do not, since a `SET` clause makes every call save, parse
//! and restore the setting (measured: 10% of a `get_ai_avatar_secret`), and
//! they run SQL only on a backend's first call or a cache miss. Their direct
//! reads resolve no names.
//!
//! Pinning matters because the functions run as the extension's owner: under
//! a caller's `search_path = mallory, pg_catalog`, an unqualified operator in
//! a statement could resolve to mallory's.

use std::ffi::CStr;

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiResult};

use crate::core::error::{Error, Result};

const PINNED: &CStr = c"pg_catalog, pg_temp";

/// Run `f` with the search path pinned (set for `f` only, unless it is
/// already; an error inside `f` is undone with the (sub)transaction's GUC
/// state, as for a function's `SET` clause).
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: namespace_search_path is the search_path setting's current value, a
    // NUL-terminated string the GUC machinery keeps valid while we read it.
    let current = unsafe { CStr::from_ptr(pg_sys::namespace_search_path) };
    if current == PINNED {
        return f();
    }
    // SAFETY: the nest level brackets a GUC_ACTION_SAVE change that AtEOXact_GUC(true, level)
    // undoes on return; on error, (sub)transaction abort undoes it (as for proconfig).
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            PINNED.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let r = f();
    // SAFETY: closes the nest level opened above.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    r
}

/// `SPI_connect` for code that uses the raw SPI interface (kept plans, slots).
///
/// # Safety
/// Inside a transaction; balanced by `SPI_finish` on every path that returns.
pub unsafe fn connect() -> Result<()> {
    // SAFETY: the caller's contract.
    let rc = unsafe { pg_sys::SPI_connect() };
    check(rc, "connecting to SPI")
}

/// An SPI return code as a result.
pub fn check(rc: i32, doing: &str) -> Result<()> {
    if rc < 0 {
        Err(Error::Internal(format!("SPI error {rc} {doing}")))
    } else {
        Ok(())
    }
}

/// pgrx's `Spi`, pinned: same names and signatures.
pub struct Spi;

#[allow(clippy::disallowed_methods)]
impl Spi {
    pub fn connect<R, F: FnOnce(&SpiClient<'_>) -> R>(f: F) -> R {
        pinned(|| pgrx::spi::Spi::connect(f))
    }

    pub fn connect_mut<R, F: FnOnce(&mut SpiClient<'_>) -> R>(f: F) -> R {
        pinned(|| pgrx::spi::Spi::connect_mut(f))
    }

    pub fn get_one<A: FromDatum + IntoDatum>(query: &str) -> SpiResult<Option<A>> {
        pinned(|| pgrx::spi::Spi::get_one(query))
    }

    pub fn get_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
        query: &str,
    ) -> SpiResult<(Option<A>, Option<B>)> {
        pinned(|| pgrx::spi::Spi::get_two(query))
    }

    pub fn get_one_with_args<A: FromDatum + IntoDatum>(
        query: &str,
        args: &[DatumWithOid<'_>],
    ) -> SpiResult<Option<A>> {
        pinned(|| pgrx::spi::Spi::get_one_with_args(query, args))
    }

    pub fn run(query: &str) -> SpiResult<()> {
        pinned(|| pgrx::spi::Spi::run(query))
    }

    pub fn run_with_args(query: &str, args: &[DatumWithOid<'_>]) -> SpiResult<()> {
        pinned(|| pgrx::spi::Spi::run_with_args(query, args))
    }
}
