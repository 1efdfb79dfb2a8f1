import contextlib
import os
import subprocess
import sys
import uuid

import psycopg
import pytest

# PGI_CITUS=1 (make test-citus): the suite's RPC cases against the local Citus
# cluster's coordinator, each database scaled out (integrations.distribute());
# the tests marked single_node are about one server (dump and restore, its
# settings and key files, clusters of their own) and are left out there
CITUS = os.environ.get("PGI_CITUS") == "1"
if CITUS:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "citus"))
    import citus_cluster  # noqa: E402
PORT = int(os.environ.get("PGI_PORT", citus_cluster.COORDINATOR if CITUS else "28816"))
CLUSTER_DIR = os.environ.get("PGI_CLUSTER_DIR", citus_cluster.COORDINATOR_DIR if CITUS else
                             os.path.join(os.path.dirname(__file__), "../../target/clusters/test"))
# the server's binaries (pg_dump, pg_ctl, ...): make sets PGI_PGBIN from PG_MAJOR
PGBIN = os.environ.get("PGI_PGBIN", "/usr/lib/postgresql/15/bin")
PG_MAJOR = int(subprocess.run([f"{PGBIN}/pg_config", "--version"], check=True, capture_output=True, text=True)
               .stdout.split()[1].split(".")[0])
# clusters a test makes for itself are per version (a data directory belongs to
# one major version), and so are their ports: 15 keeps the plain names
CLUSTER_SUFFIX = "" if PG_MAJOR == 15 else str(PG_MAJOR)
PORT_OFFSET = 0 if PG_MAJOR == 15 else 10


def pytest_configure(config):
    config.addinivalue_line("markers", "single_node: about one server; not run in the Citus mode (PGI_CITUS=1)")


def pytest_collection_modifyitems(config, items):
    if not CITUS:
        return
    left_out = [i for i in items if i.get_closest_marker("single_node")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [i for i in items if not i.get_closest_marker("single_node")]


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


# the tenant table the tests attach; in the Citus mode it is made (and
# distributed by id) with the database, before integrations.distribute()
TENANT_COLUMNS = "id uuid PRIMARY KEY, profile_id uuid, name text"


def create_tenant_table(conn, name="public.businesses", columns=TENANT_COLUMNS):
    """The app's tenant table, if missing; in the Citus mode distributed by
    id, co-located with the extension's tables, as attach_tenant_table needs."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    if CITUS and not conn.execute("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = %s::regclass",
                                  [name]).fetchone():
        conn.execute("SELECT create_distributed_table(%s, 'id', colocate_with => 'public.businesses')", [name])


@pytest.fixture
def fresh_db(admin):
    """A new database with the extension; dropped afterwards. In the Citus
    mode, a database on every node with the extension's tables distributed."""
    if CITUS:
        citus_cluster.start()
        name = citus_cluster.scaled_out_database("pgi_client_", TENANT_COLUMNS)
        yield name
        citus_cluster.drop_database(name)
        return
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
