"""Every object the extension creates ends with exactly the documented grants,
in a Supabase-shaped database (default privileges that open every new public
object to anon, authenticated and service_role are in force before CREATE
EXTENSION): at install, after an upgrade from 0.2.0, and for the API log
partitions made at run time. The documented list is the ```acl block of
docs/security.md."""
import os
import re
import uuid

from conftest import connect, supabase_shape

DOCS = os.path.join(os.path.dirname(__file__), "../../docs/security.md")

# Extension members, and the run-time partitions of integration_api_logs,
# each with its ACL items (the owner's own entry and the grantors left out).
LISTING = """
WITH ext AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'pg_integrations')
), rels AS (
    SELECT c.oid, c.relowner AS owner, c.relacl AS acl,
           c.relnamespace::regnamespace::text || '.' || regexp_replace(c.relname, '_[0-9]{8}$', '_<day>') AS name
    FROM pg_catalog.pg_class c
    WHERE c.relkind IN ('r', 'p', 'v', 'S')
      AND (c.oid IN (SELECT objid FROM ext WHERE classid = 'pg_catalog.pg_class'::regclass)
           OR c.oid IN (SELECT inhrelid FROM pg_catalog.pg_inherits
                        WHERE inhparent = 'public.integration_api_logs'::regclass))
)
SELECT 'table', r.name, r.owner, r.acl FROM rels r
UNION ALL
SELECT 'columns', r.name || ' (' || string_agg(a.attname, ', ' ORDER BY a.attnum) || ')', r.owner, (a.attacl::text)::aclitem[]
FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attacl IS NOT NULL
GROUP BY r.name, r.owner, a.attacl::text
UNION ALL
SELECT 'function', p.oid::regprocedure::text, p.proowner, p.proacl
FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT objid FROM ext WHERE classid = 'pg_catalog.pg_proc'::regclass)
UNION ALL
SELECT 'schema', n.nspname, n.nspowner, n.nspacl FROM pg_catalog.pg_namespace n WHERE n.nspname = 'integrations'
"""


def acl_listing(conn):
    conn.execute("SET search_path = ''")  # every name schema-qualified
    rows = conn.execute(
        "SELECT kind, name, pg_catalog.pg_get_userbyid(owner), "
        "       (SELECT array_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END "
        "                         || '=' || a.privilege_type ORDER BY a.grantee, a.privilege_type) "
        "        FROM pg_catalog.aclexplode(COALESCE(acl, pg_catalog.acldefault("
        "             (CASE kind WHEN 'function' THEN 'f' WHEN 'schema' THEN 'n' ELSE 'r' END)::\"char\", owner))) a "
        "        WHERE a.grantee <> owner) "
        f"FROM ({LISTING}) l (kind, name, owner, acl)"
    ).fetchall()
    lines = set()
    for kind, name, _owner, items in rows:
        grants = {}
        for item in items or []:
            role, privilege = item.split("=", 1)
            grants.setdefault(role, []).append(privilege)
        text = "; ".join(f"{role}: {', '.join(sorted(p))}" for role, p in sorted(grants.items())) or "-"
        lines.add(f"{kind} {name} | {text}")
    return sorted(lines)


def documented():
    with open(DOCS) as f:
        block = re.search(r"```acl\n(.*?)```", f.read(), re.S)
    assert block, "docs/security.md has no ```acl block"
    return sorted(line for line in block.group(1).splitlines() if line.strip())


def test_fresh_install_has_exactly_the_documented_grants(fresh_db):
    with connect(fresh_db) as c:
        c.execute("SELECT integrations.create_api_log_partitions(2)")
        listing = acl_listing(c)
    doc = documented()
    assert [line for line in listing if line not in doc] == [], "granted but not documented"
    assert [line for line in doc if line not in listing] == [], "documented but not granted"


def test_upgrade_from_0_2_0_under_default_privileges_ends_the_same(admin):
    """0.2.0 under Supabase's default privileges left back-end functions and
    API log partitions open to the API roles; the upgrade closes them."""
    name = "pgi_acl_" + uuid.uuid4().hex[:10]
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with connect(name) as c:
            supabase_shape(c)
            c.execute("CREATE EXTENSION pg_integrations VERSION '0.2.0'")
            c.execute("SELECT integrations.create_api_log_partitions(2)")
            before = c.execute(
                "SELECT has_function_privilege('authenticated', 'public.get_integration_credentials(uuid)', 'EXECUTE'), "
                "       has_table_privilege('anon', 'public.integration_api_logs_default', 'SELECT')").fetchone()
            assert before == (True, True), "0.2.0 under default privileges: the hole this upgrade closes"
            c.execute("ALTER EXTENSION pg_integrations UPDATE")
            listing = acl_listing(c)
        assert listing == documented()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
