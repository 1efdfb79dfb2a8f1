-- pg_integrations 0.5.0 -> 0.6.0: keys that include business_id.
--
-- One file serves twice, like 0.4.0 -> 0.5.0: this upgrade script, and the
-- fresh install's last part (src/lib.rs).
--
-- Citus (a sharded cluster, distributed by business) accepts a primary key,
-- a unique constraint or a foreign key between sharded tables only if it
-- includes the distribution column. Every key of a per-business table that
-- lacked business_id gets it as its LAST column, so:
-- - lookups by the old columns alone (a secret by id, an OAuth state or an
--   API key by its hash, a webhook endpoint by its token) still use the same
--   index, from its leading columns;
-- - the constraints keep their names (ON CONFLICT ON CONSTRAINT and the
--   direct index reads name them), and `ON CONFLICT (columns)` in the code
--   names the new columns;
-- - what was unique alone is now unique per business. Every such value is
--   random (gen_random_uuid() ids, SHA-256 digests of 256-bit tokens) or
--   names its business already (a webhook configuration's connection, an
--   event's configuration, an Upload-Post username: biz_ and the business
--   id in hex).
-- Foreign keys between per-business tables carry business_id too, so a row
-- can only point to a row of its own business.
--
-- Rebuilding a primary key rewrites its index and takes an ACCESS EXCLUSIVE
-- lock on the table for that time (seconds per million rows).

-- The four foreign keys between per-business tables go first: they depend
-- on the indexes being replaced.
ALTER TABLE public.integration_metrics_hourly DROP CONSTRAINT integration_metrics_hourly_integration_id_fkey;
ALTER TABLE public.integration_webhook_configs DROP CONSTRAINT integration_webhook_configs_integration_id_fkey;
ALTER TABLE public.integration_events DROP CONSTRAINT integration_events_config_id_fkey;
ALTER TABLE public.webhook_access_logs DROP CONSTRAINT webhook_access_logs_event_id_fkey;

ALTER TABLE integrations.secrets
    DROP CONSTRAINT secrets_pkey, ADD CONSTRAINT secrets_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.ai_avatar_integrations
    DROP CONSTRAINT ai_avatar_integrations_pkey, ADD CONSTRAINT ai_avatar_integrations_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.email_integrations
    DROP CONSTRAINT email_integrations_pkey, ADD CONSTRAINT email_integrations_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.blog_integrations
    DROP CONSTRAINT blog_integrations_pkey, ADD CONSTRAINT blog_integrations_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.esp_integrations
    DROP CONSTRAINT esp_integrations_pkey, ADD CONSTRAINT esp_integrations_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.upload_post_profiles
    DROP CONSTRAINT upload_post_profiles_pkey, ADD CONSTRAINT upload_post_profiles_pkey PRIMARY KEY (id, business_id),
    DROP CONSTRAINT unique_upload_post_username,
    ADD CONSTRAINT unique_upload_post_username UNIQUE (upload_post_username, business_id);
ALTER TABLE public.integration_oauth_states
    DROP CONSTRAINT integration_oauth_states_pkey, ADD CONSTRAINT integration_oauth_states_pkey PRIMARY KEY (id, business_id),
    DROP CONSTRAINT integration_oauth_states_state_hash_key,
    ADD CONSTRAINT integration_oauth_states_state_hash_key UNIQUE (state_hash, business_id);
ALTER TABLE public.integration_connections
    DROP CONSTRAINT integration_connections_pkey, ADD CONSTRAINT integration_connections_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.integration_metrics_hourly
    DROP CONSTRAINT integration_metrics_hourly_pkey,
    ADD CONSTRAINT integration_metrics_hourly_pkey PRIMARY KEY (integration_id, hour, business_id);
ALTER TABLE public.integration_webhook_configs
    DROP CONSTRAINT integration_webhook_configs_pkey, ADD CONSTRAINT integration_webhook_configs_pkey PRIMARY KEY (id, business_id),
    DROP CONSTRAINT integration_webhook_configs_integration_id_key,
    ADD CONSTRAINT integration_webhook_configs_integration_id_key UNIQUE (integration_id, business_id),
    DROP CONSTRAINT integration_webhook_configs_endpoint_token_key,
    ADD CONSTRAINT integration_webhook_configs_endpoint_token_key UNIQUE (endpoint_token, business_id);
