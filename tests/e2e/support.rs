//! A small builder for running the real binary against a lab of containers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Whether end-to-end tests run here (they need docker and the lab images).
pub fn enabled() -> bool {
    std::env::var("PGREPL_E2E").map_or(true, |v| v != "0")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A lab of N nodes; removed (containers, volumes, network) on drop.
pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    /// The PostgreSQL nodes, `nodes[i]` is `pgI`.
    pub nodes: Vec<Node>,
    /// Nodes without PostgreSQL (`proxy0` with `--proxy`).
    pub proxies: Vec<Node>,
}

/// One container of a lab.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub container: String,
    pub address: String,
    /// `postgres` or `proxy` (nodes.tsv's 4th column).
    pub role: String,
}

/// The PostgreSQL major a flavour's images carry (`bookworm-systemd` → 15).
pub fn flavour_version(flavour: &str) -> u32 {
    match flavour.trim_end_matches("-systemd") {
        "bookworm" => 15,
        "trixie" => 17,
        "forky" => 18,
        other => panic!("unknown lab flavour {other}"),
    }
}

/// The outcome of a pgrepl run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Lab {
    /// `lab up N` with a unique name for this test.
    pub fn up(test: &str, nodes: usize, flavour: &str, layout: &str) -> Lab {
        Lab::up_with(test, nodes, flavour, layout, &[])
    }

    /// `lab up N` with more options for `lab up`, e.g. `--proxy`.
    pub fn up_with(test: &str, nodes: usize, flavour: &str, layout: &str, extra: &[&str]) -> Lab {
        let name = format!("{}-{}", test.replace('_', "-"), std::process::id() % 10000);
        let out = Command::new(repo().join("lab/lab"))
            .args([
                "up",
                &nodes.to_string(),
                "--flavour",
                flavour,
                "--layout",
                layout,
                "--name",
                &name,
            ])
            .args(extra)
            .output()
            .expect("run lab/lab");
        let mut lab = Lab {
            name: name.clone(),
            dir: PathBuf::new(),
            nodes: Vec::new(),
            proxies: Vec::new(),
        };
        assert!(
            out.status.success(),
            "lab up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab.dir = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or_default(),
        );
        lab.read_nodes();
        lab
    }

    /// (Re)reads nodes.tsv into `nodes` and `proxies`.
    fn read_nodes(&mut self) {
        let tsv = std::fs::read_to_string(self.dir.join("nodes.tsv")).expect("nodes.tsv");
        let all: Vec<Node> = tsv
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 3).then(|| Node {
                    name: f[0].into(),
                    container: f[1].into(),
                    address: f[2].into(),
                    role: f.get(3).unwrap_or(&"postgres").to_string(),
                })
            })
            .collect();
        (self.proxies, self.nodes) = all.into_iter().partition(|n| n.role == "proxy");
    }

    /// Runs `lab/lab VERB ARGS... --name THIS_LAB`.
    pub fn lab(&self, verb: &str, args: &[&str]) -> Output {
        Command::new(repo().join("lab/lab"))
            .arg(verb)
            .args(args)
            .args(["--name", &self.name])
            .output()
            .expect("run lab/lab")
    }

    /// A fault verb (`kill`, `start`, `stop`, `restart`, `pause`, `unpause`, `partition`,
    /// `heal`, `crash-pg`) on a node by name; panics if lab/lab fails.
    pub fn fault(&self, verb: &str, node: &str) {
        let out = self.lab(verb, &[node]);
        assert!(
            out.status.success(),
            "lab {verb} {node} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `lab add`: one more PostgreSQL node, returned (also pushed onto `nodes`). It is not in
    /// the inventory: `pgrepl add-replica NAME --address ADDR` puts it there.
    pub fn add(&mut self) -> Node {
        let out = self.lab("add", &[]);
        assert!(
            out.status.success(),
            "lab add failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.read_nodes();
        self.nodes
            .iter()
            .find(|n| n.address == address)
            .unwrap_or_else(|| panic!("lab add printed {address:?}, not in nodes.tsv"))
            .clone()
    }

    /// Runs a command over real SSH as `user` on a node, with the lab's key and known_hosts.
    pub fn ssh(&self, node: &Node, user: &str, cmd: &str) -> Output {
        Command::new("ssh")
            .arg("-i")
            .arg(self.dir.join("id_ed25519"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@{}", node.address))
            .arg(cmd)
            .output()
            .expect("ssh")
    }

    /// Runs a shell command as root in any node's container (a proxy too).
    pub fn exec_on(&self, node: &Node, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &node.container, "sh", "-c", script])
            .output()
            .expect("docker exec")
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    /// Runs pgrepl with `-i` this lab's inventory.
    pub fn pgrepl(&self, args: &[&str]) -> Run {
        pgrepl_with(&self.inventory(), args, &[])
    }

    /// Runs a shell command as root in a node's container.
    pub fn exec(&self, node: usize, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.nodes[node].container, "sh", "-c", script])
            .output()
            .expect("docker exec")
    }

    /// Runs SQL as postgres on a node and returns trimmed unaligned output (panics on error).
    pub fn sql(&self, node: usize, sql: &str) -> String {
        self.sql_in(node, "postgres", sql)
    }

    /// [`Lab::sql`] in another database.
    pub fn sql_in(&self, node: usize, database: &str, sql: &str) -> String {
        let out = self.try_sql_in(node, database, sql);
        assert!(
            out.status.success(),
            "SQL in {database} on {} failed: {sql}\n{}",
            self.nodes[node].name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn try_sql(&self, node: usize, sql: &str) -> Output {
        self.try_sql_in(node, "postgres", sql)
    }

    pub fn try_sql_in(&self, node: usize, database: &str, sql: &str) -> Output {
        Command::new("docker")
            .args([
                "exec",
                "-u",
                "postgres",
                &self.nodes[node].container,
                "psql",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .expect("docker exec psql")
    }

    /// What a run that changes nothing leaves alone, per node: the managed config files,
    /// the data dirs, when PostgreSQL started, and the answer to `sql` (if not empty).
    /// Debian layout, PostgreSQL 15.
    pub fn snapshot(&self, sql: &str) -> Vec<String> {
        let watched = "md5sum /etc/postgresql/15/main/pg_hba.conf /etc/postgresql/15/main/conf.d/* 2>/dev/null; ls /var/lib/postgresql/15";
        (0..self.nodes.len())
            .map(|i| {
                format!(
                    "{}{}{}",
                    String::from_utf8_lossy(&self.exec(i, watched).stdout),
                    self.sql(i, "SELECT pg_postmaster_start_time()"),
                    if sql.is_empty() {
                        String::new()
                    } else {
                        self.sql(i, sql)
                    }
                )
            })
            .collect()
    }

    /// Waits until `check` holds, up to `limit`.
    pub fn wait_for(&self, limit: Duration, mut check: impl FnMut() -> bool) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("lab/lab"))
            .args(["down", "--name", &self.name])
            .output();
    }
}

/// Runs the real binary.
pub fn pgrepl_with(inventory: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrepl"));
    cmd.arg("-i").arg(inventory).args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run pgrepl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A client that writes numbered rows as fast as the server takes them, through libpq's
/// `target_session_attrs=read-write` over every node (so it follows the primary), and
/// records each id the server acknowledged. Runs inside a lab container.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Creates role `writer` and table `acked` on `primary`, then starts writing from
    /// `client`'s container. The inventory must allow `writer` from the lab network.
    pub fn start(lab: &Lab, primary: usize, client: usize) -> Writer {
        lab.sql(
            primary,
            "CREATE ROLE writer LOGIN PASSWORD 'writer-pw'; CREATE TABLE acked (id bigint PRIMARY KEY); GRANT INSERT, SELECT ON acked TO writer",
        );
        let hosts: Vec<String> = lab.nodes.iter().map(|n| n.address.clone()).collect();
        let conninfo = format!(
            "host={} user=writer dbname=postgres target_session_attrs=read-write connect_timeout=2",
            hosts.join(",")
        );
        let container = lab.nodes[client].container.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || write_until(&container, &conninfo, &stop, &acked))
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// How many ids were acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops writing and returns every acknowledged id.
    pub fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.acked.lock().unwrap().clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One psql process per connection: non-interactive psql exits when its connection is
/// lost, so a new one is started (and finds whichever node takes writes now).
fn write_until(
    container: &str,
    conninfo: &str,
    stop: &std::sync::atomic::AtomicBool,
    acked: &std::sync::Mutex<Vec<u64>>,
) {
    use std::io::{BufRead, Write};
    use std::sync::atomic::Ordering;
    let mut next: u64 = 1;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut child) = Command::new("docker")
            .args(["exec", "-i", "-e", "PGPASSWORD=writer-pw", container])
            .args(["psql", "-X", "-A", "-t", "-q", conninfo])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(id) = line.trim().parse::<u64>() {
                        acked.lock().unwrap().push(id);
                    }
                }
            });
            let mut stdin = child.stdin.take().expect("stdin");
            while !stop.load(Ordering::SeqCst) {
                let sql = format!("INSERT INTO acked VALUES ({next}) RETURNING id;");
                next += 1;
                if writeln!(stdin, "{sql}")
                    .and_then(|_| stdin.flush())
                    .is_err()
                {
                    break;
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(stdin);
            let _ = child.wait();
            reader.join()
        });
        let _ = reader;
        if !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Lab {
    /// Whether every id is on `node` (waits up to 30 s for replay).
    pub fn has_all(&self, node: usize, ids: &[u64]) -> Result<(), String> {
        let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!("SELECT count(*) FROM acked WHERE id IN ({list})");
        let mut seen = String::new();
        let ok = self.wait_for(Duration::from_secs(30), || {
            seen = String::from_utf8_lossy(&self.try_sql(node, &sql).stdout)
                .trim()
                .to_string();
            seen == ids.len().to_string()
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} has {seen} of the {} acknowledged ids",
                self.nodes[node].name,
                ids.len()
            ))
        }
    }
}

