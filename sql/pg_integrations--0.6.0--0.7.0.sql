-- pg_integrations 0.6.0 -> 0.7.0: calls routed to the node that holds their
-- business (Citus).
--
-- One file serves twice, like the ones before it: this upgrade script, and the
-- fresh install's last part (src/lib.rs).
--
-- Once integrations.distribute() has sharded the tables by business, an RPC
-- with a p_business_id sends itself whole to the node holding that business's
-- shard (one statement through the tenant table's row), sealed by the active
-- data key, and runs there through this function (src/tenancy/route/). On a
-- single node nothing is routed and this function is never called.
CREATE FUNCTION integrations.route_call(p_function text, p_call bytea) RETURNS bytea
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pgi_route_call';
COMMENT ON FUNCTION integrations.route_call(text, bytea) IS
'Runs a call the coordinator of a Citus cluster routed to this node: p_call is the call of p_function (the caller''s role and signed-in user, integrations.owner_can_read_secrets, the arguments) sealed by a data key of the keyring; it runs here as that role, as PostgREST''s SET LOCAL ROLE and claims would make it, and its rows come back in binary form. Sent by the RPCs themselves through the connection Citus opens as their owner; superusers only. 42501 for others or for a call that does not open, 22023 for a function that is not routed.';
REVOKE ALL ON FUNCTION integrations.route_call(text, bytea) FROM PUBLIC, anon, authenticated, service_role;

-- Citus counts a routed call as a read (a SELECT), whatever it does on the
-- worker: a later statement of the same transaction could then reach that
-- shard through another connection that does not see the call's writes, and
-- a transaction writing through two workers would commit with one phase, not
-- two. So a call that may write (a VOLATILE function, in a read-write
-- transaction block) goes as a statement that also deletes from this table on
-- the business's shard — nothing, it is always empty — which Citus counts as
-- a write there. integrations.distribute() distributes it with the others.
CREATE TABLE integrations.routed_writes (business_id uuid NOT NULL);
COMMENT ON TABLE integrations.routed_writes IS
    'Always empty. On a Citus cluster a routed call that may write deletes from it on its business''s shard (nothing), so Citus counts the call as a write there: later statements of the transaction see what it wrote, and a transaction writing through two workers commits in two phases.';
ALTER TABLE integrations.routed_writes ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE integrations.routed_writes FROM PUBLIC, anon, authenticated, service_role;
