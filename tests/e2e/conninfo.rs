//! primary_conninfo with a value that needs libpq quoting: the postgres user's home (where
//! the passfile lives) has a space and a quote in it.

use std::time::Duration;

use crate::support::{Lab, enabled};

/// Regression: primary_conninfo was `passfile=/srv/pg o'home/.pgrepl_pgpass` unquoted, so
/// libpq read `passfile=/srv/pg` and stumbled on `o'home/...`.
#[test]
fn a_passfile_path_with_a_space_and_a_quote_is_quoted_in_primary_conninfo() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("conninfo", 2, "bookworm", "debian");
    let home = "/srv/pg o'home";
    let setup = lab.exec(
        1,
        &format!(
            "set -e; mkdir -p \"{home}\"; chown postgres:postgres \"{home}\"; chmod 700 \"{home}\"; usermod -d \"{home}\" postgres; getent passwd postgres"
        ),
    );
    assert!(setup.status.success(), "{setup:?}");
    assert!(String::from_utf8_lossy(&setup.stdout).contains(home));

    let run = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let conninfo = lab.sql(1, "SHOW primary_conninfo");
    assert!(
        conninfo.contains(r"passfile='/srv/pg o\'home/.pgrepl_pgpass'"),
        "{conninfo}"
    );
    let streaming = lab.wait_for(Duration::from_secs(10), || {
        lab.try_sql(
            0,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg1' AND state = 'streaming'",
        )
        .stdout
        .starts_with(b"1")
    });
    assert!(streaming, "pg1 does not stream from pg0");

    let again = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    for h in again.json()["hosts"].as_array().unwrap() {
        assert_eq!(h["changed"], 0, "{}: {again:?}", h["name"]);
    }
}
