//! pg_integrations: the integrations layer of a multi-tenant SaaS database,
//! implemented in Rust inside PostgreSQL.
//!
//! Layers (see README.md):
//! - `crypto`: AES-256-GCM sealing and key wrapping (pure Rust);
//! - `keyring`: the master key file and the data keys it wraps, cached per backend;
//! - `secrets`: the secret store's SQL API in schema `integrations`;
//! - `access`: who the caller is and what it may do;
//! - `error`: one error type mapped to SQLSTATEs, and log hygiene.

use pgrx::prelude::*;

pub mod access;
pub mod audit;
pub mod connections;
pub mod crypto;
pub mod direct;
pub mod error;
pub mod fcall;
pub mod gucs;
pub mod keyring;
pub mod kinds;
pub mod maintenance;
pub mod metrics;
pub mod migrate;
pub mod oauth;
pub mod plans;
pub mod registry;
pub mod secrets;
pub mod tenancy;
pub mod triggers;
pub mod validate;
pub mod webhooks;

::pgrx::pg_module_magic!(name, version);

// Roles, schema and tables first; grants and comments on the generated
// functions last.
extension_sql_file!("../sql/bootstrap.sql", bootstrap);
extension_sql_file!("../sql/seed_integrations.sql", name = "seed_integrations");
extension_sql_file!(
    "../sql/providers.sql",
    name = "providers",
    requires = ["seed_integrations"]
);
extension_sql_file!("../sql/oauth.sql", name = "oauth", requires = ["providers"]);
extension_sql_file!(
    "../sql/connections.sql",
    name = "connections",
    requires = ["oauth"]
);
extension_sql_file!(
    "../sql/metrics.sql",
    name = "metrics",
    requires = ["connections"]
);
extension_sql_file!(
    "../sql/webhooks.sql",
    name = "webhooks",
    requires = ["metrics"]
);
extension_sql_file!(
    "../sql/maintenance.sql",
    name = "maintenance",
    requires = ["webhooks"]
);
extension_sql_file!("../sql/finalize.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    access::init();
    error::init();
    keyring::init();
    direct::init();
    tenancy::init();
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
