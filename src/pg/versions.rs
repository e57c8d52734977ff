//! Which PostgreSQL majors a host has installed and runs, and what to say when that is not
//! the inventory's version.
//!
//! Without this, an inventory that says 16 on a host running 15 fails with two unrelated
//! looking problems ("no PostgreSQL server binaries in /usr/lib/postgresql/16/bin", "not
//! running on the primary"). Here the facts a host reports through [`PROBE_SCRIPT`] become
//! one message naming what runs where. Everything but the script is pure: no I/O.

use std::fmt;

/// Lists the installed server majors and the running clusters, one per line:
/// `installed MAJOR BIN_DIR` and `running MAJOR PORT DATA_DIR` (the data dir last, so it
/// may hold spaces). Run it as root. A running cluster's data dir is found three ways, as
/// each can fail alone: line 2 of a socket lock file (`.s.PGSQL.PORT.lock`, the
/// postmaster's pid and data dir), the `-D` argument of a postgres process, and the
/// process's working directory (the data dir, but unreadable without CAP_SYS_PTRACE, as
/// in a container). Arguments are more directories to look in: a custom layout's bin dir
/// and socket dir.
pub const PROBE_SCRIPT: &str = r#"{
  for b in /usr/lib/postgresql/*/bin/postgres /usr/pgsql-*/bin/postgres; do echo "$b"; done
  for d in "$@"; do echo "$d/postgres"; done
} | sort -u | while IFS= read -r b; do
  [ -x "$b" ] || continue
  v=$("$b" --version 2>/dev/null | sed -n 's/.*) \([0-9][0-9]*\).*/\1/p')
  [ -n "$v" ] && printf 'installed %s %s\n' "$v" "$(dirname "$b")"
done
{
  for f in /run/postgresql/.s.PGSQL.*.lock /var/run/postgresql/.s.PGSQL.*.lock /tmp/.s.PGSQL.*.lock; do
    [ -f "$f" ] && sed -n 2p "$f"
  done
  for d in "$@"; do for f in "$d"/.s.PGSQL.*.lock; do [ -f "$f" ] && sed -n 2p "$f"; done; done
  for p in /proc/[0-9]*; do
    case "$(cat "$p/comm" 2>/dev/null)" in postgres|postmaster) ;; *) continue ;; esac
    tr '\0' '\n' < "$p/cmdline" 2>/dev/null | sed -n '/^-D$/{n;p;}'
    readlink "$p/cwd" 2>/dev/null
  done
} | sort -u | while IFS= read -r d; do
  [ -n "$d" ] && [ -f "$d/PG_VERSION" ] && [ -f "$d/postmaster.pid" ] || continue
  pid=$(sed -n 1p "$d/postmaster.pid")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || continue
  printf 'running %s %s %s\n' "$(cat "$d/PG_VERSION")" "$(sed -n 4p "$d/postmaster.pid")" "$d"
done"#;

/// Server binaries of one major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub major: u32,
    pub bin_dir: String,
}

/// A running cluster (a postmaster and its data dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub major: u32,
    pub port: u16,
    pub data_dir: String,
}

/// What [`PROBE_SCRIPT`] found on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostVersions {
    pub installed: Vec<Installed>,
    pub running: Vec<Running>,
}

/// Reads [`PROBE_SCRIPT`]'s output; lines it does not know are skipped.
pub fn parse_probe(output: &str) -> HostVersions {
    let mut facts = HostVersions::default();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("installed ") {
            if let Some((major, bin_dir)) = rest.split_once(' ')
                && let Ok(major) = major.parse()
            {
                facts.installed.push(Installed {
                    major,
                    bin_dir: bin_dir.to_string(),
                });
            }
        } else if let Some(rest) = line.strip_prefix("running ") {
            let mut parts = rest.splitn(3, ' ');
            if let (Some(major), Some(port), Some(data_dir)) =
                (parts.next(), parts.next(), parts.next())
                && let (Ok(major), Ok(port)) = (major.trim().parse(), port.trim().parse())
            {
                facts.running.push(Running {
                    major,
                    port,
                    data_dir: data_dir.to_string(),
                });
            }
        }
    }
    facts
}

/// A version problem, worded for the user, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (hint: {})", self.message, self.hint)
    }
}

const SAME_MAJOR: &str = "pg_basebackup needs one major version on every host";

/// What the inventory expects of one host.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub host: &'a str,
    pub version: u32,
    pub port: u16,
    pub data_dir: &'a str,
}

