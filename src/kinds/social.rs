//! `upload_post_profiles`: the social kind of seeds 000/001 — one Upload-Post
//! profile per business, with the connected social accounts. No secret.
//!
//! The Upload-Post username is `biz_` followed by the business id's 32
//! lower-case hex digits (e.g. `biz_6f1c2b1e4d2a4c539a773f0e8f2f0a01`):
//! derived from the business alone, so it is the same on every call, unique
//! because business ids are, and URL-safe.

use pgrx::pg_sys::{self, BuiltinOid};
use pgrx::Uuid;

use crate::core::error::{Error, Result};
use crate::pg::direct;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::plans::{self, Statement};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::audit::{self, Action};
use crate::tenancy::{self, Caller};

const KIND: &str = "social";

/// The Upload-Post username of a business.
pub fn username(business: &Uuid) -> String {
    format!("biz_{}", hex::encode(business.as_bytes()))
}

static CREATE: Statement = Statement {
    sql: "INSERT INTO public.upload_post_profiles (business_id, upload_post_username) VALUES ($1, $2) \
          ON CONFLICT (business_id) DO NOTHING RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID],
    mutating: true,
};
static SET_ACCOUNTS: Statement = Statement {
    sql: "INSERT INTO public.upload_post_profiles (business_id, upload_post_username, social_accounts) VALUES ($1, $2, $3) \
          ON CONFLICT (business_id) DO UPDATE SET social_accounts = EXCLUDED.social_accounts RETURNING id",
    args: &[BuiltinOid::UUIDOID, BuiltinOid::TEXTOID, BuiltinOid::JSONBOID],
    mutating: true,
};
static DELETE: Statement = Statement {
    sql: "DELETE FROM public.upload_post_profiles WHERE business_id = $1 RETURNING id",
    args: &[BuiltinOid::UUIDOID],
    mutating: true,
};

fn audit_profile(
    caller: &Caller,
    action: Action,
    business: &Uuid,
    id: Option<&Uuid>,
) -> Result<()> {
    audit::record(caller, action, KIND, business, Some("upload_post"), id)
}

/// The profile row of `business` as a composite datum.
fn profile(business: &Uuid) -> Result<Option<pg_sys::Datum>> {
    let rel = direct::rel("public", "upload_post_profiles", &[])?;
    direct::find_in(
        c"public",
        c"unique_upload_post_business",
        &rel,
        &[direct::uuid_key(1, business)],
        |row| Ok(Some(row.composite())),
    )
}

sql_function!(pgi_get_or_create_upload_post_profile => get_or_create_upload_post_profile);
/// `public.get_or_create_upload_post_profile`, declared in `sql/kinds/rpcs.sql`.
fn get_or_create_upload_post_profile(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize(&business)?;
    if let Some(row) = profile(&business)? {
        return Ok(row);
    }
    let created = Spi::connect_mut(|c| {
        plans::write_returning_id(c, &CREATE, &[business.into(), username(&business).into()])
    })?;
    if let Some(id) = created {
        audit_profile(&caller, Action::Set, &business, Some(&id))?;
    }
    profile(&business)?.ok_or_else(|| Error::Internal("the new profile is not visible".into()))
}

sql_function!(pgi_set_upload_post_social_accounts => set_upload_post_social_accounts);
/// `public.set_upload_post_social_accounts`, declared in `sql/kinds/rpcs.sql`.
fn set_upload_post_social_accounts(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let accounts = fcall::required(call.object(1, "p_social_accounts")?, "p_social_accounts")?;
    let id = Spi::connect_mut(|c| {
        let args = [
            business.into(),
            username(&business).into(),
            fcall::jsonb_param(Some(accounts)),
        ];
        plans::write_returning_id(c, &SET_ACCOUNTS, &args)
    })?;
    audit_profile(&caller, Action::Set, &business, id.as_ref())?;
    Ok(fcall::void())
}

sql_function!(pgi_delete_upload_post_profile => delete_upload_post_profile);
/// `public.delete_upload_post_profile`, declared in `sql/kinds/rpcs.sql`.
fn delete_upload_post_profile(call: &Call) -> Result<pg_sys::Datum> {
    let business = call.required::<Uuid>(0, "p_business_id")?;
    let caller = tenancy::authorize_manage(&business)?;
    let ids = Spi::connect_mut(|c| -> Result<Vec<Uuid>> {
        let plan = plans::plan(c, &DELETE)?;
        let mut out = Vec::new();
        for row in c.update(plan, None, &[business.into()])? {
            out.extend(row.get::<Uuid>(1)?);
        }
        Ok(out)
    })?;
    for id in ids {
        audit_profile(&caller, Action::Delete, &business, Some(&id))?;
    }
    Ok(fcall::void())
}

#[cfg(test)]
mod tests {
    #[test]
    fn usernames_are_stable_lowercase_and_url_safe() {
        let b = pgrx::Uuid::from_bytes([
            0x6f, 0x1c, 0x2b, 0x1e, 0x4d, 0x2a, 0x4c, 0x53, 0x9a, 0x77, 0x3f, 0x0e, 0x8f, 0x2f,
            0x0a, 0x01,
        ]);
        let u = super::username(&b);
        assert_eq!(u, "biz_6f1c2b1e4d2a4c539a773f0e8f2f0a01");
        assert_eq!(u, super::username(&b));
        assert!(u
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
    }
}
