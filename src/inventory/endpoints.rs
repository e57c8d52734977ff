//! The inventory's `endpoints`, `roles` and `databases`, and its `role: proxy` hosts:
//! checked and resolved like the rest, before any host is contacted.
//!
//! A proxy host is reached over SSH but runs no PostgreSQL: it never gets a slot, a
//! setting or a pg_hba rule of its own, and it is kept out of `Inventory::hosts` entirely.

use std::collections::HashMap;
use std::path::Path;

use secrecy::SecretString;
use serde_saphyr::Spanned;

use super::Problem;
use super::model::{InventoryFile, Role, Size};
use super::resolve::{AppRole, Database, Endpoint, SecretSources, Stats, read_secret};

/// The role HAProxy's health checks log in as: no privileges, one function, allowed only
/// from the proxies' addresses.
pub const CHECK_ROLE: &str = "pgrepl_check";
/// Default ports, as in the guides that put HAProxy in front of PostgreSQL.
pub const DEFAULT_WRITE_PORT: u16 = 5435;
pub const DEFAULT_READ_PORT: u16 = 5436;
/// Default read pool lag limit: 16 MB.
pub const DEFAULT_MAX_LAG_BYTES: u64 = 16 << 20;

use super::validate::problem;

/// Validation of proxies, endpoints, roles and databases.
pub(super) fn check(file: &InventoryFile, out: &mut Vec<Problem>) {
    check_proxies(file, out);
    check_endpoints(file, out);
    check_roles(file, out);
    check_databases(file, out);
}

fn check_proxies(file: &InventoryFile, out: &mut Vec<Problem>) {
    for h in file.hosts.iter().filter(|h| h.value.role == Role::Proxy) {
        let host = &h.value;
        let name = &host.name.value;
        if let Some(slot) = &host.slot {
            out.push(problem(
                slot,
                format!("hosts[{name}].slot"),
                "a proxy runs no PostgreSQL and has no slot",
                "remove `slot:` from the proxy",
            ));
        }
        let pg = &host.postgres;
        let any_pg = pg.version.is_some()
            || pg.layout.is_some()
            || pg.port.is_some()
            || pg.cluster.is_some()
            || pg.data_dir.is_some()
            || pg.config_dir.is_some()
            || pg.bin_dir.is_some()
            || pg.service.is_some()
            || pg.unit.is_some()
            || pg.socket_dir.is_some();
        if any_pg {
            out.push(problem(
                &host.name,
                format!("hosts[{name}].postgres"),
                "a proxy runs no PostgreSQL",
                "remove the `postgres:` section from the proxy",
            ));
        }
        if !file.endpoints.iter().any(|e| &e.value.host.value == name) {
            out.push(problem(
                &host.name,
                format!("hosts[{name}].role"),
                format!("`{name}` has `role: proxy` but no endpoint uses it"),
                format!("add `endpoints: [{{ host: {name} }}]`, or remove the host"),
            ));
        }
    }
}

