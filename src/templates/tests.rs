//! Snapshot tests of the rendered default templates, and strict-mode failures.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

pub(crate) fn lab_context(for_host: usize) -> Context {
    let inv = crate::inventory::parse(
        Path::new("inv.yaml"),
        r#"
replication: { password: pw, settings: { wal_keep_size: 1GB } }
hba: [ { type: host, database: app, user: app_user, address: 10.0.1.0/24, method: scram-sha-256 } ]
hosts:
  - { name: pg0, address: 10.0.1.10, role: primary }
  - { name: pg1, address: 10.0.1.11, role: replica }
  - { name: pg2, address: 10.0.1.12, role: replica }
"#,
    )
    .expect("valid inventory");
    let views: Vec<HostView> = inv.hosts.iter().map(HostView::of).collect();
    let mut settings = BTreeMap::new();
    settings.insert("listen_addresses".to_string(), "'*'".to_string());
    settings.insert("max_wal_senders".to_string(), "10".to_string());
    let mut minimums = BTreeMap::new();
    if for_host > 0 {
        minimums.insert("max_connections".to_string(), "100".to_string());
    }
    Context {
        host: views[for_host].clone(),
        primary: views[0].clone(),
        replicas: views[1..].to_vec(),
        members: views.clone(),
        settings,
        standby_minimums: minimums,
        replication: ReplicationView {
            user: inv.replication.user.clone(),
        },
        hba: inv.hba.clone(),
        endpoints_hba: Vec::new(),
    }
}

#[test]
fn primary_conf_renders() {
    let t = Templates::load(None).unwrap();
    insta::assert_snapshot!(t.render("primary.conf.j2", &lab_context(0)).unwrap());
}

#[test]
fn replica_conf_renders() {
    let t = Templates::load(None).unwrap();
    insta::assert_snapshot!(t.render("replica.conf.j2", &lab_context(1)).unwrap());
}

#[test]
fn hba_renders_replication_rules_first() {
    let t = Templates::load(None).unwrap();
    insta::assert_snapshot!(t.render("pg_hba.conf.j2", &lab_context(0)).unwrap());
}

#[test]
fn a_typo_in_a_template_is_an_error_not_an_empty_string() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("primary.conf.j2"),
        "port = {{ host.prot }}\n",
    )
    .unwrap();
    let t = Templates::load(Some(dir.path())).unwrap();
    let err = t
        .render("primary.conf.j2", &lab_context(0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("primary.conf.j2") && err.contains("undefined"),
        "{err}"
    );
}

#[test]
fn a_syntax_error_names_the_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg_hba.conf.j2"), "# ok\n{% for x in %}\n").unwrap();
    let err = Templates::load(Some(dir.path()))
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("pg_hba.conf.j2") && err.contains("line 2"),
        "{err}"
    );
}
