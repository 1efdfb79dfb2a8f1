"""Re-saves written in place (src/pg/update.rs): `set_*` on a row that has
its key updates the row and its secret without the executor where the
tables allow it, and must behave exactly as the UPDATE it replaces: CHECK
and NOT NULL constraints, index entries, concurrent writers, user triggers.

Which path ran is told by touch_updated_at: the SQL path fires it, the
in-place path does its work instead (track_functions counts C functions)."""

import threading
import uuid

import psycopg
import pytest

from conftest import connect, create_tenant_table

OWNER = "a1000000-0000-4000-8000-00000000000a"
TABLES = ("public.ai_avatar_integrations", "integrations.secrets")


def business_ids(n):
    return [str(uuid.UUID(int=(0xB0 << 120) + i)) for i in range(1, n + 1)]


@pytest.fixture
def db(fresh_db):
    with connect(fresh_db) as c:
        create_tenant_table(c)
        c.execute("INSERT INTO public.businesses SELECT b::uuid, %s, 'B' FROM unnest(%s::text[]) b",
                  [OWNER, business_ids(50)])
        c.execute("SELECT integrations.attach_tenant_table('public.businesses')")
        c.execute("SELECT count(set_ai_avatar_integration(id, 'heygen', 'hg_first', 'avatar-1', 'voice-1')) "
                  "FROM public.businesses")
        c.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    return fresh_db


def resave(c, business, key, avatar="avatar-2", voice=None, config=None):
    """One re-save as service_role in its own transaction; (result, whether the
    SQL path ran: touch_updated_at fired)."""
    # the backend's count not yet sent to the statistics: it grows within a transaction
    calls = ("SELECT coalesce(pg_stat_get_xact_function_calls("
             "'integrations.touch_updated_at()'::regprocedure), 0)")
    with c.transaction():
        c.execute("SET LOCAL track_functions = 'all'")
        c.execute("SET LOCAL ROLE service_role")
        before = c.execute(calls).fetchone()[0]
        out = c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', %s, %s, %s, %s)",
                        [business, key, avatar, voice, config]).fetchone()[0]
        fired = c.execute(calls).fetchone()[0] - before
    return out, fired > 0


def secret(c, business):
    with c.transaction():
        c.execute("SET LOCAL ROLE service_role")
        return c.execute("SELECT get_ai_avatar_secret(%s)", [business]).fetchone()[0]


def row(c, business):
    return c.execute("SELECT avatar_id, voice_id, provider_config, status, validated_at = now(), updated_at "
                     "FROM public.ai_avatar_integrations WHERE business_id = %s", [business]).fetchone()


def assert_indexes_whole(c):
    """Every index of the two tables matches its heap (amcheck, heapallindexed)."""
    for table in TABLES:
        for (index,) in c.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
                                  [table]).fetchall():
            c.execute("SELECT bt_index_check(%s::regclass, true)", [index])


def test_a_resave_is_written_in_place_and_reads_back(db):
    b = business_ids(1)[0]
    with connect(db) as c:
        iid = c.execute("SELECT id FROM public.ai_avatar_integrations WHERE business_id = %s", [b]).fetchone()[0]
        out, sql_path = resave(c, b, "hg_second", avatar="avatar-9", config='{"quality": "high"}')
        assert (out, sql_path) == (iid, False)
        assert secret(c, b) == "hg_second"
        avatar, voice, config, status, _, updated = row(c, b)
        assert (avatar, voice, config, status) == ("avatar-9", "voice-1", {"quality": "high"}, "active")
        # NULL keeps, '' clears, as in the SQL path
        resave(c, b, "hg_third", avatar=None, voice="")
        assert row(c, b)[:4] == ("avatar-9", None, {"quality": "high"}, "active")
        assert row(c, b)[5] > updated
        # the audit row of each re-save is there
        assert c.execute("SELECT count(*) FROM integrations.audit_log WHERE action = 'set' AND business_id = %s",
                         [b]).fetchone()[0] == 3


