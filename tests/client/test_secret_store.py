"""The secret store from a client: PostgREST-shaped calls, master-key faults
and rotation, dump/restore, and what reaches the server log."""

import os
import subprocess
import uuid

import psycopg
import pytest

from conftest import connect, reload, restored_copy, server_log, write_key
from postgrest import RpcError, rpc

BIZ = "6f1c2b1e-4d2a-4c53-9a77-3f0e8f2f0a01"
UUID = {"p_business_id": "uuid", "p_secret_id": "uuid"}


def create(conn, value, biz=BIZ):
    return str(conn.execute("SELECT integrations.create_secret(%s, %s)", [biz, value]).fetchone()[0])


def read(conn, sid):
    return conn.execute("SELECT integrations.read_secret(%s)", [sid]).fetchone()[0]


def sqlstate_of(conn, sql, params=()):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql, params)
    return e.value.diag.sqlstate, e.value.diag.message_primary, e.value.diag.message_hint


# --- PostgREST-shaped calls --------------------------------------------------

def test_service_role_uses_the_store_like_postgrest(fresh_db):
    with connect(fresh_db) as c:
        sid = rpc(c, "create_secret", {"p_business_id": BIZ, "p_secret": "sk_live_x", "p_description": "stripe"},
                  role="service_role", schema="integrations", types=UUID)
        uuid.UUID(sid)
        assert rpc(c, "read_secret", {"p_secret_id": sid}, role="service_role",
                   schema="integrations", types=UUID) == "sk_live_x"
        assert rpc(c, "update_secret", {"p_secret_id": sid, "p_secret": "sk_live_y"}, role="service_role",
                   schema="integrations", types=UUID) == ""  # void: PostgREST answers 204
        assert read(c, sid) == "sk_live_y"
        with pytest.raises(RpcError) as e:
            rpc(c, "update_secret", {"p_secret_id": str(uuid.uuid4()), "p_secret": "z"}, role="service_role",
                schema="integrations", types=UUID)
        assert (e.value.status, e.value.sqlstate) == (404, "PT404")
        with pytest.raises(RpcError) as e:
            rpc(c, "create_secret", {"p_business_id": BIZ, "p_secret": None}, role="service_role",
                schema="integrations", types=UUID)
        assert (e.value.status, e.value.sqlstate) == (400, "22023")
        assert rpc(c, "delete_secret", {"p_secret_id": sid}, role="service_role",
                   schema="integrations", types=UUID) is True


@pytest.mark.parametrize("role,status", [("authenticated", 403), ("anon", 401)])
def test_api_roles_are_refused(fresh_db, role, status):
    with connect(fresh_db) as c:
        sid = create(c, "top secret")
        claims = {"sub": str(uuid.uuid4()), "aud": "authenticated"} if role == "authenticated" else {}
        for fn, body in [("read_secret", {"p_secret_id": sid}),
                         ("create_secret", {"p_business_id": BIZ, "p_secret": "x"}),
                         ("delete_secret", {"p_secret_id": sid}),
                         ("keyring_status", {})]:
            with pytest.raises(RpcError) as e:
                rpc(c, fn, body, role=role, claims=claims, schema="integrations", types=UUID,
                    scalar=fn != "keyring_status", returns_set=fn == "keyring_status")
            assert (e.value.status, e.value.sqlstate) == (status, "42501"), fn
            assert "top secret" not in str(e.value)
        assert read(c, sid) == "top secret"


# --- master key faults ---------------------------------------------------------

@pytest.mark.single_node
def test_missing_wrong_and_loose_master_keys_fail_closed(fresh_db, admin, key_dir, master_key_settings):
    with connect(fresh_db) as c:
        sids = [create(c, f"value-{i}") for i in range(3)]
        count = c.execute("SELECT count(*) FROM integrations.secrets").fetchone()[0]

    cases = {
        "missing": (os.path.join(key_dir, "nope.key"), "does not exist"),
        "wrong": (os.path.join(key_dir, "other.key"), "is not the key that wrapped data key"),
        "loose": (os.path.join(key_dir, "loose.key"), "is accessible by other users"),
        "garbage": (os.path.join(key_dir, "garbage.key"), "does not hold a master key"),
    }
    write_key(cases["wrong"][0])
    write_key(cases["loose"][0], mode=0o644)
    with open(cases["garbage"][0], "w") as f:
        f.write("not a key\n")
    os.chmod(cases["garbage"][0], 0o600)
    subprocess.run(["chown", "postgres:postgres", cases["garbage"][0]], check=True)

    for name, (path, needle) in cases.items():
        admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(path))
        reload(admin)
        with connect(fresh_db) as c:  # a new backend: nothing cached
            for sql, params in [("SELECT integrations.read_secret(%s)", [sids[0]]),
                                ("SELECT integrations.create_secret(%s, 'should not be stored')", [BIZ]),
                                ("SELECT integrations.rotate_data_key()", []),
                                ("SELECT integrations.reencrypt_secrets()", [])]:
                state, msg, hint = sqlstate_of(c, sql, params)
                assert state == "55000", (name, sql, state, msg)
                assert needle in msg, (name, msg)
                assert hint, "the error says what to do"
                assert "value-" not in msg and "should not be stored" not in msg
            assert c.execute("SELECT count(*) FROM integrations.secrets").fetchone()[0] == count
            assert c.execute("SELECT count(*) FROM integrations.keys").fetchone()[0] == 1

    # restoring the right key brings everything back
    admin.execute("ALTER SYSTEM RESET integrations.master_key_file")
    reload(admin)
    with connect(fresh_db) as c:
        assert [read(c, s) for s in sids] == ["value-0", "value-1", "value-2"]


