//! Tenancy: who the signed-in user is, which businesses they may act on, and
//! the app's tenant table.
//!
//! A caller may act on a business if it is privileged (superuser, service_role,
//! integrations_admin), or if it acts as `authenticated` and the `sub` of its
//! JWT claims owns the business (the attached tenant table's owner column) or
//! is a member of it (`integrations.business_members`).
//!
//! Owns `caller` (the role calling and whether it is privileged) and `audit`
//! (the audit trail). May use the core and the plumbing; knows no kind.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::Uuid;

pub mod audit;
pub mod caller;
pub mod route;

use crate::core::error::{Error, Result};
use crate::pg::direct;
use crate::pg::fcall::Call;
use crate::pg::recent;
use crate::pg::setting;
use crate::pg::spi::Spi;
use crate::sql_function;

/// Who is calling: the role, the signed-in user (if any) and whether the role
/// is privileged. Recorded in the audit log.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: pg_sys::Oid,
    pub user_id: Option<Uuid>,
    pub privileged: bool,
}

impl Caller {
    /// The role that called the running function; inside a
    /// security-restricted operation neither privileged nor a signed-in user.
    pub fn current() -> Caller {
        let role = caller::caller();
        if caller::restricted() {
            return Caller {
                role,
                user_id: None,
                privileged: false,
            };
        }
        Caller {
            role,
            user_id: current_user_id(),
            privileged: caller::is_privileged(role),
        }
    }

    pub fn role_name(&self) -> std::rc::Rc<str> {
        caller::role_name(self.role)
    }
}

thread_local! {
    /// The last claims string seen and the `sub` parsed from it.
    static CLAIMS: RefCell<(Vec<u8>, Option<Uuid>)> = const { RefCell::new((Vec::new(), None)) };
    static TENANT: RefCell<Option<TenantCache>> = const { RefCell::new(None) };
    static CLAIM_SUB_SPOT: Cell<setting::Spot> = Cell::new(setting::Spot::default());
    static CLAIMS_SPOT: Cell<setting::Spot> = Cell::new(setting::Spot::default());
}

/// `f` of a setting's value; `None` when it is unset or empty. No copy: every
/// secret read looks at the claims, and copying them was 3% of a call.
fn with_setting<R>(
    name: &'static CStr,
    spot: &'static std::thread::LocalKey<Cell<setting::Spot>>,
    f: impl FnOnce(Option<&[u8]>) -> R,
) -> R {
    setting::with_value(name, spot, |v| {
        f(v.map(CStr::to_bytes).filter(|s| !s.is_empty()))
    })
}

/// `sub` of the JWT claims, as PostgREST and Supabase set them (the legacy
/// `request.jwt.claim.sub` first, then `request.jwt.claims`, like `auth.uid()`).
/// A `sub` that is not a UUID counts as no user.
pub fn current_user_id() -> Option<Uuid> {
    // Inside a routed call the coordinator's word is the only one: the
    // session's settings on a worker are whatever the caller's transaction
    // propagated there (citus.propagate_set_commands).
    if let Some(user) = route::carried_user() {
        return user;
    }
    if !caller::session_may_carry_claims() {
        return None;
    }
    if let Some(sub) = with_setting(c"request.jwt.claim.sub", &CLAIM_SUB_SPOT, |v| {
        v.map(|s| parse_uuid(&String::from_utf8_lossy(s)))
    }) {
        return sub;
    }
    with_setting(c"request.jwt.claims", &CLAIMS_SPOT, |claims| {
        let claims = claims?;
        CLAIMS.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != claims {
                let sub = serde_json::from_slice::<serde_json::Value>(claims)
                    .ok()
                    .and_then(|v| v.get("sub").and_then(|s| s.as_str()).and_then(parse_uuid));
                *c = (claims.to_vec(), sub);
            }
            c.1
        })
    })
}

pub fn parse_uuid(s: &str) -> Option<Uuid> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut b = [0u8; 16];
    hex::decode_to_slice(&hex, &mut b).ok()?;
    Some(Uuid::from_bytes(b))
}

/// The app's tenant table, as attached.
#[derive(Clone)]
struct TenantTable {
    relid: pg_sys::Oid,
    index: pg_sys::Oid,
    owner_att: i16,
}

/// What this backend knows of the tenant table, and the relations whose
/// invalidation makes it stale.
#[derive(Clone)]
struct TenantCache {
    config_relid: pg_sys::Oid,
    table: Option<TenantTable>,
}

/// No catalog access here: invalidation callbacks may run during abort.
/// # Safety
/// Called by PostgreSQL only, as the relcache invalidation callback registered in `init`, with
/// arguments PostgreSQL owns for the duration of the call.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    TENANT.with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            let stale = match &*t {
                Some(c) => {
                    relid == pg_sys::InvalidOid
                        || relid == c.config_relid
                        || c.table.as_ref().is_some_and(|tt| tt.relid == relid)
                }
                None => false,
            };
            if stale {
                *t = None;
            }
        }
    });
}

