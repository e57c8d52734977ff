//! The endpoints' actions: the application roles and databases (and the health checks'
//! role) on the primary; HAProxy on each proxy; on a promotion, the write pool handed to
//! the new primary at once through HAProxy's runtime API; and what verify and status
//! read of the endpoints.
//!
//! A proxy is never a PostgreSQL member: it has a session and a node number after the
//! members (see `Inventory::proxies`), and only [`run_on_proxy`] runs actions on it.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Cluster;
use super::context::HostCtx;
use crate::haproxy::{self, ServerStat};
use crate::inventory::{CHECK_ROLE, Endpoint, Inventory, Proxy, ReadFrom, Role};
use crate::pg::{ident, literal, scram, wire};
use crate::playbook::{Action, ShellUser};
use crate::ssh::{Command, Session};
use crate::status::{EndpointStatus, Target};
use crate::step::{Outcome, StepError};
use crate::verify::{Check, Health, HostChecks};

/// An action's view of one proxy during a run.
pub struct ProxyCtx<'e> {
    pub cluster: &'e Cluster,
    pub index: usize,
    pub proxy: &'e Proxy,
    pub session: &'e Session,
}

/// Runs an action on a proxy: `haproxy`, or a site's `shell` step.
pub async fn run_on_proxy(ctx: &ProxyCtx<'_>, action: &Action) -> Result<Outcome, StepError> {
    match action {
        Action::Haproxy => haproxy(ctx).await,
        Action::Shell { command, user } => {
            if ctx.cluster.options.check {
                return Ok(Outcome::skipped(format!(
                    "check mode: would run `{command}`"
                )));
            }
            let cmd = Command::script(command, &[]);
            let cmd = match user {
                ShellUser::Root => cmd.as_root(),
                ShellUser::Login => cmd,
                ShellUser::Postgres => {
                    return Err(StepError::new(
                        format!("`{}` is a proxy: it has no postgres user", ctx.proxy.name),
                        "use `user: login` or `user: root` for a step on proxies",
                    ));
                }
            };
            ctx.session.run(&cmd).await?;
            Ok(Outcome::changed(format!("ran `{command}`")))
        }
        other => Err(StepError::new(
            format!(
                "`{}` is a proxy, which runs no PostgreSQL: action `{}` is for PostgreSQL hosts",
                ctx.proxy.name,
                other.name()
            ),
            "give the step `hosts: primary`, `replicas` or `all`; proxies take `haproxy` and `shell`",
        )),
    }
}

/// The check role's password, from the replication password.
fn check_password(cluster: &Cluster) -> Result<String, StepError> {
    let password = cluster.password.as_ref().ok_or_else(|| {
        StepError::new(
            "no replication password: the health checks' password is derived from it",
            "set replication.password_env or password_file",
        )
    })?;
    Ok(haproxy::check_password(password.expose_secret()))
}

/// The primary's name, and the names of the members out of service.
fn pools(cluster: &Cluster) -> (String, Vec<&str>) {
    let inv = &cluster.inventory;
    let primary = inv
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.clone())
        .unwrap_or_default();
    let out = cluster
        .out_of_service
        .iter()
        .filter_map(|&i| inv.hosts.get(i).map(|h| h.name.as_str()))
        .collect();
    (primary, out)
}

fn endpoint_of<'a>(inv: &'a Inventory, proxy: &Proxy) -> Result<&'a Endpoint, StepError> {
    inv.endpoint_of(&proxy.name).ok_or_else(|| {
        StepError::new(
            format!("no endpoint uses proxy `{}`", proxy.name),
            "add it to the inventory's endpoints",
        )
    })
}

