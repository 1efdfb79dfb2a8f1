//! `blog_integrations`: the blog integration kind of seeds 000/001.

use pgrx::pg_sys::BuiltinOid;

use super::{Kind, OptionArg};
use crate::sql_function;

fn site_url(arg: &str, value: &str) -> Result<(), String> {
    crate::validate::url(arg, value, false)
}

pub static KIND: Kind = Kind {
    name: "blog",
    table: "blog_integrations",
    unique_index: c"unique_business_blog_provider",
    label: "blog provider",
    providers: &["wix", "wordpress"],
    options: [
        OptionArg {
            column: "site_url",
            arg: "p_site_url",
            check: Some(site_url),
        },
        OptionArg {
            column: "username",
            arg: "p_username",
            check: None,
        },
    ],
    columns: [
        "id",
        "provider",
        "site_url",
        "username",
        "provider_config",
        "status",
        "validated_at",
        "secret_id",
    ],
    statements: crate::kind_statements!("blog_integrations", "site_url", "username"),
    secret_description: "Blog provider API key",
};

sql_function!(
    pg_finfo_pgi_set_blog_integration,
    pgi_set_blog_integration,
    |fcinfo| { super::set(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_get_blog_integration,
    pgi_get_blog_integration,
    |fcinfo| { super::get(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_get_blog_secret,
    pgi_get_blog_secret,
    |fcinfo| { super::get_secret(&KIND, fcinfo) }
);
sql_function!(
    pg_finfo_pgi_delete_blog_integration,
    pgi_delete_blog_integration,
    |fcinfo| { super::delete(&KIND, fcinfo) }
);
