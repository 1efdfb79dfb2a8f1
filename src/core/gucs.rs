//! Settings. All are the operator's: reloadable (`PGC_SIGHUP`, changed in
//! postgresql.conf or with `ALTER SYSTEM` plus `pg_reload_conf()`) or
//! superuser-set (`PGC_SUSET`), never a caller's session-level `SET`, so a
//! caller cannot point a backend at a key of its choice.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Path of the file that holds the master key (64 hex digits). Relative paths
/// are taken from the data directory. Unset: `pg_integrations.key` in the data
/// directory, generated on first use while the keyring is empty.
static MASTER_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The master key file in force before a master-key rotation. While set, data
/// keys still wrapped by that key can be unwrapped, so every backend keeps
/// reading secrets until `integrations.rotate_master_key()` has re-wrapped them.
static PREVIOUS_MASTER_KEY_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);

/// Lets the owners and members of a business (not only privileged roles) read
/// its API keys through `get_*_secret`. Off by default: decrypting is for
/// back-end jobs. Superuser-set (`ALTER DATABASE ... SET`), never by the caller.
static OWNER_CAN_READ_SECRETS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Login roles whose sessions may carry a signed-in user in
/// `request.jwt.claims` (PostgREST's `authenticator`, which sets the claims
/// only after checking the JWT's signature), comma-separated. Any other login
/// role that may act as `authenticated` could write any `sub` there itself:
/// its sessions have no signed-in user. Superusers' sessions always do.
static CLAIMS_LOGIN_ROLES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"authenticator"));

/// How often the audit writer commits the secret reads queued in shared
/// memory, in milliseconds, and flushes the WAL (its commits are
/// asynchronous): what a crash can lose is at most two intervals' records
/// plus the batch being committed.
static AUDIT_FLUSH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(100);

/// How long the audit writer holds counted API-key uses before it adds them
/// to the keys' rows, in milliseconds: a key in steady use gets one row
/// update per interval, not one per batch. A crash loses the uses held.
static USAGE_WRITE_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// How long a secret read waits for room in a full audit queue, in
/// milliseconds, before it records itself in its own transaction.
static AUDIT_QUEUE_WAIT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// How many API keys the shared-memory rate limiter counts in one clock hour
/// (its table has a third more entries). A key verified after that many
/// others in the hour is counted in its row, a write in the caller's
/// transaction. Set at server start: 65,536 by default (2 MB of shared memory).
/// (Three quarters of the table's entries: 65,536 and a third more, 87,382.)
static RATE_LIMITER_KEYS: GucSetting<i32> = GucSetting::<i32>::new(65_536);

/// The name of the key file generated in the data directory when no master key
/// file is configured.
pub const DEFAULT_MASTER_KEY_FILE: &str = "pg_integrations.key";

