//! Who called, and running as the function's owner.
//!
//! The extension's functions are declared SECURITY INVOKER, so at entry the
//! current user is the role that really calls them: what `SET ROLE` made it
//! (PostgREST), the owner of a SECURITY DEFINER function that calls us, or the
//! table owner while ANALYZE or CREATE INDEX evaluates an index expression.
//! [`enter`] records that role, and whether the call happens inside a
//! security-restricted operation, then switches to the function's owner for
//! the body — what SECURITY DEFINER did, but after we know the caller. The
//! guard switches back when the body returns or unwinds; an error that aborts
//! the (sub)transaction restores the user as well.
//!
//! Why not the session's outer user: code of other roles runs while the
//! outer user is a superuser (autovacuum's ANALYZE, a DBA's REINDEX), and a
//! privileged session can call another role's SECURITY DEFINER function.

use std::cell::Cell;

use pgrx::pg_sys;

/// The role that called a running function of this extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub role: pg_sys::Oid,
    /// Called inside a security-restricted operation (an index expression,
    /// ANALYZE, REFRESH MATERIALIZED VIEW, ...) or from a trigger: never a
    /// privileged or owner path. A trigger runs inside whoever's statement
    /// fires it, and Supabase's default privileges let any role that may act
    /// as `authenticated` put one on the app's tables.
    pub restricted: bool,
    /// The role that called is the session's current role (`SET ROLE`), not
    /// the owner of a SECURITY DEFINER function in between: only then can
    /// the session's JWT claims speak for it.
    pub acts_as_session: bool,
}

thread_local! {
    static ENTRY: Cell<Option<Entry>> = const { Cell::new(None) };
}

/// The caller of the innermost running function of this extension; `None`
/// outside of one (then the current user is the caller).
pub fn entry() -> Entry {
    ENTRY.with(|e| e.get()).unwrap_or_else(current)
}

/// The current user and whether we are inside a security-restricted operation.
fn current() -> Entry {
    let (role, context) = user_and_context();
    entry_of(role, context)
}

fn entry_of(role: pg_sys::Oid, context: i32) -> Entry {
    Entry {
        role,
        restricted: context & pg_sys::SECURITY_RESTRICTED_OPERATION as i32 != 0 || in_trigger(),
        // SAFETY: reads a backend global; no pointers involved.
        acts_as_session: role == unsafe { pg_sys::GetOuterUserId() },
    }
}

/// Whether a trigger is running (pg_trigger_depth() > 0).
fn in_trigger() -> bool {
    // SAFETY: pg_trigger_depth reads a backend counter and never looks at
    // its (zeroed, argument-less) call info.
    let depth = unsafe {
        let mut fcinfo: pg_sys::FunctionCallInfoBaseData = std::mem::zeroed();
        pg_sys::pg_trigger_depth(&mut fcinfo)
    };
    depth.value() as i32 > 0
}

fn user_and_context() -> (pg_sys::Oid, i32) {
    let mut role = pg_sys::InvalidOid;
    let mut context = 0;
    // SAFETY: writes the backend's current user and security context into
    // the two locals.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut role, &mut context) };
    (role, context)
}

thread_local! {
    /// [`owner_of`] by function OID, forgotten whenever pg_proc changes (a
    /// syscache lookup on every call was 3% of a secret read).
    static OWNERS: std::cell::RefCell<rustc_hash::FxHashMap<pg_sys::Oid, (pg_sys::Oid, bool)>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

/// # Safety
/// Called by PostgreSQL only, as the pg_proc syscache callback registered in `init`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    OWNERS.with(|o| {
        if let Ok(mut o) = o.try_borrow_mut() {
            o.clear();
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
        )
    };
}

/// The owner of function `fn_oid` (InvalidOid if it is not found), and
/// whether it is declared SECURITY DEFINER; cached.
fn owner_of(fn_oid: pg_sys::Oid) -> (pg_sys::Oid, bool) {
    if let Some(found) = OWNERS.with(|o| o.borrow().get(&fn_oid).copied()) {
        return found;
    }
    let found = lookup_owner(fn_oid);
    if found.0 != pg_sys::InvalidOid {
        OWNERS.with(|o| o.borrow_mut().insert(fn_oid, found));
    }
    found
}