def test_many_resaves_in_one_transaction_keep_every_index_whole(db):
    """Three re-saves of 50 rows in one transaction: the old versions cannot be
    pruned, so most updates are not HOT and add index entries."""
    ids = business_ids(50)
    with connect(db) as c:
        with c.transaction():
            c.execute("SET LOCAL ROLE service_role")
            for round in range(3):
                c.execute("SELECT count(set_ai_avatar_integration(b::uuid, 'heygen', %s || b, %s, NULL)) "
                          "FROM unnest(%s::text[]) b", [f"hg_r{round}_", f"a{round}", ids])
        assert_indexes_whole(c)
        assert c.execute("SELECT count(*) FROM public.ai_avatar_integrations WHERE avatar_id = 'a2'").fetchone()[0] == 50
        for b in ids[:5]:
            assert secret(c, b) == f"hg_r2_{b}"
        # found through each index
        c.execute("SET enable_seqscan = off")
        assert c.execute("SELECT count(*) FROM public.ai_avatar_integrations WHERE business_id = ANY(%s::uuid[])",
                         [ids]).fetchone()[0] == 50
        assert c.execute("SELECT count(*) FROM integrations.secrets s JOIN public.ai_avatar_integrations a "
                         "ON a.secret_id = s.id").fetchone()[0] == 50


def test_check_constraints_hold_in_place_also_ones_added_later(db):
    b = business_ids(1)[0]
    with connect(db) as c, connect(db) as other:
        assert resave(c, b, "hg_ok")[1] is False  # the table's plan is now cached in c's backend
        other.execute("ALTER TABLE public.ai_avatar_integrations "
                      "ADD CONSTRAINT no_bad_avatar CHECK (avatar_id IS DISTINCT FROM 'bad')")
        with pytest.raises(psycopg.errors.CheckViolation) as e:
            resave(c, b, "hg_not_kept", avatar="bad")
        assert "no_bad_avatar" in str(e.value) and "hg_not_kept" not in str(e.value)
        assert secret(c, b) == "hg_ok" and row(c, b)[0] == "avatar-2"
        # the extension's own checks too: status and config are the caller's to get wrong only
        # through SQL, so a constraint on a column the re-save sets stands for them
        other.execute("ALTER TABLE public.ai_avatar_integrations "
                      "ADD CONSTRAINT short_voice CHECK (voice_id IS DISTINCT FROM 'voice-long')")
        with pytest.raises(psycopg.errors.CheckViolation):
            resave(c, b, "hg_not_kept", voice="voice-long")
        assert resave(c, b, "hg_short", voice="v")[1] is False
        assert secret(c, b) == "hg_short"


def test_a_check_calling_a_replaced_function_uses_the_new_one(db):
    b = business_ids(1)[0]
    with connect(db) as c, connect(db) as other:
        other.execute("CREATE FUNCTION public.avatar_ok(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'")
        other.execute("ALTER TABLE public.ai_avatar_integrations ADD CONSTRAINT avatar_ok CHECK (public.avatar_ok(avatar_id))")
        assert resave(c, b, "hg_1")[1] is False
        other.execute("CREATE OR REPLACE FUNCTION public.avatar_ok(text) RETURNS boolean LANGUAGE sql IMMUTABLE "
                      "AS $$SELECT $1 <> 'avatar-3'$$")
        with pytest.raises(psycopg.errors.CheckViolation):
            resave(c, b, "hg_2", avatar="avatar-3")
        assert secret(c, b) == "hg_1"


def test_not_null_holds_in_place(db):
    b = business_ids(1)[0]
    with connect(db) as c:
        c.execute("ALTER TABLE public.ai_avatar_integrations ALTER COLUMN voice_id SET NOT NULL")
        with pytest.raises(psycopg.errors.NotNullViolation):
            resave(c, b, "hg_x", voice="")
        assert secret(c, b) == "hg_first"


