//! Who may call what. Functions are SECURITY DEFINER, so the role that matters is
//! the one the session acts as (`SET ROLE`, which is how PostgREST switches to
//! `authenticated` or `service_role`), read with `GetOuterUserId()`; the
//! definer's identity (`current_user` inside the function) says nothing.

use std::cell::RefCell;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

use crate::core::error::{Error, Result};
use crate::pg::definer;

thread_local! {
    /// Role OIDs by name, forgotten whenever pg_authid changes.
    static ROLES: RefCell<HashMap<&'static CStr, pg_sys::Oid>> = RefCell::new(HashMap::default());
    /// Role names by OID (every audited read records one), forgotten likewise.
    static NAMES: RefCell<HashMap<pg_sys::Oid, Rc<str>>> = RefCell::new(HashMap::default());
    /// Whether the sessions of a login role may carry claims, by the role's
    /// OID, for the value of `integrations.claims_login_roles` it was found
    /// under.
    static CLAIMS_LOGIN: RefCell<(Vec<u8>, HashMap<pg_sys::Oid, bool>)> = RefCell::new((Vec::new(), HashMap::default()));
    /// What a role may do, by its OID, forgotten on any change to roles,
    /// memberships or this database's owner: what PostgreSQL's own cache of
    /// role memberships is forgotten on. Asking PostgreSQL each time (a
    /// superuser check and two membership checks) was ~1% of a pgbench
    /// transaction's backend time (perf).
    static POWERS: RefCell<HashMap<pg_sys::Oid, Powers>> = RefCell::new(HashMap::default());
    /// Bumped by every invalidation: a value found while one arrived (the
    /// catalog reads behind it can take them in) is not cached.
    static POWERS_GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether a role is a superuser, and whether it is privileged.
#[derive(Clone, Copy)]
struct Powers {
    superuser: bool,
    privileged: bool,
}

/// # Safety
/// Called by PostgreSQL only, as the syscache invalidation callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn authid_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    ROLES.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.clear();
        }
    });
    NAMES.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.clear();
        }
    });
    CLAIMS_LOGIN.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.1.clear();
        }
    });
    forget_powers();
}

fn forget_powers() {
    POWERS_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    POWERS.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.clear();
        }
    });
}

/// A change to this database's row (its owner holds the privileges of
/// pg_database_owner); other databases' rows, which autovacuum updates, are
/// passed over, as PostgreSQL's own membership cache passes them over.
///
/// # Safety
/// Called by PostgreSQL only, as the syscache invalidation callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn database_callback(_arg: pg_sys::Datum, cacheid: i32, hash: u32) {
    // SAFETY: hashes this database's OID as the syscache does; no catalog access.
    let ours = unsafe {
        pg_sys::GetSysCacheHashValue(
            cacheid,
            pg_sys::Datum::from(pg_sys::MyDatabaseId),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    };
    if hash == 0 || hash == ours {
        forget_powers();
    }
}

pub fn init() {
    for (cache, callback) in [
        (pg_sys::SysCacheIdentifier::AUTHOID, authid_callback as _),
        (
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
            authid_callback as _,
        ),
        (
            pg_sys::SysCacheIdentifier::DATABASEOID,
            database_callback as _,
        ),
    ] {
        // SAFETY: called once from _PG_init; the callback is a #[pg_guard] fn that lives as
        // long as the library.
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(callback),
                pg_sys::Datum::from(0),
            );
        }
    }
}

/// The OID of role `name` (InvalidOid if it does not exist), cached.
pub fn role_oid(name: &'static CStr) -> pg_sys::Oid {
    if let Some(oid) = ROLES.with(|r| r.borrow().get(name).copied()) {
        return oid;
    }
    // SAFETY: `name` is NUL-terminated; missing_ok makes an unknown role InvalidOid, not an
    // error.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    ROLES.with(|r| r.borrow_mut().insert(name, oid));
    oid
}

/// Roles that may act on any business and use the secret store.
pub const PRIVILEGED_ROLES: [&std::ffi::CStr; 2] = [c"service_role", c"integrations_admin"];

/// The role that called the running function (the current user at its
/// entry: see `pg::definer`), never the session's outer role.
pub fn caller() -> pg_sys::Oid {
    definer::entry().role
}

/// Whether the running function was called inside a security-restricted
/// operation (an index expression, ANALYZE, a materialized view refresh) or
/// from a trigger: then no privileged or owner path is open, whoever the
/// role is.
pub fn restricted() -> bool {
    definer::entry().restricted
}

