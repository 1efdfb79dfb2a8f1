//! The keyring: the master key (from a file) and the data keys it wraps
//! (in `integrations.keys`), cached per backend.
//!
//! - A data key is unwrapped once per backend and kept (zeroized when dropped).
//! - `rotate_data_key()` invalidates the relcache entry of `integrations.keys`;
//!   every backend then drops its cached keys at its next transaction, so new
//!   secrets use the new key at once.
//! - The master key is re-read when the configured path changes (SIGHUP) or when
//!   it does not match a data key (the file was replaced).
//! - Fail closed: with data keys in the keyring, a missing or wrong master key is
//!   an error; a key is generated only for an empty keyring with no key file
//!   configured.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::core::crypto::{DataKey, KeyBytes, MasterKey};
use crate::core::error::{Error, Result};
use crate::core::gucs;
use crate::pg::plans::{self, Statement};

struct LoadedMaster {
    path: PathBuf,
    key: Rc<MasterKey>,
}

#[derive(Default)]
struct Cache {
    master: Option<LoadedMaster>,
    previous: Option<LoadedMaster>,
    data_keys: HashMap<i32, Rc<DataKey>>,
    active: Option<i32>,
    keys_relid: pg_sys::Oid,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

static ACTIVE_KEY: Statement = Statement {
    sql: "SELECT key_id, wrapped_key, master_key_id FROM integrations.keys WHERE status = 'active'",
    args: &[],
    mutating: false,
};
static KEY_BY_ID: Statement = Statement {
    sql: "SELECT wrapped_key, master_key_id FROM integrations.keys WHERE key_id = $1",
    args: &[BuiltinOid::INT4OID],
    mutating: false,
};

/// Drop the cached data keys when `integrations.keys` changes (or on a full reset).
/// # Safety
/// Called by PostgreSQL only, as the relcache invalidation callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if relid == pg_sys::InvalidOid || relid == c.keys_relid {
                c.data_keys.clear();
                c.active = None;
                c.keys_relid = pg_sys::InvalidOid;
            }
        }
    });
}

thread_local! {
    /// This transaction changed `integrations.keys`: if it aborts, what was
    /// cached from it must go too.
    static CHANGED_IN_XACT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// # Safety
/// Called by PostgreSQL only, as the transaction callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT
            if CHANGED_IN_XACT.with(|f| f.replace(false)) =>
        {
            CACHE.with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    c.data_keys.clear();
                    c.active = None;
                }
            });
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            CHANGED_IN_XACT.with(|f| f.set(false));
        }
        _ => {}
    }
}

pub fn init() {
    // SAFETY: called once from _PG_init; both callbacks are #[pg_guard] fns that live as long
    // as the library.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
    }
}

fn keys_relid() -> pg_sys::Oid {
    // SAFETY: NUL-terminated literals; missing_ok and get_relname_relid give InvalidOid when
    // absent.
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"integrations".as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            return ns;
        }
        pg_sys::get_relname_relid(c"keys".as_ptr(), ns)
    }
}

/// Tell every backend (at its next transaction) that the keyring changed.
fn invalidate_keyring() {
    CHANGED_IN_XACT.with(|f| f.set(true));
    let relid = keys_relid();
    if relid != pg_sys::InvalidOid {
        // SAFETY: queues a relcache invalidation for an existing relation inside a transaction.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
}

fn remember(key: Rc<DataKey>, active: bool) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.keys_relid == pg_sys::InvalidOid {
            c.keys_relid = keys_relid();
        }
        if active {
            c.active = Some(key.key_id);
        }
        c.data_keys.insert(key.key_id, key);
    });
}

/// Forget a cached data key (after it failed to open a ciphertext, in case the
/// keyring was replaced under this backend, e.g. by a restore).
pub fn forget(key_id: i32) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.data_keys.remove(&key_id);
        if c.active == Some(key_id) {
            c.active = None;
        }
    });
}

// ---------------------------------------------------------------------------
// Master key files

/// The configured master key file, resolved, and whether it is the default.
fn master_key_path() -> (PathBuf, bool) {
    match gucs::master_key_file() {
        Some(p) => (gucs::resolve(&p), false),
        None => (
            gucs::data_directory().join(gucs::DEFAULT_MASTER_KEY_FILE),
            true,
        ),
    }
}

enum FileProblem {
    Missing,
    Other(Error),
}