def test_a_table_with_a_user_trigger_gets_the_sql_path(db):
    b = business_ids(1)[0]
    with connect(db) as c:
        c.execute("CREATE TABLE public.changes (business_id uuid, avatar_id text)")
        c.execute("CREATE FUNCTION public.note_change() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO public.changes VALUES (NEW.business_id, NEW.avatar_id); RETURN NEW; END$$")
        c.execute("CREATE TRIGGER note_change AFTER UPDATE ON public.ai_avatar_integrations "
                  "FOR EACH ROW EXECUTE FUNCTION public.note_change()")
        assert resave(c, b, "hg_seen", avatar="avatar-5")[1] is True
        assert c.execute("SELECT business_id::text, avatar_id FROM public.changes").fetchall() == [(b, "avatar-5")]
        assert secret(c, b) == "hg_seen"
        c.execute("DROP TRIGGER note_change ON public.ai_avatar_integrations")
        assert resave(c, b, "hg_quiet")[1] is False


def test_a_resave_waiting_on_a_concurrent_one_lands_after_it(db):
    b = business_ids(1)[0]
    with connect(db, autocommit=False) as first, connect(db) as second:
        first.execute("SET ROLE service_role")
        first.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_first_writer', 'avatar-a', NULL)", [b])
        done = []
        t = threading.Thread(target=lambda: done.append(resave(second, b, "hg_second_writer", avatar="avatar-b")))
        t.start()
        t.join(1.0)
        assert t.is_alive(), "the second re-save waits for the first's row lock"
        first.commit()
        t.join(10)
        assert done and done[0][1] is True  # the row changed under it: SQL redid it
        assert secret(second, b) == "hg_second_writer"
        assert row(second, b)[0] == "avatar-b"
        assert_indexes_whole(second)