pub fn init() {
    // SAFETY: called once from _PG_init; the callback is a #[pg_guard] fn that lives as long as
    // the library.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0))
    };
}

fn load_tenant_table() -> Result<Option<TenantTable>> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT t.table_name::oid, \
                    (SELECT i.indexrelid FROM pg_catalog.pg_index i \
                      WHERE i.indrelid = t.table_name AND i.indisunique AND i.indnkeyatts = 1 \
                        AND i.indkey[0] = (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = t.table_name AND attname = 'id') \
                      ORDER BY i.indisprimary DESC LIMIT 1), \
                    (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = t.table_name AND attname = t.owner_column AND NOT attisdropped), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.table_name AND c.relkind = 'r'), \
                    (SELECT count(*) FROM unnest($1::text[]) s \
                      WHERE pg_catalog.to_regclass(s) IS NOT NULL \
                        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
                                        WHERE k.conrelid = pg_catalog.to_regclass(s) AND k.contype = 'f' \
                                          AND k.confrelid = t.table_name)), \
                    t.table_name::text, t.owner_column::text \
             FROM integrations.tenant_table t",
            Some(1),
            &[TENANT_SCOPED_TABLES.to_vec().into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        if row.get::<bool>(4)? != Some(true) {
            // The tenant table was dropped (with its foreign keys): nobody owns
            // a business through it any more; memberships still count.
            return Ok(None);
        }
        // pg_dump does not carry the foreign keys attach_tenant_table added to
        // the extension's tables: after a restore, deleting a business would
        // leave its integrations and secrets behind, and a business id added
        // again with another owner would hand that owner the old ones. Fail
        // closed until the table is attached again.
        let unlinked: i64 = row.get(5)?.unwrap_or(0);
        if unlinked > 0 {
            let name: String = row.get(6)?.unwrap_or_default();
            let owner: String = row.get(7)?.unwrap_or_default();
            return Err(Error::NotReady {
                message: format!(
                    "the tenant table {name} is attached, but {unlinked} integration tables have no foreign key to it (pg_dump does not carry them)"
                ),
                hint: format!(
                    "Run SELECT integrations.attach_tenant_table('{name}', '{owner}'); as service_role or a superuser."
                ),
            });
        }
        match (
            row.get::<pg_sys::Oid>(1)?,
            row.get::<pg_sys::Oid>(2)?,
            row.get::<i16>(3)?,
        ) {
            (Some(relid), Some(index), Some(owner_att)) => Ok(Some(TenantTable {
                relid,
                index,
                owner_att,
            })),
            _ => Err(Error::NotReady {
                message: "the attached tenant table lost its unique id index or its owner column"
                    .into(),
                hint: "Call integrations.attach_tenant_table() again.".into(),
            }),
        }
    })
}

/// The attached tenant table and its unique id index, if one is attached.
pub(crate) fn tenant_relation() -> Result<Option<(pg_sys::Oid, pg_sys::Oid)>> {
    Ok(tenant_table()?.map(|t| (t.relid, t.index)))
}

fn tenant_table() -> Result<Option<TenantTable>> {
    if let Some(c) = TENANT.with(|t| t.borrow().clone()) {
        return Ok(c.table);
    }
    let config_relid = direct::relid(c"integrations", c"tenant_table")?;
    let table = load_tenant_table()?;
    TENANT.with(|c| {
        *c.borrow_mut() = Some(TenantCache {
            config_relid,
            table: table.clone(),
        })
    });
    Ok(table)
}

/// A signed-in user's place in a business.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Membership {
    Member,
    Admin,
    Owner,
}

/// What a call does to a business, and so who may make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Read configuration, record health, metrics and logs, start OAuth:
    /// any member.
    Use,
    /// Create, change or delete integrations, connections and webhook
    /// configurations: owners and admins.
    Manage,
}

impl Membership {
    fn parse(role: &str) -> Option<Membership> {
        match role {
            "owner" => Some(Membership::Owner),
            "admin" => Some(Membership::Admin),
            "member" => Some(Membership::Member),
            _ => None,
        }
    }

    fn allows(self, need: Need) -> bool {
        match need {
            Need::Use => true,
            Need::Manage => self >= Membership::Admin,
        }
    }
}