/// The `haproxy` action: installed, the rendered config in place (checked by `haproxy -c`
/// first, the old file back if haproxy will not take it), running, and the write pool at
/// runtime as the file says.
async fn haproxy(ctx: &ProxyCtx<'_>) -> Result<Outcome, StepError> {
    let cluster = ctx.cluster;
    let inv = &cluster.inventory;
    let endpoint = endpoint_of(inv, ctx.proxy)?;
    let (primary, out_of_service) = pools(cluster);
    let context = haproxy::context(
        inv,
        ctx.proxy,
        endpoint,
        &primary,
        &out_of_service,
        &check_password(cluster)?,
    );
    let rendered = cluster
        .templates
        .render_with(haproxy::TEMPLATE, &context)
        .map_err(|e| StepError::msg(e.to_string()))?;
    let check = cluster.options.check;
    let mut facts = facts(ctx.session).await?;
    let mut done = Vec::new();
    if !facts.installed {
        if check {
            return Ok(Outcome::changed(
                "would install haproxy (the distribution's package), write its config and start it",
            ));
        }
        let install = Command::script(haproxy::INSTALL_SCRIPT, &[])
            .as_root()
            .timeout(Some(Duration::from_secs(600)));
        ctx.session.run(&install).await.map_err(|e| {
            StepError::new(
                format!("cannot install haproxy: {e}"),
                "install it by hand (apt-get install haproxy), then re-run",
            )
        })?;
        done.push("installed haproxy".to_string());
        facts = self::facts(ctx.session).await?;
    }
    if facts.config != rendered || !facts.running {
        if cluster.options.diff && facts.config != rendered {
            cluster
                .events
                .diff(&ctx.proxy.name, haproxy::CONFIG, &facts.config, &rendered);
        }
        let (would, did) = match (facts.config != rendered, facts.running) {
            (true, true) => (
                "write haproxy.cfg and reload haproxy",
                "wrote haproxy.cfg and reloaded haproxy",
            ),
            (true, false) => (
                "write haproxy.cfg and start haproxy",
                "wrote haproxy.cfg and started haproxy",
            ),
            _ => ("start haproxy", "started haproxy"),
        };
        if check {
            return Ok(Outcome::changed(format!("would {would}")));
        }
        apply(ctx, &rendered).await?;
        done.push(did.to_string());
    }
    // The file is what pgrepl wants; the running pools must say the same (a runtime
    // change, a switch that came before this file).
    let fixes = runtime_fixes(&context, &show_stat(ctx.session).await?);
    if !fixes.is_empty() {
        if check {
            return Ok(Outcome::changed(format!(
                "would set at runtime: {}",
                fixes.join("; ")
            )));
        }
        runtime(ctx.session, &fixes.join("; ")).await?;
        done.push(format!("set at runtime: {}", fixes.join("; ")));
    }
    let pools = format!("writes to {primary}");
    if done.is_empty() {
        Ok(Outcome::ok(format!(
            "{} is up to date and running ({pools})",
            haproxy::CONFIG
        )))
    } else {
        Ok(Outcome::changed(format!("{} ({pools})", done.join(", "))))
    }
}

async fn facts(session: &Session) -> Result<haproxy::Facts, StepError> {
    let cmd =
        Command::script(haproxy::FACTS_SCRIPT, &[haproxy::CONFIG, haproxy::PIDFILE]).as_root();
    let out = session.run(&cmd).await?;
    Ok(haproxy::parse_facts(&out.stdout))
}

