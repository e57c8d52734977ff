//! Synchronous replication as PostgreSQL sees it: how healthy the primary's
//! `synchronous_standby_names` is with the standbys that stream now, and the override
//! `pgrepl sync off` puts in place. Pure functions; the actions and verify do the I/O.
//!
//! Facts this relies on (checked on PostgreSQL 15 in the lab): names match each standby's
//! `application_name` (pgrepl sets the host name); a primary named in its own list never
//! counts (`ANY 1 ("pg0", "pg1")` on pg0 waits for pg1 only, `FIRST 1 ("pg0")` on pg0 waits
//! forever); a commit waiting for a standby ignores `statement_timeout`; cancelling it
//! (`pg_cancel_backend`) leaves it committed locally, with a WARNING; a reload that empties
//! the setting releases every waiting commit.
//!
//! The override never touches pgrepl's managed settings: on layouts with an include
//! directory it is a file of its own that sorts after pgrepl's (`zz-pgrepl-sync-off.conf`,
//! read last, so it wins), elsewhere a second marked block after the managed one at the end
//! of postgresql.conf. A `bootstrap` rewrites the managed settings and leaves it in place:
//! synchronous replication stays off until `pgrepl sync on` removes it.

use crate::inventory::Synchronous;

/// The override file's name in the include directory.
pub const OVERRIDE_FILE: &str = "zz-pgrepl-sync-off.conf";
/// Marks the override block in a postgresql.conf without an include directory.
pub const BEGIN: &str = "# BEGIN pgrepl sync off: `pgrepl sync on` removes this block";
pub const END: &str = "# END pgrepl sync off";

/// The override's lines: who turned synchronous replication off, when, and what `sync on`
/// brings back.
pub fn override_body(by: &str, since: &str, restores: Option<&str>) -> String {
    let restores = restores.map_or_else(
        || "the managed settings' value".to_string(),
        |v| format!("the inventory's {v}"),
    );
    format!(
        "# pgrepl sync off since {since} ({by}): commits do not wait for any standby.\n# `pgrepl sync on` removes this and restores {restores}.\nsynchronous_standby_names = ''\n"
    )
}

/// The override's first comment line, for reports: `pgrepl sync off since ... (...)`.
pub fn override_summary(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("# pgrepl sync off since "))
        .map(|rest| {
            let rest = rest.split(": commits").next().unwrap_or(rest);
            format!("since {rest}")
        })
}

/// Whether a postgresql.conf carries the override block.
pub fn has_block(conf: &str) -> bool {
    block_range(conf).is_some()
}

fn block_range(conf: &str) -> Option<(usize, usize)> {
    let start = conf.find(BEGIN)?;
    let end = start + conf[start..].find(END)? + END.len();
    let end = if conf[end..].starts_with('\n') {
        end + 1
    } else {
        end
    };
    Some((start, end))
}

/// The text inside the override block.
pub fn block_body(conf: &str) -> Option<&str> {
    let (start, end) = block_range(conf)?;
    Some(&conf[start..end])
}

/// `conf` without the override block.
pub fn without_block(conf: &str) -> String {
    match block_range(conf) {
        Some((start, end)) => format!("{}{}", &conf[..start], &conf[end..]),
        None => conf.to_string(),
    }
}

/// `conf` with the override block at its end (after the managed block: the last one wins).
pub fn with_block(conf: &str, body: &str) -> String {
    let rest = without_block(conf);
    let sep = if rest.is_empty() || rest.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{rest}{sep}{BEGIN}\n{body}{END}\n")
}

/// What the primary says now.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `current_setting('synchronous_standby_names')`.
    pub value: String,
    /// Where the value comes from (`FILE:LINE`), when the server says.
    pub source: Option<String>,
    /// Backends waiting for a synchronous standby (`wait_event = 'SyncRep'`).
    pub waiting: u64,
    /// Streaming walsenders: application name and `sync_state`.
    pub streaming: Vec<(String, String)>,
}

/// How the synchronous setup stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// More named standbys stream than commits need.
    Ok(String),
    /// Off, not as the inventory says, or exactly as many as needed (no margin).
    Warn(String),
    /// Fewer than needed: commits wait, or will.
    Fail(String),
}

/// The named standbys that can confirm commits on `primary` (a primary never waits for
/// itself), with those streaming and those not.
pub fn capable(sync: &Synchronous, primary: &str, seen: &Observed) -> (Vec<String>, Vec<String>) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for name in sync.standbys.iter().filter(|n| n.as_str() != primary) {
        match seen.streaming.iter().find(|(app, _)| app == name) {
            Some((_, state)) => up.push(format!("{name} {state}")),
            None => down.push(name.clone()),
        }
    }
    (up, down)
}

