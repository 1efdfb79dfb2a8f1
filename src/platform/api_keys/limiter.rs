//! The hourly rate limiter of `verify_api_key`: one counter per (database,
//! API key) for the current clock hour, in shared memory, taken and counted
//! under one LWLock, so concurrent sessions see one count: exactly
//! `rate_limit` verifications pass in an hour. Exists only when the library is
//! in `shared_preload_libraries` (as the audit queue); otherwise, and for a
//! key that finds the table full, the caller counts in the key's row instead
//! (a row lock: also exact, but a write per verification).
//!
//! Layout: a header (the hour the table counts, entries in use) and
//! `integrations.rate_limiter_keys` entries and a third more, open addressing
//! with linear probing, at most three quarters used. Entries are never
//! removed within an hour; the first verification of a new hour empties the
//! whole table. A counter starts from what the key's row says was counted in
//! the hour (`usage_hour_count`, written by the background writer), so a
//! restart forgets at most the uses the writer had not committed yet.

use pgrx::pg_sys;

use crate::core::gucs;
use crate::pg::shmem;

/// An hour in PostgreSQL timestamp units (microseconds); timestamps count
/// from 2000-01-01 00:00 UTC, so multiples of it are clock hours.
pub const HOUR_US: i64 = 3_600_000_000;

const TRANCHE: &std::ffi::CStr = c"pg_integrations rate limiter";

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    database: pg_sys::Oid,
    count: u32,
    key: [u8; 16],
}

#[repr(C)]
struct Header {
    hour: i64,
    used: usize,
}

static REGION: shmem::Region<Header, Entry> = shmem::Region::new(TRANCHE, entries);

/// The table's length: the keys to count and a third more, so that it is at
/// most three quarters full and probes stay short.
fn entries() -> usize {
    let keys = gucs::rate_limiter_keys();
    keys + keys.div_ceil(3)
}

/// Ask for the limiter's shared memory when loaded by `shared_preload_libraries`.
pub fn init() {
    REGION.request();
}

/// Whether the limiter exists in this server.
pub fn available() -> bool {
    REGION.get().is_some()
}

/// What the limiter decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Counted; `at` is the time it was counted at.
    Allowed { at: i64 },
    /// The key has used its `limit` this hour, which ends at `until`.
    Limited { until: i64 },
    /// Not counted here (not preloaded, or the table is full this hour): the
    /// caller counts in the key's row.
    Elsewhere,
}

/// The clock hour `at` falls in.
pub fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(HOUR_US)
}

/// Count one verification of `key` in `database` against `limit` per hour.
/// `persisted` is the key row's (usage_hour, usage_hour_count): where a
/// counter new in this hour starts.
pub fn admit(
    database: pg_sys::Oid,
    key: &[u8; 16],
    limit: u32,
    persisted: Option<(i64, u32)>,
) -> Admit {
    let Some(region) = REGION.get() else {
        return Admit::Elsewhere;
    };
    let mut held = region.lock();
    let (header, entries) = held.parts();
    // SAFETY: reads the clock (under the lock: the hours the table sees never go back).
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    count(header, entries, database, key, limit, persisted, now)
}

/// The table's logic, apart from shared memory (unit-tested).
fn count(
    header: &mut Header,
    entries: &mut [Entry],
    database: pg_sys::Oid,
    key: &[u8; 16],
    limit: u32,
    persisted: Option<(i64, u32)>,
    now: i64,
) -> Admit {
    // Read under the lock, so hours only move forward; a clock stepped back
    // keeps counting in the later hour.
    let hour = hour_of(now).max(header.hour);
    let at = now.max(hour);
    if hour > header.hour {
        entries.fill(Entry {
            database: pg_sys::InvalidOid,
            count: 0,
            key: [0; 16],
        });
        header.hour = hour;
        header.used = 0;
    }
    let n = entries.len();
    let mut i = slot_of(database, key, n);
    loop {
        let e = &mut entries[i];
        if e.database == database && e.key == *key {
            break;
        }
        if e.database == pg_sys::InvalidOid {
            if header.used >= n - n.div_ceil(4) {
                return Admit::Elsewhere;
            }
            let start = match persisted {
                Some((h, c)) if h == hour => c,
                _ => 0,
            };
            *e = Entry {
                database,
                count: start,
                key: *key,
            };
            header.used += 1;
            break;
        }
        i = (i + 1) % n;
    }
    let e = &mut entries[i];
    if e.count >= limit {
        return Admit::Limited {
            until: hour + HOUR_US,
        };
    }
    e.count += 1;
    Admit::Allowed { at }
}

