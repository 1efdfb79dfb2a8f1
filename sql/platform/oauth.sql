-- pg_integrations: OAuth state for authorization-code flows (seed 003).
-- Only the SHA-256 of a state token is stored; the PKCE verifier is a secret.

CREATE TABLE public.integration_oauth_states (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id             uuid NOT NULL,
    provider                text NOT NULL REFERENCES public.integration_providers (provider),
    state_hash              bytea NOT NULL UNIQUE,
    redirect_uri            text NOT NULL,
    scopes                  text[] NOT NULL DEFAULT '{}',
    code_verifier_secret_id uuid,
    created_by              uuid,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at              timestamptz NOT NULL,
    consumed_at             timestamptz
);
COMMENT ON TABLE public.integration_oauth_states IS
    'Pending OAuth authorizations: the SHA-256 of each state token (never the token), where to return, the scopes asked and the PKCE verifier (in the secret store). Single use, 10 minutes.';
CREATE INDEX integration_oauth_states_business_id_idx ON public.integration_oauth_states (business_id);
CREATE INDEX integration_oauth_states_expires_at_idx ON public.integration_oauth_states (expires_at);
CREATE INDEX integration_oauth_states_verifier_idx ON public.integration_oauth_states (code_verifier_secret_id);
ALTER TABLE public.integration_oauth_states ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.integration_oauth_states FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.integration_oauth_states TO service_role, integrations_admin;
SELECT pg_catalog.pg_extension_config_dump('public.integration_oauth_states', '');

CREATE FUNCTION public.create_oauth_state(p_business_id uuid, p_provider text, p_redirect_uri text,
                                          p_scopes text[] DEFAULT NULL, p_code_verifier text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_create_oauth_state';
COMMENT ON FUNCTION public.create_oauth_state(uuid, text, text, text[], text) IS
    'Starts an OAuth authorization for the business: returns a random URL-safe state token (43 characters) valid for 10 minutes, keeping only its SHA-256; the PKCE p_code_verifier (RFC 7636) is kept in the secret store. p_provider must be an active provider supporting oauth2; p_redirect_uri must be https (http only on localhost). 42501 unless the caller may act on the business; 22023 for bad input.';

CREATE FUNCTION public.consume_oauth_state(p_state text)
RETURNS TABLE (business_id uuid, provider text, redirect_uri text, scopes text[], code_verifier text)
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp ROWS 1
AS 'MODULE_PATHNAME', 'pgi_consume_oauth_state';
COMMENT ON FUNCTION public.consume_oauth_state(text) IS
    'Single use: marks the state used and returns its business, provider, redirect URI, scopes and PKCE verifier (then deleted). PT404 (HTTP 404) for an unknown state, 22023 (HTTP 400) for a used or expired one, 42501 unless the caller may act on the business.';

CREATE FUNCTION public.cleanup_expired_oauth_states()
RETURNS integer LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_cleanup_expired_oauth_states';
COMMENT ON FUNCTION public.cleanup_expired_oauth_states() IS
    'Deletes expired states and states used over a day ago, with their PKCE verifiers; returns how many. Privileged callers (a scheduled job).';

REVOKE ALL ON FUNCTION public.create_oauth_state(uuid, text, text, text[], text), public.consume_oauth_state(text),
    public.cleanup_expired_oauth_states() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.create_oauth_state(uuid, text, text, text[], text), public.consume_oauth_state(text)
    TO authenticated, service_role, integrations_admin;
GRANT EXECUTE ON FUNCTION public.cleanup_expired_oauth_states() TO service_role, integrations_admin;
