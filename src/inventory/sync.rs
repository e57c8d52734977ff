//! Synchronous replication in the inventory: `replication.synchronous` and the hosts'
//! `synchronous:` flags, their rules, and the `synchronous_standby_names` value they make.
//!
//! The value is the same on every member (primary and replicas), so a promoted standby
//! already has it. Names are application names, which pgrepl sets to the host names. A
//! primary never waits for itself: its own name in the list simply matches no standby, so
//! a count that only the node itself could help meet leaves commits waiting; that is a
//! warning here. Nothing in this module contacts a host.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Problem;
use super::model::{InventoryFile, Role};

/// `replication.synchronous` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynchronousSpec {
    /// `any` (quorum, the default) or `first` (priority, in list order).
    #[serde(default)]
    pub mode: SyncMode,
    /// How many named standbys must confirm each commit (default 1).
    pub count: Option<Spanned<i64>>,
    /// The standbys that may confirm, by host name (default: the hosts marked
    /// `synchronous: true`, else every replica).
    pub standbys: Option<Vec<Spanned<String>>>,
}

/// How PostgreSQL picks the synchronous standbys among the named ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Quorum: any `count` of the named standbys (`ANY n (...)`).
    #[default]
    Any,
    /// Priority: the first `count` named standbys that stream (`FIRST n (...)`).
    First,
}

/// Synchronous replication as resolved: what `synchronous_standby_names` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Synchronous {
    pub mode: SyncMode,
    pub count: u32,
    /// Host names, which are the standbys' application names.
    pub standbys: Vec<String>,
}

impl Synchronous {
    /// The value of `synchronous_standby_names`: `ANY 1 ("pg1", "pg2")`.
    pub fn standby_names(&self) -> String {
        let names: Vec<String> = self.standbys.iter().map(|s| format!("\"{s}\"")).collect();
        let mode = match self.mode {
            SyncMode::Any => "ANY",
            SyncMode::First => "FIRST",
        };
        format!("{mode} {} ({})", self.count, names.join(", "))
    }
}

/// The named standbys: the explicit list, else the hosts marked `synchronous: true`, else
/// every replica not marked `synchronous: false`.
fn named(file: &InventoryFile, spec: &SynchronousSpec) -> Vec<String> {
    if let Some(list) = &spec.standbys {
        return list.iter().map(|s| s.value.clone()).collect();
    }
    let marked: Vec<String> = file
        .hosts
        .iter()
        .filter(|h| h.value.synchronous.as_ref().is_some_and(|s| s.value))
        .map(|h| h.value.name.value.clone())
        .collect();
    if !marked.is_empty() {
        return marked;
    }
    file.hosts
        .iter()
        .filter(|h| h.value.role == Role::Replica && !file.is_cascaded(&h.value))
        .filter(|h| h.value.synchronous.as_ref().is_none_or(|s| s.value))
        .map(|h| h.value.name.value.clone())
        .collect()
}

/// Resolves the section (after [`check`] found no error in it).
pub(super) fn resolve(file: &InventoryFile) -> Option<Synchronous> {
    let spec = &file.replication.synchronous.as_ref()?.value;
    Some(Synchronous {
        mode: spec.mode,
        count: spec
            .count
            .as_ref()
            .map_or(1, |c| u32::try_from(c.value).unwrap_or(1)),
        standbys: named(file, spec),
    })
}

