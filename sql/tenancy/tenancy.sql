-- pg_integrations: tenancy: the app's tenant table, memberships, the audit
-- trail and the functions that decide who may act on a business. Entry points
-- in src/tenancy/.

-- The app's tenant table (e.g. public.businesses, owner column profile_id), as
-- recorded by integrations.attach_tenant_table().
CREATE TABLE integrations.tenant_table (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    table_name   regclass NOT NULL,
    owner_column name NOT NULL,
    attached_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE integrations.tenant_table IS
    'The tenant table attached with integrations.attach_tenant_table(): its id column is business_id everywhere, its owner column holds the owner''s user id.';

-- Who else belongs to a business (teams), or the only source of access where
-- the app has no tenant table.
CREATE TABLE integrations.business_members (
    business_id uuid NOT NULL,
    user_id     uuid NOT NULL,
    role        text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT business_members_pkey PRIMARY KEY (business_id, user_id)
);
CREATE INDEX business_members_user_id_idx ON integrations.business_members (user_id);
COMMENT ON TABLE integrations.business_members IS
    'Members of a business: a signed-in user listed here may act on the business''s integrations like its owner.';

-- Every set, delete and secret read, never the secret. Rows are appended
-- directly to the heap by the RPCs: no indexes, triggers or CHECK constraints
-- here (they would be bypassed).
CREATE TABLE integrations.audit_log (
    at            timestamptz NOT NULL,
    actor_user_id uuid,
    actor_role    text NOT NULL,
    business_id   uuid NOT NULL,
    action        text NOT NULL,
    kind          text NOT NULL,
    provider      text,
    target_id     uuid
);
COMMENT ON TABLE integrations.audit_log IS
    'Audit trail: who (user id from the JWT claims, role) did what (set, delete, read_secret) to which business''s integration (kind, provider, row id), when. Never holds a secret.';

CREATE FUNCTION integrations.current_user_id() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_current_user_id';
COMMENT ON FUNCTION integrations.current_user_id() IS
    'The signed-in user: sub of request.jwt.claims as PostgREST and Supabase set it (like auth.uid()); NULL when there is none or it is not a UUID.';

CREATE FUNCTION integrations.can_access_business(p_business_id uuid) RETURNS boolean
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_can_access_business';
COMMENT ON FUNCTION integrations.can_access_business(uuid) IS
    'Whether the caller may act on p_business_id: superuser, service_role and integrations_admin always; an authenticated user if it owns the business (attached tenant table) or is in integrations.business_members.';

CREATE FUNCTION integrations.can_manage_business(p_business_id uuid) RETURNS boolean
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_can_manage_business';
COMMENT ON FUNCTION integrations.can_manage_business(uuid) IS
    'Whether the caller may change p_business_id''s integrations: superuser, service_role and integrations_admin always; an authenticated user if it owns the business (attached tenant table) or is its owner or admin in integrations.business_members (members may only read and record).';

CREATE FUNCTION integrations.attach_tenant_table(p_table regclass, p_owner_column name DEFAULT 'profile_id') RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'pgi_attach_tenant_table';
COMMENT ON FUNCTION integrations.attach_tenant_table(regclass, name) IS
    'Records the app''s tenant table (a uuid id with a unique index, and a uuid owner column) and adds foreign keys ON DELETE CASCADE from every integration table''s business_id to it, so deleting a business deletes its integrations and secrets and PostgREST can embed them. Idempotent. Privileged callers only.';

ALTER TABLE integrations.business_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_memberships ON integrations.business_members FOR SELECT TO authenticated
    USING (user_id = integrations.current_user_id());
ALTER TABLE integrations.tenant_table ENABLE ROW LEVEL SECURITY;
ALTER TABLE integrations.audit_log ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON integrations.business_members, integrations.tenant_table, integrations.audit_log FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON integrations.business_members TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON integrations.business_members TO service_role, integrations_admin;
GRANT SELECT ON integrations.tenant_table, integrations.audit_log TO service_role, integrations_admin;

-- RLS policies call integrations.can_access_business() as the querying role.
GRANT USAGE ON SCHEMA integrations TO authenticated;

SELECT pg_catalog.pg_extension_config_dump('integrations.tenant_table', '');
SELECT pg_catalog.pg_extension_config_dump('integrations.business_members', '');
SELECT pg_catalog.pg_extension_config_dump('integrations.audit_log', '');

REVOKE ALL ON FUNCTION integrations.attach_tenant_table(regclass, name), integrations.can_access_business(uuid),
    integrations.can_manage_business(uuid), integrations.current_user_id() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.attach_tenant_table(regclass, name) TO service_role, integrations_admin;
GRANT EXECUTE ON FUNCTION integrations.can_access_business(uuid), integrations.can_manage_business(uuid),
    integrations.current_user_id() TO authenticated, service_role, integrations_admin;