fn check_endpoints(file: &InventoryFile, out: &mut Vec<Problem>) {
    let mut seen = HashMap::new();
    for e in &file.endpoints {
        let ep = &e.value;
        let host = &ep.host.value;
        let scope = format!("endpoints[{host}]");
        match file.hosts.iter().find(|h| &h.value.name.value == host) {
            Some(h) if h.value.role == Role::Proxy => {}
            Some(_) => out.push(problem(
                &ep.host,
                format!("{scope}.host"),
                format!("`{host}` is a PostgreSQL host, not a proxy"),
                "put HAProxy on a host of its own, with `role: proxy`",
            )),
            None => out.push(problem(
                &ep.host,
                format!("{scope}.host"),
                format!("no host `{host}` in the inventory"),
                format!("add `{{ name: {host}, address: ADDR, role: proxy }}` to hosts"),
            )),
        }
        if let Some(first) = seen.insert(host.clone(), ep.host.referenced.line()) {
            out.push(problem(
                &ep.host,
                format!("{scope}.host"),
                format!("a second endpoint on `{host}` (first at line {first})"),
                "one endpoint per proxy host; give another proxy its own entry",
            ));
        }
        let mut ports: Vec<(&str, &Spanned<u16>)> = Vec::new();
        for (field, port) in [
            ("write_port", &ep.write_port),
            ("read_port", &ep.read_port),
            ("stats_port", &ep.stats_port),
        ] {
            let Some(port) = port else { continue };
            if port.value == 0 {
                out.push(problem(
                    port,
                    format!("{scope}.{field}"),
                    "port 0 is not a valid port",
                    "use a free TCP port on the proxy, e.g. 5435 for writes, 5436 for reads, 8404 for stats",
                ));
            }
            if let Some((other, _)) = ports.iter().find(|(_, p)| p.value == port.value) {
                out.push(problem(
                    port,
                    format!("{scope}.{field}"),
                    format!("port {} is also the {other}", port.value),
                    "give the write, read and stats ports different numbers",
                ));
            }
            ports.push((field, port));
        }
        let effective =
            |p: &Option<Spanned<u16>>, default: u16| p.as_ref().map_or(default, |p| p.value);
        if ep.write_port.is_none() || ep.read_port.is_none() {
            let (w, r) = (
                effective(&ep.write_port, DEFAULT_WRITE_PORT),
                effective(&ep.read_port, DEFAULT_READ_PORT),
            );
            if w == r {
                out.push(problem(
                    &ep.host,
                    format!("{scope}.read_port"),
                    format!("the write and read ports are both {w}"),
                    "give the write and read ports different numbers",
                ));
            }
        }
        match (&ep.stats_port, &ep.stats_password_env) {
            (Some(port), None) => out.push(problem(
                port,
                format!("{scope}.stats_password_env"),
                "the stats page needs a password",
                "add `stats_password_env: HAPROXY_STATS_PASSWORD` and export it, or remove stats_port",
            )),
            (None, Some(env)) => out.push(problem(
                env,
                format!("{scope}.stats_port"),
                "stats_password_env is set but there is no stats page",
                "add `stats_port: 8404`, or remove stats_password_env",
            )),
            _ => {}
        }
        if let Some(user) = &ep.stats_user
            && (user.value.is_empty() || user.value.contains([':', '\'', ' ', '\t', '\n', '#']))
        {
            out.push(problem(
                user,
                format!("{scope}.stats_user"),
                format!("`{}` cannot be a stats user name", user.value),
                "use letters, digits, `-` and `_`",
            ));
        }
        if let Some(size) = &ep.max_lag_bytes
            && parse_size(&size.value).is_none()
        {
            out.push(problem(
                size,
                format!("{scope}.max_lag_bytes"),
                "not a size",
                "write bytes, or a number with kB, MB or GB (1024-based, as PostgreSQL), e.g. 16MB",
            ));
        }
    }
}

fn check_roles(file: &InventoryFile, out: &mut Vec<Problem>) {
    let replication_user = file
        .replication
        .user
        .as_ref()
        .map_or("replicator", |u| u.value.as_str());
    let mut names = HashMap::new();
    for r in &file.roles {
        let role = &r.value;
        let name = &role.name.value;
        let scope = format!("roles[{name}]");
        if !super::validate::valid_role_name(name) {
            out.push(problem(
                &role.name,
                format!("{scope}.name"),
                format!("`{name}` is not a plain PostgreSQL role name"),
                "use lowercase letters, digits and `_`, starting with a letter",
            ));
        } else if name.starts_with("pg_")
            || [replication_user, "postgres", CHECK_ROLE].contains(&name.as_str())
        {
            out.push(problem(
                &role.name,
                format!("{scope}.name"),
                format!("`{name}` is reserved (PostgreSQL's, or one pgrepl manages itself)"),
                "give the application its own role name",
            ));
        }
        if let Some(first) = names.insert(name.clone(), role.name.referenced.line()) {
            out.push(problem(
                &role.name,
                format!("{scope}.name"),
                format!("duplicate role `{name}` (first at line {first})"),
                "list each role once",
            ));
        }
        let login = role.login.unwrap_or(true);
        match (&role.password_env, &role.password_file) {
            (Some(_), Some(second)) => out.push(problem(
                second,
                format!("{scope}.password_file"),
                "more than one password source is set",
                "keep one of password_env and password_file",
            )),
            (None, None) if login => out.push(problem(
                &role.name,
                format!("{scope}.password_env"),
                format!("role `{name}` can log in but has no password source"),
                "add `password_env: VAR` (or password_file: PATH), or `login: false`",
            )),
            _ => {}
        }
    }
}