/// Writes the config through [`haproxy::APPLY_SCRIPT`] (stdin: the file, which holds
/// secrets) and waits until the admin socket answers.
async fn apply(ctx: &ProxyCtx<'_>, rendered: &str) -> Result<(), StepError> {
    let cmd = Command::script(
        &format!("{}{}", haproxy::CLI_FUNCTION, haproxy::APPLY_SCRIPT),
        &[haproxy::CONFIG, haproxy::PIDFILE, haproxy::ADMIN_SOCKET],
    )
    .as_root()
    .secret_stdin(SecretString::from(rendered.to_string()));
    let out = ctx.session.output(&cmd).await?;
    match out.status {
        0 => {}
        3 => {
            return Err(StepError::new(
                format!(
                    "haproxy rejects the rendered config; {} is unchanged:\n{}",
                    haproxy::CONFIG,
                    out.stderr.trim()
                ),
                "fix the template (--templates DIR) or the inventory's endpoints; the rejected file is beside it as .pgrepl-rejected",
            ));
        }
        4 => {
            return Err(StepError::new(
                format!(
                    "haproxy did not start with the new config; the previous one is back:\n{}",
                    out.stderr.trim()
                ),
                "a port may be taken on the proxy (ss -ltnp), or the address not its own",
            ));
        }
        _ => {
            return Err(StepError::msg(format!(
                "installing {} failed (exit {}): {}",
                haproxy::CONFIG,
                out.status,
                out.stderr.trim()
            )));
        }
    }
    let started = Instant::now();
    loop {
        match show_stat(ctx.session).await {
            Ok(rows) if !rows.is_empty() => return Ok(()),
            _ if started.elapsed() > Duration::from_secs(10) => {
                return Err(StepError::new(
                    format!(
                        "haproxy took the new config but its admin socket {} does not answer",
                        haproxy::ADMIN_SOCKET
                    ),
                    "look at haproxy's log on the proxy (journalctl -u haproxy, or /var/log/haproxy.log)",
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Sends commands to the admin socket; an answer other than silence is an error.
async fn runtime(session: &Session, commands: &str) -> Result<(), StepError> {
    let out = session.run(&cli(&format!("{commands}\n"))).await?;
    let answer = out.stdout.trim();
    if answer.is_empty() {
        Ok(())
    } else {
        Err(StepError::msg(format!(
            "haproxy's runtime API answered `{answer}` to `{commands}`"
        )))
    }
}

fn cli(input: &str) -> Command {
    Command::script(
        &format!("{}haproxy_cli \"$1\"", haproxy::CLI_FUNCTION),
        &[haproxy::ADMIN_SOCKET],
    )
    .as_root()
    .stdin(input.as_bytes().to_vec())
    .timeout(Some(Duration::from_secs(20)))
}

/// Every server's line of `show stat`.
pub async fn show_stat(session: &Session) -> Result<Vec<ServerStat>, StepError> {
    let out = session.run(&cli("show stat -1 4 -1\n")).await?;
    Ok(haproxy::parse_show_stat(&out.stdout))
}

/// Runtime commands that bring each pool's admin state to what the file says.
fn runtime_fixes(context: &haproxy::HaproxyContext, stats: &[ServerStat]) -> Vec<String> {
    let mut fixes = Vec::new();
    for m in &context.members {
        let writer = m.primary && m.in_service;
        let mut wanted = vec![
            (haproxy::WRITE_BACKEND, writer),
            (haproxy::READ_BACKEND, !m.primary && m.in_service),
        ];
        if context.endpoint.read_from == ReadFrom::ReplicasAndPrimary {
            wanted.push((haproxy::READ_PRIMARY_BACKEND, writer));
        }
        for (backend, enabled) in wanted {
            let Some(s) = stats
                .iter()
                .find(|s| s.backend == backend && s.server == m.name)
            else {
                continue;
            };
            match (enabled, s.in_maintenance()) {
                (true, true) => fixes.push(format!("set server {backend}/{} state ready", m.name)),
                (false, false) => {
                    fixes.push(format!("set server {backend}/{} state maint", m.name));
                    if backend != haproxy::READ_BACKEND {
                        fixes.push(format!("shutdown sessions server {backend}/{}", m.name));
                    }
                }
                _ => {}
            }
        }
    }
    fixes
}

/// On a promotion: every proxy sends writes to `new_primary` at once through the runtime
/// API, the other members in maintenance first. Never fails the promotion: a proxy that
/// cannot be told is named, and the haproxy step of the rewiring tries again with the file.
pub async fn route_writes(cluster: &Cluster, new_primary: &str) {
    let inv = &cluster.inventory;
    if inv.endpoints.is_empty() {
        return;
    }
    let members: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let tasks = inv.proxy_nodes().filter_map(|i| {
        let proxy = inv.proxy_of(i)?;
        let endpoint = inv.endpoint_of(&proxy.name)?;
        let commands = haproxy::route_writes(&members, new_primary, endpoint.read_from);
        let session = cluster.sessions[i].clone();
        let name = proxy.name.clone();
        Some(async move {
            let result = match &session {
                Some(s) => runtime(s, &commands).await.map_err(|e| e.to_string()),
                None => Err("not reachable over SSH".to_string()),
            };
            (name, result)
        })
    });
    for (name, result) in futures::future::join_all(tasks).await {
        cluster.events.note(&match result {
            Ok(()) => format!("pgrepl: endpoint {name}: writes go to `{new_primary}` now"),
            Err(e) => format!(
                "pgrepl: warning: endpoint {name}: could not move writes to `{new_primary}` at once ({e}); its haproxy step does it with the file"
            ),
        });
    }
}

// ---- roles and databases -------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct DbState {
    roles: Vec<RoleRow>,
    databases: Vec<DatabaseRow>,
    check_function: Option<FunctionRow>,
    check_grants: Option<bool>,
    public_execute: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RoleRow {
    name: String,
    login: bool,
    verifier: Option<String>,
    connlimit: i32,
}

#[derive(Debug, Deserialize)]
struct DatabaseRow {
    name: String,
    owner: String,
}

#[derive(Debug, Deserialize)]
struct FunctionRow {
    src: String,
    definer: bool,
}

/// The body of [`haproxy::STANDBY_OK_SQL`] as `pg_proc.prosrc` keeps it.
fn standby_ok_body() -> &'static str {
    let sql = haproxy::STANDBY_OK_SQL;
    let start = sql.find("$$").map_or(0, |i| i + 2);
    let end = sql.rfind("$$").unwrap_or(sql.len());
    &sql[start..end]
}

fn text_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| literal(s)).collect();
    format!("ARRAY[{}]::text[]", quoted.join(","))
}

/// The `roles_and_databases` action, on the primary: each application role with its
/// password (sent as a SCRAM verifier computed here), each database with its owner, and
/// with endpoints the health checks' role (no privileges, a connection limit, one
/// function). Only what differs changes.
pub async fn roles_and_databases(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let inv = &ctx.cluster.inventory;
    let endpoints = !inv.endpoints.is_empty();
    if inv.roles.is_empty() && inv.databases.is_empty() && !endpoints {
        return Ok(Outcome::ok(
            "no application roles, databases or endpoints in the inventory",
        ));
    }
    let mut names: Vec<&str> = inv.roles.iter().map(|r| r.name.as_str()).collect();
    if endpoints {
        names.push(CHECK_ROLE);
    }
    let dbs: Vec<&str> = inv.databases.iter().map(|d| d.name.as_str()).collect();
    let sql = format!(
        "SELECT json_build_object(
  'roles', (SELECT coalesce(json_agg(json_build_object('name', rolname, 'login', rolcanlogin, 'verifier', rolpassword, 'connlimit', rolconnlimit)), '[]') FROM pg_authid WHERE rolname = ANY({roles})),
  'databases', (SELECT coalesce(json_agg(json_build_object('name', datname, 'owner', pg_get_userbyid(datdba))), '[]') FROM pg_database WHERE datname = ANY({dbs})),
  'check_function', (SELECT json_build_object('src', prosrc, 'definer', prosecdef) FROM pg_proc WHERE oid = to_regprocedure({f})),
  'check_grants', CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = {check}) AND to_regprocedure({f}) IS NOT NULL
      THEN has_function_privilege({check}, {f}, 'EXECUTE') AND has_schema_privilege({check}, 'pgrepl', 'USAGE') END,
  'public_execute', (SELECT bool_or(a.grantee = 0) FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
      WHERE p.oid = to_regprocedure({f}) AND a.privilege_type = 'EXECUTE'))",
        roles = text_array(&names),
        dbs = text_array(&dbs),
        f = literal(haproxy::STANDBY_OK),
        check = literal(CHECK_ROLE),
    );
    let pg = ctx.pg();
    let state: DbState = pg.query(&sql).await?;
    let mut script = Vec::new();
    let mut changes = Vec::new();
    for role in &inv.roles {
        let seen = state.roles.iter().find(|r| r.name == role.name);
        let password = role
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_string());
        let current = seen.is_some_and(|r| {
            r.login == role.login
                && (!role.login
                    || password.as_deref().is_some_and(|p| {
                        r.verifier.as_deref().is_some_and(|v| scram::matches(v, p))
                    }))
        });
        if current {
            continue;
        }
        let verb = if seen.is_some() { "ALTER" } else { "CREATE" };
        let mut stmt = format!(
            "{verb} ROLE {} WITH {}",
            ident(&role.name),
            if role.login { "LOGIN" } else { "NOLOGIN" }
        );
        if let (true, Some(p)) = (role.login, &password) {
            stmt.push_str(&format!(" PASSWORD {}", literal(&scram::verifier(p))));
        }
        script.push(format!("{stmt};"));
        changes.push(format!(
            "{} role {}",
            if seen.is_some() { "updated" } else { "created" },
            role.name
        ));
    }
    if endpoints {
        let password = check_password(ctx.cluster)?;
        let limit = haproxy::check_connection_limit(inv);
        let role_ok = state.roles.iter().any(|r| {
            r.name == CHECK_ROLE
                && r.login
                && r.connlimit == limit
                && r.verifier
                    .as_deref()
                    .is_some_and(|v| scram::matches(v, &password))
        });
        let function_ok = state
            .check_function
            .as_ref()
            .is_some_and(|f| f.definer && f.src == standby_ok_body());
        let grants_ok = state.check_grants == Some(true) && state.public_execute != Some(true);
        if !(role_ok && function_ok && grants_ok) {
            script.push(check_role_sql(&password, limit));
            changes.push(format!(
                "{} health-check role {CHECK_ROLE}",
                if state.roles.iter().any(|r| r.name == CHECK_ROLE) {
                    "updated"
                } else {
                    "created"
                }
            ));
        }
    }
    // Databases after the roles that own them; CREATE DATABASE runs outside a transaction.
    for db in &inv.databases {
        match state.databases.iter().find(|d| d.name == db.name) {
            Some(d) if d.owner == db.owner => {}
            Some(_) => {
                script.push(format!(
                    "ALTER DATABASE {} OWNER TO {};",
                    ident(&db.name),
                    ident(&db.owner)
                ));
                changes.push(format!("database {} now owned by {}", db.name, db.owner));
            }
            None => {
                script.push(format!(
                    "CREATE DATABASE {} OWNER {};",
                    ident(&db.name),
                    ident(&db.owner)
                ));
                changes.push(format!("created database {} (owner {})", db.name, db.owner));
            }
        }
    }
    if changes.is_empty() {
        return Ok(Outcome::ok("roles and databases are up to date"));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!("would: {}", changes.join(", "))));
    }
    // Verifiers are not passwords, but no one needs to see them: stdin, shown as secret.
    let cmd = pg
        .psql()
        .secret_stdin(SecretString::from(script.join("\n")));
    ctx.session.run(&cmd).await?;
    Ok(Outcome::changed(changes.join(", ")))
}

