-- pg_integrations: webhooks (seed 003). Bodies live in object storage (R2/S3):
-- the database keeps their SHA-256 and object key, never the body.

CREATE TABLE public.integration_webhook_configs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    integration_id    uuid NOT NULL UNIQUE REFERENCES public.integration_connections (id) ON DELETE CASCADE,
    business_id       uuid NOT NULL,
    -- routes an incoming webhook to its configuration (part of the endpoint URL);
    -- the signature, not this token, is what authenticates a delivery
    endpoint_token    text NOT NULL UNIQUE,
    event_types       text[] NOT NULL DEFAULT '{}',
    is_active         boolean NOT NULL DEFAULT true,
    signing_secret_id uuid,
    signing_scheme    text NOT NULL,
    signature_header  text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE public.integration_webhook_configs IS
    'One webhook configuration per connection: endpoint token, subscribed event types (empty: all), active flag, the provider''s signing scheme and the signing secret (in the secret store).';
CREATE INDEX integration_webhook_configs_business_idx ON public.integration_webhook_configs (business_id);
CREATE INDEX integration_webhook_configs_secret_idx ON public.integration_webhook_configs (signing_secret_id);
CREATE TRIGGER integration_webhook_configs_updated_at BEFORE UPDATE ON public.integration_webhook_configs
    FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at();

CREATE FUNCTION integrations.delete_webhook_secrets() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM integrations.secrets s USING gone g WHERE s.id = g.signing_secret_id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION integrations.delete_webhook_secrets() IS
    'AFTER DELETE statement trigger: deletes the signing secrets of deleted webhook configurations.';
REVOKE ALL ON FUNCTION integrations.delete_webhook_secrets() FROM PUBLIC, anon, authenticated, service_role;
CREATE TRIGGER integration_webhook_configs_delete_secrets AFTER DELETE ON public.integration_webhook_configs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION integrations.delete_webhook_secrets();

CREATE TABLE public.integration_events (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    config_id         uuid NOT NULL REFERENCES public.integration_webhook_configs (id) ON DELETE CASCADE,
    integration_id    uuid NOT NULL,
    business_id       uuid NOT NULL,
    provider_event_id text NOT NULL,
    event_type        text,
    headers           jsonb NOT NULL DEFAULT '{}',
    body_sha256       bytea NOT NULL CHECK (length(body_sha256) = 32),
    body_object_key   text,
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'done', 'failed', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    claimed_at        timestamptz,
    processed_at      timestamptz,
    last_error        text,
    received_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT unique_provider_event UNIQUE (config_id, provider_event_id),
    -- SHA-256 of a signed token that may be used once (HS256 JWTs), else NULL
    replay_key        bytea CHECK (length(replay_key) = 32)
) WITH (fillfactor = 80);
COMMENT ON TABLE public.integration_events IS
    'Verified webhook deliveries, once per provider event id: the body''s SHA-256 and object-storage key (not the body), headers without signatures or credentials, and the processing state (pending, processing, done, failed with a retry time, dead).';
CREATE INDEX integration_events_queue_idx ON public.integration_events (next_attempt_at, received_at) WHERE status IN ('pending', 'failed');
CREATE INDEX integration_events_business_idx ON public.integration_events (business_id, received_at);
-- Replays: a token is accepted once per configuration; the same body under
-- another event id is looked up by its digest.
CREATE UNIQUE INDEX integration_events_replay_key_idx ON public.integration_events (config_id, replay_key)
    WHERE replay_key IS NOT NULL;
CREATE INDEX integration_events_body_idx ON public.integration_events (config_id, body_sha256);

CREATE TABLE public.webhook_access_logs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id         uuid NOT NULL REFERENCES public.integration_events (id) ON DELETE CASCADE,
    business_id      uuid NOT NULL,
    accessed_by_user uuid,
    accessed_by_role text NOT NULL,
    purpose          text NOT NULL,
    accessed_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE public.webhook_access_logs IS
    'Who read a webhook body from object storage, when and why (log_webhook_body_access).';
