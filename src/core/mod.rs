//! The core: sealing (`crypto`, pure Rust), the keyring, the secret store (the
//! only code that reads or writes `integrations.secrets`), settings, errors,
//! random tokens and input validation. The core knows no RPC and no kind; it
//! may use only the plumbing in `pg`.

pub mod crypto;
pub mod error;
pub mod gucs;
pub mod keyring;
pub mod redact;
pub mod store;
pub mod tokens;
pub mod validate;