def test_concurrent_resaves_of_the_same_rows_all_land(db):
    ids = business_ids(10)
    errors = []

    def writer(tag):
        try:
            with connect(db) as c:
                for i in range(30):
                    resave(c, ids[i % len(ids)], f"hg_{tag}_{i}", avatar=f"{tag}{i}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with connect(db) as c:
        assert_indexes_whole(c)
        for i, b in enumerate(ids):
            avatar = row(c, b)[0]
            # each row's key and avatar come from the same re-save
            assert secret(c, b) == f"hg_{avatar[0]}_{avatar[1:]}"


def delete(c, business):
    """delete_ai_avatar_integration as service_role in its own transaction;
    whether the SQL path ran (its statement trigger deleted the secrets)."""
    calls = ("SELECT coalesce(pg_stat_get_xact_function_calls("
             "'integrations.delete_row_secrets()'::regprocedure), 0)")
    with c.transaction():
        c.execute("SET LOCAL track_functions = 'all'")
        c.execute("SET LOCAL ROLE service_role")
        before = c.execute(calls).fetchone()[0]
        c.execute("SELECT delete_ai_avatar_integration(%s)", [business])
        fired = c.execute(calls).fetchone()[0] - before
    return fired > 0


def secrets_of(c, business):
    return c.execute("SELECT count(*) FROM integrations.secrets WHERE business_id = %s", [business]).fetchone()[0]


def test_a_delete_is_done_in_place_with_its_secret_and_audit(db):
    b1, b2 = business_ids(2)
    with connect(db) as c:
        assert secrets_of(c, b1) == 1
        assert delete(c, b1) is False
        assert c.execute("SELECT count(*) FROM public.ai_avatar_integrations WHERE business_id = %s",
                         [b1]).fetchone()[0] == 0
        assert secrets_of(c, b1) == 0 and secret(c, b1) is None
        assert c.execute("SELECT count(*) FROM integrations.audit_log WHERE action = 'delete' AND business_id = %s",
                         [b1]).fetchone()[0] == 1
        # the neighbour is untouched; deleting nothing is fine
        assert secret(c, b2) == "hg_first"
        assert delete(c, b1) is False
        assert_indexes_whole(c)


def test_a_table_others_reference_or_with_a_user_delete_trigger_gets_the_sql_path(db):
    b1, b2 = business_ids(2)
    with connect(db) as c:
        c.execute("CREATE TABLE public.renders (id serial, integration_id uuid, business_id uuid, "
                  "FOREIGN KEY (integration_id, business_id) REFERENCES public.ai_avatar_integrations (id, business_id) "
                  "ON DELETE CASCADE)")
        c.execute("INSERT INTO public.renders (integration_id, business_id) "
                  "SELECT id, business_id FROM public.ai_avatar_integrations WHERE business_id = %s", [b1])
        assert delete(c, b1) is True
        assert c.execute("SELECT count(*) FROM public.renders").fetchone()[0] == 0  # the cascade ran
        assert secrets_of(c, b1) == 0
        c.execute("DROP TABLE public.renders")
        c.execute("CREATE TABLE public.gone (business_id uuid)")
        c.execute("CREATE FUNCTION public.note_gone() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO public.gone VALUES (OLD.business_id); RETURN OLD; END$$")
        c.execute("CREATE TRIGGER note_gone AFTER DELETE ON public.ai_avatar_integrations "
                  "FOR EACH ROW EXECUTE FUNCTION public.note_gone()")
        assert delete(c, b2) is True
        assert c.execute("SELECT business_id::text FROM public.gone").fetchall() == [(b2,)]
        assert secrets_of(c, b2) == 0


def test_a_delete_waiting_on_a_resave_deletes_the_new_version(db):
    b = business_ids(1)[0]
    with connect(db, autocommit=False) as first, connect(db) as second:
        first.execute("SET ROLE service_role")
        first.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_new', 'avatar-n', NULL)", [b])
        done = []
        t = threading.Thread(target=lambda: done.append(delete(second, b)))
        t.start()
        t.join(1.0)
        assert t.is_alive(), "the delete waits for the re-save's row lock"
        first.commit()
        t.join(10)
        assert done == [True]  # the row changed under it: SQL deleted the new version
        assert c_count(second, b) == 0 and secrets_of(second, b) == 0


def c_count(c, business):
    return c.execute("SELECT count(*) FROM public.ai_avatar_integrations WHERE business_id = %s",
                     [business]).fetchone()[0]


def test_a_column_of_a_domain_gets_the_sql_path_and_its_check(db):
    """A value the SQL path would coerce (a domain's CHECK here) is not written raw."""
    b = business_ids(1)[0]
    with connect(db) as c:
        c.execute("CREATE DOMAIN public.avatar_text AS text CHECK (VALUE <> 'forbidden')")
        c.execute("ALTER TABLE public.ai_avatar_integrations ALTER COLUMN avatar_id TYPE public.avatar_text")
        with pytest.raises(psycopg.errors.CheckViolation):
            resave(c, b, "hg_no", avatar="forbidden")
        assert resave(c, b, "hg_yes", avatar="allowed")[1] is True
        assert secret(c, b) == "hg_yes" and row(c, b)[0] == "allowed"


def test_a_table_with_inheritance_children_gets_the_sql_path(db):
    """DELETE and UPDATE without ONLY reach child tables; the in-place path would not."""
    b1, b2 = business_ids(2)
    with connect(db) as c:
        c.execute("CREATE TABLE public.avatar_archive () INHERITS (public.ai_avatar_integrations)")
        assert resave(c, b1, "hg_child")[1] is True
        assert delete(c, b2) is True
        c.execute("DROP TABLE public.avatar_archive")
        # PostgreSQL clears relhassubclass lazily, at the next ANALYZE
        c.execute("ANALYZE public.ai_avatar_integrations")
        assert resave(c, b1, "hg_again")[1] is False