/// `user`'s place in `business`: the owner in the tenant table, or the role
/// of its row in `integrations.business_members`; `None` for neither.
fn membership(user: &Uuid, business: &Uuid) -> Result<Option<Membership>> {
    if let Some(t) = tenant_table()? {
        let owner = recent::find(t.relid, t.index, &[business], |row| {
            Ok(Some(row.get::<Uuid>(t.owner_att)))
        })?;
        if owner.flatten().as_ref() == Some(user) {
            return Ok(Some(Membership::Owner));
        }
    }
    let members = direct::rel("integrations", "business_members", &["role"])?;
    let role = members.att("role")?;
    let member = direct::find_in(
        c"integrations",
        c"business_members_pkey",
        &members,
        &[direct::uuid_key(1, business), direct::uuid_key(2, user)],
        |row| Ok(Some(row.get::<&str>(role).and_then(Membership::parse))),
    )?;
    Ok(member.flatten())
}

fn is_api_user(role: pg_sys::Oid) -> bool {
    // SAFETY: has_privs_of_role takes two role OIDs and only reads the catalogs.
    unsafe {
        let authenticated = caller::role_oid(c"authenticated");
        authenticated != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, authenticated)
    }
}

/// Whether the caller may make a call that needs `need` on `business`.
/// Fails (55000) for everyone while the attached tenant table has lost its
/// foreign keys.
pub fn can(caller: &Caller, business: &Uuid, need: Need) -> Result<bool> {
    tenant_table()?;
    if caller.privileged {
        return Ok(true);
    }
    match &caller.user_id {
        Some(user) if is_api_user(caller.role) => {
            Ok(membership(user, business)?.is_some_and(|m| m.allows(need)))
        }
        _ => Ok(false),
    }
}

/// Whether the caller may see and use `business` (any member).
pub fn can_access(caller: &Caller, business: &Uuid) -> Result<bool> {
    can(caller, business, Need::Use)
}

/// The caller, if it may make a call that needs `need` on `business`; 42501
/// otherwise.
pub fn authorize_to(business: &Uuid, need: Need) -> Result<Caller> {
    let caller = Caller::current();
    if can(&caller, business, need)? {
        return Ok(caller);
    }
    let why = if need == Need::Manage && can(&caller, business, Need::Use)? {
        "is a member of it, but only its owners and admins may change its integrations or read their keys"
    } else {
        "neither owns it nor belongs to it"
    };
    Err(Error::NotAllowed(format!(
        "permission denied for business {business}: the caller ({}) {why}",
        caller.role_name()
    )))
}

/// The caller, if it may use `business` (any member); 42501 otherwise.
pub fn authorize(business: &Uuid) -> Result<Caller> {
    authorize_to(business, Need::Use)
}

/// The caller, if it may change `business`'s integrations (owners, admins);
/// 42501 otherwise.
pub fn authorize_manage(business: &Uuid) -> Result<Caller> {
    authorize_to(business, Need::Manage)
}

// ---------------------------------------------------------------------------
// SQL entry points (declared in sql/tenancy.sql)

sql_function!(pgi_current_user_id => current_user_id_sql);
/// `integrations.current_user_id`, declared in `sql/tenancy/tenancy.sql`.
fn current_user_id_sql(call: &Call) -> Result<pg_sys::Datum> {
    Ok(match current_user_id() {
        Some(u) => crate::pg::fcall::datum(u),
        None => call.null(),
    })
}

sql_function!(pgi_can_manage_business => can_manage_business);
/// `integrations.can_manage_business`, declared in `sql/tenancy/tenancy.sql`.
fn can_manage_business(call: &Call) -> Result<pg_sys::Datum> {
    let Some(business) = call.arg::<Uuid>(0) else {
        return Ok(crate::pg::fcall::datum(false));
    };
    Ok(crate::pg::fcall::datum(can(
        &Caller::current(),
        &business,
        Need::Manage,
    )?))
}

sql_function!(pgi_can_access_business => can_access_business);
/// `integrations.can_access_business`, declared in `sql/tenancy/tenancy.sql`.
fn can_access_business(call: &Call) -> Result<pg_sys::Datum> {
    let Some(business) = call.arg::<Uuid>(0) else {
        return Ok(crate::pg::fcall::datum(false));
    };
    Ok(crate::pg::fcall::datum(can_access(
        &Caller::current(),
        &business,
    )?))
}

/// Tables whose `business_id` gets a foreign key to the attached tenant table.
pub const TENANT_SCOPED_TABLES: &[&str] = &[
    "integrations.secrets",
    "integrations.business_members",
    "public.ai_avatar_integrations",
    "public.email_integrations",
    "public.blog_integrations",
    "public.upload_post_profiles",
    "public.integration_oauth_states",
    "public.integration_connections",
    "public.integration_api_logs",
    "public.integration_metrics_hourly",
    "public.integration_webhook_configs",
    "public.integration_events",
    "public.webhook_access_logs",
    "public.api_keys",
    "public.esp_integrations",
];

