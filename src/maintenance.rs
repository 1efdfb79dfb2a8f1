//! Operator checks and housekeeping (new in 0.2.0): `integrations.verify_secrets()`
//! proves that every stored secret still opens with the configured master key
//! (after a restore, a crash or a key rotation), and
//! `integrations.purge_audit_log()` applies a retention period to the audit
//! trail. Declared in `sql/maintenance.sql` and, for upgrades, in
//! `sql/pg_integrations--0.1.0--0.2.0.sql`.

use pgrx::prelude::*;
use pgrx::Uuid;

use crate::access::require_privileged;
use crate::error::{Error, Result};
use crate::fcall;
use crate::secrets;
use crate::sql_function;

/// At most this many failing secret ids are listed; the count is exact.
const MAX_LISTED_FAILURES: usize = 100;
/// Rows fetched per cursor round trip: bounded memory with a million secrets.
const VERIFY_CHUNK: i64 = 10_000;

/// Outcome of opening every stored secret.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub checked: i64,
    pub failed: i64,
    pub failed_ids: Vec<Uuid>,
}

impl Verification {
    fn note(&mut self, id: Uuid, opened: bool) {
        self.checked += 1;
        if !opened {
            self.failed += 1;
            if self.failed_ids.len() < MAX_LISTED_FAILURES {
                self.failed_ids.push(id);
            }
        }
    }
}

/// Opens (authenticates and decrypts, then forgets) every secret. A secret
/// that fails authentication is counted; a missing or wrong master key is an
/// error (55000), since then nothing can be checked.
fn verify_all() -> Result<Verification> {
    Spi::connect(|client| {
        let mut out = Verification::default();
        let mut cursor = client.try_open_cursor(
            "SELECT id, business_id, key_id, nonce, ciphertext FROM integrations.secrets",
            &[],
        )?;
        loop {
            let rows = cursor.fetch(VERIFY_CHUNK)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let id: Uuid = row.get(1)?.ok_or_else(|| Error::Internal("id is null".into()))?;
                let business: Uuid = row
                    .get(2)?
                    .ok_or_else(|| Error::Internal("business_id is null".into()))?;
                let key_id: i32 = row.get(3)?.unwrap_or(0);
                let nonce: Vec<u8> = row.get(4)?.unwrap_or_default();
                let ciphertext: Vec<u8> = row.get(5)?.unwrap_or_default();
                match secrets::open(client, id, business, key_id, &nonce, &ciphertext) {
                    Ok(_plaintext) => out.note(id, true), // zeroized on drop
                    Err(Error::Corrupted(_)) => out.note(id, false),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    })
}

sql_function!(
    pg_finfo_pgi_verify_secrets,
    pgi_verify_secrets,
    |fcinfo| {
        require_privileged("integrations.verify_secrets")?;
        let v = verify_all()?;
        fcall::begin_rows(fcinfo);
        fcall::put_row(
            fcinfo,
            &mut [
                fcall::datum(v.checked),
                fcall::datum(v.failed),
                fcall::datum(v.failed_ids),
            ],
            &mut [false, false, false],
        );
        Ok(fcall::void())
    }
);

/// Bounds of `purge_audit_log`'s retention period, in days.
pub const AUDIT_KEEP_DAYS: std::ops::RangeInclusive<i32> = 1..=36_500;

pub fn check_keep_days(days: i32) -> Result<i32> {
    if AUDIT_KEEP_DAYS.contains(&days) {
        Ok(days)
    } else {
        Err(Error::InvalidArgument(format!(
            "p_keep_days must be between {} and {}",
            AUDIT_KEEP_DAYS.start(),
            AUDIT_KEEP_DAYS.end()
        )))
    }
}

sql_function!(
    pg_finfo_pgi_purge_audit_log,
    pgi_purge_audit_log,
    |fcinfo| {
        require_privileged("integrations.purge_audit_log")?;
        let days = check_keep_days(
            fcall::arg::<i32>(fcinfo, 0)
                .ok_or_else(|| Error::InvalidArgument("p_keep_days must not be null".into()))?,
        )?;
        // A sequential delete: the table has no index (its rows are appended
        // straight to the heap), and retention runs rarely, off-peak.
        let deleted = Spi::connect_mut(|c| -> Result<i64> {
            Ok(c.update(
                "DELETE FROM integrations.audit_log WHERE at < now() - make_interval(days => $1)",
                None,
                &[days.into()],
            )?
            .len() as i64)
        })?;
        Ok(fcall::datum(deleted))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_exactly_and_listed_up_to_the_cap() {
        let mut v = Verification::default();
        for i in 0..250u128 {
            v.note(Uuid::from_bytes(i.to_be_bytes()), i % 2 == 0);
        }
        assert_eq!(v.checked, 250);
        assert_eq!(v.failed, 125);
        assert_eq!(v.failed_ids.len(), MAX_LISTED_FAILURES);
        assert_eq!(v.failed_ids[0], Uuid::from_bytes(1u128.to_be_bytes()));
    }

    #[test]
    fn retention_must_be_a_sane_number_of_days() {
        for (days, ok) in [(0, false), (-1, false), (1, true), (365, true), (36_500, true), (36_501, false)] {
            assert_eq!(check_keep_days(days).is_ok(), ok, "{days}");
        }
    }
}
