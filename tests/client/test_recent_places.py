"""Owner checks and secret reads that look first where the row was found last
time (src/pg/recent.rs), in both modes: preloaded, where the places are shared
by every backend, and not preloaded, where each backend keeps its own.

The remembered place is a hint, never an answer: every test changes the row
behind it (a new owner, a deleted business whose line pointer another one
takes, a table shortened by VACUUM or rewritten, a re-sealed secret) and
checks the answer is the index's. Which path ran is told by the transaction's
scans of the index (pg_stat_get_xact_numscans)."""

import json
import uuid

import psycopg
import pytest

from clusters import PLAIN, PLAIN_PORT, cluster, connect, new_db
from conftest import PORT, TENANT_COLUMNS

pytestmark = pytest.mark.single_node

OWNER = "a2000000-0000-4000-8000-00000000000a"
OTHER = "a2000000-0000-4000-8000-00000000000b"


@pytest.fixture(scope="module", params=["shared", "local"])
def server(request):
    if request.param == "shared":
        with connect(PORT) as c:
            assert "pg_integrations" in c.execute("SHOW shared_preload_libraries").fetchone()[0]
        yield PORT
        return
    cluster("start", PLAIN, PLAIN_PORT, preload=False)
    with connect(PLAIN_PORT) as c:
        assert "pg_integrations" not in c.execute("SHOW shared_preload_libraries").fetchone()[0]
    yield PLAIN_PORT
    cluster("stop", PLAIN, PLAIN_PORT)


@pytest.fixture
def db(server):
    name = new_db(server, prefix="pgi_recent_")
    with connect(server, name) as c:
        c.execute(f"CREATE TABLE public.businesses ({TENANT_COLUMNS})")
        c.execute("SELECT integrations.attach_tenant_table('public.businesses')")
    yield server, name
    with connect(server) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def add_business(c, owner=OWNER, business=None):
    b = business or str(uuid.uuid4())
    c.execute("INSERT INTO public.businesses VALUES (%s, %s, 'B')", [b, owner])
    return b


def as_user(c, user):
    c.execute("SET LOCAL ROLE authenticated")
    c.execute("SELECT set_config('request.jwt.claims', %s, true)", [json.dumps({"sub": user, "role": "authenticated"})])


def scans(c, index):
    return c.execute("SELECT pg_stat_get_xact_numscans(%s::regclass)", [index]).fetchone()[0]


def access(c, user, businesses, isolation=None):
    """Whether `user` may use each business, asked in one transaction, and how
    many times the tenant table's index was scanned for it."""
    with c.transaction():
        if isolation:
            c.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        as_user(c, user)
        before = scans(c, "public.businesses_pkey")
        out = [c.execute("SELECT integrations.can_access_business(%s)", [b]).fetchone()[0] for b in businesses]
        return out, scans(c, "public.businesses_pkey") - before


def test_an_owner_check_scans_the_index_once(db):
    port, name = db
    with connect(port, name) as c:
        b = add_business(c)
        assert access(c, OWNER, [b, b, b]) == ([True] * 3, 1)
        assert access(c, OTHER, [b, b]) == ([False] * 2, 0)
    # a new backend: the place is shared when preloaded, its own otherwise
    with connect(port, name) as c:
        shared = port == PORT
        assert access(c, OWNER, [b]) == ([True], 0 if shared else 1)


def test_a_new_owner_counts_at_once(db):
    port, name = db
    with connect(port, name) as c, connect(port, name, autocommit=False) as w:
        b = add_business(c)
        assert access(c, OWNER, [b])[0] == [True]
        w.execute("UPDATE public.businesses SET profile_id = %s WHERE id = %s", [OTHER, b])
        # not committed yet: the old version is the visible one
        assert access(c, OWNER, [b]) == ([True], 0)
        assert access(c, OTHER, [b]) == ([False], 0)
        w.commit()
        assert access(c, OWNER, [b])[0] == [False]
        assert access(c, OTHER, [b])[0] == [True]
        # a new id: the old one is gone, the place remembered for it misses
        new = str(uuid.uuid4())
        c.execute("UPDATE public.businesses SET id = %s WHERE id = %s", [new, b])
        assert access(c, OTHER, [b, new])[0] == [False, True]


def test_a_deleted_business_whose_place_another_takes(db):
    port, name = db
    with connect(port, name) as c:
        b = add_business(c)
        place = c.execute("SELECT ctid::text FROM public.businesses WHERE id = %s", [b]).fetchone()[0]
        assert access(c, OWNER, [b])[0] == [True]
        c.execute("DELETE FROM public.businesses WHERE id = %s", [b])
        c.execute("VACUUM public.businesses")
        taken = add_business(c, owner=OTHER)
        assert c.execute("SELECT ctid::text FROM public.businesses WHERE id = %s", [taken]).fetchone()[0] == place
        # the place now holds another business of another owner: neither gets b
        assert access(c, OWNER, [b])[0] == [False]
        assert access(c, OTHER, [b, taken])[0] == [False, True]
        # b again, under the other owner
        add_business(c, owner=OTHER, business=b)
        assert access(c, OWNER, [b])[0] == [False]
        assert access(c, OTHER, [b])[0] == [True]


