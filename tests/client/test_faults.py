"""Faults: a backend killed in the middle of re-encryption, every way the
master key can go missing or wrong, and dump/restore of a database that uses
every table of the extension (custom and plain formats)."""

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

import clusters
from conftest import CLUSTER_DIR, PORT, connect, reload, restored_copy, supabase_shape
from fill import (B1, B2, EXTENSION_TABLES, VERIFIER, WEBHOOK_BODY, assert_every_table_filled, assert_secrets_open,
                  fill_every_table, table_digests, webhook_headers)


@pytest.fixture
def own_db():
    """A database for a test that restarts the server: it makes and drops it
    with connections of its own (the shared `admin` one would not survive)."""
    name = "pgi_fault_" + uuid.uuid4().hex[:10]
    with connect("postgres") as c:
        c.execute(f'CREATE DATABASE "{name}"')
    with connect(name) as c:
        supabase_shape(c)
        c.execute("CREATE EXTENSION pg_integrations")
    yield name
    clusters.wait_for_server(PORT)
    with connect("postgres") as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- a crash in the middle of re-encryption ----------------------------------

SECRETS = 20_000
BATCH = 1_000


def test_crash_during_reencryption_loses_nothing_and_resumes(own_db):
    with connect(own_db) as c:
        c.execute("SELECT integrations.create_secret(gen_random_uuid(), 'value-' || i, i::text) "
                  "FROM generate_series(1, %s) i", [SECRETS])
        old_key = c.execute("SELECT integrations.rotate_data_key()").fetchone()[0] - 1
        new_key = old_key + 1

    committed_batches = []
    failure = []
    worker = connect(own_db)
    pid = worker.execute("SELECT pg_backend_pid()").fetchone()[0]

    def reencrypt_until_killed():
        try:
            while True:
                n = worker.execute("SELECT integrations.reencrypt_secrets(%s)", [BATCH]).fetchone()[0]
                committed_batches.append(n)
                if n == 0:
                    return
        except psycopg.OperationalError as e:  # the kill
            failure.append(e)

    t = threading.Thread(target=reencrypt_until_killed)
    t.start()
    deadline = time.monotonic() + 60
    while len(committed_batches) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    with connect("postgres") as c:
        state = c.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    os.kill(pid, signal.SIGKILL)
    t.join(30)
    worker.close()
    assert failure, f"the re-encryption finished before it could be killed ({len(committed_batches)} batches)"
    assert state[0] == "active" and "reencrypt_secrets" in state[1], state
    clusters.wait_for_server(PORT)

    with connect(own_db) as c:
        status = dict(c.execute("SELECT key_id, secrets FROM integrations.keyring_status()").fetchall())
        # the committed batches stayed, the one in flight rolled back
        # (a batch that committed just before the kill landed is the only
        # other possibility; the one in flight left nothing behind either way)
        assert status[new_key] in (sum(committed_batches), sum(committed_batches) + BATCH), (status, committed_batches)
        assert status[old_key] + status[new_key] == SECRETS and status[old_key] > 0, status
        assert c.execute("SELECT checked, failed FROM integrations.verify_secrets()").fetchone() == (SECRETS, 0)
        wrong = "SELECT count(*) FROM integrations.secrets WHERE integrations.read_secret(id) <> 'value-' || description"
        assert c.execute(wrong).fetchone()[0] == 0
        # calling it again finishes the job
        calls = 0
        while c.execute("SELECT integrations.reencrypt_secrets(5000)").fetchone()[0] > 0:
            calls += 1
        status = dict(c.execute("SELECT key_id, secrets FROM integrations.keyring_status()").fetchall())
        assert status == {old_key: 0, new_key: SECRETS}, status
        assert c.execute("SELECT checked, failed FROM integrations.verify_secrets()").fetchone() == (SECRETS, 0)
        assert c.execute(wrong).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM integrations.secrets").fetchone()[0] == SECRETS
    print(f"\ncrash during re-encryption: killed after {len(committed_batches)} committed batches of {BATCH}; "
          f"{calls} more calls finished the job; {SECRETS} secrets open")


# --- master key problems -----------------------------------------------------

def key_needing_calls(ids):
    """Every RPC that needs the master key, with arguments that would succeed."""
    return [
        ("SELECT integrations.create_secret(%s, 'never stored')", [B1]),
        ("SELECT integrations.read_secret(%s)", [ids["store"]]),
        ("SELECT integrations.update_secret(%s, 'never stored')", [ids["store"]]),
        ("SELECT integrations.rotate_data_key()", []),
        ("SELECT integrations.rotate_master_key()", []),
        ("SELECT integrations.reencrypt_secrets()", []),
        ("SELECT * FROM integrations.verify_secrets()", []),
        ("SELECT set_ai_avatar_integration(%s, 'heygen', 'never stored')", [B1]),
        ("SELECT set_email_integration(%s, 'brevo', 'never stored', 'N', 'n@example.com')", [B1]),
        ("SELECT set_blog_integration(%s, 'wordpress', 'never stored', 'https://b.example.com', 'ed')", [B2]),
        ("SELECT get_ai_avatar_secret(%s)", [B1]),
        ("SELECT get_email_secret(%s)", [B1]),
        ("SELECT get_blog_secret(%s)", [B2]),
        ("SELECT create_integration(%s, 'stripe', 'New', 'api_key', p_api_key => 'never stored')", [B1]),
        ("SELECT update_integration(%s, p_api_key => 'never stored')", [ids["cko"]]),
        ("SELECT get_integration_credentials(%s)", [ids["cko"]]),
        ("SELECT set_integration_oauth_tokens(%s, 'never stored', 'never stored', now() + interval '1 hour', NULL)",
         [ids["gh"]]),
        ("SELECT set_webhook_config(%s, 'never stored')", [ids["cko"]]),
        ("SELECT record_webhook_event(%s, 'evt_other', 'payment_approved', %s, %s, 'r2://x')",
         [ids["cfg"], webhook_headers(), WEBHOOK_BODY]),
        ("SELECT create_oauth_state(%s, 'github', 'https://app.example.com/cb', NULL, %s)", [B2, VERIFIER]),
        ("SELECT * FROM consume_oauth_state(%s)", [ids["state"]]),
        ("SELECT set_esp_integration(%s, 'brevo', '{\"api_key\": \"never stored\"}')", [B1]),
        ("SELECT get_esp_credentials(%s, 'klaviyo')", [B2]),
    ]


