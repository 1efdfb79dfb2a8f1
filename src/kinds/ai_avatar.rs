//! `ai_avatar_integrations`: the ai_avatar integration kind of seeds 000/001.

use pgrx::pg_sys::{self, BuiltinOid};

use super::{Kind, OptionArg};
use crate::core::error::Result;
use crate::pg::fcall::Call;
use crate::sql_function;

pub static KIND: Kind = Kind {
    name: "ai_avatar",
    table: "ai_avatar_integrations",
    unique_index: c"unique_business_ai_avatar_provider",
    label: "AI avatar provider",
    options: [
        OptionArg {
            column: "avatar_id",
            arg: "p_avatar_id",
            check: None,
        },
        OptionArg {
            column: "voice_id",
            arg: "p_voice_id",
            check: None,
        },
    ],
    columns: [
        "id",
        "provider",
        "avatar_id",
        "voice_id",
        "provider_config",
        "status",
        "validated_at",
        "secret_id",
    ],
    statements: crate::kind_statements!("ai_avatar_integrations", "avatar_id", "voice_id"),
    secret_description: "AI avatar provider API key",
};

sql_function!(pgi_set_ai_avatar_integration => set_ai_avatar_integration);
/// `public.set_ai_avatar_integration`, declared in `sql/kinds/rpcs.sql`.
fn set_ai_avatar_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::set(&KIND, call)
}
sql_function!(pgi_get_ai_avatar_integration => get_ai_avatar_integration);
/// `public.get_ai_avatar_integration`, declared in `sql/kinds/rpcs.sql`.
fn get_ai_avatar_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::get(&KIND, call)
}
sql_function!(pgi_get_ai_avatar_secret => get_ai_avatar_secret);
/// `public.get_ai_avatar_secret`, declared in `sql/kinds/rpcs.sql`.
fn get_ai_avatar_secret(call: &Call) -> Result<pg_sys::Datum> {
    super::get_secret(&KIND, call)
}
sql_function!(pgi_delete_ai_avatar_integration => delete_ai_avatar_integration);
/// `public.delete_ai_avatar_integration`, declared in `sql/kinds/rpcs.sql`.
fn delete_ai_avatar_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::delete(&KIND, call)
}