/// The health checks' role and function, idempotent DDL.
fn check_role_sql(password: &str, limit: i32) -> String {
    let role = ident(CHECK_ROLE);
    format!(
        "DO $do$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN CREATE ROLE {role}; END IF;
END $do$;
ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD {verifier};
CREATE SCHEMA IF NOT EXISTS pgrepl;
{function};
REVOKE ALL ON FUNCTION {f} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {f} TO {role};
GRANT USAGE ON SCHEMA pgrepl TO {role};",
        name = literal(CHECK_ROLE),
        verifier = literal(&scram::verifier(password)),
        function = haproxy::STANDBY_OK_SQL,
        f = haproxy::STANDBY_OK,
    )
}

// ---- what verify and status read -------------------------------------------------------

/// Logs in as the check role through `port` on the proxy, `times` times, and runs `sql`
/// each time; one answer (rows, or why none) per connection. Runs on the proxy with bash's
/// `/dev/tcp`, so it needs nothing installed there; the bytes go on stdin.
async fn probe_port(
    session: &Session,
    address: &str,
    port: u16,
    password: &str,
    sql: &str,
    times: usize,
) -> Result<Vec<Result<Vec<Vec<Option<String>>>, String>>, String> {
    let mut bytes = wire::startup(CHECK_ROLE, haproxy::CHECK_DATABASE, "pgrepl-verify");
    bytes.extend(wire::password(password));
    bytes.extend(wire::query(sql));
    bytes.extend(wire::terminate());
    let escaped: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
    let script = r#"IFS= read -r msg
for _ in $(seq 1 "$3"); do
  if exec 3<>"/dev/tcp/$1/$2"; then
    printf "$msg" >&3
    timeout 5 od -An -v -tx1 <&3 | tr -d ' \n'
    exec 3<&-
  fi
  echo
done"#;
    let cmd = Command::new("bash")
        .args(["-c", script, "pgrepl-probe", address, &port.to_string()])
        .arg(times.to_string())
        .stdin(format!("{escaped}\n").into_bytes())
        .timeout(Some(Duration::from_secs(10 + 6 * times as u64)));
    let out = session.output(&cmd).await.map_err(|e| e.to_string())?;
    Ok(out
        .stdout
        .lines()
        .take(times)
        .map(|line| match wire::from_hex(line) {
            Some(bytes) => wire::answer(&bytes),
            None => Err("unreadable answer".into()),
        })
        .collect())
}

