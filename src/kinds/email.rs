//! `email_integrations`: the email integration kind of seeds 000/001.

use pgrx::pg_sys::BuiltinOid;

use super::{Kind, OptionArg};
use crate::sql_function;

pub static KIND: Kind = Kind {
    name: "email",
    table: "email_integrations",
    unique_index: c"unique_business_email_provider",
    label: "email provider",
    providers: &["brevo", "mailchimp", "mailerlite"],
    options: [
        OptionArg {
            column: "sender_name",
            arg: "p_sender_name",
            check: None,
        },
        OptionArg {
            column: "sender_email",
            arg: "p_sender_email",
            check: Some(crate::validate::email),
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

sql_function!(
    pg_finfo_pgi_set_email_integration,
    pgi_set_email_integration,
    |fcinfo| { super::set(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_get_email_integration,
    pgi_get_email_integration,
    |fcinfo| { super::get(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_get_email_secret,
    pgi_get_email_secret,
    |fcinfo| { super::get_secret(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_delete_email_integration,
    pgi_delete_email_integration,
    |fcinfo| { super::delete(&KIND, fcinfo) }
);
