"""Audited secret reads in both modes, on clusters of their own at PostgreSQL's
default durability: with the library preloaded (reads queue their audit
record; a background writer commits it) and without (the read writes its row
in its own transaction). Crashes during a read storm — a backend SIGKILLed,
then the postmaster and every server process — lose at most the reads of the
last two flush intervals, and a full queue makes readers wait, never drops."""

import os
import signal
import subprocess
import threading
import time

import psycopg
import pytest

from clusters import (PLAIN, PLAIN_PORT, QUEUED, QUEUED_PORT, ROOT, STANDBY_PORT, cluster, connect, new_db,
                      wait_for_server)
from conftest import CLUSTER_SUFFIX, PGBIN

BUSINESSES = 30000
# What the README promises: the reads of the last two integrations.audit_flush_interval
# (2 x 100 ms: queued, then committed asynchronously but not yet flushed) plus one
# batch's commit. The test allows for a loaded 2-core machine.
LOSS_WINDOW_S = 0.6


def make_db(port):
    name = new_db(port)
    with connect(port, name) as c:
        c.execute("CREATE TABLE biz (n int PRIMARY KEY, id uuid NOT NULL DEFAULT gen_random_uuid())")
        c.execute("INSERT INTO biz (n) SELECT generate_series(1, %s)", [BUSINESSES])
        c.execute("SELECT count(set_ai_avatar_integration(id, 'heygen', 'hg_key_' || n)) FROM biz")
    return name


@pytest.fixture(scope="module")
def queued():
    cluster("start", QUEUED, QUEUED_PORT)
    wait_for_server(QUEUED_PORT)
    db = make_db(QUEUED_PORT)
    yield db
    cluster("stop", QUEUED, QUEUED_PORT)


@pytest.fixture(scope="module")
def plain():
    cluster("start", PLAIN, PLAIN_PORT, preload=False)
    db = make_db(PLAIN_PORT)
    yield db
    cluster("stop", PLAIN, PLAIN_PORT)


def reads(c, business):
    return c.execute("SELECT count(*) FROM integrations.audit_log WHERE business_id = %s AND action = 'read_secret'",
                     [business]).fetchone()[0]


def business(c, n):
    return c.execute("SELECT id FROM biz WHERE n = %s", [n]).fetchone()[0]


# --- the two modes -----------------------------------------------------------

def test_queued_reads_do_not_write_and_work_read_only(queued):
    with connect(QUEUED_PORT, queued) as c:
        status = c.execute("SELECT integrations.audit_status()").fetchone()[0]
        assert status["mode"] == "queued" and status["capacity"] > 0
        b = business(c, 1)
        before = reads(c, b)
        with c.transaction():
            c.execute("SET TRANSACTION READ ONLY")
            assert c.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()[0] == "hg_key_1"
            # the read took no transaction id: its commit waits for no WAL flush
            assert c.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None
        # a read whose transaction rolls back is audited as well: the key left the database
        c.execute("BEGIN")
        c.execute("SELECT integrations.read_secret(secret_id) FROM ai_avatar_integrations WHERE business_id = %s", [b])
        c.execute("ROLLBACK")
        assert c.execute("SELECT integrations.flush_audit_log()").fetchone()[0] is True
        assert reads(c, b) == before + 2
        kinds = c.execute("SELECT kind, actor_role FROM integrations.audit_log WHERE business_id = %s "
                          "AND action = 'read_secret' ORDER BY at DESC LIMIT 2", [b]).fetchall()
        assert sorted(kinds) == [("ai_avatar", "postgres"), ("secret", "postgres")]
        # changes keep their rows in their own transaction: gone with a rollback
        c.execute("BEGIN")
        c.execute("SELECT set_ai_avatar_integration(%s, 'heygen', 'hg_changed')", [b])
        assert c.execute("SELECT count(*) FROM integrations.audit_log WHERE business_id = %s AND action = 'set' "
                         "AND at = now()", [b]).fetchone()[0] == 1
        c.execute("ROLLBACK")
        assert c.execute("SELECT count(*) FROM integrations.audit_log WHERE business_id = %s AND action = 'set'",
                         [b]).fetchone()[0] == 1  # the original set only
        status = c.execute("SELECT integrations.audit_status()").fetchone()[0]
        assert status["written_total"] >= 2 and status["queued"] == 0


