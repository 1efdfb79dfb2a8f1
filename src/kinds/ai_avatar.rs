//! `ai_avatar_integrations`: the ai_avatar integration kind of seeds 000/001.

use pgrx::pg_sys::BuiltinOid;

use super::{Kind, OptionArg};
use crate::sql_function;

pub static KIND: Kind = Kind {
    name: "ai_avatar",
    table: "ai_avatar_integrations",
    unique_index: c"unique_business_ai_avatar_provider",
    label: "AI avatar provider",
    providers: &["heygen"],
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

sql_function!(
    pg_finfo_pgi_set_ai_avatar_integration,
    pgi_set_ai_avatar_integration,
    |fcinfo| { super::set(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_get_ai_avatar_integration,
    pgi_get_ai_avatar_integration,
    |fcinfo| { super::get(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_get_ai_avatar_secret,
    pgi_get_ai_avatar_secret,
    |fcinfo| { super::get_secret(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_delete_ai_avatar_integration,
    pgi_delete_ai_avatar_integration,
    |fcinfo| { super::delete(&KIND, fcinfo) }
);
