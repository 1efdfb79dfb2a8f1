//! `integrations.distribute()` (0.6.0): moves the extension's tables onto a
//! Citus cluster, run by an operator on the coordinator once the app's tenant
//! table is distributed. The registries become reference tables (a copy on
//! every node), every per-business table is distributed by `business_id`,
//! co-located with the tenant table, so one business's rows are on one node.
//!
//! What stands in the way, and what each step does about it (all seen on
//! Citus 13.2.2, `tests/citus/`):
//! - a foreign key from a local table to a table becoming a reference table
//!   makes Citus turn the local one into a Citus-local table, whose shells
//!   clash with the workers' own copies of the extension (propagated
//!   `CREATE EXTENSION`): the keys to the provider registry are dropped on
//!   every node first and added back once both ends are distributed;
//! - a table in a publication (seed 004's `esp_integrations` in Supabase's
//!   `supabase_realtime`) is added to the workers' publications again when it
//!   is distributed, which they refuse: it leaves the coordinator's
//!   publication while it moves and rejoins only there after;
//! - statement triggers with transition tables cannot run on shards
//!   ("unrecognized RTE kind: 7"): they become row triggers, and the trigger
//!   functions may then reach the co-located shard of the secrets from a
//!   shard (`citus.allow_nested_distributed_execution`), as their owner.
//!
//! Each step is skipped when already done, so a second call finishes the job
//! of one that failed half-way. The plan runs in the caller's transaction,
//! but the steps run on the workers (`-- on every worker:`) commit there at
//! once: dropping the registry keys, which a retry then finds gone, and
//! setting the trigger functions, which a retry sets again. `p_dry_run`
//! returns the plan without running it.
//!
//! The trigger functions' settings (SECURITY DEFINER, the Citus setting)
//! are lost if an upgrade script replaces the functions: every call checks
//! them, so calling `distribute()` again after `ALTER EXTENSION ... UPDATE`
//! restores them.

use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use crate::core::error::{Error, Result};
use crate::pg::fcall::{self, Call};
use crate::pg::spi::Spi;
use crate::sql_function;
use crate::tenancy::caller;

/// The extension's tables every node holds whole.
const REFERENCE_TABLES: &[&str] = &[
    "public.integration_providers",
    "integrations.keys",
    "integrations.tenant_table",
];

/// Statement triggers with a transition table, by function, and the row
/// trigger that replaces each on a distributed table.
const ROW_TRIGGERS: &[(&str, &str)] = &[
    (
        "integrations.delete_row_secrets",
        "integrations.delete_row_secrets()",
    ),
    (
        "integrations.delete_connection_secrets",
        "integrations.delete_row_secrets('api_key_secret_id', 'basic_password_secret_id', 'oauth_access_token_secret_id', 'oauth_refresh_token_secret_id')",
    ),
    (
        "integrations.delete_webhook_secrets",
        "integrations.delete_row_secrets('signing_secret_id')",
    ),
    (
        "integrations.delete_connection_logs",
        "integrations.delete_row_logs()",
    ),
];

/// The back-end reads a direct SQL client calls by business: with
/// `p_route_calls`, Citus runs each such call (a bare `SELECT f(...)` outside
/// a transaction block) on the worker holding the business's shard, in one
/// round trip. PostgREST's statements are not bare calls: they run on the
/// coordinator, reaching the shard by SQL.
const ROUTED_FUNCTIONS: &[&str] = &[
    "public.get_ai_avatar_secret(uuid)",
    "public.get_email_secret(uuid)",
    "public.get_blog_secret(uuid)",
    "public.get_esp_credentials(uuid,text)",
];

/// The functions row triggers on shards run: as their owner (the deleting
/// role may not read the secrets), reaching the co-located shard.
const TRIGGER_FUNCTIONS: &[&str] = &[
    "integrations.delete_row_secrets()",
    "integrations.delete_row_logs()",
];

/// One step of the plan: SQL run here, or on every worker.
struct Step {
    sql: String,
    on_workers: bool,
}

