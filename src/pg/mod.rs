//! PostgreSQL on a host, driven over SSH: SQL through psql, the service, the layout's paths.
//!
//! SQL always goes on stdin to `psql -X -A -t -v ON_ERROR_STOP=1` as the postgres user over
//! the Unix socket: no TCP listener, no password, nothing in argv. Structured answers are
//! built as JSON in SQL and parsed into types here.

pub mod conninfo;
pub mod facts;
pub mod scram;
pub mod sync;
pub mod versions;
pub mod wire;

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::inventory::{Host, ServiceKind};
use crate::ssh::{Command, Error, Session};

/// Waits (up to 60 s) for the start wrapper [`Pg::start`] left finishing in the
/// background on port `$port`, if one still runs. A stop while systemd's start job still
/// runs cancels that job, and the old wrapper then fails ("did not take the steps
/// required by its unit configuration"); a start would get its status written over.
/// A wrapper that wrote its status is done (its pid may since name another process).
const PENDING_START_SH: &str = r#"f=/tmp/pgrepl-start-$port.pid
if [ -f "$f" ] && read -r w < "$f" && [ -n "$w" ]; then
  i=0; while [ ! -s "/tmp/pgrepl-start-$port.status" ] && kill -0 "$w" 2>/dev/null && [ $i -lt 1200 ]; do i=$((i+1)); sleep 0.05; done
fi"#;

/// [`Pg::start`]'s script after [`PENDING_START_SH`]: runs the service manager's start
/// command (`"$@"`) in the background and polls the socket with pg_isready (`$isready`,
/// socket dir `$sock`, port `$port`) until the server accepts connections; fails with the
/// command's output if it exits non-zero first.
const START_AND_WAIT_BODY: &str = r#"st=/tmp/pgrepl-start-$port.status; log=/tmp/pgrepl-start-$port.log; rm -f "$st"
( "$@" >"$log" 2>&1; echo $? >"$st" ) </dev/null >/dev/null 2>&1 &
echo $! > /tmp/pgrepl-start-$port.pid
ready() { if [ -n "$sock" ]; then "$isready" -q -h "$sock" -p "$port"; else "$isready" -q -p "$port"; fi; }
i=0
while [ $i -lt 6000 ]; do
  ready && exit 0
  if [ -s "$st" ]; then
    rc=$(cat "$st")
    if [ "$rc" != 0 ]; then cat "$log" >&2; exit "$rc"; fi
    ready && exit 0
  fi
  i=$((i+1)); sleep 0.05
done
echo "PostgreSQL does not accept connections 300 s after start" >&2; cat "$log" >&2; exit 1"#;

/// PostgreSQL on one host, reached through its SSH session.
pub struct Pg<'a> {
    pub session: &'a Session,
    pub host: &'a Host,
    /// The database psql connects to (`postgres` unless [`Pg::in_database`] says another).
    database: &'a str,
}

/// What `pg_ctl status` says about the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Running,
    Stopped,
    /// The data directory is missing or not a cluster.
    NoCluster,
}

impl<'a> Pg<'a> {
    pub fn new(session: &'a Session, host: &'a Host) -> Self {
        Pg {
            session,
            host,
            database: "postgres",
        }
    }

    /// The same server, with SQL run in another database.
    pub fn in_database(self, database: &'a str) -> Self {
        Pg { database, ..self }
    }

    /// A path to one of the PostgreSQL binaries on this host.
    pub fn bin(&self, program: &str) -> String {
        format!("{}/{}", self.host.pg.bin_dir, program)
    }

    /// psql as the postgres user, reading SQL from stdin, in the `postgres` database (or
    /// the one [`Pg::in_database`] named).
    ///
    /// Its session runs with `synchronous_commit = local`: pgrepl's own writes (the
    /// replication role, the probe row, a promoted primary's first write) never wait for
    /// synchronous standbys, which may be the very ones being set up, repaired or followed.
    pub fn psql(&self) -> Command {
        let pg = &self.host.pg;
        let mut cmd = Command::new(self.bin("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-p", &pg.port.to_string()])
            .args([
                "-d",
                &conninfo::Conninfo::new()
                    .set("dbname", self.database)
                    .set("options", "-csynchronous_commit=local")
                    .to_string(),
            ]);
        if let Some(dir) = &pg.socket_dir {
            cmd = cmd.args(["-h", dir.as_str()]);
        }
        cmd.as_postgres()
    }

    /// Runs SQL and returns psql's unaligned output.
    pub async fn sql(&self, sql: &str) -> Result<String, Error> {
        let out = self.session.run(&self.psql().stdin(sql)).await?;
        Ok(out.stdout.trim_end().to_string())
    }