CREATE INDEX webhook_access_logs_event_idx ON public.webhook_access_logs (event_id);
CREATE INDEX webhook_access_logs_business_idx ON public.webhook_access_logs (business_id);

SELECT integrations.install_tenant_table('integration_webhook_configs', p_dump => true);
SELECT integrations.install_tenant_table('integration_events', p_dump => true);
SELECT integrations.install_tenant_table('webhook_access_logs', p_dump => true);
REVOKE SELECT ON public.integration_webhook_configs FROM authenticated;
GRANT SELECT (id, integration_id, business_id, endpoint_token, event_types, is_active, signing_scheme, signature_header,
              created_at, updated_at) ON public.integration_webhook_configs TO authenticated;

CREATE FUNCTION public.set_webhook_config(p_integration_id uuid, p_signing_secret text DEFAULT NULL,
                                          p_event_types text[] DEFAULT NULL, p_is_active boolean DEFAULT NULL)
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_set_webhook_config';
COMMENT ON FUNCTION public.set_webhook_config(uuid, text, text[], boolean) IS
    'Creates or changes the connection''s webhook configuration and returns its id: a new one gets a random endpoint token and the provider''s signing scheme and needs p_signing_secret (sealed in the secret store; a new one replaces the old). NULL arguments keep their value. 22023 for a provider whose signing scheme cannot be verified.';

CREATE FUNCTION public.record_webhook_event(p_config_id uuid, p_provider_event_id text, p_event_type text,
                                            p_headers jsonb, p_body bytea, p_body_object_key text)
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_record_webhook_event';
COMMENT ON FUNCTION public.record_webhook_event(uuid, text, text, jsonb, bytea, text) IS
    'Verifies a delivery''s signature with the configuration''s scheme (HMAC-SHA256 hex or base64 of the body in a header, Stripe t=/v1= with a 300-second tolerance, Paymob HMAC-SHA512 of ordered fields from the hmac parameter passed in p_headers, HS256 JWT, static header), compared in constant time, then records it once per (configuration, provider event id) and returns the event id: a replay returns the same id, a replay with another body is 23505. Stores only the body''s SHA-256 and p_body_object_key. NULL for an event type the configuration does not subscribe to. 42501 for a bad signature. Privileged callers (the webhook receiver).';

CREATE FUNCTION public.claim_integration_events(p_limit integer DEFAULT 10)
RETURNS SETOF public.integration_events LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_claim_integration_events';
COMMENT ON FUNCTION public.claim_integration_events(integer) IS
    'For workers: takes up to p_limit events that are pending or due for a retry (FOR UPDATE SKIP LOCKED, so workers never take the same one), marks them processing and counts the attempt. Privileged callers.';

CREATE FUNCTION public.complete_integration_event(p_event_id uuid, p_success boolean, p_error text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_complete_integration_event';
COMMENT ON FUNCTION public.complete_integration_event(uuid, boolean, text) IS
    'Finishes a claimed event: done, or failed with the next attempt after 2^attempts minutes, or dead after 5 attempts. The error text is stored redacted. Privileged callers.';

CREATE FUNCTION public.log_webhook_body_access(p_event_id uuid, p_purpose text)
RETURNS uuid LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_log_webhook_body_access';
COMMENT ON FUNCTION public.log_webhook_body_access(uuid, text) IS
    'Records who (user id, role) reads the event''s body from object storage, when and why (p_purpose, required); returns the log id. Owners, members and privileged callers.';

REVOKE ALL ON FUNCTION public.set_webhook_config(uuid, text, text[], boolean),
    public.record_webhook_event(uuid, text, text, jsonb, bytea, text), public.claim_integration_events(integer),
    public.complete_integration_event(uuid, boolean, text), public.log_webhook_body_access(uuid, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.set_webhook_config(uuid, text, text[], boolean), public.log_webhook_body_access(uuid, text)
    TO authenticated, service_role, integrations_admin;
GRANT EXECUTE ON FUNCTION public.record_webhook_event(uuid, text, text, jsonb, bytea, text), public.claim_integration_events(integer),
    public.complete_integration_event(uuid, boolean, text) TO service_role, integrations_admin;
