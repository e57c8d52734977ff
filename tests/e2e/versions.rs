//! The version probe that preflight can run: what a real host reports, and the message an
//! inventory that names another major gets.

use pgrepl::pg::versions::{Expected, PROBE_SCRIPT, check, parse_probe};

use crate::support::{Lab, enabled};

fn probe(lab: &Lab) -> pgrepl::pg::versions::HostVersions {
    let out = lab.exec(0, PROBE_SCRIPT);
    assert!(out.status.success(), "{out:?}");
    parse_probe(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn the_version_probe_finds_installed_majors_and_running_clusters() {
    if !enabled() {
        return;
    }
    for (layout, data_dir) in [
        ("debian", "/var/lib/postgresql/15/main"),
        ("pgctl", "/var/lib/pgsql/15/data"),
    ] {
        let lab = Lab::up(&format!("versions-{layout}"), 1, "bookworm", layout);
        let facts = probe(&lab);
        assert!(
            facts
                .installed
                .iter()
                .any(|i| i.major == 15 && i.bin_dir == "/usr/lib/postgresql/15/bin"),
            "{layout}: {facts:?}"
        );
        assert_eq!(facts.running.len(), 1, "{layout}: {facts:?}");
        let r = &facts.running[0];
        assert_eq!((r.major, r.port, r.data_dir.as_str()), (15, 5432, data_dir));

        let same = Expected {
            host: "pg0",
            version: 15,
            port: 5432,
            data_dir,
        };
        assert_eq!(check(same, &facts), None, "{layout}");
        let other = Expected {
            version: 16,
            data_dir: "/var/lib/postgresql/16/main",
            ..same
        };
        let m = check(other, &facts).expect("a mismatch");
        assert_eq!(
            m.message,
            format!(
                "host pg0 runs PostgreSQL 15 (data dir {data_dir}, port 5432), the inventory says 16; pg_basebackup needs one major version on every host"
            )
        );
    }
}

/// Preflight runs the probe: an inventory naming a major the hosts do not run gets one
/// message per host saying what runs there (data dir, port), not "no server binaries" and
/// "not running on the primary", and the run changes nothing on any host.
#[test]
fn preflight_names_the_major_a_host_runs_and_changes_nothing() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("versions-preflight", 2, "bookworm", "debian");
    let snapshot = || lab.snapshot("SELECT count(*) FROM pg_roles WHERE rolname = 'replicator'");
    let before = snapshot();
    let good = std::fs::read_to_string(lab.inventory()).unwrap();
    let runs: [(&str, &[&str]); 2] = [("16", &["bootstrap"]), ("17", &["bootstrap", "--check"])];
    for (wrong, args) in runs {
        std::fs::write(
            lab.inventory(),
            good.replace("  version: 15\n", &format!("  version: {wrong}\n")),
        )
        .unwrap();
        let run = lab.pgrepl(args);
        assert_eq!(run.code, 2, "{wrong}: {run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        for node in ["pg0", "pg1"] {
            assert!(
                all.contains(&format!(
                    "host {node} runs PostgreSQL 15 (data dir /var/lib/postgresql/15/main, port 5432), the inventory says {wrong}; pg_basebackup needs one major version on every host"
                )),
                "{wrong}: {node} not named with what it runs: {run:?}"
            );
        }
        assert!(
            all.contains("set `postgres.version: 15`"),
            "{wrong}: no hint: {run:?}"
        );
        for misleading in [
            "no PostgreSQL server binaries",
            "not running on the primary",
        ] {
            assert!(
                !all.contains(misleading),
                "{wrong}: says `{misleading}`: {run:?}"
            );
        }
        assert_eq!(snapshot(), before, "{wrong}: a host was changed");
    }
    // The right major from another data dir than the inventory's: named, not "not running".
    std::fs::write(
        lab.inventory(),
        good.replace(
            "  version: 15\n",
            "  version: 15\n  data_dir: /srv/pgdata\n",
        ),
    )
    .unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 2, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("host pg0 runs PostgreSQL 15 on port 5432 from data dir /var/lib/postgresql/15/main, not from /srv/pgdata as the inventory says")
            && all.contains("`postgres.data_dir: /var/lib/postgresql/15/main`"),
        "{run:?}"
    );
    assert!(!all.contains("not running on the primary"), "{run:?}");
    assert_eq!(snapshot(), before, "a host was changed");
    // The right version goes through (the wiring does not refuse a good inventory).
    std::fs::write(lab.inventory(), &good).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
}

/// A replica whose major differs from the primary's (a bookworm node running 15 and a
/// trixie node running 17, from two labs in one inventory): preflight names the replica and
/// what runs there, whether the inventory says 15 for it or 17, and changes nothing.
#[test]
fn preflight_names_a_replica_on_another_major_than_the_primary() {
    if !enabled() {
        return;
    }
    let a = Lab::up("versions-mixed-15", 1, "bookworm", "debian");
    let b = Lab::up("versions-mixed-17", 1, "trixie", "debian");
    let good = std::fs::read_to_string(a.inventory()).unwrap();
    let replica = |postgres: &str| {
        format!(
            "  - {{ name: pg1, address: {}, role: replica, {postgres}ssh: {{ identity_file: {}, known_hosts: {} }} }}\n",
            b.nodes[0].address,
            b.dir.join("id_ed25519").display(),
            b.dir.join("known_hosts").display()
        )
    };
    let watched = |lab: &Lab, conf: &str| {
        let out = lab.exec(0, &format!("ls -A {conf}; md5sum {conf}/* 2>/dev/null"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            lab.sql(0, "SELECT pg_postmaster_start_time()")
        )
    };
    let before = (
        a.snapshot("SELECT count(*) FROM pg_roles WHERE rolname = 'replicator'"),
        watched(&b, "/etc/postgresql/17/main/conf.d"),
    );
    for (postgres, says) in [
        (
            "",
            "host pg1 runs PostgreSQL 17 (data dir /var/lib/postgresql/17/main, port 5432), the inventory says 15; pg_basebackup needs one major version on every host",
        ),
        (
            "postgres: { version: 17 }, ",
            "the hosts run different PostgreSQL majors (15 on pg0; 17 on pg1); pg_basebackup needs one major version on every host",
        ),
    ] {
        std::fs::write(a.inventory(), format!("{good}{}", replica(postgres))).unwrap();
        let run = a.pgrepl(&["bootstrap"]);
        assert_eq!(run.code, 2, "{postgres}: {run:?}");
        assert!(run.stdout.contains(says), "{postgres}: {run:?}");
        assert!(
            !run.stdout.contains("no PostgreSQL server binaries"),
            "{postgres}: {run:?}"
        );
        assert_eq!(
            (
                a.snapshot("SELECT count(*) FROM pg_roles WHERE rolname = 'replicator'"),
                watched(&b, "/etc/postgresql/17/main/conf.d"),
            ),
            before,
            "{postgres}: a host was changed"
        );
    }
}