ALTER TABLE public.integration_events
    DROP CONSTRAINT integration_events_pkey, ADD CONSTRAINT integration_events_pkey PRIMARY KEY (id, business_id),
    DROP CONSTRAINT unique_provider_event,
    ADD CONSTRAINT unique_provider_event UNIQUE (config_id, provider_event_id, business_id);
DROP INDEX public.integration_events_replay_key_idx;
CREATE UNIQUE INDEX integration_events_replay_key_idx ON public.integration_events (config_id, replay_key, business_id)
    WHERE replay_key IS NOT NULL;
ALTER TABLE public.webhook_access_logs
    DROP CONSTRAINT webhook_access_logs_pkey, ADD CONSTRAINT webhook_access_logs_pkey PRIMARY KEY (id, business_id);
ALTER TABLE public.api_keys
    DROP CONSTRAINT api_keys_pkey, ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id, business_id),
    DROP CONSTRAINT api_keys_key_hash_key, ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash, business_id);

ALTER TABLE public.integration_metrics_hourly ADD CONSTRAINT integration_metrics_hourly_integration_id_fkey
    FOREIGN KEY (integration_id, business_id) REFERENCES public.integration_connections (id, business_id) ON DELETE CASCADE;
ALTER TABLE public.integration_webhook_configs ADD CONSTRAINT integration_webhook_configs_integration_id_fkey
    FOREIGN KEY (integration_id, business_id) REFERENCES public.integration_connections (id, business_id) ON DELETE CASCADE;
ALTER TABLE public.integration_events ADD CONSTRAINT integration_events_config_id_fkey
    FOREIGN KEY (config_id, business_id) REFERENCES public.integration_webhook_configs (id, business_id) ON DELETE CASCADE;
ALTER TABLE public.webhook_access_logs ADD CONSTRAINT webhook_access_logs_event_id_fkey
    FOREIGN KEY (event_id, business_id) REFERENCES public.integration_events (id, business_id) ON DELETE CASCADE;

-- Scaling out on Citus: integrations.distribute() (src/ops/distribute.rs)
-- moves these tables onto a cluster. On a table Citus distributes, the
-- delete triggers are row triggers (shards cannot run statement triggers with
-- transition tables): delete_row_secrets takes the secret columns as its
-- arguments, and the connections' API call logs go by this function.
COMMENT ON FUNCTION integrations.delete_row_secrets() IS
    'AFTER DELETE trigger: deletes the secrets of the deleted rows, named by the columns given as the trigger''s arguments (secret_id without any). A statement trigger with REFERENCING OLD TABLE on a single node; a row trigger on a Citus-distributed table.';
CREATE FUNCTION integrations.delete_row_logs() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM public.integration_api_logs WHERE business_id = OLD.business_id AND integration_id = OLD.id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION integrations.delete_row_logs() IS
    'AFTER DELETE row trigger on integration_connections once it is distributed by integrations.distribute(): deletes the API call logs of the deleted connection.';
REVOKE ALL ON FUNCTION integrations.delete_row_logs() FROM PUBLIC, anon, authenticated, service_role;

-- the default is looked up at each call (text, then regclass): a regclass
-- literal would be resolved now, and the app's table may not exist yet
CREATE FUNCTION integrations.distribute(p_tenant_table regclass DEFAULT 'public.businesses'::text::regclass,
                                        p_dry_run boolean DEFAULT false, p_route_calls boolean DEFAULT false)
RETURNS SETOF text
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_distribute';
COMMENT ON FUNCTION integrations.distribute(regclass, boolean, boolean) IS
    'On a Citus coordinator, once p_tenant_table is distributed by its id: makes the provider registry, the data keys and the tenant-table record reference tables, distributes every per-business table by business_id co-located with p_tenant_table, and turns their delete triggers into row triggers; with p_route_calls, makes the back-end secret reads (get_*_secret, get_esp_credentials) distributed functions, which Citus runs on the business''s worker when called as a bare SELECT outside a transaction block (the calling role must be able to log in to the workers, and every node needs the master key file). Returns the statements of its plan; p_dry_run only returns them. Idempotent: done steps are skipped. 55000 without Citus, off the coordinator, or with p_tenant_table not distributed. Superusers only.';
REVOKE ALL ON FUNCTION integrations.distribute(regclass, boolean, boolean) FROM PUBLIC, anon, authenticated, service_role;
