//! pg_integrations: the integrations layer of a multi-tenant SaaS database,
//! implemented in Rust inside PostgreSQL.
//!
//! The parts, lowest first (README.md has the map; `sql/` is split the same way):
//! - [`pg`]: the plumbing between Rust and PostgreSQL: the calling convention
//!   and argument helpers of the functions declared in `sql/`, prepared
//!   statements, direct index reads and appends, triggers;
//! - [`core`]: sealing (`crypto`), the keyring, the secret store, settings,
//!   errors, tokens and validators;
//! - [`tenancy`]: who is calling, business ownership and membership, the
//!   audit trail;
//! - [`kinds`]: the seed-compatible integration kinds (seeds 000/001);
//! - [`platform`]: the provider registry, connections, OAuth state, metrics
//!   and webhooks (seeds 002/003);
//! - [`ops`]: the secret store's SQL face, maintenance and migration.
//!
//! Rules the layout keeps:
//! - the core knows no RPC and no kind (it imports only `core` and `pg`);
//! - kinds never import each other; the platform never imports a kind;
//! - crypto (`core::crypto`) and signature code (`platform::webhooks::signature`)
//!   never touch pgrx, and neither do the other pure modules (`core::tokens`,
//!   `core::validate`, `core::redact`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

use pgrx::prelude::*;

pub mod core;
pub mod kinds;
pub mod ops;
pub mod pg;
pub mod platform;
pub mod tenancy;

::pgrx::pg_module_magic!(name, version);

// Roles, schema and the secret store's tables first; then each part's DDL in
// the order of the parts; grants and comments on the functions pgrx generates
// from Rust (the secret store's SQL face) last.
extension_sql_file!("../sql/core/bootstrap.sql", bootstrap);
extension_sql_file!("../sql/pg/install.sql", name = "pg_install");
extension_sql_file!(
    "../sql/ops/legacy.sql",
    name = "legacy",
    requires = ["pg_install"]
);
extension_sql_file!(
    "../sql/pg/triggers.sql",
    name = "pg_triggers",
    requires = ["legacy"]
);
extension_sql_file!(
    "../sql/tenancy/tenancy.sql",
    name = "tenancy",
    requires = ["pg_triggers"]
);
extension_sql_file!(
    "../sql/tenancy/audit.sql",
    name = "audit",
    requires = ["tenancy"]
);
extension_sql_file!(
    "../sql/platform/providers.sql",
    name = "providers",
    requires = ["audit"]
);
extension_sql_file!(
    "../sql/kinds/tables.sql",
    name = "kind_tables",
    requires = ["providers"]
);
extension_sql_file!(
    "../sql/kinds/rpcs.sql",
    name = "kind_rpcs",
    requires = ["kind_tables"]
);
extension_sql_file!(
    "../sql/ops/migrate.sql",
    name = "migrate",
    requires = ["kind_rpcs"]
);
extension_sql_file!(
    "../sql/platform/oauth.sql",
    name = "oauth",
    requires = ["migrate"]
);
extension_sql_file!(
    "../sql/platform/connections.sql",
    name = "connections",
    requires = ["oauth"]
);
extension_sql_file!(
    "../sql/platform/metrics.sql",
    name = "metrics",
    requires = ["connections"]
);
extension_sql_file!(
    "../sql/platform/webhooks.sql",
    name = "webhooks",
    requires = ["metrics"]
);
extension_sql_file!(
    "../sql/ops/maintenance.sql",
    name = "maintenance",
    requires = ["webhooks"]
);
// 0.5.0's objects: the upgrade script is also the fresh install's last part.
extension_sql_file!(
    "../sql/pg_integrations--0.4.0--0.5.0.sql",
    name = "release_0_5_0",
    requires = ["maintenance"]
);
// 0.6.0: keys that include business_id (Citus), the same way.
extension_sql_file!(
    "../sql/pg_integrations--0.5.0--0.6.0.sql",
    name = "release_0_6_0",
    requires = ["release_0_5_0"]
);
// 0.7.0: calls routed to the node that holds their business (Citus).
extension_sql_file!(
    "../sql/pg_integrations--0.6.0--0.7.0.sql",
    name = "release_0_7_0",
    requires = ["release_0_6_0"]
);
// 0.8.0: room for a re-save's new versions on their pages (HOT updates).
extension_sql_file!(
    "../sql/pg_integrations--0.7.0--0.8.0.sql",
    name = "release_0_8_0",
    requires = ["release_0_7_0"]
);
extension_sql_file!("../sql/ops/secret_store.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx appends a Rust backtrace to an error's DETAIL (which clients see,
    // and PostgREST returns as `details`) whenever std captures one, as it
    // does when RUST_BACKTRACE is set in the server's environment.
    // RUST_LIB_BACKTRACE decides for std::backtrace before RUST_BACKTRACE
    // does; the backend is single-threaded, so changing its environment here
    // races with nothing.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    core::gucs::init();
    tenancy::caller::init();
    core::error::init();
    core::keyring::init();
    pg::definer::init();
    pg::direct::init();
    pg::recent::init();
    pg::held::init();
    pg::update::init();
    tenancy::init();
    tenancy::route::init();
    tenancy::audit::queue::init();
    platform::api_keys::init();
}

// In-database tests: only with `cargo pgrx test` (feature pg_test), so a
// plain `cargo test` runs the pure-Rust tests without a server.
#[cfg(feature = "pg_test")]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