def test_without_preloading_a_read_writes_its_row_and_needs_a_read_write_transaction(plain):
    with connect(PLAIN_PORT, plain) as c:
        assert c.execute("SELECT integrations.audit_status()").fetchone()[0] == {"mode": "in_transaction"}
        assert c.execute("SELECT integrations.flush_audit_log()").fetchone()[0] is True
        b = business(c, 1)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as e:
            with c.transaction():
                c.execute("SET TRANSACTION READ ONLY")
                c.execute("SELECT get_ai_avatar_secret(%s)", [b])
        assert "shared_preload_libraries" in e.value.diag.message_hint
        assert "hg_key" not in str(e.value)
        c.execute("BEGIN")
        c.execute("SELECT get_ai_avatar_secret(%s)", [b])
        assert c.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is not None
        assert reads(c, b) == 1  # in this very transaction
        c.execute("ROLLBACK")
        assert reads(c, b) == 0
        c.execute("SELECT get_ai_avatar_secret(%s)", [b])
        assert reads(c, b) == 1


# --- a full queue --------------------------------------------------------------

def test_a_full_queue_makes_readers_wait_and_drops_nothing(queued):
    """The writer is held up by a lock on the audit log; readers fill the ring,
    then wait (integrations.audit_queue_wait) and write their own row — which
    waits for the lock too, or is refused in a read-only transaction (no key
    returned). Once the lock goes, every read is in the log."""
    with connect(QUEUED_PORT, queued) as c, connect(QUEUED_PORT, queued) as blocker:
        capacity = c.execute("SELECT (integrations.audit_status()->>'capacity')::int").fetchone()[0]
        c.execute("SELECT integrations.flush_audit_log()")
        before = c.execute("SELECT count(*) FROM integrations.audit_log WHERE action = 'read_secret'").fetchone()[0]
        blocker.execute("BEGIN")
        blocker.execute("LOCK integrations.audit_log IN ACCESS EXCLUSIVE MODE")
        calls = capacity + 50
        # each statement reads many keys; the ring fills up within the first statements
        c.execute("SET integrations.audit_queue_wait = 300")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with c.transaction():
                c.execute("SET TRANSACTION READ ONLY")
                c.execute("SELECT count(get_ai_avatar_secret(id)) FROM biz, generate_series(1, %s) g WHERE n <= 100",
                          [calls // 100 + 1])
        status = c.execute("SELECT integrations.audit_status()").fetchone()[0]
        assert status["queued"] == capacity and status["full_waits"] >= 1
        queued_reads = capacity  # refused reads returned no key: the statement failed, nothing of it left the server

        done = []

        def reader():
            with connect(QUEUED_PORT, queued) as r:
                r.execute("SET integrations.audit_queue_wait = 100")
                done.append(r.execute("SELECT count(get_ai_avatar_secret(id)) FROM biz WHERE n <= 20").fetchone()[0])

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(1.0)
        assert not done, "the reader waits: its fallback row needs the lock the writer also waits for"
        blocker.execute("ROLLBACK")
        t.join(30)
        assert done == [20]
        assert c.execute("SELECT integrations.flush_audit_log(30000)").fetchone()[0] is True
        after = c.execute("SELECT count(*) FROM integrations.audit_log WHERE action = 'read_secret'").fetchone()[0]
        assert after - before == queued_reads + 20


# --- crashes during a read storm -----------------------------------------------

def storm(port, db, kill, n_threads=4):
    """Each thread reads a different range of businesses, each exactly once,
    noting when each read returned; `kill()` runs after 0.7 s. Returns
    {business id: monotonic completion time} and the kill's time."""
    with connect(port, db) as c:
        ids = [r[0] for r in c.execute("SELECT id FROM biz ORDER BY n").fetchall()]
    completed = {}
    lock = threading.Lock()
    conns = [connect(port, db) for _ in range(n_threads)]
    pids = [k.execute("SELECT pg_backend_pid()").fetchone()[0] for k in conns]

    def run(k, mine):
        try:
            for b in mine:
                k.execute("SELECT get_ai_avatar_secret(%s)", [b]).fetchone()
                with lock:
                    completed[b] = time.monotonic()
        except psycopg.Error:
            pass

    threads = [threading.Thread(target=run, args=(conns[i], ids[i::n_threads])) for i in range(n_threads)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    with lock:
        assert len(completed) < len(ids), "the storm ended before the kill"
    killed_at = time.monotonic()
    kill(pids)
    for t in threads:
        t.join(60)
    for k in conns:
        try:
            k.close()
        except Exception:
            pass
    return completed, killed_at


def check_storm(port, db, completed, killed_at):
    wait_for_server(port)
    with connect(port, db) as c:
        audited = {r[0] for r in c.execute(
            "SELECT business_id FROM integrations.audit_log WHERE action = 'read_secret'").fetchall()}
    lost = {b: t for b, t in completed.items() if b not in audited}
    # nothing is audited that was not read (a read in flight at the kill may be
    # audited without having returned: its record was queued before the reply)
    assert len(audited - set(completed)) <= 8
    # every read that returned before the window is in the log
    old_lost = [b for b, t in lost.items() if t < killed_at - LOSS_WINDOW_S]
    assert not old_lost, f"{len(old_lost)} reads older than {LOSS_WINDOW_S}s lost"
    print(f"\n  {len(completed)} reads completed, {len(audited)} audited, {len(lost)} lost "
          f"(all within the last {LOSS_WINDOW_S}s before the kill)")
    return len(lost)


def reset_log(port, db):
    with connect(port, db) as c:
        c.execute("SELECT integrations.flush_audit_log()")
        c.execute("DELETE FROM integrations.audit_log WHERE action = 'read_secret'")


def test_a_killed_backend_loses_only_the_last_interval_of_reads(queued):
    reset_log(QUEUED_PORT, queued)

    def kill(pids):
        os.kill(pids[0], signal.SIGKILL)  # the postmaster resets shared memory: the queue is gone

    completed, killed_at = storm(QUEUED_PORT, queued, kill)
    check_storm(QUEUED_PORT, queued, completed, killed_at)


def server_pids(port):
    pid_file = f"{ROOT}/target/clusters/{QUEUED}/data/postmaster.pid"
    with open(pid_file) as f:
        postmaster = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return postmaster, [int(p) for p in children]


def alive(pid):
    """Whether `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_killed_postmaster_loses_only_the_last_interval_of_reads(queued):
    reset_log(QUEUED_PORT, queued)

    def kill(_pids):
        postmaster, children = server_pids(QUEUED_PORT)
        # the whole server at once, as a power cut would end it
        for p in [postmaster, *children]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    killed = []

    def kill_all(pids):
        postmaster, children = server_pids(QUEUED_PORT)
        killed.extend([postmaster, *children])
        kill(pids)

    completed, killed_at = storm(QUEUED_PORT, queued, kill_all)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in killed):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # A dead postmaster's pid file stays (a zombie nobody reaps would even pass for alive): as
    # after a power cut, the next start finds it stale.
    for stale in ("data/postmaster.pid", f".s.PGSQL.{QUEUED_PORT}.lock", f".s.PGSQL.{QUEUED_PORT}"):
        try:
            os.unlink(f"{ROOT}/target/clusters/{QUEUED}/{stale}")
        except FileNotFoundError:
            pass
    cluster("start", QUEUED, QUEUED_PORT)
    check_storm(QUEUED_PORT, queued, completed, killed_at)


def test_a_hot_standby_refuses_secret_reads(queued, tmp_path):
    """A standby cannot write the audit log, so it returns no key (25006)."""
    standby = f"{ROOT}/target/clusters/audit_standby{CLUSTER_SUFFIX}"
    subprocess.run(["rm", "-rf", standby], check=True)
    os.makedirs(standby)
    subprocess.run(["chown", "postgres:postgres", standby], check=True)
    subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_basebackup", "-h", "127.0.0.1", "-p",
                    str(QUEUED_PORT), "-U", "postgres", "-D", f"{standby}/data", "-R", "-X", "stream"], check=True)
    with open(f"{standby}/data/postgresql.conf", "a") as f:
        f.write(f"\nport = {STANDBY_PORT}\nunix_socket_directories = '{standby}'\n")
    subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", f"{standby}/data", "-l",
                    f"{standby}/server.log", "-w", "start"], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                s = connect(STANDBY_PORT, queued)
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        with s:
            assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            b = business(s, 2)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as e:
                s.execute("SELECT get_ai_avatar_secret(%s)", [b])
            assert "standby" in str(e.value) and "hg_key" not in str(e.value)
            # reads that hold no key still work there
            assert s.execute("SELECT count(*) FROM get_ai_avatar_integration(%s)", [b]).fetchone()[0] == 1
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", f"{standby}/data", "-m",
                        "immediate", "stop"], capture_output=True)
        subprocess.run(["rm", "-rf", standby])
