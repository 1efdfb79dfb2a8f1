\set ECHO none
-- Helpers shared by the regress tests. A test loads them with
--
--   \getenv abs_srcdir PG_ABS_SRCDIR
--   \i :abs_srcdir/include/helpers.sql
--
-- and drops them at its end with
--
--   DROP FUNCTION try(text, text), act_as(text, text);
--
-- pg_regress feeds each test to psql on standard input, so \ir would resolve
-- against the current directory, not sql/; PG_ABS_SRCDIR is pg_regress's
-- --inputdir (tests/pg_regress). This file lives outside sql/ because every
-- sql/*.sql is a test. pg_regress runs psql with -a (ECHO all): the
-- definitions below are kept out of the expected output, and ECHO is back to
-- all when the file ends.

-- try(sql [, id]): runs sql and returns 'ok', or the SQLSTATE and message it
-- fails with (as seen inside the database: our not-found error is P0002 here
-- and PT404 at a client). A generated id given as id is shown as <id>.
CREATE OR REPLACE FUNCTION try(sql text, id text DEFAULT NULL) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN CASE WHEN id IS NULL THEN SQLSTATE || ': ' || SQLERRM
                ELSE replace(SQLSTATE || ': ' || SQLERRM, id, '<id>') END;
END $$;

-- act_as(role, sub): the caller, the way PostgREST sets it, for the rest of the
-- transaction: request.jwt.claims (sub, role and aud; only role when sub is
-- NULL) and the role.
CREATE OR REPLACE FUNCTION act_as(role text, sub text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('request.jwt.claims',
        CASE WHEN sub IS NULL THEN json_build_object('role', role)::text
             ELSE json_build_object('sub', sub, 'role', role, 'aud', 'authenticated')::text END, true);
    PERFORM set_config('role', role, true);
END $$;
\set ECHO all
