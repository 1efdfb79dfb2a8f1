#![allow(clippy::disallowed_methods)] // tests call pgrx's Spi directly, as a client would
//! `#[pg_test]`s: the secret store inside a real PostgreSQL, as a superuser.
//! Permission, tamper and log cases live in tests/pg_regress and tests/client.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    const BIZ: &str = "11111111-1111-4111-8111-111111111111";

    fn create(secret: &str) -> String {
        Spi::get_one_with_args::<pgrx::Uuid>(
            "SELECT integrations.create_secret($1::uuid, $2)",
            &[BIZ.into(), secret.into()],
        )
        .unwrap()
        .unwrap()
        .to_string()
    }

    fn read(id: &str) -> Option<String> {
        Spi::get_one_with_args::<String>("SELECT integrations.read_secret($1::uuid)", &[id.into()])
            .unwrap()
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    #[pg_test]
    fn round_trips_empty_ascii_multibyte_and_1mib() {
        let big = "k".repeat(1 << 20);
        for value in [
            "",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "مفتاح سري — ключ — 秘密 🔑",
            big.as_str(),
        ] {
            let id = create(value);
            assert_eq!(read(&id).as_deref(), Some(value));
        }
        let big_ct = count(&format!(
            "SELECT length(ciphertext)::bigint FROM integrations.secrets WHERE length(ciphertext) > {}",
            1 << 20
        ));
        assert_eq!(
            big_ct,
            (1 << 20) + 16,
            "ciphertext is plaintext plus a 16-byte tag"
        );
    }

    #[pg_test]
    fn nonces_are_unique_across_10000_secrets() {
        Spi::run(&format!(
            "SELECT integrations.create_secret('{BIZ}', 'same value ' || (g % 3)) FROM generate_series(1, 10000) g"
        ))
        .unwrap();
        assert_eq!(count("SELECT count(*) FROM integrations.secrets"), 10_000);
        assert_eq!(
            count("SELECT count(DISTINCT nonce) FROM integrations.secrets"),
            10_000
        );
        assert_eq!(
            count("SELECT count(DISTINCT ciphertext) FROM integrations.secrets"),
            10_000
        );
    }

    #[pg_test]
    fn first_secret_creates_the_first_data_key() {
        assert_eq!(count("SELECT count(*) FROM integrations.keys"), 0);
        create("v");
        assert_eq!(
            count("SELECT count(*) FROM integrations.keys WHERE status = 'active' AND key_id = 1"),
            1
        );
        create("w");
        assert_eq!(count("SELECT count(*) FROM integrations.keys"), 1);
        assert_eq!(
            count("SELECT secrets FROM integrations.keyring_status() WHERE key_id = 1"),
            2
        );
    }

    #[pg_test]
    fn update_and_delete() {
        let id = create("old");
        Spi::run_with_args(
            "SELECT integrations.update_secret($1::uuid, 'new')",
            &[id.as_str().into()],
        )
        .unwrap();
        assert_eq!(read(&id).as_deref(), Some("new"));
        let deleted = Spi::get_one_with_args::<bool>(
            "SELECT integrations.delete_secret($1::uuid)",
            &[id.as_str().into()],
        );
        assert_eq!(deleted, Ok(Some(true)));
        assert_eq!(read(&id), None, "a deleted secret reads as NULL");
        let again = Spi::get_one_with_args::<bool>(
            "SELECT integrations.delete_secret($1::uuid)",
            &[id.as_str().into()],
        );
        assert_eq!(again, Ok(Some(false)));
    }

    #[pg_test]
    fn rotation_then_batched_reencryption_keeps_every_secret_open() {
        let values: Vec<String> = (0..25).map(|i| format!("value-{i}-ü")).collect();
        let ids: Vec<String> = values.iter().map(|v| create(v)).collect();
        let new_key = Spi::get_one::<i32>("SELECT integrations.rotate_data_key()")
            .unwrap()
            .unwrap();
        assert_eq!(new_key, 2);
        // Secrets made after the rotation use the new key at once.
        let fresh = create("after rotation");
        assert_eq!(
            count(&format!(
                "SELECT key_id::bigint FROM integrations.secrets WHERE id = '{fresh}'"
            )),
            2
        );
        let mut total = 0;
        loop {
            // every secret opens at every point of the re-encryption
            for (id, v) in ids.iter().zip(&values) {
                assert_eq!(read(id).as_deref(), Some(v.as_str()));
            }
            let n = Spi::get_one::<i32>("SELECT integrations.reencrypt_secrets(7)")
                .unwrap()
                .unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 7);
            total += n;
        }
        assert_eq!(total, 25);
        assert_eq!(
            count("SELECT count(*) FROM integrations.secrets WHERE key_id <> 2"),
            0
        );
        assert_eq!(
            count("SELECT secrets FROM integrations.keyring_status() WHERE key_id = 1"),
            0
        );
        assert_eq!(
            count("SELECT count(*) FROM integrations.keys WHERE status = 'retired'"),
            1
        );
        for (id, v) in ids.iter().zip(&values) {
            assert_eq!(read(id).as_deref(), Some(v.as_str()));
        }
    }

    #[pg_test]
    fn unknown_or_null_ids_read_as_null() {
        assert_eq!(read("00000000-0000-4000-8000-000000000000"), None);
        assert_eq!(
            Spi::get_one::<String>("SELECT integrations.read_secret(NULL)").unwrap(),
            None
        );
    }

    #[pg_test(
        error = "secret 00000000-0000-4000-8000-00000000c0de failed authentication: its ciphertext, nonce, key id or business id was altered, or it was copied from another row"
    )]
    fn a_ciphertext_copied_onto_another_row_does_not_open() {
        let id = create("copy me");
        Spi::run(&format!(
            "INSERT INTO integrations.secrets (id, business_id, key_id, nonce, ciphertext) \
             SELECT '00000000-0000-4000-8000-00000000c0de', business_id, key_id, nonce, ciphertext \
             FROM integrations.secrets WHERE id = '{id}'"
        ))
        .unwrap();
        read("00000000-0000-4000-8000-00000000c0de");
    }

    #[pg_test(error = "p_secret must not be null")]
    fn null_secret_is_refused() {
        Spi::run(&format!("SELECT integrations.create_secret('{BIZ}', NULL)")).unwrap();
    }

    #[pg_test(error = "p_batch_size must be between 1 and 1000000, not 0")]
    fn zero_batch_is_refused() {
        Spi::run("SELECT integrations.reencrypt_secrets(0)").unwrap();
    }

    #[pg_test(error = "Citus is not installed in this database: there is nothing to distribute")]
    fn distribute_refuses_a_single_node() {
        Spi::run("SELECT * FROM integrations.distribute('integrations.keys', true)").unwrap();
    }

    #[pg_test]
    fn a_table_without_citus_is_read_directly() {
        // the per-relation answer the direct reads take their path by
        let relid = Spi::get_one::<pg_sys::Oid>("SELECT 'integrations.secrets'::regclass::oid")
            .unwrap()
            .unwrap();
        assert_eq!(crate::pg::sharded::is_citus_table(relid).ok(), Some(false));
        create("still direct");
    }

    /// The point reads keep their index scans for the transaction (`held`).
    /// A use that raises an error leaves its scan broken: the next use must
    /// not touch it, only release it (its index reference) and begin anew;
    /// a use nested in another of the same index gets a scan of its own.
    #[pg_test]
    fn a_kept_scan_broken_by_an_error_is_released_and_never_reused() {
        use crate::pg::{direct, held, subxact};
        Spi::run(
            "CREATE TABLE kept (id uuid PRIMARY KEY, v text); \
             INSERT INTO kept SELECT gen_random_uuid(), 'v' || g FROM generate_series(1, 20) g",
        )
        .unwrap();
        let oid = |name: &str| {
            Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid"))
                .unwrap()
                .unwrap()
        };
        let (table, index) = (oid("kept"), oid("kept_pkey"));
        let id = |v: &str| {
            Spi::get_one::<pgrx::Uuid>(&format!("SELECT id FROM kept WHERE v = '{v}'"))
                .unwrap()
                .unwrap()
        };
        let (one, two) = (id("v1"), id("v2"));
        let value = |key: &pgrx::Uuid| {
            direct::find(table, index, &[direct::uuid_key(1, key)], |row| {
                Ok(Some(row.get::<String>(2)))
            })
            .unwrap()
            .flatten()
        };
        // the first use of an index in a transaction scans on its own; the second keeps its scan
        assert_eq!(value(&one).as_deref(), Some("v1"));
        assert_eq!(held::kept_scans(), [(index, "seen")]);
        // SAFETY: the index is held for the transaction by the read above.
        let references = || unsafe { (*held::open(index)).rd_refcnt };
        let before = references();
        assert_eq!(value(&one).as_deref(), Some("v1"));
        assert_eq!(held::kept_scans(), [(index, "idle")]);
        let kept = references();
        assert_eq!(kept, before + 1, "the kept scan's reference");

        let failed = subxact::run(|| {
            direct::find(
                table,
                index,
                &[direct::uuid_key(1, &one)],
                |_| -> crate::core::error::Result<Option<()>> {
                    pgrx::error!("raised in the middle of a read")
                },
            )?;
            Ok(())
        });
        assert!(failed.is_err_and(|e| e.message.contains("raised in the middle of a read")));
        assert_eq!(held::kept_scans(), [(index, "broken")]);
        // the next use releases the broken scan and keeps a new one
        assert_eq!(value(&two).as_deref(), Some("v2"));
        assert_eq!(held::kept_scans(), [(index, "idle")]);
        assert_eq!(references(), kept, "one kept scan: the broken one released");

        let nested = direct::find(table, index, &[direct::uuid_key(1, &one)], |outer| {
            Ok(Some((outer.get::<String>(2), value(&two))))
        })
        .unwrap();
        assert_eq!(nested, Some((Some("v1".into()), Some("v2".into()))));
        assert_eq!(references(), kept, "the nested use's own scan ended");
        assert_eq!(held::kept_scans(), [(index, "idle")]);
        assert_eq!(value(&one).as_deref(), Some("v1"));

        // A probe's slot (`recent`) is kept the same way, per table: an error raised while
        // the probed row is in it leaves it broken, and the next probe keeps a new one.
        let slots = || -> Vec<&'static str> {
            held::kept_scans()
                .into_iter()
                .filter(|(r, _)| *r == table)
                .map(|(_, s)| s)
                .collect()
        };
        let probed = |key: &pgrx::Uuid| {
            crate::pg::recent::find(table, index, &[key], |row| Ok(Some(row.get::<String>(2))))
                .unwrap()
                .flatten()
        };
        assert_eq!(probed(&one).as_deref(), Some("v1")); // by the index: the place remembered
        assert_eq!(probed(&one).as_deref(), Some("v1")); // a probe, with a slot of its own
        assert_eq!(slots(), ["seen"]);
        assert_eq!(probed(&one).as_deref(), Some("v1")); // a probe in the kept slot
        assert_eq!(slots(), ["idle"]);
        let failed = subxact::run(|| {
            crate::pg::recent::find(
                table,
                index,
                &[&one],
                |_| -> crate::core::error::Result<Option<()>> {
                    pgrx::error!("raised while a probed row is in the slot")
                },
            )?;
            Ok(())
        });
        assert!(failed.is_err_and(|e| e.message.contains("probed row")));
        assert_eq!(slots(), ["broken"]);
        assert_eq!(probed(&one).as_deref(), Some("v1"));
        assert_eq!(slots(), ["idle"]);
    }

    /// What a role may do is cached per backend; every change to roles and
    /// memberships in this very transaction is seen at the next check.
    #[pg_test]
    fn a_cached_privilege_follows_grants_revokes_and_superuser() {
        use crate::tenancy::caller::{is_privileged, is_superuser};
        Spi::run("CREATE ROLE pgi_powers NOLOGIN").unwrap();
        let role = Spi::get_one::<pg_sys::Oid>("SELECT 'pgi_powers'::regrole::oid")
            .unwrap()
            .unwrap();
        let powers = || (is_superuser(role), is_privileged(role));
        assert_eq!(powers(), (false, false));
        assert_eq!(powers(), (false, false), "cached");
        Spi::run("GRANT integrations_admin TO pgi_powers").unwrap();
        assert_eq!(powers(), (false, true), "a membership granted");
        // membership without its privileges: a role's NOINHERIT on 15, a grant's
        // INHERIT FALSE from 16 on (the role's attribute only sets later grants' default)
        #[cfg(feature = "pg15")]
        let (without, with) = (
            "ALTER ROLE pgi_powers NOINHERIT",
            "ALTER ROLE pgi_powers INHERIT",
        );
        #[cfg(not(feature = "pg15"))]
        let (without, with) = (
            "GRANT integrations_admin TO pgi_powers WITH INHERIT FALSE",
            "GRANT integrations_admin TO pgi_powers WITH INHERIT TRUE",
        );
        Spi::run(without).unwrap();
        assert_eq!(
            powers(),
            (false, false),
            "membership without its privileges"
        );
        Spi::run(with).unwrap();
        assert_eq!(powers(), (false, true));
        Spi::run("REVOKE integrations_admin FROM pgi_powers").unwrap();
        assert_eq!(powers(), (false, false), "a membership revoked");
        Spi::run("ALTER ROLE pgi_powers SUPERUSER").unwrap();
        assert_eq!(powers(), (true, true));
        Spi::run("ALTER ROLE pgi_powers NOSUPERUSER").unwrap();
        assert_eq!(powers(), (false, false));
    }

    #[pg_test]
    fn the_master_key_file_is_private_to_the_server() {
        create("x");
        let path =
            crate::core::gucs::data_directory().join(crate::core::gucs::DEFAULT_MASTER_KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("generated key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let contents = std::fs::read_to_string(&path).unwrap();
        assert_eq!(contents.trim().len(), 64);
        // the key never reaches SQL: no column or setting holds it
        let hex = contents.trim().to_string();
        let leaked = Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM integrations.keys WHERE encode(wrapped_key, 'hex') LIKE '%' || $1 || '%' OR master_key_id = $1)",
            &[hex.as_str().into()],
        );
        assert_eq!(leaked, Ok(Some(false)));
    }

    // --- tenancy and the seed-compatible kinds, from Rust -------------------

    const OWNER: &str = "a1000000-0000-4000-8000-00000000000a";

    fn as_owner(sub: &str) {
        Spi::run_with_args(
            "SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)",
            &[format!(r#"{{"sub":"{sub}","role":"authenticated"}}"#).as_str().into()],
        )
        .unwrap();
    }

    /// OWNER belongs to BIZ. (Membership, not an attached tenant table: the
    /// tests run side by side, and attaching alters the shared tables.)
    fn tenant() {
        Spi::run(&format!(
            "INSERT INTO integrations.business_members (business_id, user_id, role) VALUES ('{BIZ}', '{OWNER}', 'owner')"
        ))
        .unwrap();
    }

    #[pg_test]
    fn current_user_id_follows_the_claims() {
        assert_eq!(
            Spi::get_one::<pgrx::Uuid>("SELECT integrations.current_user_id()"),
            Ok(None)
        );
        as_owner(OWNER);
        let me = Spi::get_one::<pgrx::Uuid>("SELECT integrations.current_user_id()")
            .unwrap()
            .unwrap();
        assert_eq!(me.to_string(), OWNER);
        as_owner("not-a-uuid");
        assert_eq!(
            Spi::get_one::<pgrx::Uuid>("SELECT integrations.current_user_id()"),
            Ok(None)
        );
        assert_eq!(
            crate::tenancy::parse_uuid("A1000000-0000-4000-8000-00000000000A")
                .map(|u| u.to_string()),
            Some(OWNER.to_string())
        );
    }

    #[pg_test]
    fn owners_set_and_get_but_do_not_decrypt() {
        tenant();
        as_owner(OWNER);
        let id = Spi::get_one_with_args::<pgrx::Uuid>(
            "SELECT set_ai_avatar_integration($1::uuid, 'heygen', 'hg_pg_test', 'av', 'vo')",
            &[BIZ.into()],
        )
        .unwrap()
        .unwrap();
        let avatar = Spi::get_one_with_args::<String>(
            "SELECT avatar_id FROM get_ai_avatar_integration($1::uuid) WHERE id = $2",
            &[BIZ.into(), id.into()],
        );
        assert_eq!(avatar, Ok(Some("av".to_string())));
        Spi::run("RESET ROLE").unwrap();
        // the row holds a secret id, and the secret store holds only ciphertext
        let sealed = Spi::get_one_with_args::<bool>(
            "SELECT position(convert_to('hg_pg_test', 'UTF8') IN s.ciphertext) = 0 \
             FROM integrations.secrets s JOIN ai_avatar_integrations a ON a.secret_id = s.id WHERE a.id = $1",
            &[id.into()],
        );
        assert_eq!(sealed, Ok(Some(true)));
        let key = Spi::get_one_with_args::<String>(
            "SELECT get_ai_avatar_secret($1::uuid)",
            &[BIZ.into()],
        );
        assert_eq!(key, Ok(Some("hg_pg_test".to_string())));
        let audited = Spi::get_one::<i64>(
            "SELECT count(*) FROM integrations.audit_log WHERE kind = 'ai_avatar'",
        );
        assert_eq!(audited, Ok(Some(2)));
    }

    #[pg_test(
        error = "permission denied: get_ai_avatar_secret is for service_role, integrations_admin and superusers (integrations.owner_can_read_secrets is off)"
    )]
    fn owners_cannot_read_keys_by_default() {
        tenant();
        Spi::run(&format!(
            "SELECT set_ai_avatar_integration('{BIZ}', 'heygen', 'k')"
        ))
        .unwrap();
        as_owner(OWNER);
        Spi::run(&format!("SELECT get_ai_avatar_secret('{BIZ}')")).unwrap();
    }

    #[pg_test]
    fn usernames_are_derived_from_the_business() {
        tenant();
        let name = Spi::get_one_with_args::<String>(
            "SELECT upload_post_username FROM get_or_create_upload_post_profile($1::uuid)",
            &[BIZ.into()],
        );
        assert_eq!(
            name,
            Ok(Some("biz_11111111111141118111111111111111".to_string()))
        );
    }

    #[pg_test]
    fn verify_secrets_counts_exactly_the_secrets_that_no_longer_open() {
        let ids: Vec<String> = (0..5).map(|i| create(&format!("value {i}"))).collect();
        let summary = || {
            Spi::get_two::<i64, i64>("SELECT checked, failed FROM integrations.verify_secrets()")
                .unwrap()
        };
        assert_eq!(summary(), (Some(5), Some(0)));
        // flip one bit of one ciphertext, and move another secret to a different tenant
        Spi::run_with_args(
            "UPDATE integrations.secrets SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) \
             WHERE id = $1::uuid",
            &[ids[1].as_str().into()],
        )
        .unwrap();
        Spi::run_with_args(
            "UPDATE integrations.secrets SET business_id = gen_random_uuid() WHERE id = $1::uuid",
            &[ids[3].as_str().into()],
        )
        .unwrap();
        assert_eq!(summary(), (Some(5), Some(2)));
        let failed = Spi::get_one::<String>(
            "SELECT array_to_string(ARRAY(SELECT unnest(failed_ids)::text ORDER BY 1), ',') \
             FROM integrations.verify_secrets()",
        )
        .unwrap()
        .unwrap();
        let mut expected = vec![ids[1].clone(), ids[3].clone()];
        expected.sort();
        assert_eq!(failed, expected.join(","));
        // the others still open
        assert_eq!(read(&ids[0]).as_deref(), Some("value 0"));
    }

    // --- seed 004: API keys and e-mail service providers --------------------

    /// A key for BIZ made by its owner: (id, key).
    fn api_key(limit: i32) -> (pgrx::Uuid, String) {
        tenant();
        as_owner(OWNER);
        let made = Spi::get_two_with_args::<pgrx::Uuid, String>(
            "SELECT api_key_id, api_key FROM create_api_key($1::uuid, 'gateway', '{content:read}', NULL, $2)",
            &[BIZ.into(), limit.into()],
        )
        .unwrap();
        Spi::run("RESET ROLE").unwrap();
        (made.0.unwrap(), made.1.unwrap())
    }

    fn verify(key: &str, scope: Option<&str>) -> Option<pgrx::Uuid> {
        Spi::get_one_with_args::<pgrx::Uuid>(
            "SELECT api_key_id FROM verify_api_key($1, $2)",
            &[key.into(), scope.into()],
        )
        .unwrap()
    }

    #[pg_test]
    fn an_api_key_is_stored_as_its_sha256_and_verifies() {
        let (id, key) = api_key(1000);
        assert!(key.starts_with("pgi_") && key.len() == 47);
        let stored = Spi::get_two_with_args::<bool, String>(
            "SELECT key_hash = encode(sha256(convert_to($2, 'UTF8')), 'hex'), key_prefix \
             FROM public.api_keys WHERE id = $1",
            &[id.into(), key.as_str().into()],
        )
        .unwrap();
        assert_eq!(stored, (Some(true), Some(key[..12].to_string())));
        assert_eq!(verify(&key, Some("content:read")), Some(id));
        assert_eq!(verify(&key, None), Some(id));
        // the use is counted (in the row: the test server does not preload the library)
        let used = Spi::get_one_with_args::<i64>(
            "SELECT usage_count FROM public.api_keys WHERE id = $1",
            &[id.into()],
        );
        assert_eq!(used, Ok(Some(2)));
    }

    #[pg_test(error = "API key lacks scope orders:write")]
    fn a_missing_scope_is_named() {
        let (_, key) = api_key(1000);
        verify(&key, Some("orders:write"));
    }

    #[pg_test(error = "invalid API key: unknown, revoked or expired")]
    fn a_revoked_key_is_an_unknown_key() {
        let (id, key) = api_key(1000);
        as_owner(OWNER);
        let revoked =
            Spi::get_one_with_args::<bool>("SELECT revoke_api_key($1)", &[id.into()]).unwrap();
        assert_eq!(revoked, Some(true));
        Spi::run("RESET ROLE").unwrap();
        verify(&key, None);
    }

    #[pg_test(error = "API key over its rate limit of 2 verifications per hour")]
    fn the_hourly_limit_holds() {
        let (id, key) = api_key(2);
        assert_eq!(verify(&key, None), Some(id));
        assert_eq!(verify(&key, None), Some(id));
        verify(&key, None);
    }

    #[pg_test]
    fn esp_credentials_are_sealed_as_one_secret() {
        tenant();
        as_owner(OWNER);
        let id = Spi::get_one_with_args::<pgrx::Uuid>(
            "SELECT set_esp_integration($1::uuid, 'mailchimp', '{\"api_key\": \"mc_pg_test-us21\", \"server\": \"us21\"}')",
            &[BIZ.into()],
        )
        .unwrap()
        .unwrap();
        Spi::run("RESET ROLE").unwrap();
        let row = Spi::get_two_with_args::<String, bool>(
            "SELECT e.credentials::text, position(convert_to('mc_pg_test', 'UTF8') IN s.ciphertext) = 0 \
             FROM public.esp_integrations e JOIN integrations.secrets s ON s.id = e.secret_id WHERE e.id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(
            row,
            (
                Some(r#"{"server": "[sealed]", "api_key": "[sealed]"}"#.to_string()),
                Some(true)
            )
        );
        let opened = Spi::get_one_with_args::<String>(
            "SELECT get_esp_credentials($1::uuid, 'mailchimp') ->> 'api_key'",
            &[BIZ.into()],
        );
        assert_eq!(opened, Ok(Some("mc_pg_test-us21".to_string())));
        let gone = Spi::get_one_with_args::<bool>(
            "SELECT delete_esp_integration($1::uuid, 'mailchimp')",
            &[BIZ.into()],
        );
        assert_eq!(gone, Ok(Some(true)));
        assert_eq!(count("SELECT count(*) FROM integrations.secrets"), 0);
    }
}
