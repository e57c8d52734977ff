//! One test per validation rule, each asserting the line and field the user is shown.

use std::path::Path;

use super::{Error, Problem, parse};

const GOOD: &str = r#"
postgres: { version: 15, layout: debian, port: 5432 }
replication:
  user: replicator
  password: s3cret
  settings: { wal_keep_size: 1GB, hot_standby_feedback: true }
hba:
  - { type: host, database: all, user: app_user, address: 10.0.1.0/24, method: scram-sha-256 }
ssh: { user: ubuntu, port: 22 }
hosts:
  - { name: master-0, address: 10.0.1.10, role: primary }
  - { name: replica-az-a-0, address: 10.0.1.20, role: replica, labels: { az: a } }
  - { name: replica-az-b-0, address: 10.0.2.20, role: replica, slot: custom_slot }
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("inv.yaml"), text) {
        Err(Error::Invalid { problems, .. }) => problems,
        Err(other) => panic!("expected validation problems, got {other}"),
        Ok(_) => panic!("expected validation problems, got a valid inventory"),
    }
}

fn one_problem(text: &str, field_part: &str) -> Problem {
    let all = problems(text);
    let found: Vec<_> = all
        .iter()
        .filter(|p| p.field.contains(field_part))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one problem on {field_part}, got {all:#?}"
    );
    found[0].clone()
}

#[test]
fn good_inventory_resolves_defaults() {
    let inv = parse(Path::new("/srv/inv.yaml"), GOOD).expect("valid");
    assert_eq!(inv.hosts.len(), 3);
    let r = &inv.hosts[1];
    assert_eq!(r.slot.as_deref(), Some("replica_az_a_0"));
    assert_eq!(r.pg.data_dir, "/var/lib/postgresql/15/main");
    assert_eq!(r.pg.config_dir, "/etc/postgresql/15/main");
    assert_eq!(
        r.pg.include_dir.as_deref(),
        Some("/etc/postgresql/15/main/conf.d")
    );
    assert_eq!(inv.hosts[2].slot.as_deref(), Some("custom_slot"));
    assert_eq!(inv.replication.settings["wal_keep_size"], "'1GB'");
    assert_eq!(inv.replication.settings["hot_standby_feedback"], "on");
    assert_eq!(inv.hba[0].user, "app_user");
}

#[test]
fn rhel_layout_keeps_config_in_data_dir() {
    let text = GOOD.replace("layout: debian", "layout: rhel");
    let inv = parse(Path::new("inv.yaml"), &text).expect("valid");
    assert_eq!(inv.hosts[0].pg.data_dir, "/var/lib/pgsql/15/data");
    assert_eq!(inv.hosts[0].pg.config_dir, "/var/lib/pgsql/15/data");
    assert_eq!(inv.hosts[0].pg.include_dir, None);
}

#[test]
fn no_primary_is_rejected() {
    let text = GOOD.replace("role: primary", "role: replica");
    assert_eq!(
        one_problem(&text, "hosts").message,
        "no host has `role: primary`"
    );
}

#[test]
fn two_primaries_are_rejected_at_the_second() {
    let text = GOOD.replace(
        "address: 10.0.2.20, role: replica",
        "address: 10.0.2.20, role: primary",
    );
    let p = one_problem(&text, "role");
    assert_eq!(p.line, 13);
}

#[test]
fn duplicate_names_addresses_and_slots_are_rejected() {
    let text = GOOD.replace(
        "replica-az-b-0, address: 10.0.2.20",
        "replica-az-a-0, address: 10.0.1.20",
    );
    let all = problems(&text);
    assert!(
        all.iter()
            .any(|p| p.message.starts_with("duplicate host name")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|p| p.message.starts_with("duplicate address")),
        "{all:#?}"
    );
    let text = GOOD.replace("slot: custom_slot", "slot: replica_az_a_0");
    assert!(
        one_problem(&text, "slot")
            .message
            .starts_with("duplicate slot")
    );
}

#[test]
fn invalid_slot_names_are_rejected() {
    for bad in ["Upper", "has-dash", &"x".repeat(64)] {
        let text = GOOD.replace("custom_slot", bad);
        let p = one_problem(&text, "slot");
        assert_eq!(p.line, 13, "{bad}");
        assert!(p.hint.contains("lowercase"));
    }
}

