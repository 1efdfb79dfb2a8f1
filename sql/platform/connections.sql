-- pg_integrations: connections to providers (seed 002's typed integrations,
-- seed 003's integration_connections), with credentials in the secret store.

CREATE FUNCTION integrations.is_valid_connection_config(p_config jsonb) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgi_is_valid_connection_config';
COMMENT ON FUNCTION integrations.is_valid_connection_config(jsonb) IS
    'Whether p_config is an object with only domain (host name), api_version, api_endpoint (https URL), timeout (1..600000 ms) and rate_limit (requests a minute).';
CREATE FUNCTION integrations.is_valid_capabilities(p_capabilities jsonb) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgi_is_valid_capabilities';
COMMENT ON FUNCTION integrations.is_valid_capabilities(jsonb) IS
    'Whether p_capabilities is an object with only the booleans can_sync, can_push, can_webhook and sync_frequency (realtime, hourly, daily, weekly, manual).';
GRANT EXECUTE ON FUNCTION integrations.is_valid_connection_config(jsonb), integrations.is_valid_capabilities(jsonb) TO PUBLIC;

CREATE TABLE public.integration_connections (
    id                            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id                   uuid NOT NULL,
    provider                      text NOT NULL REFERENCES public.integration_providers (provider),
    name                          text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    environment                   text NOT NULL DEFAULT 'production' CHECK (environment IN ('development', 'staging', 'production')),
    status                        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error', 'testing')),
    auth_method                   text NOT NULL CHECK (auth_method IN ('api_key', 'bearer_token', 'basic_auth', 'oauth2')),
    -- credentials: one secret per part; the key prefix (e.g. shpat_) and the
    -- basic-auth user name are not secret and stay in clear for display
    key_prefix                    text,
    api_key_secret_id             uuid,
    basic_username                text,
    basic_password_secret_id      uuid,
    oauth_access_token_secret_id  uuid,
    oauth_refresh_token_secret_id uuid,
    token_expires_at              timestamptz,
    oauth_scopes                  text[] NOT NULL DEFAULT '{}',
    connection_config             jsonb NOT NULL DEFAULT '{}' CHECK (integrations.is_valid_connection_config(connection_config)),
    capabilities                  jsonb NOT NULL DEFAULT '{}' CHECK (integrations.is_valid_capabilities(capabilities)),
    metadata                      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    -- health
    last_tested_at                timestamptz,
    last_success_at               timestamptz,
    last_error_at                 timestamptz,
    error_message                 text,
    consecutive_failures          integer NOT NULL DEFAULT 0,
    last_response_time_ms         integer,
    -- sync statistics
    total_records                 bigint NOT NULL DEFAULT 0,
    last_sync_count               bigint NOT NULL DEFAULT 0,
    failed_sync_count             bigint NOT NULL DEFAULT 0,
    last_synced_at                timestamptz,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT unique_integration_connection UNIQUE (business_id, provider, environment, name)
) WITH (fillfactor = 80);
COMMENT ON TABLE public.integration_connections IS
    'Connections of a business to providers: several per provider (by environment and name), with an auth method, credentials in the secret store, validated configuration and capabilities, health and sync statistics.';
CREATE INDEX integration_connections_provider_idx ON public.integration_connections (provider);
CREATE INDEX integration_connections_refresh_idx ON public.integration_connections (token_expires_at) WHERE auth_method = 'oauth2';
-- Deleting a secret checks these foreign keys; without indexes that is a scan.
CREATE INDEX integration_connections_api_key_idx ON public.integration_connections (api_key_secret_id);
CREATE INDEX integration_connections_password_idx ON public.integration_connections (basic_password_secret_id);
CREATE INDEX integration_connections_access_idx ON public.integration_connections (oauth_access_token_secret_id);
CREATE INDEX integration_connections_refresh_token_idx ON public.integration_connections (oauth_refresh_token_secret_id);
CREATE TRIGGER integration_connections_updated_at BEFORE UPDATE ON public.integration_connections
    FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at();

CREATE FUNCTION integrations.delete_connection_secrets() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM integrations.secrets s USING gone g
    WHERE s.id IN (g.api_key_secret_id, g.basic_password_secret_id, g.oauth_access_token_secret_id, g.oauth_refresh_token_secret_id);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION integrations.delete_connection_secrets() IS
    'AFTER DELETE statement trigger: deletes every credential secret of the deleted connections.';
REVOKE ALL ON FUNCTION integrations.delete_connection_secrets() FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER integration_connections_delete_secrets AFTER DELETE ON public.integration_connections
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION integrations.delete_connection_secrets();

ALTER TABLE public.integration_connections ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_select ON public.integration_connections FOR SELECT TO authenticated
    USING (integrations.can_access_business(business_id));
REVOKE ALL ON public.integration_connections FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT (id, business_id, provider, name, environment, status, auth_method, key_prefix, basic_username,
              token_expires_at, oauth_scopes, connection_config, capabilities, metadata, last_tested_at,
              last_success_at, last_error_at, error_message, consecutive_failures, last_response_time_ms,
              total_records, last_sync_count, failed_sync_count, last_synced_at, created_at, updated_at)
    ON public.integration_connections TO authenticated;
GRANT SELECT ON public.integration_connections TO service_role, integrations_admin;
SELECT pg_catalog.pg_extension_config_dump('public.integration_connections', '');

CREATE FUNCTION public.create_integration(
    p_business_id uuid, p_provider text, p_name text, p_auth_method text,
    p_api_key text DEFAULT NULL, p_key_prefix text DEFAULT NULL, p_username text DEFAULT NULL, p_password text DEFAULT NULL,
    p_access_token text DEFAULT NULL, p_refresh_token text DEFAULT NULL, p_token_expires_at timestamptz DEFAULT NULL,
    p_scopes text[] DEFAULT NULL, p_environment text DEFAULT 'production', p_connection_config jsonb DEFAULT '{}',
    p_capabilities jsonb DEFAULT '{}', p_metadata jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_create_integration';

CREATE FUNCTION public.update_integration(
    p_integration_id uuid, p_name text DEFAULT NULL, p_status text DEFAULT NULL, p_connection_config jsonb DEFAULT NULL,
    p_capabilities jsonb DEFAULT NULL, p_metadata jsonb DEFAULT NULL, p_api_key text DEFAULT NULL,
    p_key_prefix text DEFAULT NULL, p_username text DEFAULT NULL, p_password text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_update_integration';

CREATE FUNCTION public.get_integration(p_integration_id uuid)
RETURNS jsonb LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_integration';

CREATE FUNCTION public.list_integrations(p_business_id uuid, p_provider text DEFAULT NULL)
RETURNS SETOF jsonb LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_list_integrations';

CREATE FUNCTION public.get_integration_by_provider(p_business_id uuid, p_provider text, p_environment text DEFAULT 'production')
RETURNS jsonb LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_integration_by_provider';

CREATE FUNCTION public.get_integration_credentials(p_integration_id uuid)
RETURNS jsonb LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_get_integration_credentials';

CREATE FUNCTION public.delete_integration(p_integration_id uuid)
RETURNS boolean LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_delete_integration';

CREATE FUNCTION public.update_integration_sync_stats(p_integration_id uuid, p_total_records bigint, p_last_sync_count bigint, p_failed_sync_count bigint)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_update_integration_sync_stats';

CREATE FUNCTION public.update_integration_health(p_integration_id uuid, p_success boolean, p_error_message text DEFAULT NULL, p_response_time_ms integer DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_update_integration_health';

CREATE FUNCTION public.set_integration_oauth_tokens(p_integration_id uuid, p_access_token text, p_refresh_token text, p_expires_at timestamptz, p_scopes text[])
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_integration_oauth_tokens';

CREATE FUNCTION public.list_integrations_needing_refresh(p_within interval DEFAULT '15 minutes')
RETURNS SETOF jsonb LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_list_integrations_needing_refresh';

COMMENT ON FUNCTION public.create_integration(uuid, text, text, text, text, text, text, text, text, text, timestamptz, text[], text, jsonb, jsonb, jsonb) IS
    'Creates a connection of the business to an active provider and returns its id. The credential parts must fit p_auth_method (api_key/bearer_token: p_api_key; basic_auth: p_username and p_password; oauth2: p_access_token, optionally p_refresh_token) and the provider''s auth methods; each is sealed in the secret store. p_key_prefix (e.g. shpat_) is kept in clear for display, so it must be a prefix of p_api_key of at most 16 characters and half the key (22023 otherwise). p_connection_config and p_capabilities are validated; p_metadata is free-form. 23505 if the business already has a connection of that provider, environment and name.';
COMMENT ON FUNCTION public.update_integration(uuid, text, text, jsonb, jsonb, jsonb, text, text, text, text) IS
    'Changes a connection: arguments left NULL keep their value. A new p_api_key (api_key/bearer_token) or p_username/p_password (basic_auth) is sealed in place of the old one; a new p_key_prefix must be a short prefix of the new or stored key, as in create_integration; OAuth tokens go through set_integration_oauth_tokens. Validated like create_integration; 23505 if the new name is taken; PT404 if there is no such connection. Audited.';
COMMENT ON FUNCTION public.get_integration(uuid) IS
    'The connection as a JSON object without any secret (has_credentials says whether it has them), or NULL.';
COMMENT ON FUNCTION public.list_integrations(uuid, text) IS
    'The business''s connections (of p_provider if given), as JSON objects without secrets.';
COMMENT ON FUNCTION public.get_integration_by_provider(uuid, text, text) IS
    'The business''s connection to p_provider in p_environment (the active one first, then by name), without secrets, or NULL.';
COMMENT ON FUNCTION public.get_integration_credentials(uuid) IS
    'Decrypts the connection''s credentials: {auth_method, api_key|bearer_token, username, password, access_token, refresh_token, token_expires_at, scopes}. Privileged callers only (back-end jobs). Audited.';
COMMENT ON FUNCTION public.delete_integration(uuid) IS
    'Deletes the connection and its credential secrets; returns whether it existed. Audited.';
COMMENT ON FUNCTION public.update_integration_sync_stats(uuid, bigint, bigint, bigint) IS
    'Records the outcome of a sync: total records, records in the last sync, failed records; last_synced_at = now. PT404 if there is no such connection.';
COMMENT ON FUNCTION public.update_integration_health(uuid, boolean, text, integer) IS
    'Records a health check: a success clears the failure count and brings an errored connection back to active; the third failure in a row puts an active one in error. The error message is stored redacted (as log_integration_api_call does) and kept to 1000 characters.';
COMMENT ON FUNCTION public.set_integration_oauth_tokens(uuid, text, text, timestamptz, text[]) IS
    'Replaces an oauth2 connection''s tokens (sealed; the old secrets are deleted). A NULL refresh token keeps the stored one, NULL scopes keep the stored scopes. 22023 for a connection of another auth method.';
COMMENT ON FUNCTION public.list_integrations_needing_refresh(interval) IS
    'For a token-refresh worker: oauth2 connections with a refresh token whose access token expires within p_within, soonest first. Privileged callers only.';

SELECT integrations.install_api_functions('authenticated, service_role, integrations_admin',
    'create_integration', 'update_integration', 'get_integration', 'list_integrations', 'get_integration_by_provider',
    'delete_integration', 'update_integration_sync_stats', 'update_integration_health', 'set_integration_oauth_tokens');
-- For back ends only (credentials, the token-refresh worker).
SELECT integrations.install_api_functions('service_role, integrations_admin',
    'get_integration_credentials', 'list_integrations_needing_refresh');