/// Judges the primary's synchronous replication against the inventory.
pub fn judge(sync: &Synchronous, primary: &str, seen: &Observed) -> Judgement {
    let want = sync.standby_names();
    let from = seen
        .source
        .as_deref()
        .map(|s| format!(" (set in {s})"))
        .unwrap_or_default();
    if seen.value.trim().is_empty() {
        return Judgement::Warn(format!(
            "synchronous replication is OFF on {primary}: synchronous_standby_names = ''{from}, so commits wait for no standby; the inventory says {want}: `pgrepl sync on` restores it"
        ));
    }
    if seen.value != want {
        return Judgement::Warn(format!(
            "synchronous_standby_names is '{}'{from}, the inventory says '{want}': re-run `pgrepl bootstrap` (or `pgrepl sync on`)",
            seen.value
        ));
    }
    let (up, down) = capable(sync, primary, seen);
    let need = sync.count as usize;
    let itself = if sync.standbys.iter().any(|n| n == primary) {
        format!(" ({primary} is named but is the primary: it never waits for itself)")
    } else {
        String::new()
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    if up.len() < need {
        let waiting = if seen.waiting > 0 {
            format!("{} commit(s) waiting now; ", seen.waiting)
        } else {
            String::new()
        };
        return Judgement::Fail(format!(
            "commits wait: {want} needs {need} named standby(s) streaming, {} do{itself}; not streaming: {}; {waiting}bring them back, or `pgrepl sync off` releases the commits (they then wait for no standby)",
            up.len(),
            list(&down)
        ));
    }
    if up.len() == need {
        let down = if down.is_empty() {
            String::new()
        } else {
            format!("; not streaming: {}", down.join(", "))
        };
        return Judgement::Warn(format!(
            "{want}: exactly {need} named standby(s) stream ({}), no margin: if one stops, every commit waits{itself}{down}",
            list(&up),
        ));
    }
    Judgement::Ok(format!(
        "{want}: {} named standbys stream ({}), {need} needed{itself}",
        up.len(),
        list(&up)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::SyncMode;

    fn any1() -> Synchronous {
        Synchronous {
            mode: SyncMode::Any,
            count: 1,
            standbys: vec!["pg1".into(), "pg2".into()],
        }
    }

    fn seen(streaming: &[(&str, &str)]) -> Observed {
        Observed {
            value: any1().standby_names(),
            source: None,
            waiting: 0,
            streaming: streaming
                .iter()
                .map(|(a, s)| (a.to_string(), s.to_string()))
                .collect(),
        }
    }

    #[test]
    fn two_of_one_needed_is_ok_one_warns_none_fails() {
        let ok = judge(
            &any1(),
            "pg0",
            &seen(&[("pg1", "quorum"), ("pg2", "quorum")]),
        );
        assert_eq!(
            ok,
            Judgement::Ok(
                r#"ANY 1 ("pg1", "pg2"): 2 named standbys stream (pg1 quorum, pg2 quorum), 1 needed"#
                    .into()
            )
        );
        let Judgement::Warn(w) = judge(&any1(), "pg0", &seen(&[("pg1", "quorum")])) else {
            panic!()
        };
        assert!(w.contains("no margin"), "{w}");
        assert!(w.ends_with("not streaming: pg2"), "{w}");
        let mut none = seen(&[("pg0x", "async")]);
        none.waiting = 3;
        let Judgement::Fail(f) = judge(&any1(), "pg0", &none) else {
            panic!()
        };
        assert!(f.starts_with("commits wait: "), "{f}");
        assert!(
            f.contains("not streaming: pg1, pg2; 3 commit(s) waiting now"),
            "{f}"
        );
        assert!(f.contains("pgrepl sync off"), "{f}");
    }

    #[test]
    fn a_primary_named_in_the_list_never_counts_for_itself() {
        // After a switchover to pg1: ANY 1 ("pg1", "pg2") on pg1 is met by pg2 alone.
        let on_pg1 = seen(&[("pg2", "quorum"), ("pg0", "async")]);
        let Judgement::Warn(w) = judge(&any1(), "pg1", &on_pg1) else {
            panic!()
        };
        assert!(
            w.contains("exactly 1 named standby(s) stream (pg2 quorum)"),
            "{w}"
        );
        assert!(w.contains("pg1 is named but is the primary"), "{w}");
        let Judgement::Fail(_) = judge(&any1(), "pg1", &seen(&[("pg0", "async")])) else {
            panic!()
        };
    }

    #[test]
    fn off_and_a_different_value_warn_and_name_the_source() {
        let mut off = seen(&[]);
        off.value = String::new();
        off.source = Some("/etc/postgresql/15/main/conf.d/zz-pgrepl-sync-off.conf:3".into());
        let Judgement::Warn(w) = judge(&any1(), "pg0", &off) else {
            panic!()
        };
        assert!(w.contains("OFF on pg0"), "{w}");
        assert!(w.contains("zz-pgrepl-sync-off.conf:3"), "{w}");
        assert!(w.contains("pgrepl sync on"), "{w}");
        let mut other = seen(&[]);
        other.value = "pg1".into();
        let Judgement::Warn(w) = judge(&any1(), "pg0", &other) else {
            panic!()
        };
        assert!(w.contains("the inventory says"), "{w}");
    }

    #[test]
    fn the_override_block_goes_last_and_comes_out_cleanly() {
        let managed = "a = 1\n# BEGIN pgrepl managed block: x\nb = 2\n# END pgrepl managed block\n";
        let body = override_body(
            "user@host",
            "2026-11-25T10:00:00Z",
            Some(r#"ANY 1 ("pg1")"#),
        );
        let on = with_block(managed, &body);
        assert!(on.starts_with(managed), "{on}");
        assert!(
            on.ends_with(&format!("synchronous_standby_names = ''\n{END}\n")),
            "{on}"
        );
        assert!(has_block(&on));
        assert_eq!(with_block(&on, &body), on, "stable");
        assert_eq!(without_block(&on), managed);
        assert_eq!(without_block(managed), managed);
        assert_eq!(
            override_summary(block_body(&on).unwrap()).as_deref(),
            Some("since 2026-11-25T10:00:00Z (user@host)")
        );
        assert!(
            body.contains(r#"restores the inventory's ANY 1 ("pg1")"#),
            "{body}"
        );
    }

    #[test]
    fn the_override_file_sorts_after_pgrepls_own() {
        // include_dir reads files in C-locale name order; the last value wins.
        let mut names = [OVERRIDE_FILE, "pgrepl.conf", "50-site.conf"];
        names.sort_unstable();
        assert_eq!(names.last(), Some(&OVERRIDE_FILE));
    }
}