/// Compares what a host has with what the inventory says; `None` when the inventory's
/// major is installed and no other major serves the inventory's port or data dir.
pub fn check(want: Expected<'_>, facts: &HostVersions) -> Option<Mismatch> {
    let Expected {
        host,
        version,
        port,
        data_dir,
    } = want;
    let ours = |r: &&Running| r.port == port || same_dir(&r.data_dir, data_dir);
    let other_running = facts
        .running
        .iter()
        .filter(ours)
        .find(|r| r.major != version)
        .or_else(|| {
            let installed = facts.installed.iter().any(|i| i.major == version);
            (!installed)
                .then(|| facts.running.iter().find(|r| r.major != version))
                .flatten()
        });
    if let Some(r) = other_running {
        return Some(Mismatch {
            message: format!(
                "host {host} runs PostgreSQL {} (data dir {}, port {}), the inventory says {version}; {SAME_MAJOR}",
                r.major, r.data_dir, r.port
            ),
            hint: format!(
                "if every host runs {m}, set `postgres.version: {m}` in the inventory; otherwise upgrade {host} to {version} first (Debian: pg_upgradecluster)",
                m = r.major
            ),
        });
    }
    if facts.installed.iter().any(|i| i.major == version) {
        // The right major, on the inventory's port, but from another data dir: the
        // inventory names the wrong cluster (or one that is not this host's server).
        // (A cluster can be listed under two paths, a link and its target: one naming
        // the inventory's dir means it is ours.)
        if facts
            .running
            .iter()
            .any(|r| r.port == port && same_dir(&r.data_dir, data_dir))
        {
            return None;
        }
        return facts
            .running
            .iter()
            .find(|r| r.port == port && r.major == version && !same_dir(&r.data_dir, data_dir))
            .map(|r| Mismatch {
                message: format!(
                    "host {host} runs PostgreSQL {version} on port {port} from data dir {}, not from {data_dir} as the inventory says",
                    r.data_dir
                ),
                hint: format!(
                    "set `postgres.data_dir: {}` for {host} if that is the cluster, or stop it and start the inventory's",
                    r.data_dir
                ),
            });
    }
    let mut others: Vec<u32> = facts.installed.iter().map(|i| i.major).collect();
    others.sort_unstable();
    others.dedup();
    Some(match others.as_slice() {
        [] => Mismatch {
            message: format!(
                "host {host} has no PostgreSQL server installed, the inventory says {version}"
            ),
            hint: format!(
                "install PostgreSQL {version} on {host} (Debian: apt install postgresql-{version}), or set postgres.bin_dir if it lives elsewhere"
            ),
        },
        found => {
            let list = found
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let dirs = facts
                .installed
                .iter()
                .map(|i| i.bin_dir.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            Mismatch {
                message: format!(
                    "host {host} has PostgreSQL {list} installed ({dirs}), not running, and not {version} as the inventory says; {SAME_MAJOR}"
                ),
                hint: format!(
                    "install PostgreSQL {version} on {host}, or set `postgres.version` to the major every host runs"
                ),
            }
        }
    })
}

/// Whether every host runs one major; `hosts` pairs a host name with the major it runs.
pub fn check_same_major(hosts: &[(&str, u32)]) -> Option<Mismatch> {
    let mut majors: Vec<u32> = hosts.iter().map(|(_, m)| *m).collect();
    majors.sort_unstable();
    majors.dedup();
    if majors.len() < 2 {
        return None;
    }
    let groups: Vec<String> = majors
        .iter()
        .map(|m| {
            let names: Vec<&str> = hosts
                .iter()
                .filter(|(_, v)| v == m)
                .map(|(n, _)| *n)
                .collect();
            format!("{m} on {}", names.join(", "))
        })
        .collect();
    Some(Mismatch {
        message: format!(
            "the hosts run different PostgreSQL majors ({}); {SAME_MAJOR}",
            groups.join("; ")
        ),
        hint: "upgrade the hosts to one major version and set `postgres.version` to it".into(),
    })
}

fn same_dir(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_15: &str =
        "installed 15 /usr/lib/postgresql/15/bin\nrunning 15 5432 /var/lib/postgresql/15/main\n";

    fn want(version: u32) -> Expected<'static> {
        Expected {
            host: "pg0",
            version,
            port: 5432,
            data_dir: "/var/lib/postgresql/16/main",
        }
    }

    #[test]
    fn the_probe_output_parses() {
        let facts = parse_probe(
            "installed 15 /usr/lib/postgresql/15/bin\ninstalled 16 /usr/pgsql-16/bin\nrunning 15 5433 /srv/pg data/15\nnoise\nrunning x y z\n",
        );
        assert_eq!(facts.installed.len(), 2);
        assert_eq!(
            facts.running,
            vec![Running {
                major: 15,
                port: 5433,
                data_dir: "/srv/pg data/15".into()
            }]
        );
    }

    #[test]
    fn inventory_16_on_a_host_running_15_says_so_once() {
        let m = check(want(16), &parse_probe(DEBIAN_15)).expect("a mismatch");
        assert_eq!(
            m.message,
            "host pg0 runs PostgreSQL 15 (data dir /var/lib/postgresql/15/main, port 5432), the inventory says 16; pg_basebackup needs one major version on every host"
        );
        assert!(m.hint.contains("`postgres.version: 15`"), "{}", m.hint);
        assert!(m.hint.contains("upgrade pg0 to 16"), "{}", m.hint);
    }

    #[test]
    fn matching_versions_pass_running_or_not() {
        let ours = Expected {
            data_dir: "/var/lib/postgresql/15/main",
            ..want(15)
        };
        assert_eq!(check(ours, &parse_probe(DEBIAN_15)), None);
        let stopped = parse_probe("installed 15 /usr/lib/postgresql/15/bin\n");
        assert_eq!(check(ours, &stopped), None);
        // Another major on another port does not concern this cluster.
        let both = parse_probe(
            "installed 15 /usr/lib/postgresql/15/bin\ninstalled 16 /usr/lib/postgresql/16/bin\nrunning 15 5433 /var/lib/postgresql/15/other\n",
        );
        assert_eq!(check(want(16), &both), None);
    }

    #[test]
    fn the_right_major_from_another_data_dir_on_the_inventorys_port_is_named() {
        let elsewhere =
            parse_probe("installed 15 /usr/lib/postgresql/15/bin\nrunning 15 5432 /srv/pgdata\n");
        let ours = Expected {
            data_dir: "/var/lib/postgresql/15/main",
            ..want(15)
        };
        let m = check(ours, &elsewhere).expect("a mismatch");
        assert_eq!(
            m.message,
            "host pg0 runs PostgreSQL 15 on port 5432 from data dir /srv/pgdata, not from /var/lib/postgresql/15/main as the inventory says"
        );
        assert!(
            m.hint.contains("`postgres.data_dir: /srv/pgdata`"),
            "{}",
            m.hint
        );
        // Listed under a link and its target, one of them the inventory's: ours.
        let linked = parse_probe(
            "installed 15 /usr/lib/postgresql/15/bin\nrunning 15 5432 /srv/pgdata\nrunning 15 5432 /var/lib/postgresql/15/main\n",
        );
        assert_eq!(check(ours, &linked), None);
        // On another port it is another cluster: not this one's business.
        let other_port =
            parse_probe("installed 15 /usr/lib/postgresql/15/bin\nrunning 15 5433 /srv/pgdata\n");
        assert_eq!(check(ours, &other_port), None);
    }

    #[test]
    fn an_old_major_on_the_inventorys_port_is_reported_even_with_the_new_one_installed() {
        let mid_upgrade = parse_probe(
            "installed 15 /usr/lib/postgresql/15/bin\ninstalled 16 /usr/lib/postgresql/16/bin\nrunning 15 5432 /var/lib/postgresql/15/main\n",
        );
        let m = check(want(16), &mid_upgrade).expect("a mismatch");
        assert!(m.message.starts_with("host pg0 runs PostgreSQL 15"), "{m}");
    }

    #[test]
    fn installed_but_stopped_and_nothing_installed() {
        let m = check(
            want(16),
            &parse_probe("installed 15 /usr/lib/postgresql/15/bin\n"),
        )
        .expect("a mismatch");
        assert_eq!(
            m.message,
            "host pg0 has PostgreSQL 15 installed (/usr/lib/postgresql/15/bin), not running, and not 16 as the inventory says; pg_basebackup needs one major version on every host"
        );
        let m = check(want(16), &HostVersions::default()).expect("a mismatch");
        assert!(m.message.contains("no PostgreSQL server installed"), "{m}");
        assert!(m.hint.contains("postgresql-16"), "{m}");
    }

    #[test]
    fn hosts_on_different_majors_are_named() {
        assert_eq!(check_same_major(&[("pg0", 15), ("pg1", 15)]), None);
        let m = check_same_major(&[("pg0", 15), ("pg1", 16), ("pg2", 15)]).expect("mismatch");
        assert_eq!(
            m.message,
            "the hosts run different PostgreSQL majors (15 on pg0, pg2; 16 on pg1); pg_basebackup needs one major version on every host"
        );
    }
}
