-- pg_integrations: the plumbing's SQL: validators used by CHECK constraints
-- (so direct table updates through PostgREST are held to the same rules as the
-- RPCs) and the updated_at trigger. Entry points in src/pg/triggers.rs.


CREATE FUNCTION integrations.is_valid_email(p_value text) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_is_valid_email';
COMMENT ON FUNCTION integrations.is_valid_email(text) IS
    'Whether p_value is an e-mail address a mail provider accepts as a sender (NULL counts as valid).';

CREATE FUNCTION integrations.is_valid_http_url(p_value text) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_is_valid_http_url';
COMMENT ON FUNCTION integrations.is_valid_http_url(text) IS
    'Whether p_value is an absolute http(s) URL with a host name and no credentials (NULL counts as valid).';

CREATE FUNCTION integrations.touch_updated_at() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pgi_touch_updated_at';
COMMENT ON FUNCTION integrations.touch_updated_at() IS
    'BEFORE UPDATE row trigger: sets updated_at to now().';

REVOKE ALL ON FUNCTION integrations.touch_updated_at() FROM PUBLIC, anon, authenticated, service_role;
-- Pure validators, used by CHECK constraints of tables owners may update.
GRANT EXECUTE ON FUNCTION integrations.is_valid_email(text), integrations.is_valid_http_url(text) TO PUBLIC;