/// FNV-1a over the database and key: API key ids are random, but a table
/// shared by databases should not trust that.
fn slot_of(database: pg_sys::Oid, key: &[u8; 16], n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in database.to_u32().to_le_bytes().iter().chain(key.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> (Header, Vec<Entry>) {
        (
            Header { hour: 0, used: 0 },
            vec![
                Entry {
                    database: pg_sys::InvalidOid,
                    count: 0,
                    key: [0; 16]
                };
                n
            ],
        )
    }

    const DB: pg_sys::Oid = pg_sys::Oid::from_u32(5);
    const T: i64 = 800_000 * HOUR_US + 17;

    #[test]
    fn exactly_the_limit_passes_in_an_hour() {
        let (mut h, mut e) = table(64);
        let k = [1u8; 16];
        let passed = (0..250)
            .filter(|_| {
                matches!(
                    count(&mut h, &mut e, DB, &k, 100, None, T),
                    Admit::Allowed { .. }
                )
            })
            .count();
        assert_eq!(passed, 100);
        assert_eq!(
            count(&mut h, &mut e, DB, &k, 100, None, T),
            Admit::Limited {
                until: hour_of(T) + HOUR_US
            }
        );
        // the next hour starts from nothing
        assert!(matches!(
            count(&mut h, &mut e, DB, &k, 100, None, T + HOUR_US),
            Admit::Allowed { .. }
        ));
    }

    #[test]
    fn keys_and_databases_count_apart() {
        let (mut h, mut e) = table(64);
        let other_db = pg_sys::Oid::from_u32(6);
        assert!(matches!(
            count(&mut h, &mut e, DB, &[1; 16], 1, None, T),
            Admit::Allowed { .. }
        ));
        assert!(matches!(
            count(&mut h, &mut e, other_db, &[1; 16], 1, None, T),
            Admit::Allowed { .. }
        ));
        assert!(matches!(
            count(&mut h, &mut e, DB, &[2; 16], 1, None, T),
            Admit::Allowed { .. }
        ));
        assert!(matches!(
            count(&mut h, &mut e, DB, &[1; 16], 1, None, T),
            Admit::Limited { .. }
        ));
    }

    #[test]
    fn a_new_counter_starts_from_the_persisted_count_of_its_hour_only() {
        let (mut h, mut e) = table(64);
        let hour = hour_of(T);
        assert!(matches!(
            count(&mut h, &mut e, DB, &[1; 16], 10, Some((hour, 9)), T),
            Admit::Allowed { .. }
        ));
        assert!(matches!(
            count(&mut h, &mut e, DB, &[1; 16], 10, Some((hour, 9)), T),
            Admit::Limited { .. }
        ));
        assert!(matches!(
            count(
                &mut h,
                &mut e,
                DB,
                &[2; 16],
                1,
                Some((hour - HOUR_US, 5)),
                T
            ),
            Admit::Allowed { .. }
        ));
    }

    #[test]
    fn a_full_table_sends_new_keys_elsewhere_and_keeps_the_counted_ones() {
        let (mut h, mut e) = table(8);
        for k in 0..6u8 {
            assert!(matches!(
                count(&mut h, &mut e, DB, &[k; 16], 5, None, T),
                Admit::Allowed { .. }
            ));
        }
        assert_eq!(
            count(&mut h, &mut e, DB, &[9; 16], 5, None, T),
            Admit::Elsewhere
        );
        assert!(matches!(
            count(&mut h, &mut e, DB, &[3; 16], 5, None, T),
            Admit::Allowed { .. }
        ));
        // a new hour empties it
        assert!(matches!(
            count(&mut h, &mut e, DB, &[9; 16], 5, None, T + HOUR_US),
            Admit::Allowed { .. }
        ));
    }

    #[test]
    fn a_clock_stepped_back_keeps_the_later_hour() {
        let (mut h, mut e) = table(8);
        assert!(matches!(
            count(&mut h, &mut e, DB, &[1; 16], 1, None, T),
            Admit::Allowed { .. }
        ));
        assert!(matches!(
            count(&mut h, &mut e, DB, &[1; 16], 1, None, T - HOUR_US),
            Admit::Limited { .. }
        ));
    }
}
