//! The plumbing between Rust and PostgreSQL: the calling convention of the
//! functions declared in `sql/` and their argument helpers (`fcall`),
//! prepared statements (`plans`), point reads and appends without SPI
//! (`direct`), point reads that look first where a row was last found (`recent`), the
//! relations and index scans they keep until the transaction ends (`held`) and their SQL stand-ins for tables Citus shards (`sharded`), the tables' trigger and CHECK functions (`triggers`), and
//! running each call as the function's owner while remembering who called
//! (`definer`), string settings read on every call (`setting`), SPI under a pinned search path (`spi`), steps that may
//! fail alone (`subxact`) and the preloaded parts' shared memory (`shmem`).
//! Knows nothing above it but the core's error type and validators.

pub mod definer;
pub mod direct;
pub mod fcall;
pub mod held;
pub mod plans;
pub mod recent;
pub mod setting;
pub mod sharded;
pub mod shmem;
pub mod spi;
pub mod subxact;
pub mod triggers;
pub mod update;