def test_every_key_problem_fails_closed_and_the_right_key_brings_everything_back(
        fresh_db, admin, key_dir, master_key_settings):
    # The database's keys are wrapped by the cluster's generated key; serve the
    # same key from a configured file, which the cases below then break.
    default_key = os.path.join(CLUSTER_DIR, "data", "pg_integrations.key")
    with connect(fresh_db) as c:
        ids = fill_every_table(c)
    path = os.path.join(key_dir, "master.key")
    shutil.copy(default_key, path)
    subprocess.run(["chown", "postgres:postgres", path], check=True)
    os.chmod(path, 0o600)
    admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(path))
    reload(admin)
    with connect(fresh_db) as c:
        assert c.execute("SELECT failed FROM integrations.verify_secrets()").fetchone()[0] == 0
        before = table_digests(c)

    def other_key():
        with open(path, "w") as f:
            f.write(os.urandom(32).hex() + "\n")

    def restore():
        shutil.copy(default_key, path)
        subprocess.run(["chown", "postgres:postgres", path], check=True)
        os.chmod(path, 0o600)

    directory = os.path.join(key_dir, "a-directory")
    os.mkdir(directory, 0o700)
    subprocess.run(["chown", "postgres:postgres", directory], check=True)
    cases = [
        # (name, break it, the setting to use, what the message says)
        ("deleted", lambda: os.remove(path), path, "does not exist"),
        ("replaced", other_key, path, ("is not the key that wrapped data key", "is wrapped by master key")),
        ("unreadable", lambda: subprocess.run(["chown", "root:root", path], check=True), path, "could not read"),
        ("setting points nowhere", lambda: None, "/nonexistent/dir/master.key", "does not exist"),
        ("setting points at a directory", lambda: None, directory, "could not read"),
    ]
    tried = 0
    for name, breaks, setting, needle in cases:
        breaks()
        admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(setting))
        reload(admin)
        with connect(fresh_db) as c:  # a new backend: nothing cached
            for sql, params in key_needing_calls(ids):
                with pytest.raises(psycopg.Error) as e:
                    c.execute(sql, params)
                d = e.value.diag
                assert d.sqlstate == "55000", (name, sql, d.sqlstate, d.message_primary)
                needles = needle if isinstance(needle, tuple) else (needle,)
                assert any(n in d.message_primary for n in needles), (name, sql, d.message_primary)
                assert d.message_hint, (name, sql, "the error says what to do")
                assert "never stored" not in str(e.value) and "_fill" not in str(e.value)
                tried += 1
            # nothing was written, not even an audit row
            assert table_digests(c) == before, name
        restore()
        admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % psycopg.sql.quote(path))
        reload(admin)
        with connect(fresh_db) as c:
            assert c.execute("SELECT failed FROM integrations.verify_secrets()").fetchone()[0] == 0, name
    # the right key brings everything back: every secret opens through its RPC
    with connect(fresh_db) as c:
        assert table_digests(c) == before
        assert_secrets_open(c, ids)
        for sql, params in key_needing_calls(ids)[:3]:
            c.execute(sql, params)
    print(f"\nmaster key problems: {len(cases)} cases x {len(key_needing_calls(ids))} RPCs = {tried} refused calls")


# --- dump and restore of every table -------------------------------------------

@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_every_table_survives_dump_and_restore(fresh_db, admin, fmt, tmp_path):
    with connect(fresh_db) as c:
        ids = fill_every_table(c)
        before = table_digests(c)
    assert_every_table_filled(before)
    with restored_copy(admin, fresh_db, fmt, tmp_path) as (target, dump):
        assert b"sk_cko_fill" not in dump and b"hg_fill" not in dump and b"pk_fill" not in dump, \
            "the dump holds plaintext"
        assert ids["api_key"].encode() not in dump
        with connect(target) as c:
            after = table_digests(c)
            assert after == before, {t: (before[t], after[t]) for t in EXTENSION_TABLES if before[t] != after[t]}
            # the tenant foreign keys come back with the documented call
            c.execute("SELECT integrations.attach_tenant_table(table_name, owner_column) FROM integrations.tenant_table")
            assert_secrets_open(c, ids)
