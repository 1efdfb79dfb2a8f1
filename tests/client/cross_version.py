"""The path a user takes when their provider moves them to a newer PostgreSQL:
a database of the PostgreSQL 15 test cluster, every table filled, dumped with
pg_dump -Fc and restored with 18's pg_restore into the PostgreSQL 18 test cluster.
Every row comes back the same and every secret opens there under the same
master key.

Run by `make cross-version PG_MAJOR=18` (part of `make test`), which starts
both clusters and names them in PGI_OLD_PORT / PGI_OLD_CLUSTER_DIR; not
collected by the per-version client run."""

import os
import shutil
import subprocess
import uuid

import psycopg

from conftest import PG_MAJOR, PGBIN, PORT, connect, reload, supabase_shape
from fill import B1, EXTENSION_TABLES, assert_every_table_filled, assert_secrets_open, fill_every_table, table_digests

# no default: run without the old cluster, this test fails rather than skips
OLD_PORT = int(os.environ["PGI_OLD_PORT"])
OLD_CLUSTER_DIR = os.environ["PGI_OLD_CLUSTER_DIR"]
OLD_PGBIN = os.environ["PGI_OLD_PGBIN"]


def old(db="postgres"):
    return psycopg.connect(f"host=127.0.0.1 port={OLD_PORT} dbname={db} user=postgres", autocommit=True)


def old_master_key_hex():
    """The old cluster's master key: its configured file, or the one generated
    in its data directory."""
    with old() as c:
        c.execute("LOAD 'pg_integrations'")
        path = c.execute("SELECT current_setting('integrations.master_key_file')").fetchone()[0]
    if not path:
        path = "pg_integrations.key"
    if not os.path.isabs(path):
        path = os.path.join(OLD_CLUSTER_DIR, "data", path)
    with open(path) as f:
        return f.read().strip()


def test_a_dump_of_15_restores_into_18_with_every_secret_opening(admin, key_dir, master_key_settings, tmp_path):
    with old() as c:
        old_version = c.execute("SHOW server_version_num").fetchone()[0]
    with connect("postgres") as c:
        new_version = c.execute("SHOW server_version_num").fetchone()[0]
    assert old_version.startswith("15") and PG_MAJOR == 18 and new_version.startswith("18"), (old_version, new_version)

    name = "pgi_xv_" + uuid.uuid4().hex[:8]
    roles_before = set()
    with old() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        with old(name) as c:
            supabase_shape(c)
            c.execute("CREATE EXTENSION pg_integrations")
            ids = fill_every_table(c)
            # secrets under a retired data key as well as the active one
            c.execute("SELECT integrations.rotate_data_key()")
            ids["store2"] = str(c.execute("SELECT integrations.create_secret(%s, 'under key 2')", [B1]).fetchone()[0])
            before = table_digests(c)
            ext_version = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_integrations'").fetchone()[0]
        assert_every_table_filled(before)

        # The upgrade recipe: the roles first (pg_dumpall --roles-only), then
        # pg_dump -Fc and pg_restore. The dump is taken with the 15 server's own
        # pg_dump: Debian's 15.20 tags every column with an internal option
        # (pg_attver) that its pg_dump leaves out, while 18.6's pg_dump (older
        # code than 15.20) copies it into the dump and 18.6 then refuses it.
        old_args = ["-h", "127.0.0.1", "-p", str(OLD_PORT), "-U", "postgres"]
        new_args = ["-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres"]
        globals_sql = subprocess.run([f"{OLD_PGBIN}/pg_dumpall", *old_args, "--roles-only"], check=True,
                                     capture_output=True).stdout
        # roles that exist already (postgres, the Supabase roles) fail to be
        # created again; the rest must not
        with connect("postgres") as c:
            roles_before = {r for (r,) in c.execute("SELECT rolname FROM pg_roles")}
        out = subprocess.run([f"{PGBIN}/psql", *new_args, "-X", "-q", "-d", "postgres"], input=globals_sql,
                             capture_output=True)
        assert out.returncode == 0, out.stderr
        errors = [line for line in out.stderr.decode().splitlines() if "ERROR:" in line]
        assert all("already exists" in line for line in errors), errors
        path = tmp_path / "db15.dump"
        subprocess.run([f"{OLD_PGBIN}/pg_dump", *old_args, "-Fc", "-f", str(path), name], check=True)
        # what 18's pg_restore will run, uncompressed
        dump = subprocess.run([f"{PGBIN}/pg_restore", "-f", "-", str(path)], check=True, capture_output=True).stdout
        assert b"sk_cko_fill" not in dump and b"hg_fill" not in dump and b"under key 2" not in dump
        assert b"pg_attver" not in dump

        # the new cluster opens the secrets with the same master key
        path_key = os.path.join(key_dir, "master.key")
        with open(path_key, "w") as f:
            f.write(old_master_key_hex() + "\n")
        os.chmod(path_key, 0o600)
        shutil.chown(path_key, "postgres", "postgres")
        admin.execute("ALTER SYSTEM SET integrations.master_key_file = %s" % quote(path_key))
        reload(admin)

        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        subprocess.run([f"{PGBIN}/pg_restore", *new_args, "--exit-on-error", "-d", name, str(path)], check=True)
        with connect(name) as c:
            assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_integrations'"
                             ).fetchone()[0] == ext_version
            after = table_digests(c)
            assert after == before, {t: (before[t], after[t]) for t in EXTENSION_TABLES if before[t] != after[t]}
            c.execute("SELECT integrations.attach_tenant_table(table_name, owner_column) FROM integrations.tenant_table")
            assert_secrets_open(c, ids)
            assert c.execute("SELECT integrations.read_secret(%s)", [ids["store2"]]).fetchone()[0] == "under key 2"
            status = c.execute("SELECT status, count(*) FROM integrations.keyring_status() GROUP BY 1 ORDER BY 1"
                               ).fetchall()
            assert status == [("active", 1), ("retired", 1)], status
            # the keyring keeps working on 18: new secrets seal and open
            sid = c.execute("SELECT integrations.create_secret(%s, 'sealed on 18')",
                            [B1]).fetchone()[0]
            assert c.execute("SELECT integrations.read_secret(%s)", [sid]).fetchone()[0] == "sealed on 18"
        print(f"\n15 -> 18: {sum(n for n, _ in before.values())} rows in {len(before)} tables, "
              f"dump {len(dump)} bytes, every secret opens")
    finally:
        with old() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        # the 15 cluster's test roles do not stay behind in the 18 cluster
        if roles_before:
            added = [r for (r,) in admin.execute("SELECT rolname FROM pg_roles").fetchall() if r not in roles_before]
            for r in added:
                admin.execute(f'DROP ROLE "{r}"')


def quote(s):
    return "'" + s.replace("'", "''") + "'"