impl Lab {
    /// A 1+2 lab, bootstrapped, whose inventory lets the test client ([`Writer`]) log in
    /// from the lab network, with `settings` (a YAML flow map's inside, e.g.
    /// `wal_sender_timeout: 3s`) added to `replication.settings`.
    pub fn bootstrapped_for_writes(test: &str, flavour: &str, settings: Option<&str>) -> Lab {
        let lab = Lab::up(test, 3, flavour, "debian");
        let mut inventory = std::fs::read_to_string(lab.inventory()).unwrap();
        if let Some(settings) = settings {
            inventory = inventory.replace(
                "  password_file: replication-password\n",
                &format!("  password_file: replication-password\n  settings: {{ {settings} }}\n"),
            );
        }
        let subnet = lab.nodes[0].address.rsplit_once('.').unwrap().0.to_string();
        inventory.push_str(&format!(
            "hba:\n  - {{ database: postgres, user: writer, address: {subnet}.0/24, method: scram-sha-256 }}\n"
        ));
        std::fs::write(lab.inventory(), inventory).unwrap();
        let run = lab.pgrepl(&["bootstrap"]);
        assert_eq!(run.code, 0, "{run:?}");
        lab
    }
}

/// Runs pgrepl; the first stderr line containing `trigger` fires `action` once.
pub fn run_with_trigger(
    lab: &Lab,
    args: &[&str],
    trigger: &str,
    action: impl FnOnce(u32) + Send + 'static,
) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-i")
        .arg(lab.inventory())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgrepl");
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let trigger = trigger.to_string();
    let reader = std::thread::spawn(move || {
        let mut action = Some(action);
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(&trigger)
                && let Some(act) = action.take()
            {
                act(pid);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let out = child.wait_with_output().expect("wait pgrepl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: reader.join().unwrap(),
    }
}
