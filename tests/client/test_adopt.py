"""Installing where seed 001 already ran, and the seed app's own calls after
adoption, the way PostgREST makes them (issue: adoption)."""
import os
import uuid

import pytest

from conftest import connect, supabase_shape
from postgrest import RpcError, rpc

FIXTURES = os.path.join(os.path.dirname(__file__), "../fixtures")
BIZ = "d1000000-0000-4000-8000-000000000001"
OTHER = "d2000000-0000-4000-8000-000000000002"
OWNER = "d0000000-0000-4000-8000-00000000000a"
T = {"p_business_id": "uuid"}


def run_file(conn, name):
    with open(os.path.join(FIXTURES, name)) as f:
        conn.execute(f.read())


@pytest.fixture
def seeded_db(admin):
    """A Supabase-shaped database where seed 001's migration ran on Vault and
    the app saved keys through the seed's RPCs; then the extension is
    installed and the seed's rows adopted."""
    name = "pgi_adopt_" + uuid.uuid4().hex[:10]
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with connect(name) as c:
            supabase_shape(c)
            c.execute("CREATE EXTENSION pgcrypto")
            run_file(c, "vault.sql")
            c.execute("CREATE TABLE public.businesses (id uuid PRIMARY KEY, profile_id uuid, name text)")
            c.execute("INSERT INTO public.businesses VALUES (%s, %s, 'Seeded'), (%s, NULL, 'Other')", [BIZ, OWNER, OTHER])
            run_file(c, "seed_001_ai_avatar.sql")
            # the seed app, through PostgREST, before the extension
            rpc(c, "set_ai_avatar_integration", {"p_business_id": BIZ, "p_provider": "heygen", "p_api_key": "hg_from_seed",
                                                 "p_avatar_id": "av-1", "p_voice_id": "vo-1"},
                role="service_role", types={**T, "p_avatar_id": "text", "p_voice_id": "text"})
            rpc(c, "set_ai_avatar_integration", {"p_business_id": OTHER, "p_provider": "heygen", "p_api_key": "hg_other"},
                role="service_role", types=T)
            seeded_ids = sorted(str(r[0]) for r in c.execute("SELECT id FROM public.ai_avatar_integrations"))
            c.execute("CREATE EXTENSION pg_integrations")
            c.execute("SELECT integrations.attach_tenant_table('public.businesses', 'profile_id')")
            report = rpc(c, "adopt_legacy_integrations", {}, role="service_role", schema="integrations",
                         returns_set=True, scalar=False)
        yield name, seeded_ids, report
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_adoption_keeps_rows_and_keys(seeded_db):
    name, seeded_ids, report = seeded_db
    assert report == [{"table_name": "ai_avatar_integrations", "adopted": 2, "skipped": 0}]
    with connect(name) as c:
        ids = sorted(str(r[0]) for r in c.execute("SELECT id FROM public.ai_avatar_integrations"))
        assert ids == seeded_ids, "row ids kept"
        assert rpc(c, "get_ai_avatar_secret", {"p_business_id": BIZ}, role="service_role", types=T) == "hg_from_seed"
        # idempotent
        again = rpc(c, "adopt_legacy_integrations", {}, role="service_role", schema="integrations",
                    returns_set=True, scalar=False)
        assert again == [{"table_name": "ai_avatar_integrations", "adopted": 0, "skipped": 2}]
        # not for the app's users
        with pytest.raises(RpcError) as e:
            rpc(c, "adopt_legacy_integrations", {}, role="authenticated", claims={"sub": OWNER},
                schema="integrations", returns_set=True, scalar=False)
        assert e.value.status == 403


def test_the_seed_apps_calls_after_adoption(seeded_db):
    """The settings page's RPCs, its select, the integrations page's embedding
    and the direct PATCH, as the owner through PostgREST."""
    name, _, _ = seeded_db
    owner = {"sub": OWNER}
    with connect(name) as c:
        rows = rpc(c, "get_ai_avatar_integration", {"p_business_id": BIZ}, role="authenticated", claims=owner,
                   types=T, volatile=False, returns_set=True, scalar=False)
        assert [(r["provider"], r["avatar_id"], r["voice_id"]) for r in rows] == [("heygen", "av-1", "vo-1")]
        assert rpc(c, "set_ai_avatar_integration", {"p_business_id": BIZ, "p_provider": "heygen", "p_api_key": "hg_new",
                                                    "p_avatar_id": "av-2"},
                   role="authenticated", claims=owner, types={**T, "p_avatar_id": "text"}) == rows[0]["id"]

        def as_owner(sql, args=()):
            c.execute("BEGIN")
            c.execute("SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                      ['{"sub": "%s", "role": "authenticated"}' % OWNER])
            out = c.execute(sql, list(args)).fetchall() if sql.lstrip().upper().startswith(("SELECT", "WITH")) else \
                c.execute(sql, list(args)).rowcount
            c.execute("COMMIT")
            return out

        # the settings form: .from('ai_avatar_integrations').select('avatar_id, voice_id').eq('business_id', …)
        assert as_owner("SELECT avatar_id, voice_id FROM public.ai_avatar_integrations WHERE business_id = %s",
                        [BIZ]) == [("av-2", "vo-1")]
        # the integrations page: businesses?select=*,ai_avatar_integrations!inner(*)
        embedded = as_owner(
            "SELECT b.name, (SELECT json_agg(a.provider) FROM public.ai_avatar_integrations a WHERE a.business_id = b.id) "
            "FROM public.businesses b WHERE EXISTS (SELECT 1 FROM public.ai_avatar_integrations a WHERE a.business_id = b.id)")
        assert embedded == [("Seeded", ["heygen"])], "only the owner's business, through row level security"
        assert c.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.ai_avatar_integrations'::regclass "
                         "AND confrelid = 'public.businesses'::regclass").fetchone()[0] == 1, "the FK PostgREST embeds by"
        # PATCH /ai_avatar_integrations?business_id=eq.… {"voice_id": "vo-3"}
        assert as_owner("UPDATE public.ai_avatar_integrations SET voice_id = 'vo-3' WHERE business_id = %s", [BIZ]) == 1
        assert rpc(c, "get_ai_avatar_secret", {"p_business_id": BIZ}, role="service_role", types=T) == "hg_new"
        rpc(c, "delete_ai_avatar_integration", {"p_business_id": BIZ}, role="authenticated", claims=owner, types=T)
        assert c.execute("SELECT count(*) FROM public.ai_avatar_integrations WHERE business_id = %s",
                         [BIZ]).fetchone()[0] == 0