fn at<T>(
    span: &Spanned<T>,
    field: impl Into<String>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Problem {
    Problem {
        line: span.referenced.line(),
        column: span.referenced.column(),
        field: field.into(),
        message: message.into(),
        hint: hint.into(),
    }
}

const SETTING: &str = "synchronous_standby_names";

fn cascaded_problem<T>(span: &Spanned<T>, host: &str, field: &str) -> Problem {
    at(
        span,
        field,
        format!(
            "`{host}` streams from another replica (upstream): the primary never hears from it, so it can never be a synchronous standby"
        ),
        "name standbys that stream from the primary, or remove this host's `upstream:`",
    )
}

/// The rules: returns (errors, warnings).
pub(super) fn check(file: &InventoryFile) -> (Vec<Problem>, Vec<Problem>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let own_setting = file.replication.settings.get(SETTING);
    let Some(section) = &file.replication.synchronous else {
        for h in &file.hosts {
            if let Some(flag) = &h.value.synchronous
                && flag.value
            {
                errors.push(at(
                    flag,
                    format!("hosts[{}].synchronous", h.value.name.value),
                    "`synchronous: true` needs a replication.synchronous section",
                    "add `replication: { synchronous: { mode: any, count: 1 } }` (the marked hosts are its standbys)",
                ));
            }
        }
        if let Some(value) = own_setting {
            warnings.push(at(
                value,
                format!("replication.settings.{SETTING}"),
                "written as given, but verify and `pgrepl sync` know nothing of it",
                "use replication.synchronous { mode, count, standbys } instead: pgrepl then checks the standbys and can turn it off and on",
            ));
        }
        return (errors, warnings);
    };
    let spec = &section.value;
    // A cascaded replica's walsender is on its upstream: the primary never hears from it.
    let cascaded = |name: &str| {
        file.hosts
            .iter()
            .find(|h| h.value.name.value == name)
            .is_some_and(|h| file.is_cascaded(&h.value))
    };
    for h in &file.hosts {
        if let Some(flag) = &h.value.synchronous
            && flag.value
            && file.is_cascaded(&h.value)
        {
            errors.push(cascaded_problem(
                flag,
                &h.value.name.value,
                "hosts[].synchronous",
            ));
        }
    }
    for name in spec.standbys.iter().flatten() {
        if cascaded(&name.value) {
            errors.push(cascaded_problem(
                name,
                &name.value,
                "replication.synchronous.standbys",
            ));
        }
    }
    if let Some(value) = own_setting {
        errors.push(at(
            value,
            format!("replication.settings.{SETTING}"),
            "conflicts with replication.synchronous, which writes this setting",
            format!("remove {SETTING} from replication.settings; replication.synchronous (line {}) says what it should be", section.referenced.line()),
        ));
    }
    let hosts: Vec<&str> = file
        .hosts
        .iter()
        .map(|h| h.value.name.value.as_str())
        .collect();
    if let Some(list) = &spec.standbys {
        for h in &file.hosts {
            if let Some(flag) = &h.value.synchronous {
                errors.push(at(
                    flag,
                    format!("hosts[{}].synchronous", h.value.name.value),
                    "replication.synchronous.standbys already names the standbys",
                    "name them in one place: either the standbys list or the hosts' `synchronous:` flags",
                ));
            }
        }
        let mut seen = Vec::new();
        for name in list {
            let n = name.value.as_str();
            if n == "*" {
                errors.push(at(
                    name,
                    "replication.synchronous.standbys",
                    "`*` matches any standby, pg_receivewal and backup tools too",
                    "name the hosts whose confirmation a commit waits for",
                ));
            } else if !hosts.contains(&n) {
                errors.push(at(
                    name,
                    "replication.synchronous.standbys",
                    format!("`{n}` is not a host of this inventory"),
                    format!(
                        "name hosts of the inventory (their names are the standbys' application names): {}",
                        hosts.join(", ")
                    ),
                ));
            } else if seen.contains(&n) {
                errors.push(at(
                    name,
                    "replication.synchronous.standbys",
                    format!("`{n}` is named twice"),
                    "name each standby once",
                ));
            }
            seen.push(n);
        }
    }
    let standbys = named(file, spec);
    let count = spec.count.as_ref().map_or(1, |c| c.value);
    let count_at = |message: String, hint: &str| match &spec.count {
        Some(c) => at(c, "replication.synchronous.count", message, hint),
        None => at(section, "replication.synchronous.count", message, hint),
    };
    if count < 1 {
        errors.push(count_at(
            format!("count {count}: at least one standby must confirm each commit"),
            "set count to 1 or more, or remove replication.synchronous for asynchronous replication",
        ));
    } else if standbys.is_empty() {
        errors.push(at(
            section,
            "replication.synchronous.standbys",
            "no standby is named",
            "list standbys, mark hosts `synchronous: true`, or add replicas",
        ));
    } else if count as usize > standbys.len() {
        errors.push(count_at(
            format!(
                "count {count} but only {} standby(s) named ({}): every commit would wait forever",
                standbys.len(),
                standbys.join(", ")
            ),
            "lower count, or name more standbys",
        ));
    } else if count as usize == standbys.len() {
        warnings.push(count_at(
            format!(
                "count {count} equals the number of named standbys ({}): one of them down, or promoted to primary (a primary never waits for itself), and every commit waits",
                standbys.join(", ")
            ),
            "name one standby more than count, so a commit is confirmed with one of them gone",
        ));
    }
    (errors, warnings)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Error, Inventory, Problem, parse};

    fn inventory(replication: &str, hosts_extra: [&str; 3]) -> String {
        format!(
            "replication:\n  password: x\n{replication}hosts:\n  - {{ name: pg0, address: 10.0.0.10, role: primary{} }}\n  - {{ name: pg1, address: 10.0.0.11, role: replica{} }}\n  - {{ name: pg2, address: 10.0.0.12, role: replica{} }}\n",
            hosts_extra[0], hosts_extra[1], hosts_extra[2]
        )
    }

    fn ok(text: &str) -> Inventory {
        parse(Path::new("inv.yaml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errors(text: &str) -> Vec<Problem> {
        match parse(Path::new("inv.yaml"), text) {
            Err(Error::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn one_error(text: &str) -> Problem {
        let all = errors(text);
        assert_eq!(all.len(), 1, "{all:#?}");
        all[0].clone()
    }

    const NONE: [&str; 3] = ["", "", ""];

    #[test]
    fn the_value_quotes_each_name_and_defaults_to_any_1_over_the_replicas() {
        let inv = ok(&inventory("  synchronous: {}\n", NONE));
        let s = inv.replication.synchronous.expect("synchronous");
        assert_eq!(s.standby_names(), r#"ANY 1 ("pg1", "pg2")"#);
        assert!(inv.warnings.is_empty(), "{:#?}", inv.warnings);
        let inv = ok(&inventory(
            "  synchronous: { mode: first, count: 2, standbys: [pg2, pg0, pg1] }\n",
            NONE,
        ));
        assert_eq!(
            inv.replication.synchronous.unwrap().standby_names(),
            r#"FIRST 2 ("pg2", "pg0", "pg1")"#
        );
        assert!(ok(&inventory("", NONE)).replication.synchronous.is_none());
    }

    #[test]
    fn hosts_marked_synchronous_are_the_list_and_false_leaves_a_replica_out() {
        let inv = ok(&inventory(
            "  synchronous: { mode: first }\n",
            [", synchronous: true", "", ", synchronous: true"],
        ));
        assert_eq!(
            inv.replication.synchronous.unwrap().standby_names(),
            r#"FIRST 1 ("pg0", "pg2")"#
        );
        let inv = ok(&inventory(
            "  synchronous: {}\n",
            ["", ", synchronous: false", ""],
        ));
        assert_eq!(
            inv.replication.synchronous.unwrap().standby_names(),
            r#"ANY 1 ("pg2")"#
        );
    }

    #[test]
    fn count_must_be_at_least_1() {
        let p = one_error(&inventory("  synchronous: { count: 0 }\n", NONE));
        assert_eq!(
            (p.line, p.field.as_str()),
            (3, "replication.synchronous.count")
        );
        assert!(p.message.contains("at least one"), "{p:?}");
    }

    #[test]
    fn count_above_the_named_standbys_is_refused() {
        let p = one_error(&inventory(
            "  synchronous: { count: 3, standbys: [pg1, pg2] }\n",
            NONE,
        ));
        assert_eq!(p.field, "replication.synchronous.count");
        assert!(
            p.message
                .contains("only 2 standby(s) named (pg1, pg2): every commit would wait forever"),
            "{p:?}"
        );
    }

    #[test]
    fn names_must_be_hosts_once_and_never_a_star() {
        let p = one_error(&inventory(
            "  synchronous: { standbys: [pg1, pg9] }\n",
            NONE,
        ));
        assert_eq!(
            (p.line, p.field.as_str()),
            (3, "replication.synchronous.standbys")
        );
        assert!(p.message.contains("`pg9` is not a host"), "{p:?}");
        assert!(p.hint.contains("pg0, pg1, pg2"), "{p:?}");
        let p = one_error(&inventory(
            "  synchronous: { standbys: ['*', pg1] }\n",
            NONE,
        ));
        assert!(p.message.contains("pg_receivewal"), "{p:?}");
        let p = one_error(&inventory(
            "  synchronous: { standbys: [pg1, pg2, pg1] }\n",
            NONE,
        ));
        assert!(p.message.contains("named twice"), "{p:?}");
    }

    #[test]
    fn the_primary_may_be_named_since_roles_change() {
        let inv = ok(&inventory(
            "  synchronous: { standbys: [pg0, pg1, pg2] }\n",
            NONE,
        ));
        assert_eq!(
            inv.replication.synchronous.unwrap().standbys,
            vec!["pg0", "pg1", "pg2"]
        );
        assert!(inv.warnings.is_empty());
    }

    #[test]
    fn a_count_only_every_named_node_meets_warns() {
        // FIRST 1 (pg1): if pg1 stops, or is promoted (it never waits for itself), commits wait.
        let inv = ok(&inventory(
            "  synchronous: { mode: first, count: 1, standbys: [pg1] }\n",
            NONE,
        ));
        assert_eq!(inv.warnings.len(), 1, "{:#?}", inv.warnings);
        let w = &inv.warnings[0];
        assert_eq!(
            (w.line, w.field.as_str()),
            (3, "replication.synchronous.count")
        );
        assert!(w.message.contains("never waits for itself"), "{w:?}");
        let inv = ok(&inventory("  synchronous: { count: 2 }\n", NONE));
        assert_eq!(inv.warnings.len(), 1);
    }

    #[test]
    fn synchronous_standby_names_in_settings_conflicts_with_the_section() {
        let text = "replication:\n  password: x\n  settings:\n    synchronous_standby_names: 'pg1'\n  synchronous: { count: 1 }\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: primary }\n  - { name: pg1, address: 10.0.0.11, role: replica }\n  - { name: pg2, address: 10.0.0.12, role: replica }\n";
        let p = one_error(text);
        assert_eq!(
            (p.line, p.field.as_str()),
            (4, "replication.settings.synchronous_standby_names")
        );
        assert!(p.hint.contains("line 5"), "{p:?}");
        // Without the section it is written as given, with a warning.
        let inv = ok(&text.replace("  synchronous: { count: 1 }\n", ""));
        assert_eq!(inv.warnings.len(), 1);
        assert_eq!(inv.warnings[0].line, 4);
        assert_eq!(
            inv.replication.settings["synchronous_standby_names"],
            "'pg1'"
        );
    }

    #[test]
    fn host_flags_need_the_section_and_clash_with_a_list() {
        let p = one_error(&inventory("", ["", ", synchronous: true", ""]));
        assert_eq!(p.field, "hosts[pg1].synchronous");
        assert!(p.hint.contains("replication"), "{p:?}");
        let p = one_error(&inventory(
            "  synchronous: { standbys: [pg1] }\n",
            ["", "", ", synchronous: true"],
        ));
        assert_eq!(p.field, "hosts[pg2].synchronous");
    }

    #[test]
    fn no_standby_named_is_refused() {
        let p = one_error(&inventory(
            "  synchronous: {}\n",
            ["", ", synchronous: false", ", synchronous: false"],
        ));
        assert!(p.message.contains("no standby is named"), "{p:?}");
    }

    #[test]
    fn unknown_fields_and_modes_are_syntax_errors() {
        for bad in [
            "  synchronous: { mode: quorum }\n",
            "  synchronous: { size: 1 }\n",
        ] {
            assert!(
                matches!(
                    parse(Path::new("i.yaml"), &inventory(bad, NONE)),
                    Err(Error::Syntax { line: 3, .. })
                ),
                "{bad}"
            );
        }
    }
}