#[test]
fn invalid_addresses_and_cidrs_are_rejected() {
    let text = GOOD.replace("10.0.2.20", "10.0.2.300");
    assert!(
        one_problem(&text, "address")
            .message
            .contains("neither an IP")
    );
    let text = GOOD.replace("10.0.1.0/24", "10.0.1.0/33");
    assert!(
        one_problem(&text, "hba[].address")
            .message
            .contains("not a valid CIDR")
    );
    let text = GOOD.replace("10.0.1.0/24", "10.0.1.0");
    assert_eq!(one_problem(&text, "hba[].address").line, 8);
}

#[test]
fn invalid_ports_versions_and_methods_are_rejected() {
    let text = GOOD.replace("version: 15", "version: 9");
    assert!(
        one_problem(&text, "version")
            .message
            .contains("not supported")
    );
    let text = GOOD.replace("port: 5432", "port: 0");
    assert_eq!(one_problem(&text, "postgres.port").line, 2);
    let text = GOOD.replace("port: 5432", "port: 70000");
    assert!(matches!(
        parse(Path::new("i.yaml"), &text),
        Err(Error::Syntax { line: 2, .. })
    ));
    let text = GOOD.replace("method: scram-sha-256", "method: scram");
    assert!(one_problem(&text, "method").hint.contains("scram-sha-256"));
}

