//! HAProxy in front of the cluster, as data: the context `haproxy.cfg.j2` renders with, the
//! health checks as PostgreSQL protocol bytes, the runtime API's commands and the
//! `show stat` they are checked with. Nothing here touches a host (`actions::endpoints`
//! does, over SSH).
//!
//! Who takes writes is never left to health checks alone: the write pool lists every
//! member, but only the primary pgrepl knows is enabled (the others `disabled` in the
//! file, `maint` at runtime), so a former primary that comes back writable never gets a
//! write. The checks are the second lock: a server in recovery fails the write check.
//!
//! The checks log in as [`CHECK_ROLE`] with the `password` method (a cleartext password
//! on the wire between proxy and database, over the cluster's own network): it is the only
//! method whose answer can be sent before the challenge arrives, as HAProxy's static
//! `tcp-check` must. `trust` would need no secret, but the checks come from the proxy's
//! address, and so does every connection HAProxy passes on: anyone reaching the endpoint
//! could then log in as the check role without a password. The password is derived from
//! the replication password ([`check_password`]), so nothing new has to be kept.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::inventory::{CHECK_ROLE, Endpoint, HbaRule, Inventory, Proxy, ReadFrom};
use crate::pg::wire;
use crate::templates::cidr_of;

/// The config file pgrepl owns on a proxy (the distribution's path).
pub const CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// The admin socket of the runtime API (the distribution's path).
pub const ADMIN_SOCKET: &str = "/run/haproxy/admin.sock";
/// Where haproxy's pid goes when no systemd runs it (as Debian's init script has it).
pub const PIDFILE: &str = "/run/haproxy.pid";
/// The template pgrepl renders haproxy.cfg from.
pub const TEMPLATE: &str = "haproxy.cfg.j2";
/// Backends: the primary only; the replicas; the primary for reads when no replica can.
pub const WRITE_BACKEND: &str = "pgrepl_write";
pub const READ_BACKEND: &str = "pgrepl_read";
pub const READ_PRIMARY_BACKEND: &str = "pgrepl_read_primary";
/// The database the checks log in to.
pub const CHECK_DATABASE: &str = "postgres";
/// How a check shows in `pg_stat_activity`.
pub const CHECK_APPLICATION: &str = "pgrepl-haproxy-check";
/// The function the read check calls (owned by the superuser, run with its rights).
pub const STANDBY_OK: &str = "pgrepl.standby_ok(bigint)";

/// The function behind the read check: in recovery, and replay no further behind the end
/// of WAL it knows of than `max_lag_bytes`. That end is what its upstream last reported
/// while the WAL receiver streams, and what it received otherwise (the primary gone, it
/// keeps serving what it has, as Patroni measures against the leader's last position);
/// a standby that received nothing since it started (a fenced former primary) takes no
/// reads. `SECURITY DEFINER` because `pg_stat_wal_receiver` shows its columns only to
/// superusers and `pg_read_all_stats` (which would also show every session's queries).
pub const STANDBY_OK_SQL: &str =
    "CREATE OR REPLACE FUNCTION pgrepl.standby_ok(max_lag_bytes bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_is_in_recovery() AND coalesce(pg_wal_lsn_diff(
      greatest(pg_last_wal_receive_lsn(), (SELECT latest_end_lsn FROM pg_stat_wal_receiver)),
      pg_last_wal_replay_lsn()) <= max_lag_bytes, false)
$$";

/// The check role's password: HMAC-SHA256 of a fixed label keyed with the replication
/// password, in hex. Stable from run to run, changes when the replication password does,
/// and tells nothing about it.
pub fn check_password(replication_password: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(replication_password.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"pgrepl haproxy health check v1");
    wire::hex(&mac.finalize().into_bytes())
}

/// How many connections the check role may hold: every check of every proxy at once,
/// and verify's, with room to spare; a leaked password cannot take more.
pub fn check_connection_limit(inv: &Inventory) -> i32 {
    let members = inv.hosts.len() as i32;
    let proxies = inv.proxies.len().max(1) as i32;
    proxies * (3 * members + 10)
}

