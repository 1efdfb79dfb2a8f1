"""integrations.distribute() on a real Citus cluster, with the app's
businesses table distributed first, as the operator of a sharded SaaS has it:
every per-business table of the extension is distributed by business_id,
co-located with the businesses (0.6.0's keys: none rewritten), the registries
become reference tables, the foreign keys between them hold per shard, and a
second call finds nothing to do."""

import os
import re

import psycopg
import pytest

from conftest import COORDINATOR, NODES, ROOT, connect

OWNER = "a0000000-0000-4000-8000-00000000000a"


def per_business(c):
    return [t for (t,) in c.execute("""
        SELECT c.oid::regclass::text FROM pg_class c
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations'
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'business_id')""")]


def test_the_extension_reaches_every_worker(citus_db):
    version = "SELECT extversion FROM pg_extension WHERE extname = 'pg_integrations'"
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        current = re.search(r'^version = "(.*)"', f.read(), re.M).group(1)
    for port in NODES:
        with connect(port, citus_db) as n:
            assert n.execute(version).fetchone()[0] == current


def test_refusals_before_anything_moves(citus_db, cluster):
    with connect(COORDINATOR, citus_db) as c:
        c.execute("CREATE TABLE public.shops (id uuid PRIMARY KEY)")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
            c.execute("SELECT integrations.distribute('public.shops')")
        assert "create_distributed_table('public.shops', 'id')" in e.value.diag.message_hint
        c.execute("SET ROLE service_role")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT integrations.distribute()")
        c.execute("RESET ROLE")
        assert c.execute("SELECT count(*) FROM pg_dist_partition").fetchone()[0] == 1
    with connect(NODES[1], citus_db) as w:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            w.execute("SELECT integrations.distribute()")


def test_a_dry_run_prints_the_plan_and_moves_nothing(citus_db):
    with connect(COORDINATOR, citus_db) as c:
        plan = [s for (s,) in c.execute("SELECT * FROM integrations.distribute(p_dry_run => true)")]
        assert "SELECT pg_catalog.create_reference_table('public.integration_providers')" in plan
        assert ("SELECT pg_catalog.create_distributed_table('integrations.secrets', 'business_id', "
                "colocate_with => 'public.businesses')") in plan
        assert any(s.startswith("-- on every worker: ALTER TABLE public.ai_avatar_integrations DROP CONSTRAINT") for s in plan)
        assert "ALTER PUBLICATION supabase_realtime DROP TABLE public.esp_integrations" in plan
        assert c.execute("SELECT count(*) FROM pg_dist_partition").fetchone()[0] == 1


def test_every_per_business_table_distributes_by_business(citus_db):
    with connect(COORDINATOR, citus_db) as c:
        tables = per_business(c)
        assert "integrations.secrets" in tables and "public.ai_avatar_integrations" in tables
        steps = [s for (s,) in c.execute("SELECT * FROM integrations.distribute()")]
        assert steps
        placed = dict(c.execute("SELECT logicalrelid::regclass::text, colocationid FROM pg_dist_partition WHERE partmethod = 'h'"))
        for table in tables:
            assert placed.get(table) == placed["public.businesses"], table
        reference = {t for (t,) in c.execute("SELECT logicalrelid::regclass::text FROM pg_dist_partition WHERE partmethod = 'n'")}
        assert reference == {"public.integration_providers", "integrations.keys", "integrations.tenant_table"}
        # no statement trigger with a transition table is left on a distributed table
        assert c.execute("SELECT count(*) FROM pg_trigger WHERE tgoldtable IS NOT NULL").fetchone()[0] == 0
        # the keys between per-business tables and to the registry are kept
        assert c.execute("""SELECT count(*) FROM pg_constraint WHERE contype = 'f'
                            AND confrelid = 'public.integration_providers'::regclass""").fetchone()[0] == 6
        # seed 004's table is still published, once on every node
        for port in NODES:
            with connect(port, citus_db) as n:
                assert n.execute("""SELECT count(*) FROM pg_publication_tables
                                    WHERE pubname = 'supabase_realtime' AND tablename = 'esp_integrations'""").fetchone()[0] == 1
        # idempotent: nothing left to do
        assert c.execute("SELECT count(*) FROM integrations.distribute()").fetchone()[0] == 0
        c.execute("SELECT integrations.attach_tenant_table('public.businesses', 'profile_id')")


def test_sharded_foreign_keys_hold_per_business(citus_db):
    with connect(COORDINATOR, citus_db) as c:
        a, b = "b1000000-0000-4000-8000-000000000001", "b1000000-0000-4000-8000-000000000002"
        for biz in (a, b):
            c.execute("INSERT INTO public.businesses VALUES (%s, 'shop', %s)", (biz, OWNER))
        conn_id = c.execute("""
            INSERT INTO public.integration_connections (business_id, provider, name, auth_method)
            VALUES (%s, 'stripe', 'main', 'api_key') RETURNING id""", (a,)).fetchone()[0]
        # the same connection id under another business points nowhere
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute("""INSERT INTO public.integration_webhook_configs (integration_id, business_id, endpoint_token, signing_scheme)
                         VALUES (%s, %s, 'tok-b', 'stripe')""", (conn_id, b))
        c.execute("""INSERT INTO public.integration_webhook_configs (integration_id, business_id, endpoint_token, signing_scheme)
                     VALUES (%s, %s, 'tok-a', 'stripe')""", (conn_id, a))
        # the registry is a reference table: its foreign key holds on the shards too
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            c.execute("""INSERT INTO public.integration_connections (business_id, provider, name, auth_method)
                         VALUES (%s, 'no_such_provider', 'x', 'api_key')""", (a,))
        # deleting the connection cascades on its shard, and the row trigger that replaced the
        # statement trigger runs there
        c.execute("DELETE FROM public.integration_connections WHERE business_id = %s AND id = %s", (a, conn_id))
        assert c.execute("SELECT count(*) FROM public.integration_webhook_configs WHERE business_id = %s", (a,)).fetchone()[0] == 0
        # a business deleted takes its rows along (attach_tenant_table's keys, co-located)
        c.execute("INSERT INTO integrations.business_members VALUES (%s, %s, 'member')", (b, OWNER))
        c.execute("DELETE FROM public.businesses WHERE id = %s", (b,))
        assert c.execute("SELECT count(*) FROM integrations.business_members WHERE business_id = %s", (b,)).fetchone()[0] == 0