pub fn init() {
    GucRegistry::define_string_guc(
        c"integrations.master_key_file",
        c"File holding the pg_integrations master key (64 hex digits).",
        c"Relative paths are taken from the data directory. When unset, pg_integrations.key in the data directory is used, and generated while the keyring is empty.",
        &MASTER_KEY_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"integrations.previous_master_key_file",
        c"The master key file in force before a master-key rotation.",
        c"Set it during a rotation, call integrations.rotate_master_key(), then reset it.",
        &PREVIOUS_MASTER_KEY_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"integrations.owner_can_read_secrets",
        c"Lets owners and members of a business read its secrets with get_*_secret.",
        c"Off: only superusers, service_role and integrations_admin decrypt secrets.",
        &OWNER_CAN_READ_SECRETS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"integrations.claims_login_roles",
        c"Login roles whose sessions may carry a signed-in user in request.jwt.claims.",
        c"Comma-separated; default authenticator (PostgREST). Sessions of other login roles have no signed-in user; superusers' always may.",
        &CLAIMS_LOGIN_ROLES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"integrations.audit_flush_interval",
        c"Milliseconds between the audit writer's commits of queued secret reads.",
        c"The writer flushes the WAL once per interval: a crash can lose at most two intervals' reads plus the batch being committed. Only with shared_preload_libraries = 'pg_integrations'.",
        &AUDIT_FLUSH_INTERVAL_MS,
        1,
        1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"integrations.usage_write_interval",
        c"Milliseconds the audit writer holds counted API-key uses before writing them to the keys' rows.",
        c"One row update per key in use per interval; 0 writes them with every batch. A crash loses the uses held (the rate limit may then let a key that many more that hour). Only with shared_preload_libraries = 'pg_integrations'.",
        &USAGE_WRITE_INTERVAL_MS,
        0,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"integrations.audit_queue_wait",
        c"Milliseconds a secret read waits for room in a full audit queue.",
        c"After that the read records itself in its own transaction (refused in a read-only transaction); nothing is dropped.",
        &AUDIT_QUEUE_WAIT_MS,
        0,
        600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    // SAFETY: reads a flag set by the postmaster while it loads the preloaded libraries.
    // (The setting sizes shared memory: it exists only in a preloading server, as
    // PostgreSQL refuses a PGC_POSTMASTER setting defined later.)
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"integrations.rate_limiter_keys",
            c"API keys verify_api_key counts in shared memory per clock hour.",
            c"Keys verified beyond that many in one hour are counted in their rows, a write in the verifying transaction. 24 bytes of shared memory per key and a third more. Only with shared_preload_libraries = 'pg_integrations'; set at server start.",
            &RATE_LIMITER_KEYS,
            1024,
            16_777_216,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    // SAFETY: called once from _PG_init with a NUL-terminated literal.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"integrations".as_ptr()) };
}

fn non_empty(v: Option<CString>) -> Option<String> {
    v.map(|c| c.to_string_lossy().into_owned())
        .filter(|s| !s.trim().is_empty())
}

/// The configured master key file, if any (not resolved against the data directory).
pub fn master_key_file() -> Option<String> {
    non_empty(MASTER_KEY_FILE.get())
}

/// `f` of the raw value of `integrations.claims_login_roles` (no copy).
pub fn with_claims_login_roles<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: reads the setting's variable (a string pointer PostgreSQL's GUC
    // machinery assigns); the string stays valid until the setting is set again,
    // which cannot happen while `f` runs on this backend's stack.
    let raw = unsafe { *CLAIMS_LOGIN_ROLES.as_ptr() };
    if raw.is_null() {
        return f(b"");
    }
    // SAFETY: a non-NULL value is a NUL-terminated string (see above).
    f(unsafe { CStr::from_ptr(raw) }.to_bytes())
}

/// The login roles whose sessions may carry JWT claims.
pub fn claims_login_roles() -> Vec<String> {
    non_empty(CLAIMS_LOGIN_ROLES.get())
        .map(|s| {
            s.split(',')
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

pub fn audit_flush_interval_ms() -> i32 {
    AUDIT_FLUSH_INTERVAL_MS.get()
}

pub fn rate_limiter_keys() -> usize {
    RATE_LIMITER_KEYS.get().max(1024) as usize
}

pub fn usage_write_interval_ms() -> i32 {
    USAGE_WRITE_INTERVAL_MS.get()
}

pub fn audit_queue_wait_ms() -> i32 {
    AUDIT_QUEUE_WAIT_MS.get()
}

pub fn owner_can_read_secrets() -> bool {
    OWNER_CAN_READ_SECRETS.get()
}

pub fn previous_master_key_file() -> Option<String> {
    non_empty(PREVIOUS_MASTER_KEY_FILE.get())
}

/// The data directory, which relative key file paths start from.
pub fn data_directory() -> PathBuf {
    // SAFETY: DataDir is set, NUL-terminated, before any backend loads the library.
    let dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) };
    PathBuf::from(dir.to_string_lossy().into_owned())
}

pub fn resolve(path: &str) -> PathBuf {
    let p = PathBuf::from(path.trim());
    if p.is_absolute() {
        p
    } else {
        data_directory().join(p)
    }
}