/// pg_hba rules for the endpoints, on every member: the check role from each proxy
/// (`password`: see the module's note), and each application role that can log in from
/// each proxy (`scram-sha-256`) to the inventory's databases (`all` when it lists none).
/// Applications that connect directly are the inventory's `hba` section's business.
pub fn endpoint_hba(inv: &Inventory) -> Vec<HbaRule> {
    let mut rules = Vec::new();
    if inv.endpoints.is_empty() {
        return rules;
    }
    let databases = if inv.databases.is_empty() {
        "all".to_string()
    } else {
        inv.databases
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    for proxy in &inv.proxies {
        let address = cidr_of(&proxy.address);
        rules.push(HbaRule {
            kind: "host".into(),
            database: CHECK_DATABASE.into(),
            user: CHECK_ROLE.into(),
            address: Some(address.clone()),
            method: "password".into(),
        });
        for role in inv.roles.iter().filter(|r| r.login) {
            rules.push(HbaRule {
                kind: "host".into(),
                database: databases.clone(),
                user: role.name.clone(),
                address: Some(address.clone()),
                method: "scram-sha-256".into(),
            });
        }
    }
    rules
}

/// The health checks' bytes, as hex for `tcp-check send-binary` / `expect binary`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub user: String,
    pub database: String,
    /// Startup message: user, database, application_name.
    pub startup: String,
    /// PasswordMessage with the check role's password (sent before it is asked for).
    pub password: String,
    /// `SELECT pg_is_in_recovery()`: the write check wants `f`.
    pub write_query: String,
    /// `SELECT pgrepl.standby_ok(MAX_LAG)`: the read check wants `t`.
    pub read_query: String,
    pub terminate: String,
    /// AuthenticationOk.
    pub auth_ok: String,
    /// A one-column DataRow `t`, and `f`.
    pub row_true: String,
    pub row_false: String,
}

impl CheckView {
    pub fn new(password: &str, max_lag_bytes: u64) -> Self {
        CheckView {
            user: CHECK_ROLE.into(),
            database: CHECK_DATABASE.into(),
            startup: wire::hex(&wire::startup(
                CHECK_ROLE,
                CHECK_DATABASE,
                CHECK_APPLICATION,
            )),
            password: wire::hex(&wire::password(password)),
            write_query: wire::hex(&wire::query("SELECT pg_is_in_recovery()")),
            read_query: wire::hex(&wire::query(&format!(
                "SELECT pgrepl.standby_ok({max_lag_bytes})"
            ))),
            terminate: wire::hex(&wire::terminate()),
            auth_ok: wire::hex(&wire::AUTH_OK),
            row_true: wire::hex(&wire::data_row(&[b"t"])),
            row_false: wire::hex(&wire::data_row(&[b"f"])),
        }
    }
}

/// The proxy host as the template sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyView {
    pub name: String,
    pub address: String,
}

/// The endpoint as the template sees it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    pub write_port: u16,
    pub read_port: u16,
    pub stats_port: Option<u16>,
    pub stats_user: Option<String>,
    /// The stats page's password (the file is readable by root and haproxy only).
    pub stats_password: Option<String>,
    /// `replicas` or `replicas_and_primary`.
    pub read_from: ReadFrom,
    pub max_lag_bytes: u64,
}

/// One PostgreSQL member in the pools.
#[derive(Debug, Clone, Serialize)]
pub struct PoolMember {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// The primary pgrepl knows: the only server enabled in the write pool.
    pub primary: bool,
    /// False for a member out of service (a fenced former primary until `rejoin`):
    /// disabled in every pool.
    pub in_service: bool,
}

/// The backends' names.
#[derive(Debug, Clone, Serialize)]
pub struct Backends {
    pub write: &'static str,
    pub read: &'static str,
    pub read_primary: &'static str,
}

/// Everything `haproxy.cfg.j2` may use.
#[derive(Debug, Clone, Serialize)]
pub struct HaproxyContext {
    pub proxy: ProxyView,
    pub endpoint: EndpointView,
    /// Every member, the primary first.
    pub members: Vec<PoolMember>,
    pub check: CheckView,
    pub backends: Backends,
    pub admin_socket: &'static str,
}