@pytest.mark.single_node
def test_configured_key_file_is_never_generated(fresh_db, admin, key_dir, master_key_settings):
    """With an empty keyring and a configured path that does not exist, the
    extension refuses instead of inventing a key somewhere."""
    path = os.path.join(key_dir, "absent.key")
    admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(path))
    reload(admin)
    with connect(fresh_db) as c:
        state, msg, _ = sqlstate_of(c, "SELECT integrations.create_secret(%s, 'x')", [BIZ])
        assert state == "55000" and "does not exist" in msg
    assert not os.path.exists(path)


@pytest.mark.single_node
def test_master_key_rotation_keeps_every_backend_reading(fresh_db, admin, key_dir, master_key_settings):
    old_path = os.path.join(key_dir, "old.key")
    new_path = os.path.join(key_dir, "new.key")
    write_key(old_path)
    write_key(new_path)
    admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(old_path))
    reload(admin)
    with connect(fresh_db) as c:
        sids = [create(c, f"rot-{i}") for i in range(5)]
        c.execute("SELECT integrations.rotate_data_key()")
        sids += [create(c, f"rot-{i}") for i in range(5, 8)]
        old_fp = c.execute("SELECT DISTINCT master_key_id FROM integrations.keys").fetchall()
    assert len(old_fp) == 1
    expected = [f"rot-{i}" for i in range(8)]

    long_lived = connect(fresh_db)  # has the data keys cached
    assert [read(long_lived, s) for s in sids] == expected

    # 1. point the setting at the new file, keep the old one as previous, reload
    admin.execute("ALTER SYSTEM SET integrations.previous_master_key_file = %s" % psycopg.sql.quote(old_path))
    admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(new_path))
    reload(admin)
    with connect(fresh_db) as c:  # a new backend reads through the previous key
        assert [read(c, s) for s in sids] == expected
    assert [read(long_lived, s) for s in sids] == expected

    # 2. one call re-wraps the data keys
    with connect(fresh_db) as c:
        assert c.execute("SELECT integrations.rotate_master_key()").fetchone()[0] == 2
        assert c.execute("SELECT integrations.rotate_master_key()").fetchone()[0] == 0
        new_fp = c.execute("SELECT DISTINCT master_key_id FROM integrations.keys").fetchall()
    assert len(new_fp) == 1 and new_fp != old_fp
    assert [read(long_lived, s) for s in sids] == expected

    # 3. forget the old key: new backends read with the new key alone
    admin.execute("ALTER SYSTEM RESET integrations.previous_master_key_file")
    reload(admin)
    os.remove(old_path)
    with connect(fresh_db) as c:
        assert [read(c, s) for s in sids] == expected
        sids.append(create(c, "after"))
        assert read(c, sids[-1]) == "after"
    assert [read(long_lived, s) for s in sids[:-1]] == expected
    long_lived.close()


# --- dump and restore ----------------------------------------------------------

@pytest.mark.single_node
@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_dump_and_restore_opens_every_secret(fresh_db, admin, fmt, tmp_path):
    values = ["", "ascii", "مفتاح 🔑", "x" * 100_000]
    with connect(fresh_db) as c:
        sids = [create(c, v) for v in values]
        c.execute("SELECT integrations.rotate_data_key()")
        sids.append(create(c, "under key 2"))
        values.append("under key 2")
    with restored_copy(admin, fresh_db, fmt, tmp_path) as (target, dump):
        assert b"under key 2" not in dump and "مفتاح".encode() not in dump, "no plaintext in the dump"
        with connect(target) as c:
            assert [read(c, s) for s in sids] == values
            status = c.execute("SELECT key_id, status, secrets FROM integrations.keyring_status()").fetchall()
            assert status == [(1, "retired", 4), (2, "active", 1)]
            # the restored keyring keeps working
            assert read(c, create(c, "new after restore")) == "new after restore"


# --- log hygiene ---------------------------------------------------------------

def test_secrets_stay_out_of_the_server_log(fresh_db):
    marker = "PGI-LOG-MARKER-" + uuid.uuid4().hex
    control = "PGI-LOG-CONTROL-" + uuid.uuid4().hex
    with connect(fresh_db) as c:
        # our own error while the secret is an argument
        state, msg, _ = sqlstate_of(c, f"SELECT integrations.create_secret('{BIZ}', '{marker}-1', repeat('d', 2000))")
        assert state == "22023" and marker not in msg
        # an error raised by PostgreSQL itself later in the same statement
        state, _, _ = sqlstate_of(c, f"SELECT integrations.create_secret('{BIZ}', '{marker}-2'), 1/0")
        assert state == "22012"
        # ... and later in the same transaction
        c.autocommit = False
        c.execute(f"SELECT integrations.create_secret('{BIZ}', '{marker}-3')")
        sqlstate_of(c, "SELECT 'not a number'::int")
        c.rollback()
        c.autocommit = True
        # positive control: an unrelated failing statement is logged with its text
        sqlstate_of(c, f"SELECT '{control}'::int")
    log = server_log()
    assert control in log, "the log check can see statements"
    assert marker not in log