#[test]
fn unknown_fields_are_rejected_with_line_and_column() {
    let text = GOOD.replace("role: primary", "role: primary, colour: blue");
    match parse(Path::new("i.yaml"), &text) {
        Err(Error::Syntax { line, message, .. }) => {
            assert_eq!(line, 11);
            assert!(message.contains("colour"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

/// The problem a command that needs the password is shown; the inventory itself loads.
fn password_problem(text: &str) -> Problem {
    let inventory = parse(Path::new("inv.yaml"), text).expect("loads without a password");
    match inventory.require_password() {
        Err(Error::Invalid { problems, .. }) if problems.len() == 1 => problems[0].clone(),
        Err(other) => panic!("expected one password problem, got {other}"),
        Ok(_) => panic!("expected no password"),
    }
}

#[test]
fn password_sources_are_checked_only_when_a_command_needs_the_password() {
    let text = GOOD.replace(
        "password: s3cret",
        "password_env: PGREPL_TEST_UNSET_VARIABLE_X",
    );
    let p = password_problem(&text);
    assert!(p.field.contains("password_env") && p.message.contains("not set"));
    assert_eq!(p.line, 5);
    let text = GOOD.replace("password: s3cret", "password_file: /nonexistent/pw");
    let p = password_problem(&text);
    assert!(p.field.contains("password_file") && p.message.contains("cannot read"));
    let text = GOOD.replace("  password: s3cret\n", "");
    assert!(
        password_problem(&text)
            .message
            .contains("no replication password")
    );
    let good = parse(Path::new("inv.yaml"), GOOD).unwrap();
    assert!(good.require_password().is_ok());
    let text = GOOD.replace("password: s3cret", "password: a\n  password_env: HOME");
    assert!(
        one_problem(&text, "replication")
            .message
            .contains("more than one")
    );
}

#[test]
fn custom_layout_needs_paths() {
    let text = GOOD.replace("layout: debian", "layout: custom");
    let all = problems(&text);
    assert_eq!(
        all.iter().filter(|p| p.field.ends_with("data_dir")).count(),
        3,
        "{all:#?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("10.0.2.20", "bad..host")
        .replace("custom_slot", "Bad");
    assert_eq!(problems(&text).len(), 2);
}

#[test]
fn backup_rate_must_be_a_pg_basebackup_rate() {
    let ok = GOOD.replace(
        "  user: replicator\n",
        "  user: replicator\n  backup_max_rate: 50M\n",
    );
    assert_eq!(
        parse(Path::new("i.yaml"), &ok)
            .unwrap()
            .replication
            .backup_max_rate
            .as_deref(),
        Some("50M")
    );
    for bad in ["fast", "50MB", "M", "5kM"] {
        let text = GOOD.replace(
            "  user: replicator\n",
            &format!("  user: replicator\n  backup_max_rate: {bad}\n"),
        );
        assert_eq!(one_problem(&text, "backup_max_rate").line, 5, "{bad}");
    }
}

/// Regression: type errors said `invalid u16` / `invalid u32` with no field and no range,
/// and printed the position twice (`i.yaml:2:33: error: line 2 column 33: invalid u16`).
#[test]
fn type_errors_name_the_field_and_the_range_with_the_position_once() {
    let text = GOOD.replace(
        "address: 10.0.1.20, role: replica,",
        "address: 10.0.1.20, role: replica, postgres: { port: 99999 },",
    );
    let err = parse(Path::new("inventory.yaml"), &text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inventory.yaml:12:82: hosts[1].postgres.port: 99999 is out of range: a TCP port is 1-65535\nhint: use PostgreSQL's port, usually 5432"
    );

    let text = GOOD.replace("version: 15", "version: fifteen");
    let err = parse(Path::new("inventory.yaml"), &text)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "inventory.yaml:2:22: postgres.version: `fifteen` is not a PostgreSQL major version\nhint: write the major version as a number from 12 to 18, e.g. `version: 15`"
    );

    let text = GOOD.replace("version: 15", "version: 99999999999");
    let err = parse(Path::new("i.yaml"), &text).unwrap_err().to_string();
    assert!(
        err.starts_with("i.yaml:2:22: postgres.version: PostgreSQL 99999999999 is not supported\nhint: use a major version from 12 to 18"),
        "{err}"
    );

    let text = GOOD.replace(
        "ssh: { user: ubuntu, port: 22 }",
        "ssh: { user: ubuntu, port: -1 }",
    );
    let err = parse(Path::new("i.yaml"), &text).unwrap_err().to_string();
    assert!(
        err.starts_with("i.yaml:9:28: ssh.port: -1 is out of range: a TCP port is 1-65535\nhint: use the SSH port, usually 22"),
        "{err}"
    );
    let text = GOOD.replace(
        "ssh: { user: ubuntu, port: 22 }",
        "ssh: { user: ubuntu, port: ssh }",
    );
    let err = parse(Path::new("i.yaml"), &text).unwrap_err().to_string();
    assert!(
        err.starts_with("i.yaml:9:28: ssh.port: `ssh` is not a port number"),
        "{err}"
    );
}

#[test]
fn block_style_type_errors_find_their_field() {
    let text = "replication: { password: x }\nhosts:\n  - name: a\n    address: 10.0.0.1\n    role: primary\n  - name: b\n    address: 10.0.0.2\n    role: replica\n    postgres:\n      port: 99999\n";
    let err = parse(Path::new("inventory.yaml"), text).unwrap_err();
    let Error::Syntax {
        line,
        column,
        field,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*line, *column), (10, 13));
    assert_eq!(field.as_deref(), Some("hosts[1].postgres.port"));
    let shown = err.to_string();
    assert_eq!(shown.matches("10:13").count(), 1, "{shown}");
    assert!(!shown.contains("line 10"), "{shown}");
}

#[test]
fn other_syntax_errors_keep_their_field_and_a_hint() {
    let text = GOOD.replace("role: primary", "role: master");
    let err = parse(Path::new("i.yaml"), &text).unwrap_err().to_string();
    assert!(err.starts_with("i.yaml:11:"), "{err}");
    assert!(
        err.contains("hosts[0].role: ") && err.contains("master"),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");
    assert!(!err.contains("line 11"), "{err}");
}

#[test]
fn text_settings_are_quoted_for_postgresql_conf() {
    let text = GOOD.replace(
        "wal_keep_size: 1GB,",
        r#"wal_keep_size: 1GB, restore_command: 'cp "/arch\x\%f" "%p" # it''s',"#,
    );
    let inv = parse(Path::new("i.yaml"), &text).expect("valid");
    // postgresql.conf reads `\` as an escape inside quotes, so it is doubled.
    assert_eq!(
        inv.replication.settings["restore_command"],
        r#"'cp "/arch\\x\\%f" "%p" # it''s'"#
    );
}

#[test]
fn a_missing_field_names_its_entry() {
    let text = GOOD.replace(
        "{ name: master-0, address: 10.0.1.10, role: primary }",
        "{ name: master-0, role: primary }",
    );
    let err = parse(Path::new("i.yaml"), &text).unwrap_err().to_string();
    assert!(err.starts_with("i.yaml:11:"), "{err}");
    assert!(
        err.contains(": hosts[0]: missing field `address`\nhint: add it"),
        "{err}"
    );
}

/// GOOD with the last host's entry replaced by `last` and one more replica line appended.
fn tree(last: &str, extra: &str) -> String {
    let base = GOOD.replace(
        "  - { name: replica-az-b-0, address: 10.0.2.20, role: replica, slot: custom_slot }\n",
        "",
    );
    format!("{base}  {last}\n  {extra}\n")
}

#[test]
fn a_cascaded_replica_resolves_its_upstream_depth_and_children() {
    let text = tree(
        "- { name: replica-az-b-0, address: 10.0.2.20, role: replica, upstream: replica-az-a-0 }",
        "- { name: replica-az-b-1, address: 10.0.2.21, role: replica, upstream: replica-az-b-0 }",
    );
    let inv = parse(Path::new("inv.yaml"), &text).expect("valid");
    assert_eq!(
        inv.upstream_index(0),
        None,
        "the primary streams from no one"
    );
    assert_eq!(inv.upstream_index(1), Some(0), "default: the primary");
    assert_eq!(inv.upstream_index(2), Some(1));
    assert_eq!(inv.upstream_index(3), Some(2));
    assert_eq!(
        (0..4).map(|i| inv.depth(i)).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(!inv.is_cascaded(1) && inv.is_cascaded(2) && inv.is_cascaded(3));
    assert_eq!(inv.children_of(0), [1]);
    assert_eq!(inv.children_of(1), [2]);
    assert!(inv.children_of(3).is_empty());
    // `upstream:` naming the primary is the default spelled out.
    let text = tree(
        "- { name: replica-az-b-0, address: 10.0.2.20, role: replica, upstream: master-0 }",
        "",
    );
    let inv = parse(Path::new("inv.yaml"), &text).expect("valid");
    assert!(!inv.is_cascaded(2));
    assert_eq!(inv.children_of(0), [1, 2]);
}

#[test]
fn upstream_must_name_another_member_on_a_replica() {
    let cases = [
        ("upstream: nobody", "is not a host of this inventory"),
        ("upstream: replica-az-b-0", "cannot stream from itself"),
        ("upstream: proxy-0", "is a proxy"),
    ];
    for (upstream, want) in cases {
        let text = tree(
            &format!("- {{ name: replica-az-b-0, address: 10.0.2.20, role: replica, {upstream} }}"),
            "- { name: proxy-0, address: 10.0.3.5, role: proxy }",
        );
        let p = one_problem(&text, "upstream");
        assert_eq!(p.field, "hosts[replica-az-b-0].upstream");
        assert!(p.message.contains(want), "{upstream}: {p:?}");
        assert_eq!(p.line, 13, "{p:?}");
    }
    let text = GOOD.replace(
        "role: primary }",
        "role: primary, upstream: replica-az-a-0 }",
    );
    let p = one_problem(&text, "upstream");
    assert!(p.message.contains("is the primary"), "{p:?}");
}

#[test]
fn a_cycle_of_upstreams_is_named_with_its_chain() {
    let text = tree(
        "- { name: replica-az-b-0, address: 10.0.2.20, role: replica, upstream: replica-az-b-1 }",
        "- { name: replica-az-b-1, address: 10.0.2.21, role: replica, upstream: replica-az-b-0 }",
    );
    let all = problems(&text);
    assert!(!all.is_empty());
    assert!(
        all.iter().all(|p| p
            .message
            .contains("cycle: replica-az-b-0 -> replica-az-b-1 -> replica-az-b-0")
            || p.message
                .contains("cycle: replica-az-b-1 -> replica-az-b-0 -> replica-az-b-1")),
        "{all:#?}"
    );
}

#[test]
fn a_cascaded_replica_is_never_a_synchronous_standby() {
    let sync = GOOD.replace(
        "settings: {",
        "synchronous: { mode: any, count: 1 }\n  settings: {",
    );
    // Left out of the default list.
    let text = sync.replace(
        "slot: custom_slot }",
        "slot: custom_slot, upstream: replica-az-a-0 }",
    );
    let inv = parse(Path::new("inv.yaml"), &text).expect("valid");
    let names = inv.replication.synchronous.expect("sync").standbys;
    assert_eq!(names, ["replica-az-a-0"]);
    // Refused when marked or named.
    let marked = sync.replace(
        "slot: custom_slot }",
        "slot: custom_slot, upstream: replica-az-a-0, synchronous: true }",
    );
    let p = one_problem(&marked, "synchronous");
    assert!(
        p.message.contains("never be a synchronous standby"),
        "{p:?}"
    );
    let named = text.replace(
        "count: 1 }",
        "count: 1, standbys: [replica-az-a-0, replica-az-b-0] }",
    );
    let p = one_problem(&named, "synchronous.standbys");
    assert!(
        p.message
            .contains("`replica-az-b-0` streams from another replica"),
        "{p:?}"
    );
}
