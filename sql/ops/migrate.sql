-- pg_integrations: moving off the wide businesses table (src/ops/migrate.rs).

-- The default is resolved when called (a regclass literal would need the table
-- to exist when the extension is created).
CREATE FUNCTION integrations.migrate_business_columns(p_table regclass DEFAULT 'public.businesses'::text::regclass, p_drop_columns boolean DEFAULT false)
RETURNS TABLE (kind text, migrated bigint)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_migrate_business_columns';
COMMENT ON FUNCTION integrations.migrate_business_columns(regclass, boolean) IS
    'Copies the legacy integration columns of p_table (heygen_secret_id/heygen_avatar_id/heygen_voice_id, email_provider/email_secret_id/sender_name/sender_email, blog_provider/blog_secret_id/blog_site_url/blog_username) into ai_avatar_integrations, email_integrations and blog_integrations, re-encrypting the keys read from vault.decrypted_secrets (when that view exists) into the secret store. Rows with invalid values are skipped with a NOTICE. Idempotent: existing rows are kept. With p_drop_columns, drops those columns and the old functions set_heygen_key, delete_heygen_key and get_heygen_secret. Returns how many rows each kind gained. Privileged callers only.';
REVOKE ALL ON FUNCTION integrations.migrate_business_columns(regclass, boolean) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.migrate_business_columns(regclass, boolean) TO service_role, integrations_admin;
