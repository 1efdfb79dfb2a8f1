//! The plumbing between Rust and PostgreSQL: the calling convention of the
//! functions declared in `sql/` and their argument helpers (`fcall`),
//! prepared statements (`plans`), point reads and appends without SPI
//! (`direct`), and the tables' trigger and CHECK functions (`triggers`).
//! Knows nothing above it but the core's error type and validators.

pub mod direct;
pub mod fcall;
pub mod plans;
pub mod triggers;