fn check_databases(file: &InventoryFile, out: &mut Vec<Problem>) {
    let mut names = HashMap::new();
    for d in &file.databases {
        let db = &d.value;
        let name = &db.name.value;
        let scope = format!("databases[{name}]");
        if !super::validate::valid_role_name(name) {
            out.push(problem(
                &db.name,
                format!("{scope}.name"),
                format!("`{name}` is not a plain database name"),
                "use lowercase letters, digits and `_`, starting with a letter",
            ));
        } else if ["postgres", "template0", "template1"].contains(&name.as_str()) {
            out.push(problem(
                &db.name,
                format!("{scope}.name"),
                format!("`{name}` is one of PostgreSQL's own databases"),
                "give the application a database of its own",
            ));
        }
        if let Some(first) = names.insert(name.clone(), db.name.referenced.line()) {
            out.push(problem(
                &db.name,
                format!("{scope}.name"),
                format!("duplicate database `{name}` (first at line {first})"),
                "list each database once",
            ));
        }
        if let Some(owner) = &db.owner
            && owner.value != "postgres"
            && !file.roles.iter().any(|r| r.value.name.value == owner.value)
        {
            out.push(problem(
                owner,
                format!("{scope}.owner"),
                format!("owner `{}` is not in the inventory's roles", owner.value),
                format!(
                    "add `{{ name: {}, password_env: VAR }}` to roles, or leave owner out (postgres)",
                    owner.value
                ),
            ));
        }
    }
}

