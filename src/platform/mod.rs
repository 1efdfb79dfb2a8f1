//! The integration platform (seeds 002 and 003): the provider registry,
//! connections with typed credentials, OAuth state, API call logs and
//! metrics, and webhooks. May use the core, tenancy and the plumbing; never
//! a kind.

pub mod api_keys;
pub mod connections;
pub mod metrics;
pub mod oauth;
pub mod registry;
pub mod webhooks;
