//! Operators' and back ends' functions in schema `integrations`: the secret
//! store's SQL face, checks and housekeeping, and the migration off the wide
//! `businesses` table. May use the core, tenancy, the kinds' descriptions
//! (the migration fills their tables) and the plumbing.

pub mod adopt;
pub mod maintenance;
pub mod migrate;
pub mod secret_store;
pub mod vault;