sql_function!(pgi_attach_tenant_table => attach_tenant_table);
/// `integrations.attach_tenant_table`, declared in `sql/tenancy/tenancy.sql`.
fn attach_tenant_table(call: &Call) -> Result<pg_sys::Datum> {
    caller::require_privileged("integrations.attach_tenant_table")?;
    let table: pg_sys::Oid = call.required(0, "p_table")?;
    let owner: String = call.name(1).unwrap_or_else(|| "profile_id".into());
    attach(table, &owner)?;
    Ok(crate::pg::fcall::void())
}

fn attach(table: pg_sys::Oid, owner: &str) -> Result<()> {
    direct::lock_relation(table);
    Spi::connect_mut(|c| {
        let check = c.select(
            "SELECT c.oid::regclass::text, \
                    (SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute WHERE attrelid = c.oid AND attname = 'id' AND NOT attisdropped), \
                    (SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute WHERE attrelid = c.oid AND attname = $2 AND NOT attisdropped), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1 \
                            AND i.indkey[0] = (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = c.oid AND attname = 'id')), \
                    c.relkind \
             FROM pg_catalog.pg_class c WHERE c.oid = $1",
            Some(1),
            &[table.into(), owner.into()],
        )?;
        if check.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "p_table: relation {} does not exist",
                table.to_u32()
            )));
        }
        let row = check.first();
        let name: String = row.get(1)?.unwrap_or_default();
        let id_type: Option<String> = row.get(2)?;
        let owner_type: Option<String> = row.get(3)?;
        let id_unique: bool = row.get(4)?.unwrap_or(false);
        let relkind: Option<i8> = row.get(5)?;
        // An ordinary table: ownership is read straight from its heap and
        // unique index (a partitioned table has neither).
        if relkind.map(|k| k as u8) != Some(b'r') {
            return Err(Error::InvalidArgument(format!(
                "p_table: {name} is not an ordinary table (views, partitioned and foreign tables are refused)"
            )));
        }
        if id_type.as_deref() != Some("uuid") || !id_unique {
            return Err(Error::InvalidArgument(format!(
                "p_table: {name} needs a uuid column \"id\" with a primary key or unique constraint"
            )));
        }
        if owner_type.as_deref() != Some("uuid") {
            return Err(Error::InvalidArgument(format!(
                "p_owner_column: {name} has no uuid column \"{owner}\""
            )));
        }
        c.update(
            // EXCLUDED's time, not now() in the update: Citus (a reference table) evaluates
            // only immutable functions there
            "INSERT INTO integrations.tenant_table (table_name, owner_column, attached_at) VALUES ($1, $2, pg_catalog.now()) \
             ON CONFLICT (singleton) DO UPDATE SET table_name = EXCLUDED.table_name, owner_column = EXCLUDED.owner_column, attached_at = EXCLUDED.attached_at",
            None,
            &[table.into(), owner.into()],
        )?;
        for scoped in TENANT_SCOPED_TABLES {
            // a table of a later version than the installed SQL (the library
            // is always the newest)
            let exists = !c
                .select(
                    "SELECT 1 WHERE pg_catalog.to_regclass($1) IS NOT NULL",
                    Some(1),
                    &[(*scoped).into()],
                )?
                .is_empty();
            if !exists {
                continue;
            }
            let orphans = c.select(
                &format!(
                    "SELECT count(*), min(s.business_id::text) FROM {scoped} s \
                     WHERE NOT EXISTS (SELECT 1 FROM {name} t WHERE t.id = s.business_id)"
                ),
                Some(1),
                &[],
            )?;
            let row = orphans.first();
            let n: i64 = row.get(1)?.unwrap_or(0);
            if n > 0 {
                let example: String = row.get(2)?.unwrap_or_default();
                return Err(Error::MissingReference {
                    message: format!(
                        "{n} rows of {scoped} belong to businesses that are not in {name} (e.g. {example})"
                    ),
                    hint: format!(
                        "Add those businesses to {name} or delete their rows, then call integrations.attach_tenant_table() again."
                    ),
                });
            }
            let constraint = format!(
                "{}_business_id_fkey",
                scoped.rsplit('.').next().unwrap_or(scoped)
            );
            let absent = c
                .select(
                    "SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = $1::regclass AND conname = $2",
                    Some(1),
                    &[(*scoped).into(), constraint.as_str().into()],
                )?
                .is_empty();
            if !absent {
                c.update(
                    &format!("ALTER TABLE {scoped} DROP CONSTRAINT {constraint}"),
                    None,
                    &[],
                )?;
            }
            c.update(
                &format!(
                    "ALTER TABLE {scoped} ADD CONSTRAINT {constraint} FOREIGN KEY (business_id) REFERENCES {name} (id) ON DELETE CASCADE"
                ),
                None,
                &[],
            )?;
        }
        Ok(())
    })?;
    if let Ok(config) = direct::relid(c"integrations", c"tenant_table") {
        // SAFETY: queues a relcache invalidation for an existing relation inside a transaction.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(config) };
    }
    Ok(())
}