impl Step {
    fn here(sql: String) -> Step {
        Step {
            sql,
            on_workers: false,
        }
    }

    fn text(&self) -> String {
        if self.on_workers {
            format!("-- on every worker: {}", self.sql)
        } else {
            self.sql.clone()
        }
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

sql_function!(pgi_distribute => distribute);
/// `integrations.distribute(p_tenant_table, p_dry_run)`, declared in
/// `sql/pg_integrations--0.5.0--0.6.0.sql`: the plan's statements, run
/// unless `p_dry_run`.
fn distribute(call: &Call) -> Result<pg_sys::Datum> {
    caller::require_superuser("integrations.distribute")?;
    let tenant: pg_sys::Oid = call.required(0, "p_tenant_table")?;
    let dry_run: bool = call.required(1, "p_dry_run")?;
    let route: bool = call.required(2, "p_route_calls")?;
    let steps = Spi::connect_mut(|c| -> Result<Vec<Step>> {
        let steps = plan(c, tenant, route)?;
        if !dry_run {
            for step in &steps {
                run(c, step)?;
            }
        }
        Ok(steps)
    })?;
    call.begin_rows();
    for step in steps {
        call.put_row(&mut [fcall::datum(step.text())], &mut [false]);
    }
    Ok(fcall::void())
}

fn run(c: &mut SpiClient<'_>, step: &Step) -> Result<()> {
    if !step.on_workers {
        c.update(&step.sql, None, &[])?;
        return Ok(());
    }
    let rows = c.update(
        "SELECT coalesce(bool_and(success), true), string_agg(nodename || ':' || nodeport || ': ' || result, '; ') FILTER (WHERE NOT success) \
         FROM pg_catalog.run_command_on_workers($1)",
        None,
        &[step.sql.as_str().into()],
    )?;
    let row = rows.first();
    if row.get::<bool>(1)? == Some(false) {
        let failed: String = row.get(2)?.unwrap_or_default();
        return Err(Error::NotReady {
            message: format!("a worker refused a step of integrations.distribute(): {failed}"),
            hint:
                "Fix the worker, then call integrations.distribute() again: done steps are skipped."
                    .into(),
        });
    }
    Ok(())
}

fn strings(
    c: &SpiClient<'_>,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for row in c.select(sql, None, args)? {
        let n = row.columns();
        let mut r = Vec::with_capacity(n);
        for i in 1..=n {
            r.push(row.get::<String>(i)?.unwrap_or_default());
        }
        out.push(r);
    }
    Ok(out)
}

fn plan(c: &SpiClient<'_>, tenant: pg_sys::Oid, route: bool) -> Result<Vec<Step>> {
    let citus = c
        .select(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')",
            None,
            &[],
        )?
        .first()
        .get::<bool>(1)?
        .unwrap_or(false);
    if !citus {
        return Err(Error::NotReady {
            message: "Citus is not installed in this database: there is nothing to distribute".into(),
            hint: "On a single node nothing needs distributing. On a Citus cluster, run CREATE EXTENSION citus and add the workers first.".into(),
        });
    }
    let coordinator = c
        .select("SELECT pg_catalog.citus_is_coordinator()", None, &[])?
        .first()
        .get::<bool>(1)?
        .unwrap_or(false);
    if !coordinator {
        return Err(Error::NotReady {
            message: "integrations.distribute() runs on the Citus coordinator".into(),
            hint: "Connect to the coordinator and call it there.".into(),
        });
    }
    let tenant_rows = strings(
        c,
        "SELECT $1::regclass::text, coalesce((SELECT partmethod::text FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1), '')",
        &[tenant.into()],
    )?;
    let (tenant_name, method) = (tenant_rows[0][0].clone(), tenant_rows[0][1].clone());
    if method != "h" {
        return Err(Error::NotReady {
            message: format!("the tenant table {tenant_name} is not distributed"),
            hint: format!(
                "Distribute it by its id first: SELECT create_distributed_table({}, 'id');",
                quote_literal(&tenant_name)
            ),
        });
    }
    let citus_tables: Vec<String> = strings(
        c,
        "SELECT logicalrelid::regclass::text FROM pg_catalog.pg_dist_partition",
        &[],
    )?
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let done = |t: &str| citus_tables.iter().any(|d| d == t);

    // The per-business tables, each after the tables its foreign keys point to.
    let rows = strings(
        c,
        "SELECT c.oid::regclass::text, coalesce((SELECT string_agg(f.confrelid::regclass::text, ' ') FROM pg_catalog.pg_constraint f \
                                        WHERE f.conrelid = c.oid AND f.contype = 'f'), '') \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_integrations' \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'business_id' AND NOT a.attisdropped) \
         ORDER BY 1",
        &[],
    )?;
    let mut pending: Vec<(String, Vec<String>)> = rows
        .into_iter()
        .map(|r| (r[0].clone(), r[1].split(' ').map(String::from).collect()))
        .collect();
    let mut per_business = Vec::new();
    while !pending.is_empty() {
        let names: Vec<String> = pending.iter().map(|p| p.0.clone()).collect();
        let (ready, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(t, refs)| !refs.iter().any(|r| r != t && names.contains(r)));
        if ready.is_empty() {
            return Err(Error::Internal(
                "a foreign key cycle among the extension's tables".into(),
            ));
        }
        per_business.extend(ready.into_iter().map(|r| r.0));
        pending = rest;
    }
    let to_distribute: Vec<&String> = per_business.iter().filter(|t| !done(t)).collect();

    let mut steps = vec![Step::here(
        // one connection per worker: the foreign keys to reference tables
        // added below refuse a transaction that used several
        "SELECT pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true)".into(),
    )];
    // 1. Keys to the provider registry, while it is not a reference table.
    let registry_fks = if done("public.integration_providers") {
        Vec::new()
    } else {
        strings(
            c,
            "SELECT f.conrelid::regclass::text, quote_ident(f.conname), pg_catalog.pg_get_constraintdef(f.oid) FROM pg_catalog.pg_constraint f \
             WHERE f.contype = 'f' AND f.confrelid = 'public.integration_providers'::regclass \
               AND EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
                           WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = f.conrelid AND d.deptype = 'e' \
                             AND e.extname = 'pg_integrations') \
             ORDER BY 1, 2",
            &[],
        )?
    };
    for fk in &registry_fks {
        let drop = format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}", fk[0], fk[1]);
        steps.push(Step {
            sql: drop.clone(),
            on_workers: true,
        });
        steps.push(Step::here(drop));
    }
    // 2. Published tables leave the coordinator's publication while they move,
    // and come back with the same column list and row filter (seed 004's
    // esp_integrations is published without its credentials).
    let published = strings(
        c,
        "SELECT quote_ident(p.pubname), r.prrelid::regclass::text, \
                coalesce(' (' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
                                  WHERE a.attrelid = r.prrelid AND a.attnum = ANY (r.prattrs::int2[])) || ')', ''), \
                coalesce(' WHERE (' || pg_catalog.pg_get_expr(r.prqual, r.prrelid) || ')', '') \
         FROM pg_catalog.pg_publication_rel r JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid \
         WHERE r.prrelid::regclass::text = ANY ($1) ORDER BY 1, 2",
        &[to_distribute
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .into()],
    )?;
    for p in &published {
        steps.push(Step::here(format!(
            "ALTER PUBLICATION {} DROP TABLE {}",
            p[0], p[1]
        )));
    }
    // 5's triggers, looked up now: creating one on a distributed table also
    // needs the setting below
    let triggers = strings(
        c,
        "SELECT t.tgrelid::regclass::text, quote_ident(t.tgname), t.tgfoid::regproc::text FROM pg_catalog.pg_trigger t \
         WHERE t.tgoldtable IS NOT NULL AND t.tgrelid::regclass::text = ANY ($1) ORDER BY 1, 2",
        &[per_business.clone().into()],
    )?;
    if !to_distribute.is_empty()
        || !triggers.is_empty()
        || REFERENCE_TABLES.iter().any(|t| !done(t))
    {
        // tables with triggers may be distributed (they are replaced below)
        steps.push(Step::here(
            "SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true)".into(),
        ));
    }
    // 3. The registries on every node, 4. the rest by business.
    for t in REFERENCE_TABLES.iter().filter(|t| !done(t)) {
        steps.push(Step::here(format!(
            "SELECT pg_catalog.create_reference_table({})",
            quote_literal(t)
        )));
    }
    for t in &to_distribute {
        steps.push(Step::here(format!(
            "SELECT pg_catalog.create_distributed_table({}, 'business_id', colocate_with => {})",
            quote_literal(t),
            quote_literal(&tenant_name)
        )));
    }
    for fk in &registry_fks {
        steps.push(Step::here(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            fk[0], fk[1], fk[2]
        )));
    }
    // Back into the coordinator's publication only: the workers' kept theirs.
    if !published.is_empty() {
        steps.push(Step::here(
            "SELECT pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true)".into(),
        ));
        for p in &published {
            steps.push(Step::here(format!(
                "ALTER PUBLICATION {} ADD TABLE {}{}{}",
                p[0], p[1], p[2], p[3]
            )));
        }
        steps.push(Step::here(
            "SELECT pg_catalog.set_config('citus.enable_ddl_propagation', 'on', true)".into(),
        ));
    }
    // 5. Row triggers for statement triggers with transition tables.
    for t in &triggers {
        let Some((_, row_fn)) = ROW_TRIGGERS.iter().find(|(f, _)| *f == t[2]) else {
            return Err(Error::NotReady {
                message: format!(
                    "trigger {} on {} has a transition table, which Citus cannot run on shards",
                    t[1], t[0]
                ),
                hint: "Replace it with a row trigger, then call integrations.distribute() again."
                    .into(),
            });
        };
        steps.push(Step::here(format!("DROP TRIGGER {} ON {}", t[1], t[0])));
        steps.push(Step::here(format!(
            "CREATE TRIGGER {} AFTER DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}",
            t[1], t[0], row_fn
        )));
    }
    // The trigger functions as their owner, reaching the co-located shard; checked on every
    // call (an upgrade script that replaced them dropped both settings).
    let unset = strings(
        c,
        "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p \
         WHERE p.oid::regprocedure::text = ANY ($1) \
           AND NOT (p.prosecdef AND 'citus.allow_nested_distributed_execution=on' = ANY (coalesce(p.proconfig, '{}'))) \
         ORDER BY 1",
        &[TRIGGER_FUNCTIONS
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .into()],
    )?;
    if !triggers.is_empty() || !unset.is_empty() {
        for f in TRIGGER_FUNCTIONS {
            let alter = format!(
                "ALTER FUNCTION {f} SECURITY DEFINER SET citus.allow_nested_distributed_execution = on"
            );
            steps.push(Step {
                sql: alter.clone(),
                on_workers: true,
            });
            steps.push(Step::here(alter));
        }
    }
    // 6. Calls routed to the business's worker.
    if route {
        let unrouted = strings(
            c,
            "SELECT f FROM unnest($1::text[]) f \
             WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_object o \
                               WHERE o.classid = 'pg_catalog.pg_proc'::regclass AND o.objid = f::regprocedure \
                                 AND o.distribution_argument_index IS NOT NULL) \
             ORDER BY 1",
            &[ROUTED_FUNCTIONS
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .into()],
        )?;
        for f in unrouted {
            steps.push(Step::here(format!(
                "SELECT pg_catalog.create_distributed_function({}, 'p_business_id', colocate_with => {})",
                quote_literal(&f[0]),
                quote_literal(&tenant_name)
            )));
        }
    }
    // nothing but the session setting: all done
    if steps.len() == 1 {
        steps.clear();
    }
    Ok(steps)
}