/// `16MB`, `512kB`, `1GB`, `1048576`: bytes, with PostgreSQL's 1024-based units (`MiB`
/// and a bare `M` are read the same way).
pub fn parse_size(size: &Size) -> Option<u64> {
    let text = match size {
        Size::Bytes(b) => return Some(*b),
        Size::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "k" | "K" | "kB" | "KB" | "KiB" => 10,
        "M" | "MB" | "MiB" => 20,
        "G" | "GB" | "GiB" => 30,
        "T" | "TB" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

pub(super) fn resolve_endpoints(file: &InventoryFile) -> Vec<Endpoint> {
    file.endpoints
        .iter()
        .map(|e| {
            let ep = &e.value;
            let host = ep.host.value.clone();
            let stats = ep.stats_port.as_ref().map(|port| {
                let env = ep.stats_password_env.as_ref();
                let (password, password_problem) = match env {
                    Some(var) => match stats_password(&host, var) {
                        Ok(p) => (Some(p), None),
                        Err(problem) => (None, Some(problem)),
                    },
                    None => (None, None),
                };
                Stats {
                    port: port.value,
                    user: ep
                        .stats_user
                        .as_ref()
                        .map_or_else(|| "pgrepl".to_string(), |u| u.value.clone()),
                    password_env: env.map(|v| v.value.clone()).unwrap_or_default(),
                    password,
                    password_problem,
                }
            });
            Endpoint {
                write_port: ep
                    .write_port
                    .as_ref()
                    .map_or(DEFAULT_WRITE_PORT, |p| p.value),
                read_port: ep.read_port.as_ref().map_or(DEFAULT_READ_PORT, |p| p.value),
                stats,
                read_from: ep.read_from.unwrap_or_default(),
                max_lag_bytes: ep
                    .max_lag_bytes
                    .as_ref()
                    .and_then(|s| parse_size(&s.value))
                    .unwrap_or(DEFAULT_MAX_LAG_BYTES),
                host,
            }
        })
        .collect()
}

/// The stats page's password, from its environment variable. It goes into haproxy.cfg
/// between single quotes, so it may not hold one. A problem is shown only to a command
/// that writes the file.
fn stats_password(host: &str, var: &Spanned<String>) -> Result<SecretString, Problem> {
    let field = format!("endpoints[{host}].stats_password_env");
    match std::env::var(&var.value) {
        Ok(v) if !v.is_empty() && !v.contains(['\'', '\n', '\r', '\0']) => Ok(v.into()),
        Ok(v) if !v.is_empty() => Err(problem(
            var,
            field,
            format!(
                "the password in {} holds a quote or a line break",
                var.value
            ),
            "use a password without `'` or line breaks (it is written into haproxy.cfg)",
        )),
        _ => Err(problem(
            var,
            field,
            format!("environment variable {} is not set or empty", var.value),
            format!("export {}=... before running pgrepl", var.value),
        )),
    }
}

pub(super) fn resolve_roles(base: &Path, file: &InventoryFile) -> Vec<AppRole> {
    file.roles
        .iter()
        .map(|r| {
            let role = &r.value;
            let field = format!("roles[{}]", role.name.value);
            let what = format!("the password of role {}", role.name.value);
            let (password_source, password, password_problem) = read_secret(
                base,
                &SecretSources {
                    field: &field,
                    what: &what,
                    env: role.password_env.as_ref(),
                    file: role.password_file.as_ref(),
                },
            );
            let login = role.login.unwrap_or(true);
            AppRole {
                name: role.name.value.clone(),
                login,
                password_source,
                password,
                password_problem: password_problem.filter(|_| login),
            }
        })
        .collect()
}

pub(super) fn resolve_databases(file: &InventoryFile) -> Vec<Database> {
    file.databases
        .iter()
        .map(|d| Database {
            name: d.value.name.value.clone(),
            owner: d
                .value
                .owner
                .as_ref()
                .map_or_else(|| "postgres".to_string(), |o| o.value.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Error, Problem, ReadFrom, parse};
    use super::*;

    const GOOD: &str = r#"
replication: { password: s3cret }
hosts:
  - { name: pg0, address: 10.0.1.10, role: primary }
  - { name: pg1, address: 10.0.1.11, role: replica }
  - { name: proxy0, address: 10.0.1.250, role: proxy }
endpoints:
  - { host: proxy0, write_port: 5435, read_port: 5436, read_from: replicas, max_lag_bytes: 16MB }
roles:
  - { name: app_user, password_env: HOME, login: true }
databases:
  - { name: app_db, owner: app_user }
"#;

    fn problems(text: &str) -> Vec<Problem> {
        match parse(Path::new("inv.yaml"), text) {
            Err(Error::Invalid { problems, .. }) => problems,
            Err(other) => panic!("expected validation problems, got {other}"),
            Ok(_) => panic!("expected validation problems, got a valid inventory"),
        }
    }

    fn one(text: &str, field: &str) -> Problem {
        let all = problems(text);
        let found: Vec<_> = all.iter().filter(|p| p.field == field).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one problem on {field}, got {all:#?}"
        );
        found[0].clone()
    }

    #[test]
    fn proxies_are_kept_apart_from_the_postgresql_members() {
        let inv = parse(Path::new("inv.yaml"), GOOD).expect("valid");
        assert_eq!(
            inv.hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>(),
            ["pg0", "pg1"]
        );
        assert_eq!(inv.proxies[0].name, "proxy0");
        assert_eq!(inv.node_count(), 3);
        assert_eq!(inv.node_name(2), "proxy0");
        assert_eq!(inv.node_named("proxy0"), Some(2));
        assert!(inv.proxy_of(1).is_none());
        let e = &inv.endpoints[0];
        assert_eq!((e.write_port, e.read_port), (5435, 5436));
        assert_eq!(e.max_lag_bytes, 16 << 20);
        assert_eq!(e.read_from, ReadFrom::Replicas);
        assert!(e.stats.is_none());
        assert!(inv.roles[0].login && inv.roles[0].password.is_some());
        assert_eq!(inv.databases[0].owner, "app_user");
    }

    #[test]
    fn endpoint_defaults_are_the_guides_ports() {
        let text = GOOD.replace(
            "{ host: proxy0, write_port: 5435, read_port: 5436, read_from: replicas, max_lag_bytes: 16MB }",
            "{ host: proxy0 }",
        );
        let inv = parse(Path::new("inv.yaml"), &text).expect("valid");
        let e = &inv.endpoints[0];
        assert_eq!(
            (e.write_port, e.read_port, e.max_lag_bytes),
            (5435, 5436, 16 << 20)
        );
    }

    #[test]
    fn an_endpoint_needs_a_proxy_host() {
        let text = GOOD.replace("host: proxy0,", "host: pg1,");
        let p = one(&text, "endpoints[pg1].host");
        assert!(p.message.contains("not a proxy"), "{p:?}");
        // proxy0 is now unused, which is a problem too.
        assert!(
            one(&text, "hosts[proxy0].role")
                .message
                .contains("no endpoint")
        );
        let text = GOOD.replace("host: proxy0,", "host: proxy9,");
        let p = one(&text, "endpoints[proxy9].host");
        assert!(p.hint.contains("role: proxy"), "{p:?}");
        assert_eq!(p.line, 8);
    }

    #[test]
    fn a_proxy_has_no_slot_and_no_postgres() {
        let text = GOOD.replace(
            "role: proxy }",
            "role: proxy, slot: px, postgres: { port: 5433 } }",
        );
        one(&text, "hosts[proxy0].slot");
        one(&text, "hosts[proxy0].postgres");
    }

    #[test]
    fn ports_must_differ_and_stats_need_a_password() {
        let text = GOOD.replace("read_port: 5436", "read_port: 5435");
        assert!(
            one(&text, "endpoints[proxy0].read_port")
                .message
                .contains("also the write_port")
        );
        let text = GOOD.replace("read_from: replicas", "stats_port: 8404");
        one(&text, "endpoints[proxy0].stats_password_env");
        // An unset variable is only a problem for a command that writes the file.
        let text = GOOD.replace(
            "read_from: replicas",
            "stats_port: 8404, stats_password_env: PGREPL_SURELY_UNSET_VAR",
        );
        let inv = parse(Path::new("inv.yaml"), &text).expect("valid for read-only commands");
        assert!(inv.require_endpoint_secrets(false, false).is_ok());
        let Err(Error::Invalid { problems, .. }) = inv.require_endpoint_secrets(false, true) else {
            panic!("the stats password is required to write haproxy.cfg")
        };
        assert_eq!(problems[0].field, "endpoints[proxy0].stats_password_env");
        assert!(problems[0].message.contains("not set"), "{problems:?}");
        let text = GOOD.replace("read_from: replicas", "read_from: everyone");
        assert!(parse(Path::new("inv.yaml"), &text).is_err());
    }

    #[test]
    fn lag_sizes_read_as_postgresql_writes_them() {
        for (text, bytes) in [
            ("16MB", 16 << 20),
            ("512kB", 512 << 10),
            ("1GB", 1 << 30),
            ("100", 100),
        ] {
            assert_eq!(parse_size(&Size::Text(text.into())), Some(bytes), "{text}");
        }
        assert_eq!(parse_size(&Size::Bytes(7)), Some(7));
        assert_eq!(parse_size(&Size::Text("16 parsecs".into())), None);
        let text = GOOD.replace("max_lag_bytes: 16MB", "max_lag_bytes: lots");
        assert!(
            one(&text, "endpoints[proxy0].max_lag_bytes")
                .hint
                .contains("16MB")
        );
    }

    #[test]
    fn roles_need_a_password_to_log_in_and_a_name_of_their_own() {
        let text = GOOD.replace("password_env: HOME, login: true", "login: true");
        one(&text, "roles[app_user].password_env");
        let text = GOOD.replace("password_env: HOME, login: true", "login: false");
        assert!(parse(Path::new("inv.yaml"), &text).is_ok());
        let text = GOOD.replace(
            "password_env: HOME",
            "password_env: PGREPL_SURELY_UNSET_VAR",
        );
        let inv = parse(Path::new("inv.yaml"), &text).expect("valid for read-only commands");
        let Err(Error::Invalid {
            problems: missing, ..
        }) = inv.require_endpoint_secrets(true, false)
        else {
            panic!("the role's password is required to set it")
        };
        assert_eq!(missing[0].field, "roles[app_user].password_env");
        assert!(missing[0].message.contains("not set"), "{missing:?}");
        for reserved in ["replicator", "postgres", "pgrepl_check", "pg_monitor"] {
            let text = GOOD.replace("name: app_user", &format!("name: {reserved}"));
            let all = problems(&text);
            assert!(
                all.iter()
                    .any(|p| p.field == format!("roles[{reserved}].name")),
                "{reserved}: {all:#?}"
            );
        }
    }

    #[test]
    fn databases_need_a_known_owner() {
        let text = GOOD.replace("owner: app_user", "owner: nobody");
        let p = one(&text, "databases[app_db].owner");
        assert!(p.hint.contains("roles"), "{p:?}");
        let text = GOOD.replace("name: app_db", "name: template1");
        one(&text, "databases[template1].name");
    }
}
