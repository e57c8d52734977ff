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
