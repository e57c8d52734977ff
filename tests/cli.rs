//! The command line without any host: help, exit codes for bad input, completions, plans.

use std::process::Command;

fn pgrepl(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrepl"));
    cmd.args(args)
        .env("PGREPL_REPLICATION_PASSWORD", "example")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    outcome(cmd)
}

/// Runs the command: its exit code, stdout and stderr.
fn outcome(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("run pgrepl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_explains_itself_with_an_example() {
    for cmd in [
        "bootstrap",
        "add-replica",
        "verify",
        "plan",
        "completions",
        "cleanup",
    ] {
        let (code, out, _) = pgrepl(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}");
        assert!(
            out.contains("Example"),
            "`pgrepl {cmd} --help` has no example:\n{out}"
        );
    }
    let (code, out, _) = pgrepl(&["--help"]);
    assert_eq!(code, 0);
    for needle in ["Exit codes", "64 invalid input", "--inventory", "--format"] {
        assert!(
            out.contains(needle),
            "top-level help lacks {needle}:\n{out}"
        );
    }
}

#[test]
fn bad_flags_and_bad_inventories_exit_64_naming_the_problem() {
    let (code, _, err) = pgrepl(&["bootstrap", "--no-such-flag"]);
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = pgrepl(&["-i", "/nonexistent/inventory.yaml", "plan", "bootstrap"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("/nonexistent/inventory.yaml") && err.contains("hint:"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yaml");
    std::fs::write(&inv, "replication: { password_env: PGREPL_REPLICATION_PASSWORD }\nhosts:\n  - { name: a, address: 10.0.0.1, role: primary }\n  - { name: b, address: 10.0.0.1, role: replica, slot: Bad-Slot }\n").unwrap();
    let (code, _, err) = pgrepl(&["-i", inv.to_str().unwrap(), "bootstrap"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("inv.yaml:4:") && err.contains("duplicate address") && err.contains("slot"),
        "{err}"
    );
    let (code, _, err) = pgrepl(&["plan", "add-replica"]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn plans_print_without_contacting_hosts_as_text_or_json() {
    let (code, out, err) = pgrepl(&["-i", "examples/cloud.yaml", "plan", "bootstrap"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("clone replica") && out.contains("base backup [base_backup]"),
        "{out}"
    );
    let (code, out, _) = pgrepl(&[
        "-i",
        "examples/cloud.yaml",
        "--format",
        "json",
        "plan",
        "bootstrap",
    ]);
    assert_eq!(code, 0);
    let plan: serde_json::Value = serde_json::from_str(&out).expect("JSON plan");
    assert_eq!(plan["command"], "bootstrap");
    assert!(plan["steps"].as_array().is_some_and(|s| s.len() > 5));
    // Hosts by name, actions as playbooks write them.
    let step = |name: &str| {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {out}"))
            .clone()
    };
    assert_eq!(step("primary settings")["hosts"][0], "master-0", "{out}");
    assert_eq!(step("primary settings")["action"], "config", "{out}");
    assert_eq!(
        step("primary settings")["params"]["template"],
        "primary.conf.j2",
        "{out}"
    );
    assert_eq!(
        step("clone replica")["block"][4]["action"],
        "base_backup",
        "{out}"
    );
    let (_, all, _) = pgrepl(&["-i", "examples/cloud.yaml", "plan", "bootstrap"]);
    let (code, limited, _) = pgrepl(&[
        "-i",
        "examples/cloud.yaml",
        "--limit",
        "master-0",
        "plan",
        "bootstrap",
    ]);
    assert_eq!(code, 0);
    assert!(
        limited.len() < all.len() && !limited.contains("replica-az"),
        "{limited}"
    );
}

#[test]
fn completions_and_version() {
    let (code, out, _) = pgrepl(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("pgrepl") && out.contains("add-replica"));
    let (code, out, _) = pgrepl(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pgrepl "));
}

#[test]
fn remove_replica_refuses_the_primary_and_plans_without_contacting_any_host() {
    let (code, _, err) = pgrepl(&["remove-replica", "pg0"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("`pg0` is the primary"), "{err}");
    let (code, out, err) = pgrepl(&["plan", "remove-replica", "pg2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("take the replica out on pg2") && out.contains("[drop_removed_slot] on pg0"),
        "{out}"
    );
    // A host already gone: only its leftovers on the primary are looked for.
    let (code, out, _) = pgrepl(&["plan", "remove-replica", "pg9"]);
    assert_eq!(code, 0);
    assert!(out.contains("no longer in the inventory"), "{out}");
    let (code, _, err) = pgrepl(&["--limit", "pg1", "remove-replica", "pg2"]);
    assert_eq!(code, 64, "{err}");
    // A synchronous standby the inventory names: it must leave replication.synchronous first.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yaml");
    std::fs::write(&inv, "replication: { password_env: PGREPL_REPLICATION_PASSWORD, synchronous: { count: 1, standbys: [b] } }\nhosts:\n  - { name: a, address: 10.0.0.1, role: primary }\n  - { name: b, address: 10.0.0.2, role: replica }\n  - { name: c, address: 10.0.0.3, role: replica }\n").unwrap();
    let (code, _, err) = pgrepl(&["-i", inv.to_str().unwrap(), "remove-replica", "b"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("without `b`") && err.contains("one of the synchronous standbys"),
        "{err}"
    );
}

/// Runs pgrepl with the replication password's variable unset.
fn pgrepl_without_password(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrepl"));
    cmd.args(args)
        .env_remove("PGREPL_TEST_UNSET_PASSWORD")
        .env("NO_COLOR", "1");
    outcome(cmd)
}

#[test]
fn verify_status_and_plan_run_without_the_replication_password() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yaml");
    // Nothing listens on port 1 of loopback: every host is unreachable, at once.
    std::fs::write(
        &inv,
        format!(
            "replication: {{ password_env: PGREPL_TEST_UNSET_PASSWORD }}\nssh: {{ port: 1, known_hosts: {} }}\nhosts:\n  - {{ name: a, address: 127.0.0.1, role: primary }}\n  - {{ name: b, address: 127.0.0.2, role: replica }}\n",
            dir.path().join("known_hosts").display()
        ),
    )
    .unwrap();
    let inv = inv.to_str().unwrap();
    for cmd in ["verify", "status"] {
        let (code, out, err) = pgrepl_without_password(&["-i", inv, "--connect-timeout", "2", cmd]);
        // Exit by health (2: nothing reachable), not 64 for a missing password.
        assert_eq!(code, 2, "{cmd}:\n{out}\n{err}");
        assert!(
            !err.contains("PGREPL_TEST_UNSET_PASSWORD") && !out.contains("password"),
            "{cmd} asked for the password:\n{out}\n{err}"
        );
    }
    let (code, _, err) = pgrepl_without_password(&["-i", inv, "plan", "bootstrap"]);
    assert_eq!(code, 0, "{err}");
    // A command that writes the password still refuses at once, naming the variable.
    for args in [&["bootstrap"][..], &["add-replica", "b"], &["rejoin", "b"]] {
        let mut all = vec!["-i", inv, "--connect-timeout", "2"];
        all.extend_from_slice(args);
        let (code, _, err) = pgrepl_without_password(&all);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(
            err.contains("PGREPL_TEST_UNSET_PASSWORD") && err.contains("inv.yaml:1:"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_recap_total_counts_the_time_spent_connecting() {
    // A listener that never speaks SSH: the connection waits the whole --connect-timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yaml");
    std::fs::write(
        &inv,
        format!(
            "replication: {{ password_env: PGREPL_REPLICATION_PASSWORD }}\nssh: {{ port: {port}, known_hosts: {} }}\nhosts:\n  - {{ name: a, address: 127.0.0.1, role: primary }}\n",
            dir.path().join("known_hosts").display()
        ),
    )
    .unwrap();
    let (code, out, err) = pgrepl(&[
        "-i",
        inv.to_str().unwrap(),
        "--connect-timeout",
        "2",
        "bootstrap",
    ]);
    assert_eq!(code, 2, "{out}\n{err}");
    let total: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("FAILED in "))
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no total in the recap:\n{out}"));
    assert!(
        total >= 2.0,
        "the total leaves out the 2 s connect timeout: {total}\n{out}"
    );
    drop(silent);
}

/// Whether `--help` output lists `flag` as an option (not merely mentions it in a text).
fn lists(help: &str, flag: &str) -> bool {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .any(|l| {
            l.split([' ', ',', '='])
                .any(|w| w.trim_end_matches("...") == flag)
        })
}

#[test]
fn each_command_help_lists_only_the_options_it_takes() {
    // (command, options it must list, options it must not list)
    let ssh = [
        "--ssh-config",
        "--accept-new-host-keys",
        "--connect-timeout",
        "--ssh-keepalive",
    ];
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["completions"],
            &[],
            &[
                "--inventory",
                "--format",
                "--verbose",
                "--log-file",
                "--break-lock",
                "--forks",
                "--limit",
                "--playbooks",
                "--templates",
                "--ssh-config",
                "--connect-timeout",
            ],
        ),
        (
            &["plan"],
            &[
                "--inventory",
                "--format",
                "--limit",
                "--playbooks",
                "--templates",
            ],
            &[
                "--break-lock",
                "--forks",
                "--verbose",
                "--log-file",
                "--ssh-config",
                "--accept-new-host-keys",
                "--connect-timeout",
                "--ssh-keepalive",
            ],
        ),
        (
            &["status"],
            &["--inventory", "--format", "--verbose", "--log-file"],
            &[
                "--break-lock",
                "--forks",
                "--limit",
                "--playbooks",
                "--check",
            ],
        ),
        (
            &["verify"],
            &[
                "--inventory",
                "--forks",
                "--limit",
                "--playbooks",
                "--probe-database",
                "--probe-timeout",
            ],
            &["--break-lock", "--check"],
        ),
        (
            &["bootstrap"],
            &[
                "--inventory",
                "--break-lock",
                "--forks",
                "--limit",
                "--templates",
                "--check",
                "--diff",
                "--probe-database",
            ],
            &[],
        ),
        (
            &["remove-replica"],
            &["--break-lock", "--wipe", "--probe-database"],
            &["--limit"],
        ),
        (
            &["sync"],
            &["--break-lock", "--check"],
            &["--probe-database", "--max-lag-bytes"],
        ),
        (
            &["cleanup"],
            &["--break-lock", "--limit", "--check", "--probe-database"],
            &["--forks", "--playbooks", "--templates", "--diff"],
        ),
    ];
    for (cmd, wanted, unwanted) in cases {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, err) = pgrepl(&args);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        let contacts = !matches!(cmd[0], "completions" | "plan");
        for flag in wanted.iter().chain(if contacts { &ssh[..] } else { &[] }) {
            assert!(
                lists(&out, flag),
                "`pgrepl {} --help` lacks {flag}:\n{out}",
                cmd[0]
            );
        }
        for flag in *unwanted {
            assert!(
                !lists(&out, flag),
                "`pgrepl {} --help` lists {flag}, which does nothing there:\n{out}",
                cmd[0]
            );
        }
    }
    // The top level lists every option (each goes before the command too).
    let (_, top, _) = pgrepl(&["--help"]);
    for flag in [
        "--break-lock",
        "--forks",
        "--limit",
        "--ssh-config",
        "--templates",
    ] {
        assert!(lists(&top, flag), "top-level help lacks {flag}:\n{top}");
    }
}

#[test]
fn options_work_before_and_after_the_command_and_only_where_they_apply() {
    // Before and after the command, the same result.
    let inv = ["-i", "examples/cloud.yaml"];
    for (before, after) in [
        (
            vec![inv[0], inv[1], "plan", "bootstrap"],
            vec!["plan", "bootstrap", inv[0], inv[1]],
        ),
        (
            vec![
                inv[0],
                inv[1],
                "--format",
                "json",
                "--limit",
                "master-0",
                "plan",
                "bootstrap",
            ],
            vec![
                "plan",
                "bootstrap",
                "--format=json",
                "--limit",
                "master-0",
                inv[0],
                inv[1],
            ],
        ),
    ] {
        let (code, first, err) = pgrepl(&before);
        assert_eq!(code, 0, "{before:?}: {err}");
        let (code, second, err) = pgrepl(&after);
        assert_eq!(code, 0, "{after:?}: {err}");
        assert_eq!(first, second, "{before:?} and {after:?} differ");
    }
    let (_, json, _) = pgrepl(&[
        "plan",
        "bootstrap",
        "--format",
        "json",
        "--limit",
        "master-0",
        "-i",
        inv[1],
    ]);
    let plan: serde_json::Value = serde_json::from_str(&json).expect("JSON plan");
    assert!(!json.contains("replica-az"), "--limit after plan: {plan}");
    // A value reaches the settings from either side: --forks 0 is refused both ways.
    for args in [
        &["--forks", "0", "bootstrap"][..],
        &["bootstrap", "--forks", "0"],
    ] {
        let (code, _, err) = pgrepl(args);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(
            err.contains("--forks 0 would run nothing"),
            "{args:?}: {err}"
        );
    }
    // An option a command does not take is a usage error, before or after it.
    for (args, flag, command) in [
        (
            &["--break-lock", "completions", "bash"][..],
            "--break-lock",
            "completions",
        ),
        (
            &["completions", "bash", "--break-lock"],
            "--break-lock",
            "completions",
        ),
        (
            &["plan", "bootstrap", "--connect-timeout", "2"],
            "--connect-timeout",
            "plan",
        ),
        (&["verify", "--break-lock"], "--break-lock", "verify"),
        (
            &["remove-replica", "pg2", "--limit=pg1"],
            "--limit",
            "remove-replica",
        ),
        (&["plan", "bootstrap", "-v"], "-v", "plan"),
        (
            &["-i", "inventory.yaml", "completions", "bash"],
            "--inventory",
            "completions",
        ),
        (
            &["--ssh-config", "x", "plan", "bootstrap"],
            "--ssh-config",
            "plan",
        ),
        (&["--break-lock", "verify"], "--break-lock", "verify"),
        (
            &["--limit", "pg1", "remove-replica", "pg2"],
            "--limit",
            "remove-replica",
        ),
        (&["--forks", "2", "status"], "--forks", "status"),
    ] {
        let (code, out, err) = pgrepl(args);
        assert_eq!(code, 64, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("{flag} does not apply to `pgrepl {command}`"))
                && err.contains(&format!("pgrepl {command} --help")),
            "{args:?}: {err}"
        );
    }
    // An option of no command at all stays clap's own error.
    let (code, _, err) = pgrepl(&["verify", "--no-such-option"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("unexpected argument '--no-such-option'"),
        "{err}"
    );
}
