//! `pgrepl add-replica`: grow a running cluster while a client writes, disturbing nothing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{Lab, enabled};

#[test]
fn add_replica_under_write_load_without_disruption() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("addrep", 3, "bookworm", "debian");
    // Start from 1+1: the inventory without pg2.
    let full = std::fs::read_to_string(lab.inventory()).unwrap();
    let pg2_line = full
        .lines()
        .find(|l| l.contains("name: pg2"))
        .unwrap()
        .to_string();
    std::fs::write(lab.inventory(), full.replace(&format!("{pg2_line}\n"), "")).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Refusals change nothing: the primary, an unknown name, a healthy replica.
    assert_eq!(lab.pgrepl(&["add-replica", "pg0"]).code, 64);
    let unknown = lab.pgrepl(&["add-replica", "pg9"]);
    assert!(
        unknown.code == 64 && unknown.stderr.contains("--address"),
        "{unknown:?}"
    );
    let healthy = lab.pgrepl(&["add-replica", "pg1"]);
    assert!(
        healthy.code == 2 && healthy.stderr.contains("already a healthy replica"),
        "{healthy:?}"
    );

    lab.sql(
        0,
        "CREATE TABLE load (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    let primary_start = lab.sql(0, "SELECT pg_postmaster_start_time()");
    let replica_start = lab.sql(1, "SELECT pg_postmaster_start_time()");

    // A client writing a row every few milliseconds, and a watcher of pg1's stream.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let container = lab.nodes[0].container.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut child = Command::new("docker")
                .args([
                    "exec",
                    "-i",
                    "-u",
                    "postgres",
                    &container,
                    "psql",
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    "postgres",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut sent = 0usize;
            while !stop.load(Ordering::SeqCst) {
                use std::io::Write;
                if writeln!(stdin, "INSERT INTO load DEFAULT VALUES;").is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            (
                sent,
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let gaps = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let container = lab.nodes[0].container.clone();
        let (stop, gaps) = (stop.clone(), gaps.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new("docker")
                    .args(["exec", "-u", "postgres", &container, "psql", "-Atc", "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg1' AND state = 'streaming'"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).trim() != "1" {
                    gaps.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let add = lab.pgrepl(&[
        "add-replica",
        "pg2",
        "--address",
        &lab.nodes[2].address,
        "--format",
        "json",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (sent, writer_ok, writer_err) = writer.join().unwrap();
    watcher.join().unwrap();

    assert_eq!(add.code, 0, "{add:?}");
    assert!(
        std::fs::read_to_string(lab.inventory())
            .unwrap()
            .contains("name: pg2"),
        "the inventory gained pg2"
    );
    assert!(
        writer_ok && writer_err.is_empty(),
        "a write failed: {writer_err}"
    );
    assert!(sent > 100, "the client wrote only {sent} rows");
    assert_eq!(
        lab.sql(0, "SELECT count(*) FROM load"),
        sent.to_string(),
        "every write committed"
    );
    assert_eq!(
        lab.sql(0, "SELECT pg_postmaster_start_time()"),
        primary_start,
        "the primary restarted"
    );
    assert_eq!(
        lab.sql(1, "SELECT pg_postmaster_start_time()"),
        replica_start,
        "pg1 was touched"
    );
    assert_eq!(
        gaps.load(Ordering::SeqCst),
        0,
        "pg1 stopped streaming during add-replica"
    );
    let caught_up = lab.wait_for(Duration::from_secs(10), || {
        lab.try_sql(2, "SELECT count(*) FROM load").stdout == format!("{sent}\n").into_bytes()
    });
    assert!(caught_up, "pg2 did not catch up");
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}