/// The context for `proxy`'s config: the inventory's members with `primary` the one that
/// takes writes, `out_of_service` disabled everywhere.
pub fn context(
    inv: &Inventory,
    proxy: &Proxy,
    endpoint: &Endpoint,
    primary: &str,
    out_of_service: &[&str],
    check_password: &str,
) -> HaproxyContext {
    let mut members: Vec<PoolMember> = inv
        .hosts
        .iter()
        .map(|h| PoolMember {
            name: h.name.clone(),
            address: h.address.clone(),
            port: h.pg.port,
            primary: h.name == primary,
            in_service: !out_of_service.contains(&h.name.as_str()),
        })
        .collect();
    members.sort_by_key(|m| !m.primary);
    let stats = endpoint.stats.as_ref();
    HaproxyContext {
        proxy: ProxyView {
            name: proxy.name.clone(),
            address: proxy.address.clone(),
        },
        endpoint: EndpointView {
            write_port: endpoint.write_port,
            read_port: endpoint.read_port,
            stats_port: stats.map(|s| s.port),
            stats_user: stats.map(|s| s.user.clone()),
            stats_password: stats.and_then(|s| {
                s.password
                    .as_ref()
                    .map(|p| secrecy::ExposeSecret::expose_secret(p).to_string())
            }),
            read_from: endpoint.read_from,
            max_lag_bytes: endpoint.max_lag_bytes,
        },
        members,
        check: CheckView::new(check_password, endpoint.max_lag_bytes),
        backends: Backends {
            write: WRITE_BACKEND,
            read: READ_BACKEND,
            read_primary: READ_PRIMARY_BACKEND,
        },
        admin_socket: ADMIN_SOCKET,
    }
}

/// Runtime API commands that give the write pool (and the read pools) to `primary` at
/// once, before the file says so: every other member `maint` first (its sessions cut),
/// then `primary` ready and its health forced up (its next check confirms it). Run on a
/// promotion; the next render of the file makes it permanent.
pub fn route_writes(members: &[String], primary: &str, read_from: ReadFrom) -> String {
    let mut cmds = Vec::new();
    let mut writers = vec![WRITE_BACKEND];
    if read_from == ReadFrom::ReplicasAndPrimary {
        writers.push(READ_PRIMARY_BACKEND);
    }
    for backend in &writers {
        for m in members.iter().filter(|m| *m != primary) {
            cmds.push(format!("set server {backend}/{m} state maint"));
            cmds.push(format!("shutdown sessions server {backend}/{m}"));
        }
    }
    for backend in &writers {
        cmds.push(format!("set server {backend}/{primary} state ready"));
        cmds.push(format!("set server {backend}/{primary} health up"));
    }
    // A primary serves no reads from the replicas' pool.
    cmds.push(format!("set server {READ_BACKEND}/{primary} state maint"));
    cmds.join("; ")
}

/// One server's line of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStat {
    pub backend: String,
    pub server: String,
    /// `UP`, `DOWN`, `MAINT`, `UP 1/2` (going down), `DOWN 1/2` (going up), `DRAIN`, ...
    pub status: String,
    /// The last check's status and what it said (`L7OK`, `L7RSP: TCPCHK did not match ...`).
    pub check: String,
    /// Current sessions.
    pub sessions: u64,
}

impl ServerStat {
    /// Whether HAProxy sends new connections to it (`UP`, or `UP` but going down).
    pub fn takes_traffic(&self) -> bool {
        self.status == "UP" || self.status.starts_with("UP ") || self.status == "no check"
    }

    /// Whether an administrator (or pgrepl) put it in maintenance.
    pub fn in_maintenance(&self) -> bool {
        self.status.starts_with("MAINT")
    }
}

