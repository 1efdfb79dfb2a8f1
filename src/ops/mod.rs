//! Operators' and back ends' functions in schema `integrations`: the secret
//! store's SQL face, checks and housekeeping, the migration off the wide
//! `businesses` table, and the move onto a Citus cluster. May use the core, tenancy, the kinds' descriptions
//! (the migration fills their tables) and the plumbing.

pub mod adopt;
pub mod distribute;
pub mod maintenance;
pub mod migrate;
pub mod secret_store;
pub mod vault;
