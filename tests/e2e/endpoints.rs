//! Endpoints: HAProxy on the lab's proxy node in front of the cluster, set up and checked
//! as the guides do it by hand (write port 5435, read port 5436, stats 8404), and kept on
//! the primary through a switchover and a failover. Every client runs inside a lab
//! container.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{Lab, Run, enabled, pgrepl_with};

const APP_PASSWORD: &str = "app user's pw";
const STATS_PASSWORD: &str = "stats-pw";

/// A 1+2 lab with `proxy0`, its inventory given the endpoint, `app_user` and `app_db`,
/// then bootstrapped (which ends with the endpoint). `settings`: replication settings.
fn bootstrapped(name: &str, flavour: &str, settings: Option<&str>) -> Lab {
    let lab = Lab::up_with(name, 3, flavour, "debian", &["--proxy"]);
    let proxy = &lab.proxies[0];
    std::fs::write(lab.dir.join("app-password"), APP_PASSWORD).unwrap();
    let mut inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    if let Some(settings) = settings {
        inventory = inventory.replace(
            "  password_file: replication-password\n",
            &format!("  password_file: replication-password\n  settings: {{ {settings} }}\n"),
        );
    }
    inventory.push_str(&format!(
        "  - {{ name: {}, address: {}, role: proxy }}
endpoints:
  - {{ host: {}, write_port: 5435, read_port: 5436, stats_port: 8404, stats_password_env: PGREPL_E2E_STATS, read_from: replicas, max_lag_bytes: 16MB }}
roles:
  - {{ name: app_user, password_file: app-password, login: true }}
databases:
  - {{ name: app_db, owner: app_user }}
",
        proxy.name, proxy.address, proxy.name
    ));
    std::fs::write(lab.inventory(), inventory).unwrap();
    let run = pgrepl(&lab, &["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("proxy0 (proxy): ok"),
        "verify checks the endpoint: {run:?}"
    );
    lab
}

fn pgrepl(lab: &Lab, args: &[&str]) -> Run {
    pgrepl_with(
        &lab.inventory(),
        args,
        &[("PGREPL_E2E_STATS", STATS_PASSWORD)],
    )
}

/// psql as app_user to app_db through the proxy's `port`, from node `client`'s container.
fn through(lab: &Lab, client: usize, port: u16, sql: &str) -> Output {
    std::process::Command::new("docker")
        .args(["exec", "-e", &format!("PGPASSWORD={APP_PASSWORD}")])
        .args(["-e", "PGCONNECT_TIMEOUT=5", &lab.nodes[client].container])
        .args(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", &lab.proxies[0].address, "-p", &port.to_string()])
        .args(["-U", "app_user", "-d", "app_db", "-c", sql])
        .output()
        .expect("docker exec psql")
}

/// SQL as postgres in app_db on a node, directly (not through the proxy).
fn app_sql(lab: &Lab, node: usize, sql: &str) -> String {
    let out = lab.exec(
        node,
        &format!(
            "su postgres -c \"psql -X -A -t -v ON_ERROR_STOP=1 -d app_db\" <<'SQL'\n{sql}\nSQL"
        ),
    );
    assert!(
        out.status.success(),
        "SQL on {} failed: {sql}\n{}",
        lab.nodes[node].name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql through the proxy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The node whose address a query's `inet_server_addr()` returned.
fn node_of(lab: &Lab, addr: &str) -> String {
    lab.nodes
        .iter()
        .find(|n| n.address == addr.trim())
        .map_or(format!("? ({addr})"), |n| n.name.clone())
}

/// `show stat` on the proxy: (backend, server, status) of every server.
fn pools(lab: &Lab) -> Vec<(String, String, String)> {
    let out = lab.exec_on(
        &lab.proxies[0],
        "echo 'show stat -1 4 -1' | nc -U /run/haproxy/admin.sock",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (px, sv, st) = (col("pxname"), col("svname"), col("status"));
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[px].to_string(), f[sv].to_string(), f[st].to_string())
        })
        .collect()
}

fn state(lab: &Lab, backend: &str, server: &str) -> String {
    pools(lab)
        .into_iter()
        .find(|(b, s, _)| b == backend && s == server)
        .map(|(_, _, st)| st)
        .unwrap_or_default()
}

/// The stats page over HTTP from a lab container: the status line.
fn stats_page(lab: &Lab, credentials: Option<&str>) -> String {
    let auth = credentials
        .map(|c| {
            use base64::Engine;
            format!(
                "Authorization: Basic {}\\r\\n",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        })
        .unwrap_or_default();
    let script = format!(
        "exec 3<>/dev/tcp/{}/8404 && printf 'GET / HTTP/1.0\\r\\n{auth}\\r\\n' >&3 && head -n1 <&3",
        lab.proxies[0].address
    );
    let out = std::process::Command::new("docker")
        .args(["exec", &lab.nodes[2].container, "bash", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A reload keeps established connections: a session through the read port outlives a
/// change of the lag limit, which rewrites haproxy.cfg and reloads haproxy.
fn reload_keeps_a_session(lab: &Lab) {
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    std::fs::write(
        lab.inventory(),
        inventory.replace("max_lag_bytes: 16MB", "max_lag_bytes: 8MB"),
    )
    .unwrap();
    let (container, proxy) = (
        lab.nodes[1].container.clone(),
        lab.proxies[0].address.clone(),
    );
    // --check --diff shows the change and no secret: not the stats password, not the
    // checks' password (hex in the send-binary line beside the changed query).
    let diff = pgrepl(lab, &["endpoints", "--check", "--diff"]);
    assert_eq!(diff.code, 0, "{diff:?}");
    let shown = format!("{}{}", diff.stdout, diff.stderr);
    assert!(shown.contains("+    tcp-check send-binary"), "{diff:?}");
    assert!(!shown.contains(STATS_PASSWORD), "{diff:?}");
    for line in shown.lines().filter(|l| l.contains("comment \"password\"")) {
        assert!(line.contains("<redacted>"), "{line}");
    }
    let long = std::thread::spawn(move || {
        std::process::Command::new("docker")
            .args(["exec", "-e", &format!("PGPASSWORD={APP_PASSWORD}")])
            .args([&container, "psql", "-X", "-A", "-t"])
            .args(["-h", &proxy, "-p", "5436", "-U", "app_user"])
            .args([
                "-d",
                "app_db",
                "-c",
                "SELECT pg_sleep(8), inet_server_addr()",
            ])
            .output()
    });
    std::thread::sleep(Duration::from_secs(2));
    let reload = pgrepl(lab, &["endpoints"]);
    assert_eq!(reload.code, 0, "{reload:?}");
    assert!(
        reload
            .stderr
            .contains("wrote haproxy.cfg and reloaded haproxy"),
        "{reload:?}"
    );
    let long = long.join().unwrap().unwrap();
    assert!(
        long.status.success(),
        "the session through the read port survived the reload: {}",
        String::from_utf8_lossy(&long.stderr)
    );
}

#[test]
fn endpoints_send_writes_to_the_primary_and_reads_to_the_replicas_and_follow_a_switchover() {
    if !enabled() {
        return;
    }
    let lab = bootstrapped("endpoints", "bookworm", None);
    let (pg0, pg1, pg2) = (
        lab.nodes[0].address.clone(),
        lab.nodes[1].address.clone(),
        lab.nodes[2].address.clone(),
    );

    // haproxy's own check passes on every rendered file pgrepl's unit tests snapshot.
    for snap in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("haproxy_cfg"))
    {
        let text = std::fs::read_to_string(snap.path()).unwrap();
        let body = text.splitn(3, "---\n").nth(2).expect("an insta snapshot");
        let path = "/tmp/snapshot.cfg";
        let write = std::process::Command::new("docker")
            .args(["exec", "-i", &lab.proxies[0].container, "sh", "-c"])
            .arg(format!("cat > {path} && haproxy -c -f {path}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(body.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            write.status.success(),
            "haproxy -c rejects {}: {}",
            snap.path().display(),
            String::from_utf8_lossy(&write.stderr)
        );
    }

    // The guide, step 1: write through the write port.
    let created = ok(&through(
        &lab,
        2,
        5435,
        "CREATE TABLE replication_test (id serial PRIMARY KEY, message text, created_at timestamp DEFAULT now());
         INSERT INTO replication_test (message) VALUES ('Hello from Primary!'), ('Replication is working?');
         SELECT inet_server_addr()",
    ));
    assert_eq!(
        created.lines().last().map(|a| node_of(&lab, a)),
        Some("pg0".into())
    );
    // Step 2: read it back through the read port, from a standby.
    assert!(lab.wait_for(Duration::from_secs(10), || {
        through(&lab, 2, 5436, "SELECT count(*) FROM replication_test")
            .stdout
            .starts_with(b"2")
    }));
    assert_eq!(
        ok(&through(&lab, 2, 5436, "SELECT pg_is_in_recovery()")),
        "t"
    );
    // Step 3: the read port refuses writes.
    let refused = through(
        &lab,
        2,
        5436,
        "INSERT INTO replication_test (message) VALUES ('This should fail')",
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("cannot execute INSERT in a read-only transaction"),
        "{refused:?}"
    );
    // Step 4: 20 connections are balanced over both replicas, never the primary.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let addr = ok(&through(&lab, 2, 5436, "SELECT inet_server_addr()"));
        *seen.entry(node_of(&lab, &addr)).or_insert(0) += 1;
    }
    eprintln!("read port over 20 connections: {seen:?}");
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["pg1", "pg2"],
        "{seen:?}"
    );

    // The stats page wants its password; the check role cannot log in without its own.
    assert!(
        stats_page(&lab, None).contains("401"),
        "{}",
        stats_page(&lab, None)
    );
    let page = stats_page(&lab, Some(&format!("pgrepl:{STATS_PASSWORD}")));
    assert!(page.contains("200"), "{page}");
    let check_role = lab.exec(
        2,
        &format!(
            "psql -X -w -h {} -p 5435 -U pgrepl_check -d postgres -c 'SELECT 1'",
            lab.proxies[0].address
        ),
    );
    assert!(!check_role.status.success(), "{check_role:?}");

    // A re-run changes nothing; status shows each pool as HAProxy sees it.
    let again = pgrepl(&lab, &["endpoints", "--format", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    for h in again.json()["hosts"].as_array().unwrap() {
        assert_eq!(h["changed"], 0, "{}", again.stdout);
    }
    let status = pgrepl(&lab, &["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let servers = &status.json()["endpoints"][0]["servers"];
    let find = |b: &str, s: &str| {
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["backend"] == b && r["server"] == s)
            .map(|r| r["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(find("pgrepl_write", "pg0"), "UP", "{}", status.stdout);
    assert_eq!(find("pgrepl_write", "pg1"), "MAINT", "{}", status.stdout);
    assert_eq!(find("pgrepl_read", "pg1"), "UP", "{}", status.stdout);

    // A replica stops: reads go on through the other one, at once.
    let stopped = Instant::now();
    let stop = lab.exec(2, "pg_ctlcluster 15 main stop -m fast");
    assert!(stop.status.success(), "{stop:?}");
    let mut failures = 0;
    let mut down_after = None;
    while stopped.elapsed() < Duration::from_secs(6) {
        let out = through(&lab, 1, 5436, "SELECT inet_server_addr()");
        if out.status.success() {
            assert_eq!(node_of(&lab, &String::from_utf8_lossy(&out.stdout)), "pg1");
        } else {
            failures += 1;
        }
        if down_after.is_none() && state(&lab, "pgrepl_read", "pg2").starts_with("DOWN") {
            down_after = Some(stopped.elapsed());
        }
    }
    eprintln!("pg2 stopped: read failures {failures}, marked DOWN after {down_after:?}");
    assert_eq!(failures, 0, "reads went on through pg1");
    assert!(
        down_after.is_some_and(|d| d < Duration::from_secs(4)),
        "pg2 left the read pool within the check interval: {down_after:?}"
    );
    assert!(lab.exec(2, "pg_ctlcluster 15 main start").status.success());
    assert!(lab.wait_for(Duration::from_secs(15), || {
        state(&lab, "pgrepl_read", "pg2") == "UP"
    }));

    // A replica whose replay falls more than max_lag_bytes (16MB) behind leaves the read
    // pool, and comes back once it catches up.
    lab.sql(2, "SELECT pg_wal_replay_pause()");
    ok(&through(
        &lab,
        1,
        5435,
        "CREATE TABLE big AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 40000) g",
    ));
    assert!(
        lab.wait_for(Duration::from_secs(15), || state(
            &lab,
            "pgrepl_read",
            "pg2"
        )
        .starts_with("DOWN")),
        "pg2, 40 MB behind, left the read pool: {:?}",
        pools(&lab)
    );
    let reads: Vec<String> = (0..6)
        .map(|_| {
            node_of(
                &lab,
                &ok(&through(&lab, 1, 5436, "SELECT inet_server_addr()")),
            )
        })
        .collect();
    assert!(reads.iter().all(|n| n == "pg1"), "{reads:?}");
    lab.sql(2, "SELECT pg_wal_replay_resume()");
    assert!(lab.wait_for(Duration::from_secs(20), || {
        state(&lab, "pgrepl_read", "pg2") == "UP"
    }));

    reload_keeps_a_session(&lab);

    // Switchover under a client writing through the write port, one connection per write
    // (as a pool reconnecting): the port reaches the new primary with no manual step.
    ok(&through(
        &lab,
        2,
        5435,
        "CREATE TABLE w (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp(), srv inet DEFAULT inet_server_addr())",
    ));
    let writer = std::process::Command::new("docker")
        .args(["exec", "-e", &format!("PGPASSWORD={APP_PASSWORD}")])
        .args([&lab.nodes[2].container, "bash", "-c"])
        .arg(format!(
            "end=$((SECONDS+40)); while [ $SECONDS -lt $end ]; do \
             PGCONNECT_TIMEOUT=5 psql -X -q -h {} -p 5435 -U app_user -d app_db -c 'INSERT INTO w DEFAULT VALUES' 2>/dev/null || echo failed; \
             done",
            lab.proxies[0].address
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let run = pgrepl(&lab, &["switchover", "--to", "pg1", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("endpoint proxy0: writes go to `pg1` now"),
        "{run:?}"
    );
    eprintln!(
        "switchover: pgrepl's write_unavailable_ms {}",
        run.json()["write_unavailable_ms"]
    );
    let wrote = ok(&through(&lab, 2, 5435, "SELECT inet_server_addr()"));
    assert_eq!(node_of(&lab, &wrote), "pg1");
    std::thread::sleep(Duration::from_secs(2));
    // Promotion (the new timeline, in pg1's log) to the first write through the port (its
    // clock_timestamp() on pg1): one clock, the containers share the host's.
    let promoted = String::from_utf8_lossy(
        &lab.exec(
            1,
            "grep -h 'selected new timeline ID' /var/log/postgresql/postgresql-15-main.log | tail -n1 | cut -c1-23",
        )
        .stdout,
    )
    .trim()
    .to_string();
    let ms = app_sql(
        &lab,
        1,
        &format!(
            "SELECT round(extract(epoch FROM min(at) - '{promoted} UTC'::timestamptz) * 1000) FROM w WHERE srv = '{pg1}'"
        ),
    );
    let before = app_sql(
        &lab,
        1,
        &format!("SELECT count(*) FROM w WHERE srv = '{pg0}'"),
    );
    let after = app_sql(
        &lab,
        1,
        &format!("SELECT count(*) FROM w WHERE srv = '{pg1}'"),
    );
    let _ = writer.wait_with_output().map(|out| {
        let failed = String::from_utf8_lossy(&out.stdout).matches("failed").count();
        eprintln!(
            "switchover through the write port: promotion at {promoted}, first write accepted on pg1 {ms} ms later; writes on pg0 {before}, on pg1 {after}, failed attempts {failed}"
        );
    });
    let ms: f64 = ms.parse().expect("a write reached pg1");
    assert!(ms < 10_000.0, "{ms} ms from promotion to the first write");
    assert_eq!(
        app_sql(
            &lab,
            1,
            &format!("SELECT count(*) FROM w WHERE srv = '{pg2}'")
        ),
        "0"
    );
    let verify = pgrepl(&lab, &["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(
        verify.stdout.contains("port 5435 reaches pg1, the primary"),
        "{verify:?}"
    );
}

#[test]
fn after_a_failover_no_write_through_the_endpoint_reaches_the_old_primary() {
    if !enabled() {
        return;
    }
    let lab = bootstrapped(
        "endpoints-failover",
        "bookworm",
        Some("wal_receiver_timeout: 5s"),
    );
    ok(&through(
        &lab,
        2,
        5435,
        "CREATE TABLE t (id int, srv inet DEFAULT inet_server_addr())",
    ));
    let kill = std::process::Command::new("docker")
        .args(["kill", &lab.nodes[0].container])
        .output()
        .unwrap();
    assert!(kill.status.success());
    assert!(lab.wait_for(Duration::from_secs(30), || {
        pgrepl(&lab, &["--connect-timeout", "2", "failover", "--check"])
            .stderr
            .contains("cannot reach")
    }));
    // With the primary gone, the replicas go on serving reads with what they received.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..4 {
        let addr = ok(&through(&lab, 2, 5436, "SELECT inet_server_addr()"));
        assert_ne!(node_of(&lab, &addr), "pg0");
    }
    let run = pgrepl(
        &lab,
        &["--connect-timeout", "2", "failover", "--old-primary-fenced"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("endpoint proxy0: writes go to `pg1` now"),
        "{run:?}"
    );
    assert_eq!(state(&lab, "pgrepl_write", "pg0"), "MAINT");

    // The old primary's host comes back and starts PostgreSQL writable: a split brain
    // the write port must never reach, although the write check would pass there.
    let start = std::process::Command::new("docker")
        .args(["start", &lab.nodes[0].container])
        .output()
        .unwrap();
    assert!(start.status.success());
    assert!(lab.wait_for(Duration::from_secs(60), || {
        lab.try_sql(0, "SELECT pg_is_in_recovery()")
            .stdout
            .starts_with(b"f")
    }));
    std::thread::sleep(Duration::from_secs(4));
    for i in 0..20 {
        let addr = ok(&through(
            &lab,
            2,
            5435,
            &format!("INSERT INTO t (id) VALUES ({i}) RETURNING srv"),
        ));
        assert_eq!(node_of(&lab, &addr), "pg1");
    }
    assert_eq!(
        app_sql(&lab, 0, "SELECT count(*) FROM t"),
        "0",
        "nothing reached pg0"
    );
    assert_eq!(state(&lab, "pgrepl_write", "pg0"), "MAINT");
    let status = pgrepl(&lab, &["status"]);
    assert_eq!(status.code, 2, "split brain: {status:?}");
    assert!(status.stdout.contains("ENDPOINT proxy0"), "{status:?}");

    // rejoin brings pg0 back as a replica; the endpoint takes it back into the read pool.
    let rejoin = pgrepl(&lab, &["rejoin", "pg0"]);
    assert_eq!(rejoin.code, 0, "{rejoin:?}");
    assert!(lab.wait_for(Duration::from_secs(15), || {
        state(&lab, "pgrepl_read", "pg0") == "UP"
    }));
    assert_eq!(state(&lab, "pgrepl_write", "pg0"), "MAINT");
    let verify = pgrepl(&lab, &["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");

    // remove-replica takes pg2 out of the endpoint's pools too.
    let removed = pgrepl(&lab, &["remove-replica", "pg2"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert!(
        pools(&lab).iter().all(|(_, server, _)| server != "pg2"),
        "{:?}",
        pools(&lab)
    );
    let addr = ok(&through(&lab, 0, 5436, "SELECT inet_server_addr()"));
    assert_eq!(node_of(&lab, &addr), "pg0");
}

#[test]
fn on_a_systemd_proxy_haproxy_is_its_unit_reloads_keep_sessions_and_bad_files_roll_back() {
    if !enabled() {
        return;
    }
    let lab = bootstrapped("endpoints-systemd", "bookworm-systemd", None);
    let unit = lab.exec_on(
        &lab.proxies[0],
        "systemctl is-enabled haproxy; systemctl is-active haproxy",
    );
    assert_eq!(String::from_utf8_lossy(&unit.stdout), "enabled\nactive\n");
    ok(&through(&lab, 2, 5435, "CREATE TABLE t (id int)"));
    assert!(lab.wait_for(Duration::from_secs(10), || {
        through(&lab, 2, 5436, "SELECT count(*) FROM t")
            .status
            .success()
    }));
    reload_keeps_a_session(&lab);
    let unit = lab.exec_on(&lab.proxies[0], "systemctl is-active haproxy");
    assert_eq!(String::from_utf8_lossy(&unit.stdout), "active\n");

    // A file haproxy -c rejects never replaces the running one.
    let digest = || {
        let out = lab.exec_on(&lab.proxies[0], "md5sum < /etc/haproxy/haproxy.cfg");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let before = digest();
    let templates = lab.dir.join("broken-templates");
    std::fs::create_dir_all(&templates).unwrap();
    let default = include_str!("../../templates/haproxy.cfg.j2");
    std::fs::write(
        templates.join("haproxy.cfg.j2"),
        format!("{default}\nlisten broken\n    no-such-keyword here\n"),
    )
    .unwrap();
    let broken = pgrepl(
        &lab,
        &["--templates", templates.to_str().unwrap(), "endpoints"],
    );
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(
        broken
            .stdout
            .contains("haproxy rejects the rendered config"),
        "{broken:?}"
    );
    assert_eq!(digest(), before, "the running file is unchanged");
    // A file haproxy -c accepts but cannot run (the stats page on sshd's port): the
    // previous file goes back and haproxy goes on with it.
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    std::fs::write(
        lab.inventory(),
        inventory.replace("stats_port: 8404", "stats_port: 22"),
    )
    .unwrap();
    let taken = pgrepl(&lab, &["endpoints"]);
    assert_eq!(taken.code, 2, "{taken:?}");
    assert!(
        format!("{taken:?}").contains("the previous one is back"),
        "{taken:?}"
    );
    assert_eq!(digest(), before, "the previous file is back");
    let unit = lab.exec_on(&lab.proxies[0], "systemctl is-active haproxy");
    assert_eq!(String::from_utf8_lossy(&unit.stdout), "active\n");
    assert_eq!(ok(&through(&lab, 2, 5436, "SELECT count(*) FROM t")), "0");
    std::fs::write(lab.inventory(), inventory).unwrap();
    let verify = pgrepl(&lab, &["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}