fn read_master_file(path: &Path) -> std::result::Result<MasterKey, FileProblem> {
    let shown = path.display();
    let meta =
        match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(FileProblem::Missing),
            Err(e) => return Err(FileProblem::Other(Error::NotReady {
                message: format!("could not read master key file \"{shown}\": {e}"),
                hint:
                    "The file must be readable by the operating-system user that runs PostgreSQL."
                        .into(),
            })),
        };
    // Like PostgreSQL's rule for ssl_key_file: 0600, or 0640 when owned by root.
    let mode = meta.mode() & 0o777;
    let too_open = if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(FileProblem::Other(Error::NotReady {
            message: format!(
                "master key file \"{shown}\" is accessible by other users (mode {mode:04o})"
            ),
            hint: format!("Run: chmod 600 \"{shown}\""),
        }));
    }
    let contents = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
        FileProblem::Other(Error::NotReady {
            message: format!("could not read master key file \"{shown}\": {e}"),
            hint: "The file must be readable by the operating-system user that runs PostgreSQL."
                .into(),
        })
    })?);
    MasterKey::parse_file_contents(&contents).map_err(|e| {
        FileProblem::Other(Error::NotReady {
            message: format!("master key file \"{shown}\" does not hold a master key: {e}"),
            hint: "Write 64 hex digits to it, e.g. with: openssl rand -hex 32".into(),
        })
    })
}

/// Create a new random key file; `Ok(false)` when another backend made it first.
fn generate_master_file(path: &Path) -> Result<bool> {
    let key = KeyBytes::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => {
            return Err(Error::NotReady {
                message: format!(
                    "could not create master key file \"{}\": {e}",
                    path.display()
                ),
                hint: "Set integrations.master_key_file to a key file you provide.".into(),
            })
        }
    };
    let mut hex = zeroize::Zeroizing::new(key.to_hex());
    hex.push('\n');
    f.write_all(hex.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::Internal(format!("could not write master key file: {e}")))?;
    crate::core::error::log(format!(
        "pg_integrations: generated master key file \"{}\"",
        path.display()
    ));
    Ok(true)
}

/// The current master key. `keyring_empty` allows generating the default key
/// file; it is only true while the caller holds the keyring lock.
fn current_master(keyring_empty: bool, wrapped_by: Option<&str>) -> Result<Rc<MasterKey>> {
    let (path, is_default) = master_key_path();
    if let Some(k) = CACHE.with(|c| {
        c.borrow()
            .master
            .as_ref()
            .filter(|m| m.path == path)
            .map(|m| m.key.clone())
    }) {
        if wrapped_by.is_none_or(|fp| fp == k.fingerprint()) {
            return Ok(k);
        }
        // The file may have been replaced since it was cached: read it again.
    }
    let key = match read_master_file(&path) {
        Ok(k) => k,
        Err(FileProblem::Other(e)) => return Err(e),
        Err(FileProblem::Missing) if keyring_empty && is_default => {
            generate_master_file(&path)?;
            read_master_file(&path).map_err(|p| match p {
                FileProblem::Missing => Error::Internal("generated key file vanished".into()),
                FileProblem::Other(e) => e,
            })?
        }
        Err(FileProblem::Missing) => {
            let hint = match wrapped_by {
                Some(fp) => format!(
                    "Restore the key file whose fingerprint is {fp} (it wrapped this database's data keys), or point integrations.master_key_file at it and reload."
                ),
                None => "Create it (64 hex digits, e.g. openssl rand -hex 32, mode 0600) or reset integrations.master_key_file to use a generated key.".into(),
            };
            return Err(Error::NotReady {
                message: format!("master key file \"{}\" does not exist", path.display()),
                hint,
            });
        }
    };
    let key = Rc::new(key);
    CACHE.with(|c| {
        c.borrow_mut().master = Some(LoadedMaster {
            path,
            key: key.clone(),
        })
    });
    Ok(key)
}

/// The previous master key, if `integrations.previous_master_key_file` is set.
fn previous_master() -> Result<Option<Rc<MasterKey>>> {
    let Some(p) = gucs::previous_master_key_file() else {
        return Ok(None);
    };
    let path = gucs::resolve(&p);
    if let Some(k) = CACHE.with(|c| {
        c.borrow()
            .previous
            .as_ref()
            .filter(|m| m.path == path)
            .map(|m| m.key.clone())
    }) {
        return Ok(Some(k));
    }
    let key = match read_master_file(&path) {
        Ok(k) => Rc::new(k),
        Err(FileProblem::Missing) => {
            return Err(Error::NotReady {
                message: format!(
                    "previous master key file \"{}\" does not exist",
                    path.display()
                ),
                hint: "Fix or reset integrations.previous_master_key_file and reload.".into(),
            })
        }
        Err(FileProblem::Other(e)) => return Err(e),
    };
    CACHE.with(|c| {
        c.borrow_mut().previous = Some(LoadedMaster {
            path,
            key: key.clone(),
        })
    });
    Ok(Some(key))
}

