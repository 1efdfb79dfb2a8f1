"""The release discipline and the documentation: released SQL scripts are
frozen, the API reference (docs/api.md) lists exactly the installed functions,
and every function has a comment."""

import os
import re
import shutil
import subprocess

from conftest import connect

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run_check(tree):
    return subprocess.run(["bash", os.path.join(tree, "scripts", "check_released_sql.sh")],
                          capture_output=True, text=True)


def copy_tree(tmp_path):
    tree = tmp_path / "repo"
    for part in ("sql", "scripts"):
        shutil.copytree(os.path.join(ROOT, part), tree / part)
    shutil.copy(os.path.join(ROOT, "Cargo.toml"), tree / "Cargo.toml")
    return str(tree)


def test_released_scripts_are_frozen(tmp_path):
    tree = copy_tree(tmp_path)
    assert run_check(tree).returncode == 0, run_check(tree).stderr
    # an edit to a released upgrade script is refused
    script = os.path.join(tree, "sql", "pg_integrations--0.1.0--0.2.0.sql")
    with open(script, "a") as f:
        f.write("-- a harmless-looking edit\n")
    r = run_check(tree)
    assert r.returncode == 1 and "released SQL script was edited" in r.stderr
    # so is an edit to a frozen install script, or deleting it
    tree = copy_tree(tmp_path / "b")
    os.remove(os.path.join(tree, "sql", "released", "pg_integrations--0.1.0.sql"))
    assert run_check(tree).returncode == 1
    # an upgrade script that is neither released nor leads to the version in Cargo.toml
    tree = copy_tree(tmp_path / "c")
    open(os.path.join(tree, "sql", "pg_integrations--0.2.0--0.9.0.sql"), "w").close()
    r = run_check(tree)
    assert r.returncode == 1 and "does not lead to" in r.stderr


def test_api_reference_matches_the_installed_functions(fresh_db):
    # The whole file is the reference: every `name(` in it must be installed.
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        api = f.read()
    documented = set(re.findall(r"`(?:integrations\.|public\.)?([a-z_]+)\(", api))
    with connect(fresh_db) as c:
        rows = c.execute("""
            SELECT p.proname, p.prorettype = 'trigger'::regtype, obj_description(p.oid, 'pg_proc')
            FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations'""").fetchall()
    api = {name for name, is_trigger, _ in rows if not is_trigger}  # trigger functions are internal
    assert api - documented == set(), "installed but missing from docs/api.md"
    assert documented - api == set(), "in docs/api.md but not installed"
    assert [n for n, _, comment in rows if not comment] == [], "functions without COMMENT ON FUNCTION"


def test_the_signatures_moved_aside_at_install_cover_every_public_function(fresh_db):
    """sql/ops/legacy.sql moves a seed's functions of our signatures out of
    the way before CREATE EXTENSION makes ours: its list (sql/pg/install.sql)
    must name every public function the extension installs, argument types
    spelled as oidvectortypes spells them."""
    with open(os.path.join(ROOT, "sql/pg/install.sql")) as f:
        text = f.read()
    at = text.index("install_legacy_signatures()")
    listed = set(re.findall(r"'([a-z_]+\([^']*\))'", text[at:text.index("$$;", at)]))
    with connect(fresh_db) as c:
        installed = {r[0] for r in c.execute(
            "SELECT p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')' "
            "FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' "
            "JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations' "
            "WHERE p.pronamespace = 'public'::regnamespace").fetchall()}
    assert installed, "no public functions found"
    assert installed - listed == set()