    /// Runs a query returning one JSON value and parses it.
    pub async fn query<T: DeserializeOwned>(&self, sql: &str) -> Result<T, Error> {
        let text = self.sql(sql).await?;
        serde_json::from_str(&text).map_err(|e| Error::Config {
            host: self.host.name.clone(),
            message: format!("unexpected answer from PostgreSQL ({e}): {text}"),
        })
    }

    /// Runs a query when the server is running; `Ok(None)` when it is not. The query is
    /// tried first and `pg_ctl status` asked only if it fails, so the common case costs one
    /// round trip.
    pub async fn query_if_running<T: DeserializeOwned>(
        &self,
        sql: &str,
    ) -> Result<Option<T>, Error> {
        match self.query(sql).await {
            Ok(value) => Ok(Some(value)),
            Err(e) => match self.state().await? {
                ServerState::Running => Err(e),
                _ => Ok(None),
            },
        }
    }

    /// psql (as [`Pg::psql`], SQL on stdin) if the server runs, from a root shell that runs
    /// `before` (shell; `data` is the data dir), then looks at postmaster.pid (see
    /// [`RUNNING_SH`]) and prints `pgrepl-running true|false`: one round trip either way.
    /// [`split_when_running`] reads what it prints.
    pub fn psql_when_running(&self, before: &str) -> Command {
        let script = format!(
            "data=\"$1\"; shift\n{before}\n{RUNNING_SH}\necho \"pgrepl-running $r\"\nif [ \"$r\" = true ]; then exec runuser -u postgres -- \"$@\"; fi"
        );
        Command::script(&script, &[self.host.pg.data_dir.as_str()])
            .args(self.psql().argv())
            .as_root()
    }

    /// Runs a query if the server runs (`Ok(None)` if not), in one round trip either way
    /// ([`Pg::psql_when_running`]). For where the server is often down;
    /// [`Pg::query_if_running`] costs less where it usually runs.
    pub async fn query_when_running<T: DeserializeOwned>(
        &self,
        sql: &str,
    ) -> Result<Option<T>, Error> {
        let out = self
            .session
            .run(&self.psql_when_running("").stdin(sql))
            .await?;
        let unexpected = |text: &str, e: &dyn std::fmt::Display| Error::Config {
            host: self.host.name.clone(),
            message: format!("unexpected answer from PostgreSQL ({e}): {text}"),
        };
        let Some((_, running, answer)) = split_when_running(&out.stdout) else {
            return Err(unexpected(out.stdout.trim_end(), &"no running state"));
        };
        if !running {
            return Ok(None);
        }
        let text = answer.trim_end();
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| unexpected(text, &e))
    }

    /// Asks `pg_ctl status` whether the server runs on the data directory.
    pub async fn state(&self) -> Result<ServerState, Error> {
        let cmd = Command::new(self.bin("pg_ctl"))
            .args(["status", "-D", self.host.pg.data_dir.as_str()])
            .as_postgres();
        let out = self.session.output(&cmd).await?;
        match out.status {
            0 => Ok(ServerState::Running),
            3 => Ok(ServerState::Stopped),
            4 => Ok(ServerState::NoCluster),
            _ => {
                // Report sudo trouble and the like as the command failure it is.
                self.session.run(&cmd).await?;
                Ok(ServerState::NoCluster)
            }
        }
    }

    fn service(&self, verb: &str) -> Command {
        let pg = &self.host.pg;
        match pg.service {
            ServiceKind::Systemd => Command::new("systemctl")
                .args([verb, pg.unit.as_str()])
                .as_root(),
            ServiceKind::PgCtlcluster => {
                let mut cmd = Command::new("pg_ctlcluster").args([
                    pg.version.to_string(),
                    pg.cluster.clone(),
                    verb.to_string(),
                ]);
                if verb != "start" {
                    cmd = cmd.args(["-m", "fast"]);
                }
                cmd.as_root()
            }
            ServiceKind::PgCtl => {
                let mut cmd = Command::new(self.bin("pg_ctl")).args([
                    verb,
                    "-D",
                    pg.data_dir.as_str(),
                    "-w",
                    "-t",
                    "300",
                ]);
                if verb != "stop" {
                    cmd = cmd.args(["-l", &self.pg_ctl_log()]);
                }
                if verb != "start" {
                    cmd = cmd.args(["-m", "fast"]);
                }
                cmd.as_postgres()
            }
        }
        .timeout(Some(Duration::from_secs(330)))
    }

    /// Where `pg_ctl start` sends the server's early output: beside the data directory.
    pub fn pg_ctl_log(&self) -> String {
        let data = self.host.pg.data_dir.trim_end_matches('/');
        match data.rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() => format!("{parent}/logfile"),
            _ => format!("{data}.logfile"),
        }
    }

    /// Starts PostgreSQL through its service manager and returns once it accepts
    /// connections. Debian's wrapper (which systemd's unit runs too) sleeps and polls on its
    /// own after the server is up, about 2 s; pgrepl lets it finish in the background and
    /// polls the socket itself, still reporting the wrapper's failure (with its output).
    pub async fn start(&self) -> Result<(), Error> {
        let pg = &self.host.pg;
        if pg.service == ServiceKind::PgCtl {
            // pg_ctl -w returns when the server is ready.
            return self.session.run(&self.service("start")).await.map(|_| ());
        }
        let service = self.service("start");
        let script = format!(
            "isready=$1 sock=$2 port=$3; shift 3\n{PENDING_START_SH}\n{START_AND_WAIT_BODY}"
        );
        let cmd = Command::script(
            &script,
            &[
                &self.bin("pg_isready"),
                pg.socket_dir.as_deref().unwrap_or(""),
                &pg.port.to_string(),
            ],
        )
        .args(service.argv())
        .as_root()
        .timeout(Some(Duration::from_secs(330)));
        self.session.run(&cmd).await.map(|_| ())
    }

    pub async fn stop(&self) -> Result<(), Error> {
        let service = self.service("stop");
        if self.host.pg.service == ServiceKind::PgCtl {
            return self.session.run(&service).await.map(|_| ());
        }
        let script = format!("port=$1; shift\n{PENDING_START_SH}\nexec \"$@\"");
        let cmd = Command::script(&script, &[&self.host.pg.port.to_string()])
            .args(service.argv())
            .as_root()
            .timeout(service.timeout);
        self.session.run(&cmd).await.map(|_| ())
    }

    /// A fast stop, then [`Pg::start`] (ready as soon as it accepts connections).
    pub async fn restart(&self) -> Result<(), Error> {
        if self.host.pg.service == ServiceKind::PgCtl {
            return self.session.run(&self.service("restart")).await.map(|_| ());
        }
        self.stop().await?;
        self.start().await
    }

    /// Tells the running server to re-read its config files.
    pub async fn reload(&self) -> Result<(), Error> {
        self.sql("SELECT pg_reload_conf()").await.map(|_| ())
    }
}

