//! Operator checks and housekeeping (new in 0.2.0): `integrations.verify_secrets()`
//! proves that every stored secret still opens with the configured master key
//! (after a restore, a crash or a key rotation), and
//! `integrations.purge_audit_log()` applies a retention period to the audit
//! trail. Declared in `sql/maintenance.sql` and, for upgrades, in
//! `sql/pg_integrations--0.1.0--0.2.0.sql`.

use crate::core::error::{Error, Result};
use crate::core::store;
use crate::pg::fcall;
use crate::pg::fcall::Call;
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::caller::require_privileged;
use pgrx::pg_sys;

sql_function!(pgi_verify_secrets => verify_secrets);
/// `integrations.verify_secrets`, declared in `sql/ops/maintenance.sql`.
fn verify_secrets(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("integrations.verify_secrets")?;
    let v = store::verify_all()?;
    call.begin_rows();
    call.put_row(
        &mut [
            fcall::datum(v.checked),
            fcall::datum(v.failed),
            fcall::datum(v.failed_ids),
        ],
        &mut [false, false, false],
    );
    Ok(fcall::void())
}

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

sql_function!(pgi_purge_audit_log => purge_audit_log);
/// `integrations.purge_audit_log`, declared in `sql/ops/maintenance.sql`.
fn purge_audit_log(call: &Call) -> Result<pg_sys::Datum> {
    require_privileged("integrations.purge_audit_log")?;
    let days = check_keep_days(call.required::<i32>(0, "p_keep_days")?)?;
    // A sequential delete: the table has no index (its rows are appended
    // straight to the heap), and retention runs rarely, off-peak. `adopt`
    // entries stay: they are what keeps a second adoption from bringing a
    // deleted integration back (one per adopted row, written once).
    let deleted = Spi::connect_mut(|c| -> Result<i64> {
        Ok(c.update(
            "DELETE FROM integrations.audit_log WHERE at < now() - make_interval(days => $1) AND action <> 'adopt'",
            None,
            &[days.into()],
        )?
        .len() as i64)
    })?;
    Ok(fcall::datum(deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_must_be_a_sane_number_of_days() {
        for (days, ok) in [
            (0, false),
            (-1, false),
            (1, true),
            (365, true),
            (36_500, true),
            (36_501, false),
        ] {
            assert_eq!(check_keep_days(days).is_ok(), ok, "{days}");
        }
    }
}