fn wrong_master(key_id: i32, wrapped_by: &str, have: &str) -> Error {
    let (path, _) = master_key_path();
    Error::NotReady {
        message: format!(
            "the master key in \"{}\" (fingerprint {have}) is not the key that wrapped data key {key_id} (fingerprint {wrapped_by})",
            path.display()
        ),
        hint: "Restore the right key file. During a master-key rotation, set integrations.previous_master_key_file to the old key file, reload, and call integrations.rotate_master_key().".into(),
    }
}

/// The master key (current or previous) with fingerprint `fp`.
fn master_for(key_id: i32, fp: &str) -> Result<Rc<MasterKey>> {
    let current = current_master(false, Some(fp))?;
    if current.fingerprint() == fp {
        return Ok(current);
    }
    if let Some(prev) = previous_master()? {
        if prev.fingerprint() == fp {
            return Ok(prev);
        }
    }
    Err(wrong_master(key_id, fp, current.fingerprint()))
}

fn unwrap_key(key_id: i32, wrapped: &[u8], fp: &str) -> Result<Rc<DataKey>> {
    let master = master_for(key_id, fp)?;
    master.unwrap(key_id, wrapped).map(Rc::new).map_err(|_| {
        Error::Corrupted(format!(
            "data key {key_id} failed to unwrap: its wrapped key in integrations.keys was altered"
        ))
    })
}

// ---------------------------------------------------------------------------
// Data keys

/// The data key with this id if this backend has it cached.
pub fn cached_data_key(key_id: i32) -> Option<Rc<DataKey>> {
    CACHE.with(|c| c.borrow().data_keys.get(&key_id).cloned())
}

/// The data key with this id, for opening a secret.
pub fn data_key(client: &SpiClient<'_>, key_id: i32) -> Result<Rc<DataKey>> {
    if let Some(k) = CACHE.with(|c| c.borrow().data_keys.get(&key_id).cloned()) {
        return Ok(k);
    }
    let plan = plans::plan(client, &KEY_BY_ID)?;
    let row = client.select(plan, Some(1), &[key_id.into()])?;
    if row.is_empty() {
        return Err(Error::Corrupted(format!(
            "the secret names data key {key_id}, which is not in integrations.keys"
        )));
    }
    let row = row.first();
    let wrapped: Vec<u8> = row.get(1)?.unwrap_or_default();
    let fp: String = row.get(2)?.unwrap_or_default();
    let key = unwrap_key(key_id, &wrapped, &fp)?;
    remember(key.clone(), false);
    Ok(key)
}

fn lock_keyring(client: &mut SpiClient<'_>) -> Result<()> {
    client.update(
        "LOCK TABLE integrations.keys IN SHARE ROW EXCLUSIVE MODE",
        None,
        &[],
    )?;
    Ok(())
}

struct KeyringSummary {
    count: i64,
    max_key_id: i32,
    fingerprint: Option<String>,
}

fn summary(client: &SpiClient<'_>) -> Result<KeyringSummary> {
    let row = client
        .select(
            "SELECT count(*), coalesce(max(key_id), 0), \
             (SELECT master_key_id FROM integrations.keys ORDER BY (status = 'active') DESC, key_id DESC LIMIT 1) \
             FROM integrations.keys",
            Some(1),
            &[],
        )?
        .first();
    Ok(KeyringSummary {
        count: row.get(1)?.unwrap_or(0),
        max_key_id: row.get(2)?.unwrap_or(0),
        fingerprint: row.get(3)?,
    })
}

/// Insert a new active data key (retiring the old one). Caller holds the lock.
fn insert_new_key(
    client: &mut SpiClient<'_>,
    master: &MasterKey,
    key_id: i32,
) -> Result<Rc<DataKey>> {
    let raw = KeyBytes::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let wrapped = master
        .wrap(key_id, &raw)
        .map_err(|e| Error::Internal(e.to_string()))?;
    client.update(
        "UPDATE integrations.keys SET status = 'retired', retired_at = now() WHERE status = 'active'",
        None,
        &[],
    )?;
    client.update(
        "INSERT INTO integrations.keys (key_id, status, wrapped_key, master_key_id) VALUES ($1, 'active', $2, $3)",
        None,
        &[key_id.into(), wrapped.into(), master.fingerprint().to_string().into()],
    )?;
    invalidate_keyring();
    Ok(Rc::new(DataKey::new(key_id, &raw)))
}