/// Shell that sets `r` to `true` when the postmaster named in `$data/postmaster.pid` is
/// alive, as `pg_ctl status` judges it, with shell built-ins only (a program started
/// costs a loaded host more than the look); expects `data` set, as root.
pub const RUNNING_SH: &str = r#"r=false; pid=; if [ -f "$data/postmaster.pid" ] && read -r pid < "$data/postmaster.pid" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then r=true; fi"#;

/// What [`Pg::psql_when_running`] printed: its `before` part's output, whether the server
/// runs, and psql's output; `None` if the shell did not get as far as saying.
pub fn split_when_running(stdout: &str) -> Option<(&str, bool, &str)> {
    let (before, rest) = stdout.split_once("pgrepl-running ")?;
    let (state, answer) = rest.split_once('\n').unwrap_or((rest, ""));
    Some((before, state == "true", answer))
}

/// Quotes a string as an SQL literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Quotes a string for postgresql.conf and postgresql.auto.conf. Their reader takes `\` as
/// an escape inside quotes, so `\` is doubled as well as `'` (as `ALTER SYSTEM` writes);
/// [`literal`] is for SQL, where a backslash is a plain character.
pub fn conf_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The query that drops physical slot `slot` if nothing streams through it, and returns
/// how many it dropped (0 or 1): a slot in use belongs to a standby that still streams,
/// and dropping it would fail (or cut that standby off).
pub fn drop_unused_slot_sql(slot: &str) -> String {
    format!(
        "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = {} AND slot_type = 'physical' AND NOT active",
        literal(slot)
    )
}

/// Quotes a name as an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_state_splits_what_came_before_from_psqls_answer() {
        assert_eq!(
            split_when_running("disk 10\npgrepl-running true\n{\"a\":1}\n{}\n"),
            Some(("disk 10\n", true, "{\"a\":1}\n{}\n"))
        );
        assert_eq!(
            split_when_running("pgrepl-running false\n"),
            Some(("", false, ""))
        );
        assert_eq!(split_when_running("sudo: a password is required\n"), None);
    }

    #[test]
    fn sql_quoting_doubles_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn conf_quoting_doubles_quotes_and_backslashes() {
        assert_eq!(conf_literal("plain"), "'plain'");
        assert_eq!(conf_literal("it's"), "'it''s'");
        assert_eq!(
            conf_literal(r"passfile='/home/o\'brien'"),
            r"'passfile=''/home/o\\''brien'''"
        );
    }
}