/// Superuser, or holds the privileges of `service_role` or `integrations_admin`
/// (membership with INHERIT, so a NOINHERIT login such as PostgREST's
/// `authenticator` is privileged only after it switches role).
pub fn is_privileged(role: pg_sys::Oid) -> bool {
    powers(role).privileged
}

/// What `role` may do, cached until roles, memberships or this database's
/// owner change.
fn powers(role: pg_sys::Oid) -> Powers {
    if let Some(p) = POWERS.with(|p| p.borrow().get(&role).copied()) {
        return p;
    }
    let generation = POWERS_GENERATION.with(|g| g.get());
    // SAFETY: superuser_arg and has_privs_of_role take role OIDs and only read the catalogs.
    let powers = unsafe {
        let superuser = pg_sys::superuser_arg(role);
        Powers {
            superuser,
            privileged: superuser
                || PRIVILEGED_ROLES.iter().any(|name| {
                    let oid = role_oid(name);
                    oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, oid)
                }),
        }
    };
    if POWERS_GENERATION.with(|g| g.get()) == generation {
        POWERS.with(|p| p.borrow_mut().insert(role, powers));
    }
    powers
}

/// Whether this session's claims can be believed: it logged in as one of
/// `integrations.claims_login_roles` (PostgREST's authenticator, which checks
/// the JWT before setting the claims) or as a superuser. A login role that
/// may act as `authenticated` could otherwise name any user in the claims.
pub fn session_may_carry_claims() -> bool {
    // Claims speak for the session's role, not for the owner of a SECURITY
    // DEFINER function that calls us (which could have set them itself).
    if !definer::entry().acts_as_session {
        return false;
    }
    // SAFETY: reads a backend global; no pointers involved.
    let session = unsafe { pg_sys::GetSessionUserId() };
    if is_superuser(session) {
        return true;
    }
    crate::core::gucs::with_claims_login_roles(|setting| {
        CLAIMS_LOGIN.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != setting {
                c.0 = setting.to_vec();
                c.1.clear();
            }
            *c.1.entry(session).or_insert_with(|| {
                let name = role_name(session);
                crate::core::gucs::claims_login_roles()
                    .iter()
                    .any(|r| *name == **r)
            })
        })
    })
}

/// Whether `role` is a superuser.
pub fn is_superuser(role: pg_sys::Oid) -> bool {
    powers(role).superuser
}

/// Whether `role` owns what `owner` owns: a superuser, or has the
/// privileges of the owning role.
pub fn owns(role: pg_sys::Oid, owner: pg_sys::Oid) -> bool {
    // SAFETY: has_privs_of_role takes two role OIDs and only reads the catalogs.
    is_superuser(role) || unsafe { pg_sys::has_privs_of_role(role, owner) }
}

/// The name of `role`, cached per backend until pg_authid changes (a rename).
pub fn role_name(role: pg_sys::Oid) -> Rc<str> {
    if let Some(n) = NAMES.with(|n| n.borrow().get(&role).cloned()) {
        return n;
    }
    // SAFETY: noerr makes an unknown role NULL (checked); otherwise the result is a palloc'd
    // NUL-terminated name, copied here.
    let name: Rc<str> = unsafe {
        let p = pg_sys::GetUserNameFromId(role, true);
        if p.is_null() {
            // Not cached: a role being created in this transaction gets its name later.
            return format!("role {}", role.to_u32()).into();
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into()
    };
    NAMES.with(|n| n.borrow_mut().insert(role, name.clone()));
    name
}

/// Fail with 42501 unless the caller is a superuser (changes to the cluster's
/// layout: the extension's tables belong to the superuser who created it).
pub fn require_superuser(what: &str) -> Result<()> {
    super::route::refuse_propagated_settings()?;
    let role = caller();
    if !restricted() && is_superuser(role) {
        Ok(())
    } else {
        Err(Error::NotAllowed(format!(
            "permission denied: {what} is for superusers, not {}",
            role_name(role)
        )))
    }
}

/// Fail with 42501 unless the caller is privileged.
pub fn require_privileged(what: &str) -> Result<()> {
    super::route::refuse_propagated_settings()?;
    let role = caller();
    if restricted() {
        return Err(Error::NotAllowed(format!(
            "permission denied: {what} cannot be called from a trigger or inside a security-restricted operation (an index expression, ANALYZE, a materialized view refresh)"
        )));
    }
    if is_privileged(role) {
        Ok(())
    } else {
        Err(Error::NotAllowed(format!(
            "permission denied: {what} is for service_role, integrations_admin and superusers, not {}",
            role_name(role)
        )))
    }
}