/// Reads `show stat` on every proxy at once.
pub async fn status(target: &Target<'_>) -> Vec<EndpointStatus> {
    let inv = target.inventory;
    let reads = inv.proxy_nodes().filter_map(|i| {
        let proxy = inv.proxy_of(i)?;
        let endpoint = inv.endpoint_of(&proxy.name)?;
        let session = target.sessions.get(i).cloned().flatten();
        let why = target.unreachable.get(i).cloned().flatten();
        Some(async move {
            let mut s = EndpointStatus {
                name: proxy.name.clone(),
                reachable: session.is_some(),
                write_port: endpoint.write_port,
                read_port: endpoint.read_port,
                servers: Vec::new(),
                error: None,
            };
            match &session {
                None => s.error = Some(format!("cannot reach it: {}", why.unwrap_or_default())),
                Some(session) => match show_stat(session).await {
                    Ok(rows) if rows.is_empty() => {
                        s.error = Some("haproxy does not answer on its admin socket".into())
                    }
                    Ok(rows) => s.servers = rows,
                    Err(e) => s.error = Some(e.to_string()),
                },
            }
            s
        })
    });
    futures::future::join_all(reads).await
}

/// verify's checks of every endpoint: HAProxy's pools as it sees them, and the ports as
/// an application would find them (the write port reaches the primary, the read port only
/// standbys).
pub async fn verify(target: &Target<'_>, password: Option<&SecretString>) -> Vec<HostChecks> {
    let inv = target.inventory;
    let checks = inv.proxy_nodes().filter_map(|i| {
        let proxy = inv.proxy_of(i)?;
        let endpoint = inv.endpoint_of(&proxy.name)?;
        let session = target.sessions.get(i).cloned().flatten();
        let why = target.unreachable.get(i).cloned().flatten();
        Some(async move {
            let mut checks = HostChecks::named(&proxy.name, Role::Proxy);
            match session {
                None => add(
                    &mut checks,
                    "reachable",
                    Health::Fail,
                    format!("cannot reach `{}`: {}", proxy.name, why.unwrap_or_default()),
                ),
                Some(s) => verify_endpoint(inv, proxy, endpoint, &s, password, &mut checks).await,
            }
            checks
        })
    });
    futures::future::join_all(checks).await
}