fn select_active(client: &SpiClient<'_>) -> Result<Option<Rc<DataKey>>> {
    let plan = plans::plan(client, &ACTIVE_KEY)?;
    let rows = client.select(plan, Some(1), &[])?;
    if rows.is_empty() {
        return Ok(None);
    }
    let row = rows.first();
    let key_id: i32 = row.get(1)?.unwrap_or(0);
    if let Some(k) = CACHE.with(|c| c.borrow().data_keys.get(&key_id).cloned()) {
        CACHE.with(|c| c.borrow_mut().active = Some(key_id));
        return Ok(Some(k));
    }
    let wrapped: Vec<u8> = row.get(2)?.unwrap_or_default();
    let fp: String = row.get(3)?.unwrap_or_default();
    let key = unwrap_key(key_id, &wrapped, &fp)?;
    remember(key.clone(), true);
    Ok(Some(key))
}

/// The active data key if this backend has it cached: no SPI connection needed.
pub fn cached_active_key() -> Option<Rc<DataKey>> {
    CACHE.with(|c| {
        let c = c.borrow();
        c.active.and_then(|id| c.data_keys.get(&id).cloned())
    })
}

/// The data key new secrets are sealed with; the first one is made on first use.
pub fn active_key(client: &mut SpiClient<'_>) -> Result<Rc<DataKey>> {
    if let Some(k) = cached_active_key() {
        return Ok(k);
    }
    if let Some(k) = select_active(client)? {
        return Ok(k);
    }
    lock_keyring(client)?;
    if let Some(k) = select_active(client)? {
        return Ok(k);
    }
    let s = summary(client)?;
    let master = match &s.fingerprint {
        None => current_master(s.count == 0, None)?,
        Some(fp) => {
            let m = current_master(false, Some(fp))?;
            if m.fingerprint() != fp {
                return Err(wrong_master(s.max_key_id, fp, m.fingerprint()));
            }
            m
        }
    };
    let key = insert_new_key(client, &master, s.max_key_id + 1)?;
    remember(key.clone(), true);
    Ok(key)
}

/// Make a new data key active; returns its id.
pub fn rotate_data_key(client: &mut SpiClient<'_>) -> Result<i32> {
    lock_keyring(client)?;
    let s = summary(client)?;
    let master = match &s.fingerprint {
        None => current_master(true, None)?,
        Some(fp) => {
            let m = current_master(false, Some(fp))?;
            if m.fingerprint() != fp {
                return Err(wrong_master(s.max_key_id, fp, m.fingerprint()));
            }
            m
        }
    };
    let key = insert_new_key(client, &master, s.max_key_id + 1)?;
    let id = key.key_id;
    remember(key, true);
    Ok(id)
}

/// Re-wrap every data key not yet wrapped by the configured master key; returns
/// how many were re-wrapped.
pub fn rotate_master_key(client: &mut SpiClient<'_>) -> Result<i32> {
    lock_keyring(client)?;
    let current = current_master(false, None)?;
    let rows = client.select(
        "SELECT key_id, wrapped_key, master_key_id FROM integrations.keys WHERE master_key_id <> $1 ORDER BY key_id",
        None,
        &[current.fingerprint().to_string().into()],
    )?;
    let mut todo = Vec::new();
    for row in rows {
        let key_id: i32 = row.get(1)?.unwrap_or(0);
        let wrapped: Vec<u8> = row.get(2)?.unwrap_or_default();
        let fp: String = row.get(3)?.unwrap_or_default();
        todo.push((key_id, wrapped, fp));
    }
    let mut n = 0;
    for (key_id, wrapped, fp) in todo {
        let old = match previous_master()? {
            Some(p) if p.fingerprint() == fp => p,
            _ => {
                return Err(Error::NotReady {
                    message: format!(
                        "data key {key_id} is wrapped by master key {fp}, which is neither the configured master key nor integrations.previous_master_key_file"
                    ),
                    hint: "Set integrations.previous_master_key_file to the old key file, reload, and call this again.".into(),
                })
            }
        };
        let raw = old.unwrap_raw(key_id, &wrapped).map_err(|_| {
            Error::Corrupted(format!(
                "data key {key_id} failed to unwrap with the previous master key"
            ))
        })?;
        let rewrapped = current
            .wrap(key_id, &raw)
            .map_err(|e| Error::Internal(e.to_string()))?;
        client.update(
            "UPDATE integrations.keys SET wrapped_key = $2, master_key_id = $3, rewrapped_at = now() WHERE key_id = $1",
            None,
            &[key_id.into(), rewrapped.into(), current.fingerprint().to_string().into()],
        )?;
        n += 1;
    }
    if n > 0 {
        invalidate_keyring();
    }
    Ok(n)
}
