//! The audit trail, `integrations.audit_log`: one row per set, delete and
//! secret read, with who did it — never the secret. Rows are appended straight
//! to the heap (the table has no indexes, triggers or constraints), so auditing
//! a secret read costs about a microsecond, not an INSERT statement.

use pgrx::pg_sys;
use pgrx::{IntoDatum, Uuid};

use crate::core::error::Result;
use crate::pg::direct;
use crate::tenancy::Caller;

const COLUMNS: &[&str] = &[
    "at",
    "actor_user_id",
    "actor_role",
    "business_id",
    "action",
    "kind",
    "provider",
    "target_id",
];

/// What happened.
#[derive(Clone, Copy)]
pub enum Action {
    Set,
    Delete,
    ReadSecret,
    /// A row copied in by `integrations.adopt_legacy_integrations()`: never copied again.
    Adopt,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Set => "set",
            Action::Delete => "delete",
            Action::ReadSecret => "read_secret",
            Action::Adopt => "adopt",
        }
    }
}

pub fn record(
    caller: &Caller,
    action: Action,
    kind: &str,
    business: &Uuid,
    provider: Option<&str>,
    target: Option<&Uuid>,
) -> Result<()> {
    let rel = direct::rel("integrations", "audit_log", COLUMNS)?;
    // SAFETY: reads the running transaction's start time; no pointers involved.
    let now = pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() });
    direct::append(
        rel.relid,
        &[
            (rel.att("at")?, Some(now)),
            (
                rel.att("actor_user_id")?,
                caller.user_id.and_then(|u| u.into_datum()),
            ),
            (rel.att("actor_role")?, caller.role_name().into_datum()),
            (rel.att("business_id")?, (*business).into_datum()),
            (rel.att("action")?, action.as_str().into_datum()),
            (rel.att("kind")?, kind.into_datum()),
            (rel.att("provider")?, provider.and_then(|p| p.into_datum())),
            (
                rel.att("target_id")?,
                target.and_then(|t| (*t).into_datum()),
            ),
        ],
    );
    Ok(())
}