/// Parses `show stat` CSV (the `# pxname,svname,...` header names the columns), keeping
/// server lines only.
pub fn parse_show_stat(csv: &str) -> Vec<ServerStat> {
    let mut lines = csv.lines();
    let Some(header) = lines.find(|l| l.starts_with("# ")) else {
        return Vec::new();
    };
    let columns: BTreeMap<&str, usize> = header[2..]
        .split(',')
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let get = |fields: &[&str], name: &str| -> String {
        columns
            .get(name)
            .and_then(|&i| fields.get(i))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    lines
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            let server = get(&fields, "svname");
            if server == "FRONTEND" || server == "BACKEND" || server.is_empty() {
                return None;
            }
            let check_status = get(&fields, "check_status");
            let desc = get(&fields, "last_chk");
            Some(ServerStat {
                backend: get(&fields, "pxname"),
                server,
                status: get(&fields, "status"),
                check: match (check_status.is_empty(), desc.is_empty()) {
                    (false, false) => format!("{check_status}: {desc}"),
                    (false, true) => check_status,
                    _ => desc,
                },
                sessions: get(&fields, "scur").parse().unwrap_or(0),
            })
        })
        .collect()
}

/// A shell function `haproxy_cli` (run as root) that sends its stdin to the admin socket
/// and prints the answer: socat where installed, else perl (Essential on Debian and
/// Ubuntu), else an `nc` with `-U`.
pub const CLI_FUNCTION: &str = r#"haproxy_cli() {
  if command -v socat >/dev/null 2>&1; then
    socat -t 5 stdio "UNIX-CONNECT:$1"
  elif command -v perl >/dev/null 2>&1; then
    perl -MIO::Socket::UNIX -e '
      my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "cannot connect to $ARGV[0]: $!\n";
      local $/; my $in = <STDIN>; print $s $in; shutdown($s, 1); print <$s>;' "$1"
  else
    nc -U "$1"
  fi
}
"#;

/// What a proxy is like, as the facts script prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub installed: bool,
    pub systemd: bool,
    pub running: bool,
    pub version: String,
    /// The config file as it is (empty when missing).
    pub config: String,
}

/// Prints `key=value` lines, then the config file base64-encoded after `config=`.
pub const FACTS_SCRIPT: &str = r#"
if command -v haproxy >/dev/null 2>&1; then
  echo installed=yes
  echo "version=$(haproxy -v 2>/dev/null | head -n1)"
else
  echo installed=no
fi
if [ -d /run/systemd/system ]; then
  echo systemd=yes
  if systemctl is-active --quiet haproxy 2>/dev/null; then echo running=yes; else echo running=no; fi
else
  echo systemd=no
  running=no
  if [ -s "$2" ]; then
    for pid in $(cat "$2"); do kill -0 "$pid" 2>/dev/null && running=yes; done
  fi
  echo "running=$running"
fi
if [ -r "$1" ]; then echo "config=$(base64 -w0 < "$1")"; else echo config=; fi
"#;

/// Reads what [`FACTS_SCRIPT`] printed.
pub fn parse_facts(out: &str) -> Facts {
    use base64::Engine;
    let mut facts = Facts::default();
    for line in out.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "installed" => facts.installed = value == "yes",
            "systemd" => facts.systemd = value == "yes",
            "running" => facts.running = value == "yes",
            "version" => facts.version = value.trim().to_string(),
            "config" => {
                facts.config = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            }
            _ => {}
        }
    }
    facts
}

/// Installs haproxy from the distribution (apt, dnf or yum).
pub const INSTALL_SCRIPT: &str = r#"
if command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy
elif command -v dnf >/dev/null 2>&1; then
  dnf install -y -q haproxy
elif command -v yum >/dev/null 2>&1; then
  yum install -y -q haproxy
else
  echo "no apt-get, dnf or yum to install haproxy with" >&2; exit 1
fi
"#;

