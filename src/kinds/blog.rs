//! `blog_integrations`: the blog integration kind of seeds 000/001.

use pgrx::pg_sys::{self, BuiltinOid};

use super::{Kind, OptionArg};
use crate::core::error::Result;
use crate::pg::fcall::Call;
use crate::sql_function;

fn site_url(arg: &str, value: &str) -> std::result::Result<(), String> {
    crate::core::validate::url(arg, value, false)
}

pub static KIND: Kind = Kind {
    name: "blog",
    table: "blog_integrations",
    unique_index: c"unique_business_blog_provider",
    label: "blog provider",
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

sql_function!(pgi_set_blog_integration => set_blog_integration);
/// `public.set_blog_integration`, declared in `sql/kinds/rpcs.sql`.
fn set_blog_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::set(&KIND, call)
}
sql_function!(pgi_get_blog_integration => get_blog_integration);
/// `public.get_blog_integration`, declared in `sql/kinds/rpcs.sql`.
fn get_blog_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::get(&KIND, call)
}
sql_function!(pgi_get_blog_secret => get_blog_secret);
/// `public.get_blog_secret`, declared in `sql/kinds/rpcs.sql`.
fn get_blog_secret(call: &Call) -> Result<pg_sys::Datum> {
    super::get_secret(&KIND, call)
}
sql_function!(pgi_delete_blog_integration => delete_blog_integration);
/// `public.delete_blog_integration`, declared in `sql/kinds/rpcs.sql`.
fn delete_blog_integration(call: &Call) -> Result<pg_sys::Datum> {
    super::delete(&KIND, call)
}
