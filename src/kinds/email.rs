//! `email_integrations`: the email integration kind of seeds 000/001.

use pgrx::pg_sys::{self, BuiltinOid};

use super::{Kind, OptionArg};
use crate::core::error::Result;
use crate::pg::fcall::Call;
use crate::sql_function;

pub static KIND: Kind = Kind {
    name: "email",
    table: "email_integrations",
    unique_index: c"unique_business_email_provider",
    label: "email provider",
    options: [
        OptionArg {
            column: "sender_name",
            arg: "p_sender_name",
            check: None,
        },
        OptionArg {
            column: "sender_email",
            arg: "p_sender_email",
            check: Some(crate::core::validate::email),
        },
    ],
    columns: [
        "id",
        "provider",
        "sender_name",
        "sender_email",
        "provider_config",
        "status",
        "validated_at",
        "secret_id",
    ],
    statements: crate::kind_statements!("email_integrations", "sender_name", "sender_email"),
    secret_description: "Email provider API key",
};

sql_function!(pgi_set_email_integration => set_email_integration);
/// `public.set_email_integration`, declared in `sql/kinds/rpcs.sql`.
fn set_email_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::set(&KIND, call)
}
sql_function!(pgi_get_email_integration => get_email_integration);
/// `public.get_email_integration`, declared in `sql/kinds/rpcs.sql`.
fn get_email_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::get(&KIND, call)
}
sql_function!(pgi_get_email_secret => get_email_secret);
/// `public.get_email_secret`, declared in `sql/kinds/rpcs.sql`.
fn get_email_secret(call: &Call) -> Result<pg_sys::Datum> {
    super::get_secret(&KIND, call)
}
sql_function!(pgi_delete_email_integration => delete_email_integration);
/// `public.delete_email_integration`, declared in `sql/kinds/rpcs.sql`.
fn delete_email_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::delete(&KIND, call)
}