/// Puts a new config in place (stdin) and makes haproxy run it, as root. `$1` the config
/// path, `$2` the pidfile, `$3` the admin socket.
///
/// The candidate is written beside the file and checked with `haproxy -c` first: one
/// that fails never replaces the running file (it is kept as `.pgrepl-rejected` and the
/// script exits 3 with haproxy's words). The file in place is kept as `.pgrepl-prev`.
/// Under systemd: `systemctl reload` (the master process starts new workers, the old ones
/// finish their connections), or `start`; a reload the master could not carry out (a port
/// taken) leaves the old worker answering on the admin socket, which is how it is told. Without it: `haproxy -D -sf OLD` with the
/// listening sockets taken over from the old process through the admin socket (`-x`), so
/// no connection is refused and established ones finish on the old process. If haproxy
/// does not come up with the new file, the previous one goes back (exit 4).
pub const APPLY_SCRIPT: &str = r#"
set -u
cfg=$1 pidfile=$2 sock=$3
worker() { echo "show info" | haproxy_cli "$sock" 2>/dev/null | sed -n 's/^Pid: //p'; }
new=$cfg.pgrepl-new
umask 027
cat > "$new" || exit 1
chgrp haproxy "$new" 2>/dev/null || true
chmod 0640 "$new"
if ! out=$(haproxy -c -f "$new" 2>&1); then
  mv -f "$new" "$cfg.pgrepl-rejected"
  echo "haproxy -c rejects the new config (kept as $cfg.pgrepl-rejected; $cfg is unchanged):" >&2
  printf '%s\n' "$out" >&2
  exit 3
fi
[ -e "$cfg" ] && cp -p "$cfg" "$cfg.pgrepl-prev"
mv -f "$new" "$cfg"

running() {
  if [ -d /run/systemd/system ]; then
    systemctl is-active --quiet haproxy
  else
    [ -s "$pidfile" ] || return 1
    for pid in $(cat "$pidfile"); do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
  fi
}

apply() {
  if [ -d /run/systemd/system ]; then
    systemctl enable haproxy >/dev/null 2>&1 || true
    if systemctl is-active --quiet haproxy; then
      before=$(worker)
      systemctl reload haproxy || return 1
      for _ in $(seq 1 50); do
        now=$(worker)
        [ -n "$now" ] && [ "$now" != "$before" ] && return 0
        sleep 0.1
      done
      echo "haproxy's master did not start a worker with the new config (worker $before still runs)"
      return 1
    else
      systemctl start haproxy
    fi
  else
    install -d -m 2775 -o haproxy -g haproxy /run/haproxy 2>/dev/null || mkdir -p /run/haproxy
    if running; then
      old=$(cat "$pidfile")
      if [ -S "$sock" ]; then
        haproxy -D -p "$pidfile" -f "$cfg" -x "$sock" -sf $old
      else
        haproxy -D -p "$pidfile" -f "$cfg" -sf $old
      fi
    else
      haproxy -D -p "$pidfile" -f "$cfg"
    fi
  fi
}

if ! out=$(apply 2>&1); then
  if [ -e "$cfg.pgrepl-prev" ]; then
    cp -p "$cfg" "$cfg.pgrepl-failed"
    cp -p "$cfg.pgrepl-prev" "$cfg"
    running || apply >/dev/null 2>&1 || true
  fi
  echo "haproxy did not take the new config (kept as $cfg.pgrepl-failed; the previous one is back):" >&2
  printf '%s\n' "$out" >&2
  exit 4
