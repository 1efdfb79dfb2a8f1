import contextlib
import os
import subprocess
import uuid

import psycopg
import pytest

PORT = int(os.environ.get("PGI_PORT", "28816"))
CLUSTER_DIR = os.environ.get("PGI_CLUSTER_DIR", os.path.join(os.path.dirname(__file__), "../../target/clusters/test"))
# the server's binaries (pg_dump, pg_ctl, ...): make sets PGI_PGBIN from PG_MAJOR
PGBIN = os.environ.get("PGI_PGBIN", "/usr/lib/postgresql/15/bin")
PG_MAJOR = int(subprocess.run([f"{PGBIN}/pg_config", "--version"], check=True, capture_output=True, text=True)
               .stdout.split()[1].split(".")[0])
# clusters a test makes for itself are per version (a data directory belongs to
# one major version), and so are their ports: 15 keeps the plain names
CLUSTER_SUFFIX = "" if PG_MAJOR == 15 else str(PG_MAJOR)
PORT_OFFSET = 0 if PG_MAJOR == 15 else 10


@pytest.fixture(autouse=True, scope="session")
def server_is_the_version_of_pgbin():
    """PGI_PORT's server and PGI_PGBIN's tools are of one major version."""
    with psycopg.connect(dsn()) as c:
        version = int(c.execute("SHOW server_version_num").fetchone()[0])
    assert version // 10000 == PG_MAJOR, (version, PGBIN)


def dsn(db="postgres", user="postgres"):
    return f"host=127.0.0.1 port={PORT} dbname={db} user={user}"


def connect(db, user="postgres", autocommit=True):
    return psycopg.connect(dsn(db, user), autocommit=autocommit)


@pytest.fixture
def admin():
    with connect("postgres") as c:
        # defines the integrations.* settings in this session, for ALTER SYSTEM
        c.execute("LOAD 'pg_integrations'")
        yield c


def reload(admin_conn):
    admin_conn.execute("SELECT pg_reload_conf()")
    # a backend applies the new settings at its next command; give it a moment
    admin_conn.execute("SELECT pg_sleep(0.2)")


SUPABASE_SHAPE = os.path.join(os.path.dirname(__file__), "../fixtures/supabase_shape.sql")


def supabase_shape(conn):
    """Makes the database Supabase-shaped (roles, default privileges, auth,
    the realtime publication, the hostile role mallory): run before CREATE
    EXTENSION, as on a Supabase project."""
    with open(SUPABASE_SHAPE) as f:
        conn.execute(f.read())


@pytest.fixture
def fresh_db(admin):
    """A new database with the extension; dropped afterwards."""
    name = "pgi_client_" + uuid.uuid4().hex[:10]
    admin.execute(f'CREATE DATABASE "{name}"')
    with connect(name) as c:
        supabase_shape(c)
        c.execute("CREATE EXTENSION pg_integrations")
    yield name
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [name],
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def key_dir():
    """A directory owned by the postgres OS user for key files."""
    d = os.path.join(CLUSTER_DIR, "keys-" + uuid.uuid4().hex[:8])
    os.makedirs(d)
    subprocess.run(["chown", "postgres:postgres", d], check=True)
    os.chmod(d, 0o700)
    yield d
    subprocess.run(["rm", "-rf", d], check=True)


def write_key(path, hex_key=None, mode=0o600):
    hex_key = hex_key or os.urandom(32).hex()
    with open(path, "w") as f:
        f.write(hex_key + "\n")
    os.chmod(path, mode)
    subprocess.run(["chown", "postgres:postgres", path], check=True)
    return hex_key


@pytest.fixture
def master_key_settings(admin):
    """Restores the master-key settings however the test ends."""
    yield
    admin.execute("ALTER SYSTEM RESET integrations.master_key_file")
    admin.execute("ALTER SYSTEM RESET integrations.previous_master_key_file")
    reload(admin)


def server_log():
    with open(os.path.join(CLUSTER_DIR, "server.log"), errors="replace") as f:
        return f.read()


def assert_failures_keep_out_of_the_log(conn, statements, marker):
    """Each statement fails without `marker` in its error, and the server log
    never shows the marker; a failing statement of no function of ours is
    logged with its text (the positive control: the check can see)."""
    control = "LOGCONTROL_" + uuid.uuid4().hex
    for sql in statements:
        with pytest.raises(psycopg.Error) as e:
            conn.execute(sql)
        assert marker not in str(e.value)
    with pytest.raises(psycopg.Error):
        conn.execute(f"SELECT '{control}'::int")
    log = server_log()
    assert control in log, "the log check can see statements"
    assert marker not in log


@contextlib.contextmanager
def restored_copy(admin_conn, source, fmt, tmp_path):
    """pg_dump of `source` in the custom format (restored with pg_restore) or
    the plain one (piped to psql) into a new database; yields its name and the
    dump's bytes, and drops it afterwards."""
    target = source + "_restored"
    admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}"')
    admin_conn.execute(f'CREATE DATABASE "{target}"')
    args = ["-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres"]
    try:
        if fmt == "custom":
            path = tmp_path / "db.dump"
            subprocess.run([f"{PGBIN}/pg_dump", *args, "-Fc", "-f", str(path), source], check=True)
            subprocess.run([f"{PGBIN}/pg_restore", *args, "--exit-on-error", "-d", target, str(path)], check=True)
            dump = path.read_bytes()
        else:
            dump = subprocess.run([f"{PGBIN}/pg_dump", *args, source], check=True, capture_output=True).stdout
            subprocess.run([f"{PGBIN}/psql", *args, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target],
                           input=dump, check=True, capture_output=True)
        yield target, dump
    finally:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
