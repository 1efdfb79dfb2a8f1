//! Point reads of `integrations.secrets` by primary key straight through the
//! index AM, without SPI. Reading a secret is the hottest call there is, and
//! SPI's per-query executor start-up (plus re-checking the plan against the
//! function's pinned search_path) cost more than the index lookup itself.
//!
//! Visibility matches what SPI gives a VOLATILE function: our own earlier writes
//! in this transaction are made visible (CommandCounterIncrement), then the scan
//! runs under a fresh transaction snapshot with the current command id.

use pgrx::pg_sys;
use pgrx::{FromDatum, Uuid};

use crate::error::{Error, Result};

/// One stored secret, as read from its row.
pub struct SecretRow {
    pub business_id: Uuid,
    pub key_id: i32,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

// Column numbers in integrations.secrets (see sql/bootstrap.sql).
const ATT_BUSINESS_ID: usize = 2;
const ATT_KEY_ID: usize = 5;
const ATT_NONCE: usize = 6;
const ATT_CIPHERTEXT: usize = 7;

fn relid(name: &std::ffi::CStr) -> Result<pg_sys::Oid> {
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"integrations".as_ptr(), true);
        let oid = if ns == pg_sys::InvalidOid { ns } else { pg_sys::get_relname_relid(name.as_ptr(), ns) };
        if oid == pg_sys::InvalidOid {
            Err(Error::Internal(format!("relation integrations.{} is missing", name.to_string_lossy())))
        } else {
            Ok(oid)
        }
    }
}

/// The row of secret `id`, if any.
pub fn fetch_secret(id: Uuid) -> Result<Option<SecretRow>> {
    let table = relid(c"secrets")?;
    let index = relid(c"secrets_pkey")?;
    unsafe {
        if pg_sys::GetCurrentTransactionIdIfAny() != pg_sys::InvalidTransactionId {
            pg_sys::CommandCounterIncrement();
        }
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
        let snapshot = pg_sys::GetActiveSnapshot();

        let heap = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let idx = pg_sys::index_open(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        let id_datum = pgrx::IntoDatum::into_datum(id).expect("a uuid datum");
        pg_sys::ScanKeyInit(
            &mut key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_UUID_EQ),
            id_datum,
        );
        let scan = pg_sys::index_beginscan(heap, idx, snapshot, 1, 0);
        pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let found = pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
        let row = if found {
            pg_sys::slot_getsomeattrs_int(slot, ATT_CIPHERTEXT as i32);
            let values = std::slice::from_raw_parts((*slot).tts_values, ATT_CIPHERTEXT);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, ATT_CIPHERTEXT);
            let get = |att: usize| (values[att - 1], nulls[att - 1]);
            let (d, n) = get(ATT_BUSINESS_ID);
            let business_id = Uuid::from_datum(d, n);
            let (d, n) = get(ATT_KEY_ID);
            let key_id = i32::from_datum(d, n);
            let (d, n) = get(ATT_NONCE);
            let nonce = Vec::<u8>::from_datum(d, n);
            let (d, n) = get(ATT_CIPHERTEXT);
            let ciphertext = Vec::<u8>::from_datum(d, n);
            match (business_id, key_id, nonce, ciphertext) {
                (Some(business_id), Some(key_id), Some(nonce), Some(ciphertext)) => {
                    Some(SecretRow { business_id, key_id, nonce, ciphertext })
                }
                _ => None,
            }
        } else {
            None
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::index_close(idx, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::relation_close(heap, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::PopActiveSnapshot();
        if found && row.is_none() {
            return Err(Error::Corrupted(format!("secret {id} has a NULL column")));
        }
        Ok(row)
    }
}
