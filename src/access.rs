//! Who may call what. Functions are SECURITY DEFINER, so the role that matters is
//! the one the session acts as (`SET ROLE`, which is how PostgREST switches to
//! `authenticated` or `service_role`), read with `GetOuterUserId()`; the
//! definer's identity (`current_user` inside the function) says nothing.

use pgrx::pg_sys;

use crate::error::{Error, Result};

/// Roles that may act on any business and use the secret store.
pub const PRIVILEGED_ROLES: [&std::ffi::CStr; 2] = [c"service_role", c"integrations_admin"];

/// The role the caller acts as.
pub fn caller() -> pg_sys::Oid {
    unsafe { pg_sys::GetOuterUserId() }
}

/// Superuser, or holds the privileges of `service_role` or `integrations_admin`
/// (membership with INHERIT, so a NOINHERIT login such as PostgREST's
/// `authenticator` is privileged only after it switches role).
pub fn is_privileged(role: pg_sys::Oid) -> bool {
    unsafe {
        if pg_sys::superuser_arg(role) {
            return true;
        }
        PRIVILEGED_ROLES.iter().any(|name| {
            let oid = pg_sys::get_role_oid(name.as_ptr(), true);
            oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, oid)
        })
    }
}

pub fn role_name(role: pg_sys::Oid) -> String {
    unsafe {
        let p = pg_sys::GetUserNameFromId(role, true);
        if p.is_null() {
            format!("role {}", role.to_u32())
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Fail with 42501 unless the caller is privileged.
pub fn require_privileged(what: &str) -> Result<()> {
    let role = caller();
    if is_privileged(role) {
        Ok(())
    } else {
        Err(Error::NotAllowed(format!(
            "permission denied: {what} is for service_role, integrations_admin and superusers, not {}",
            role_name(role)
        )))
    }
}
