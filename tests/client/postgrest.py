"""Calls RPCs exactly the way PostgREST does (see shared/postgrest_rpc.md):
one transaction, the set_config() preamble, then the json_to_record main
statement with the body bound as json, all as named prepared statements.
Errors are mapped to the HTTP status PostgREST would answer with."""

import json
import re

import psycopg
import psycopg.sql
from psycopg.types.json import Json

PREAMBLE = (
    "select set_config('search_path', %s, true), set_config(%s, %s, true), "
    "set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
    "set_config('request.method', %s, true), set_config('request.path', %s, true), "
    "set_config('request.headers', %s, true), set_config('request.cookies', %s, true)"
)

ROLE_TIMEOUTS = {"anon": "3s", "authenticated": "8s", "service_role": "8s"}


class RpcError(Exception):
    def __init__(self, status, sqlstate, message, hint=None, detail=None):
        super().__init__(f"HTTP {status} {sqlstate}: {message}")
        self.status, self.sqlstate, self.message, self.hint = status, sqlstate, message, hint
        self.detail = detail


def http_status(sqlstate, role, message=""):
    """PostgREST's pgErrorStatus for a database error."""
    s = sqlstate or ""
    if s == "42501":
        return 401 if role == "anon" else 403
    if s.startswith("28") or s.startswith("0L") or s.startswith("0P"):
        return 403
    if s in ("42883", "42P01"):
        return 404
    if s == "P0001":
        return 400
    if s.startswith("P0"):
        return 500
    if s in ("23503", "23505"):
        return 409
    if s.startswith("23") or s.startswith("22"):
        return 400
    if s == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if s == "25006":
        return 405
    if s.startswith(("25", "2D", "38", "39", "3B", "40")):
        return 500
    if s == "53400":
        return 500
    if s.startswith("53"):
        return 503
    if s.startswith(("54", "55", "58", "F0", "HV", "XX", "09")) or s == "42P17" or s.startswith("57"):
        return 503 if s == "57P01" else 500
    if s.startswith("08"):
        return 503
    m = re.fullmatch(r"PT(\d{3})", s)
    if m:
        return int(m.group(1))
    return 400


def main_statement(schema, fn, params, pgtypes, returns_set=False, scalar=True):
    cols = ", ".join(f'"{p}"' for p in params)
    typed = ", ".join(f'"{p}" {t}' for p, t in zip(params, pgtypes))
    named = ", ".join(f'"{p}" := pgrst_body."{p}"' for p in params)
    call = f'"{schema}"."{fn}"({named})'
    if not params:  # no body keys: no payload, no LATERAL
        call = f'"{schema}"."{fn}"()'
        source = (f"WITH pgrst_source AS (SELECT pgrst_call.pgrst_scalar FROM (SELECT {call} pgrst_scalar) pgrst_call) "
                  if scalar else f"WITH pgrst_source AS (SELECT pgrst_call.* FROM {call} pgrst_call) ")
        agg = "json_agg(_postgrest_t.pgrst_scalar)" if scalar else "json_agg(_postgrest_t)"
    elif scalar:
        source = (
            "WITH pgrst_source AS (SELECT pgrst_call.pgrst_scalar FROM (SELECT %s AS json_data) pgrst_payload, "
            f"LATERAL (SELECT {cols} FROM json_to_record(pgrst_payload.json_data) AS _({typed}) LIMIT 1) pgrst_body , "
            f"LATERAL (SELECT {call} pgrst_scalar) pgrst_call) "
        )
        agg = "json_agg(_postgrest_t.pgrst_scalar)"
    else:
        source = (
            "WITH pgrst_source AS (SELECT pgrst_call.* FROM (SELECT %s AS json_data) pgrst_payload, "
            f"LATERAL (SELECT {cols} FROM json_to_record(pgrst_payload.json_data) AS _({typed}) LIMIT 1) pgrst_body , "
            f"LATERAL {call} pgrst_call) "
        )
        agg = "json_agg(_postgrest_t)"
    body = f"coalesce({agg}, '[]')" if returns_set else f"coalesce({agg}->0, 'null')"
    page_total = "pg_catalog.count(_postgrest_t)" if returns_set else "1"
    return (
        source
        + f"SELECT null::bigint AS total_result_set, {page_total} AS page_total, {body} AS body, "
        "nullif(current_setting('response.headers', true), '') AS response_headers, "
        "nullif(current_setting('response.status', true), '') AS response_status, "
        "'' AS response_inserted "
        f'FROM (SELECT "{fn}".* FROM "pgrst_source" AS "{fn}" LIMIT %s OFFSET %s) _postgrest_t'
    )


def rpc(conn, fn, body, *, role, claims=None, schema="public", types=None,
        volatile=True, returns_set=False, scalar=True, literal=False, tx_rollback=False):
    """POST /rpc/<fn> with a JSON body; returns the decoded response body.
    literal=True sends the same statement with the body written into its text
    (as psql or a hand-written client would), not bound as a parameter.
    tx_rollback=True ends the transaction with ABORT (PostgREST's
    `Prefer: tx=rollback`)."""
    params = list(body)
    types = types or {}
    pgtypes = [types.get(p, "text") for p in params]
    claims = dict(claims or {})
    claims["role"] = role
    sql = main_statement(schema, fn, params, pgtypes, returns_set, scalar)
    cur = conn.cursor()
    access = "READ WRITE" if volatile else "READ ONLY"
    cur.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED {access}", prepare=True)
    try:
        cur.execute(
            PREAMBLE,
            [f'"{schema}", "public", "extensions"', "statement_timeout", ROLE_TIMEOUTS.get(role, "8s"),
             role, json.dumps(claims), "POST", f"/rpc/{fn}",
             json.dumps({"content-type": "application/json"}), "{}"],
            prepare=True,
        )
        args = ([Json(json.dumps(body), dumps=lambda s: s)] if params else []) + ["1000", "0"]
        if literal:
            literals = ([psycopg.sql.SQL("{}::json").format(psycopg.sql.Literal(json.dumps(body)))] if params else []) + [
                psycopg.sql.Literal(1000), psycopg.sql.Literal(0)]
            text = psycopg.sql.SQL(sql.replace("%s", "{}")).format(*literals).as_string(conn)
            cur.execute(text)
        else:
            cur.execute(sql, args, prepare=True)
        row = cur.fetchone()
        cur.execute("ABORT" if tx_rollback else "COMMIT")
        return row[2]
    except psycopg.Error as e:
        conn.rollback() if not conn.autocommit else cur.execute("ABORT")
        d = e.diag
        raise RpcError(http_status(d.sqlstate, role, d.message_primary or ""), d.sqlstate,
                       d.message_primary, d.message_hint, d.message_detail) from None