fn lookup_owner(fn_oid: pg_sys::Oid) -> (pg_sys::Oid, bool) {
    // SAFETY: a syscache lookup by OID; the tuple is released before return
    // and only its fixed-size fields are read while it is pinned.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(fn_oid),
        );
        if tuple.is_null() {
            return (pg_sys::InvalidOid, false);
        }
        let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_proc;
        let found = ((*form).proowner, (*form).prosecdef);
        pg_sys::ReleaseSysCache(tuple);
        found
    }
}

/// Switches back to the caller when dropped.
pub struct AsOwner {
    saved_role: pg_sys::Oid,
    saved_context: i32,
    outer_entry: Option<Entry>,
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        // SAFETY: restores the user and context saved by `enter`; it only
        // sets two backend globals and cannot fail.
        unsafe { pg_sys::SetUserIdAndSecContext(self.saved_role, self.saved_context) };
        ENTRY.with(|e| e.set(self.outer_entry));
    }
}

/// Records the caller of function `fn_oid` and runs the rest of the call as
/// the function's owner (with `SECURITY_LOCAL_USERID_CHANGE`, so the body
/// cannot `SET ROLE`, as in a SECURITY DEFINER function).
pub fn enter(fn_oid: pg_sys::Oid) -> AsOwner {
    crate::core::error::learn_function_names();
    let (role, context) = user_and_context();
    let (owner, definer) = owner_of(fn_oid);
    // Still declared SECURITY DEFINER: a schema from before 0.3.0 that this
    // library serves until ALTER EXTENSION UPDATE. The current user is the
    // owner already; the caller can only be taken as 0.2.0 took it.
    let caller = if definer {
        // SAFETY: reads a backend global; no pointers involved.
        entry_of(unsafe { pg_sys::GetOuterUserId() }, context)
    } else {
        entry_of(role, context)
    };
    let outer_entry = ENTRY.with(|e| e.replace(Some(caller)));
    if owner != pg_sys::InvalidOid && !definer {
        // SAFETY: owner is an existing role (the function's owner); the
        // context keeps every flag the caller had and adds the local-change
        // flag, as fmgr_security_definer does.
        unsafe {
            pg_sys::SetUserIdAndSecContext(
                owner,
                context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            )
        };
    }
    AsOwner {
        saved_role: role,
        saved_context: context,
        outer_entry,
    }
}

/// [`enter`] for a `#[pg_extern]` function, from its `fcinfo` argument.
///
/// # Safety
/// `fcinfo` must be the `FunctionCallInfo` PostgreSQL passed to the running
/// function.
pub unsafe fn enter_from(fcinfo: pg_sys::FunctionCallInfo) -> AsOwner {
    // SAFETY: the caller passes the running function's valid fcinfo, whose
    // flinfo describes the function being called.
    let fn_oid = unsafe { (*(*fcinfo).flinfo).fn_oid };
    enter(fn_oid)
}

/// Runs `f` as the role that called the running function, inside a
/// security-restricted operation (as REFRESH MATERIALIZED VIEW runs a view's
/// code): for reading a relation the caller named, so that any code it holds
/// (a view's functions, a column default) runs with the caller's privileges,
/// never the owner's.
pub fn as_caller<T>(f: impl FnOnce() -> T) -> T {
    let caller = entry();
    let (role, context) = user_and_context();
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the user and context saved below; it only sets
            // two backend globals and cannot fail.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let _restore = Restore(role, context);
    // SAFETY: the caller's role exists (it is calling us); the flags forbid
    // SET ROLE and mark the operation restricted for the duration of `f`.
    unsafe {
        pg_sys::SetUserIdAndSecContext(
            caller.role,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        )
    };
    f()
}