fn add(checks: &mut HostChecks, name: &str, status: Health, detail: impl Into<String>) {
    checks.status = checks.status.max(status);
    checks.checks.push(Check {
        name: name.into(),
        status,
        detail: detail.into(),
    });
}

async fn verify_endpoint(
    inv: &Inventory,
    proxy: &Proxy,
    endpoint: &Endpoint,
    session: &Session,
    password: Option<&SecretString>,
    checks: &mut HostChecks,
) {
    let primary = inv.hosts.iter().find(|h| h.is_primary());
    let stats = match show_stat(session).await {
        Ok(rows) if !rows.is_empty() => rows,
        Ok(_) => {
            return add(
                checks,
                "haproxy",
                Health::Fail,
                "haproxy is not running (its admin socket does not answer): run `pgrepl endpoints`",
            );
        }
        Err(e) => return add(checks, "haproxy", Health::Fail, e.to_string()),
    };
    let pool = |backend: &str| -> Vec<&ServerStat> {
        stats.iter().filter(|s| s.backend == backend).collect()
    };
    let describe = |rows: &[&ServerStat]| -> String {
        rows.iter()
            .map(|s| {
                if s.takes_traffic() || s.in_maintenance() {
                    format!("{} {}", s.server, s.status)
                } else {
                    format!("{} {} ({})", s.server, s.status, s.check)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The write pool: the primary, and nothing else.
    let write = pool(haproxy::WRITE_BACKEND);
    let writers: Vec<&&ServerStat> = write.iter().filter(|s| s.takes_traffic()).collect();
    let primary_name = primary.map(|p| p.name.as_str()).unwrap_or("?");
    let (status, detail) = match writers.as_slice() {
        [one] if one.server == primary_name => (Health::Ok, describe(&write)),
        [] => (
            Health::Fail,
            format!("no server takes writes: {}", describe(&write)),
        ),
        _ => (
            Health::Fail,
            format!(
                "writes would go to a server that is not the primary `{primary_name}`: {}",
                describe(&write)
            ),
        ),
    };
    add(checks, "write pool", status, detail);
    // The read pool: the replicas; one left out (down, lagging) is a warning.
    let read = pool(haproxy::READ_BACKEND);
    let readers = read.iter().filter(|s| s.takes_traffic()).count();
    let primary_reads = read
        .iter()
        .any(|s| s.server == primary_name && s.takes_traffic());
    let replicas = inv.hosts.iter().filter(|h| !h.is_primary()).count();
    let (status, detail) = if primary_reads {
        (
            Health::Fail,
            format!("the primary takes reads: {}", describe(&read)),
        )
    } else if readers == 0 && replicas > 0 {
        let fallback = endpoint.read_from == ReadFrom::ReplicasAndPrimary;
        (
            if fallback { Health::Warn } else { Health::Fail },
            format!(
                "no replica takes reads{}: {}",
                if fallback {
                    " (the primary does meanwhile)"
                } else {
                    ""
                },
                describe(&read)
            ),
        )
    } else if readers < replicas {
        (Health::Warn, describe(&read))
    } else {
        (Health::Ok, describe(&read))
    };
    add(checks, "read pool", status, detail);
    // The ports, as an application finds them.
    let Some(password) = password else {
        return add(
            checks,
            "ports",
            Health::Ok,
            "not tried: the health checks' password derives from the replication password, which is not set here",
        );
    };
    let password = haproxy::check_password(password.expose_secret());
    let sql = "SELECT inet_server_addr()::text, pg_is_in_recovery()";
    let name_of = |addr: &str| {
        let ip = addr.split('/').next().unwrap_or(addr);
        inv.hosts
            .iter()
            .find(|h| h.address == ip)
            .map_or(ip.to_string(), |h| h.name.clone())
    };
    match probe_port(
        session,
        &proxy.address,
        endpoint.write_port,
        &password,
        sql,
        1,
    )
    .await
    {
        Err(e) => add(checks, "write port", Health::Fail, e),
        Ok(answers) => {
            let (status, detail) = match answers.first() {
                Some(Ok(rows)) => match rows.first().map(|r| r.as_slice()) {
                    Some([Some(addr), Some(rec)]) => {
                        let who = name_of(addr);
                        if rec == "f" && who == primary_name {
                            (
                                Health::Ok,
                                format!("port {} reaches {who}, the primary", endpoint.write_port),
                            )
                        } else {
                            (
                                Health::Fail,
                                format!(
                                    "port {} reaches {who}{}, not the primary `{primary_name}`",
                                    endpoint.write_port,
                                    if rec == "t" { " (in recovery)" } else { "" }
                                ),
                            )
                        }
                    }
                    _ => (
                        Health::Fail,
                        format!("port {}: no answer to the query", endpoint.write_port),
                    ),
                },
                Some(Err(e)) => (Health::Fail, format!("port {}: {e}", endpoint.write_port)),
                None => (
                    Health::Fail,
                    format!("port {}: no answer", endpoint.write_port),
                ),
            };
            add(checks, "write port", status, detail);
        }
    }
    let times = (2 * replicas).clamp(2, 10);
    match probe_port(
        session,
        &proxy.address,
        endpoint.read_port,
        &password,
        sql,
        times,
    )
    .await
    {
        Err(e) => add(checks, "read port", Health::Fail, e),
        Ok(answers) => {
            let mut standbys = std::collections::BTreeSet::new();
            let mut problems = Vec::new();
            for a in &answers {
                match a.as_ref().map(|rows| rows.first().cloned()) {
                    Ok(Some(row)) => match row.as_slice() {
                        [Some(addr), Some(rec)] if rec == "t" => {
                            standbys.insert(name_of(addr));
                        }
                        [Some(addr), _] => {
                            problems.push(format!("{} is not in recovery", name_of(addr)))
                        }
                        _ => problems.push("an empty answer".to_string()),
                    },
                    Ok(None) => problems.push("no answer to the query".to_string()),
                    Err(e) => problems.push(e.clone()),
                }
            }
            problems.dedup();
            let reached = standbys.iter().cloned().collect::<Vec<_>>().join(", ");
            let (status, detail) = if problems.is_empty() {
                (
                    Health::Ok,
                    format!(
                        "port {}: {} connections reached {reached} (in recovery)",
                        endpoint.read_port,
                        answers.len()
                    ),
                )
            } else {
                let fallback = endpoint.read_from == ReadFrom::ReplicasAndPrimary
                    && standbys.is_empty()
                    && problems.iter().all(|p| p.ends_with("is not in recovery"));
                (
                    if fallback { Health::Warn } else { Health::Fail },
                    format!(
                        "port {}: {}{}",
                        endpoint.read_port,
                        problems.join("; "),
                        if reached.is_empty() {
                            String::new()
                        } else {
                            format!(" (standbys reached: {reached})")
                        }
                    ),
                )
            };
            add(checks, "read port", status, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_body_is_what_pg_proc_keeps() {
        let body = standby_ok_body();
        assert!(
            body.starts_with("\n  SELECT pg_is_in_recovery()"),
            "{body:?}"
        );
        assert!(body.ends_with("<= max_lag_bytes, false)\n"), "{body:?}");
    }
}
