//! A replication password that SASLprep changes (a no-break space, a non-ASCII letter):
//! pgrepl must store the verifier libpq computes, or no replica can log in.

use std::time::Duration;

use crate::support::{Lab, enabled, pgrepl_with};

const VAR: &str = "PGREPL_E2E_NON_ASCII_PASSWORD";
const PASSWORD: &str = "pass\u{a0}wörd";

/// Regression: the verifier skipped SASLprep, so `pass\u{a0}wörd` was stored as its raw
/// bytes while libpq logs in with `pass wörd`: the replication login failed.
#[test]
fn bootstrap_streams_with_a_non_ascii_replication_password() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("saslprep", 2, "bookworm", "debian");
    let inv = std::fs::read_to_string(lab.inventory()).unwrap().replace(
        "password_file: replication-password",
        &format!("password_env: {VAR}"),
    );
    std::fs::write(lab.inventory(), inv).unwrap();
    let env = [(VAR, PASSWORD)];

    let run = pgrepl_with(&lab.inventory(), &["bootstrap", "--format", "json"], &env);
    assert_eq!(run.code, 0, "{run:?}");
    let streaming = lab.wait_for(Duration::from_secs(10), || {
        lab.try_sql(
            0,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg1' AND state = 'streaming'",
        )
        .stdout
        .starts_with(b"1")
    });
    assert!(streaming, "pg1 does not stream from pg0");

    // The stored verifier is the one for the SASLprep'd form, as PostgreSQL computes it.
    let stored = lab.sql(
        0,
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'",
    );
    assert!(pgrepl::pg::scram::matches(&stored, "pass wörd"), "{stored}");

    // A re-run recognises the role's password as current: nothing changes.
    let again = pgrepl_with(&lab.inventory(), &["bootstrap", "--format", "json"], &env);
    assert_eq!(again.code, 0, "{again:?}");
    for h in again.json()["hosts"].as_array().unwrap() {
        assert_eq!(h["changed"], 0, "{}: {again:?}", h["name"]);
    }
}