def test_a_table_shortened_by_vacuum_or_rewritten(db):
    port, name = db
    with connect(port, name) as c:
        c.execute("INSERT INTO public.businesses SELECT gen_random_uuid(), %s, 'B' FROM generate_series(1, 3000)",
                  [OWNER])
        ids = [r[0] for r in c.execute("SELECT id::text FROM public.businesses ORDER BY ctid").fetchall()]
        assert access(c, OWNER, ids)[0] == [True] * 3000
        pages = c.execute("SELECT pg_relation_size('public.businesses') / 8192").fetchone()[0]
        # the places of the last 2,500 rows are past the end of the table after this
        c.execute("DELETE FROM public.businesses WHERE id = ANY(%s::uuid[])", [ids[500:]])
        c.execute("VACUUM public.businesses")
        assert c.execute("SELECT pg_relation_size('public.businesses') / 8192").fetchone()[0] < pages
        assert access(c, OWNER, ids)[0] == [True] * 500 + [False] * 2500
        # a new file: every remembered block is of the old one
        c.execute("VACUUM FULL public.businesses")
        assert access(c, OWNER, ids)[0] == [True] * 500 + [False] * 2500
        c.execute("UPDATE public.businesses SET profile_id = %s", [OTHER])
        assert access(c, OWNER, ids[:500])[0] == [False] * 500
        assert access(c, OTHER, ids[:500])[0] == [True] * 500


def test_serializable_reads_the_index_each_time(db):
    port, name = db
    with connect(port, name) as c:
        b = add_business(c)
        assert access(c, OWNER, [b])[0] == [True]
        # a serializable read takes the index's predicate lock, which the place would skip
        assert access(c, OWNER, [b, b, b], isolation="SERIALIZABLE") == ([True] * 3, 3)
        assert access(c, OWNER, [b, b], isolation="REPEATABLE READ") == ([True] * 2, 0)


def test_a_secret_read_follows_its_rewrites(db):
    port, name = db
    with connect(port, name) as c:
        b = add_business(c)

        def read():
            with c.transaction():
                c.execute("SET LOCAL ROLE service_role")
                before = scans(c, "integrations.secrets_pkey")
                out = [c.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()[0] for _ in range(3)]
                return out, scans(c, "integrations.secrets_pkey") - before

        def save(key):
            with c.transaction():
                c.execute("SET LOCAL ROLE service_role")
                c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', %s, 'avatar')", [b, key])

        save("hg_first")
        assert read()[0] == ["hg_first"] * 3
        assert read() == (["hg_first"] * 3, 0)
        for i in range(40):  # HOT and non-HOT versions of the secret's row
            save(f"hg_{i}")
            assert read()[0] == [f"hg_{i}"] * 3
        c.execute("VACUUM integrations.secrets")
        assert read() == (["hg_39"] * 3, 0)
        with c.transaction():
            c.execute("SET LOCAL ROLE service_role")
            c.execute("SELECT delete_ai_avatar_integration(%s)", [b])
        assert read()[0] == [None] * 3
        save("hg_again")
        assert read()[0] == ["hg_again"] * 3


class Undo(Exception):
    pass


def test_ddl_after_reads_in_one_transaction(db):
    """The relations the reads keep open for the transaction (src/pg/held.rs)
    are closed before a utility statement, survive a rolled-back savepoint,
    and leave no reference behind at commit (a leak is a WARNING)."""
    port, name = db
    with connect(port, name) as c:
        b = add_business(c)
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        with c.transaction():
            c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_ddl', 'avatar')", [b])
        with c.transaction():
            assert c.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()[0] == "hg_ddl"
            c.execute("SAVEPOINT s")
            assert c.execute("SELECT integrations.can_access_business(%s)", [b]).fetchone()[0]
            with pytest.raises(psycopg.errors.DivisionByZero):  # after a read, in the same statement
                c.execute("SELECT get_ai_avatar_secret(%s) FROM generate_series(1, 2) g WHERE 1 / (2 - g) > 0", [b])
            c.execute("ROLLBACK TO SAVEPOINT s")
            c.execute("ALTER TABLE public.ai_avatar_integrations ADD COLUMN note text")
            c.execute("ALTER TABLE public.businesses ADD COLUMN note text")
            assert c.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()[0] == "hg_ddl"
            as_user(c, OWNER)
            assert c.execute("SELECT count(*) FROM get_ai_avatar_integration(%s)", [b]).fetchone()[0] == 1
            c.execute("RESET ROLE")
            c.execute("REINDEX TABLE integrations.secrets")
            assert c.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()[0] == "hg_ddl"
        with pytest.raises(Undo), c.transaction():
            c.execute("SELECT get_ai_avatar_secret(%s)", [b])
            c.execute("DROP EXTENSION pg_integrations CASCADE")
            raise Undo
        assert c.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()[0] == "hg_ddl"
        assert not [n for n in notices if "leak" in n or "still open" in n], notices