fi
printf '%s\n' "$out"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab-like inventory with one endpoint; `extra` goes into the endpoint's entry.
    pub(crate) fn inventory(extra: &str) -> Inventory {
        let text = format!(
            r#"
replication: {{ password: pw }}
hosts:
  - {{ name: pg0, address: 10.0.1.10, role: primary }}
  - {{ name: pg1, address: 10.0.1.11, role: replica }}
  - {{ name: pg2, address: 10.0.1.12, role: replica }}
  - {{ name: proxy0, address: 10.0.1.250, role: proxy }}
endpoints:
  - {{ host: proxy0{extra} }}
roles:
  - {{ name: app_user, password_env: HOME }}
databases:
  - {{ name: app_db, owner: app_user }}
"#
        );
        let mut inv =
            crate::inventory::parse(std::path::Path::new("inv.yaml"), &text).expect("valid");
        for e in &mut inv.endpoints {
            if let Some(s) = &mut e.stats {
                s.password = Some("stats-secret".to_string().into());
            }
        }
        inv
    }

    /// The default template rendered for proxy0.
    pub(crate) fn render(inv: &Inventory, primary: &str, out: &[&str]) -> String {
        let ctx = context(
            inv,
            &inv.proxies[0],
            &inv.endpoints[0],
            primary,
            out,
            &check_password("pw"),
        );
        crate::templates::Templates::load(None)
            .unwrap()
            .render_with(TEMPLATE, &ctx)
            .unwrap()
    }

    #[test]
    fn haproxy_cfg_renders_for_replicas() {
        let inv = inventory(", stats_port: 8404, stats_password_env: HOME");
        insta::assert_snapshot!(render(&inv, "pg0", &[]));
    }

    #[test]
    fn haproxy_cfg_renders_for_replicas_and_primary_with_a_member_out_of_service() {
        let inv = inventory(
            ", write_port: 6432, read_port: 6433, read_from: replicas_and_primary, max_lag_bytes: 1MB",
        );
        let text = render(&inv, "pg1", &["pg0"]);
        insta::assert_snapshot!(text);
        // pg0 (out of service) is disabled everywhere; pg1 alone takes writes.
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("server pg0 "))
        {
            assert!(line.ends_with(" disabled"), "{line}");
        }
    }

    #[test]
    fn endpoint_hba_allows_the_check_role_and_the_app_roles_from_the_proxy_only() {
        let rules = endpoint_hba(&inventory(""));
        let lines: Vec<String> = rules
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.kind,
                    r.database,
                    r.user,
                    r.address.clone().unwrap_or_default(),
                    r.method
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                "host postgres pgrepl_check 10.0.1.250/32 password",
                "host app_db app_user 10.0.1.250/32 scram-sha-256"
            ]
        );
    }

    #[test]
    fn show_stat_reads_servers_by_column_name() {
        let csv = "# pxname,svname,qcur,qmax,scur,status,check_status,last_chk\n\
                   pgrepl_write,FRONTEND,,,0,OPEN,,\n\
                   pgrepl_write,pg0,0,0,2,UP,L7OK,(tcp-check)\n\
                   pgrepl_write,pg1,0,0,0,MAINT,L7RSP,TCPCHK did not match content at step 6\n\
                   pgrepl_write,BACKEND,0,0,2,UP,,\n";
        let rows = parse_show_stat(csv);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].server, "pg0");
        assert!(rows[0].takes_traffic());
        assert_eq!(rows[0].sessions, 2);
        assert!(rows[1].in_maintenance());
        assert_eq!(
            rows[1].check,
            "L7RSP: TCPCHK did not match content at step 6"
        );
    }

    #[test]
    fn route_writes_fences_the_others_before_enabling_the_primary() {
        let members = ["pg0".to_string(), "pg1".into(), "pg2".into()];
        let cmds = route_writes(&members, "pg1", ReadFrom::Replicas);
        let first_ready = cmds.find("pgrepl_write/pg1 state ready").unwrap();
        assert!(cmds.find("pgrepl_write/pg0 state maint").unwrap() < first_ready);
        assert!(cmds.find("pgrepl_write/pg2 state maint").unwrap() < first_ready);
        assert!(cmds.contains("shutdown sessions server pgrepl_write/pg0"));
        assert!(cmds.ends_with("set server pgrepl_read/pg1 state maint"));
        assert!(!cmds.contains(READ_PRIMARY_BACKEND));
        let both = route_writes(&members, "pg1", ReadFrom::ReplicasAndPrimary);
        assert!(both.contains("set server pgrepl_read_primary/pg1 state ready"));
    }

    #[test]
    fn the_check_password_is_stable_and_depends_on_the_replication_password() {
        let a = check_password("secret");
        assert_eq!(a, check_password("secret"));
        assert_ne!(a, check_password("other"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("secret"));
    }

    #[test]
    fn facts_decode_the_config() {
        let f = parse_facts(
            "installed=yes\nversion=HAProxy version 2.6.12\nsystemd=no\nrunning=yes\nconfig=Z2xvYmFsCg==\n",
        );
        assert!(f.installed && f.running && !f.systemd);
        assert_eq!(f.config, "global\n");
    }
}
