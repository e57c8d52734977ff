//! Appending a host to the inventory file while keeping its comments and layout.
//!
//! The new host goes in as one flow-style line after the last entry of `hosts:`, with the
//! same indentation; the result is validated before the file is replaced (atomically).

use std::path::Path;

/// Returns `text` with a replica line appended to its `hosts:` list.
pub fn with_replica(
    text: &str,
    name: &str,
    address: &str,
    slot: Option<&str>,
) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == "hosts:").ok_or(
        "no top-level `hosts:` list (write it in block style: `hosts:` then `  - ...` lines)",
    )?;
    let mut end = start + 1;
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this_indent = line.len() - trimmed.len();
        if this_indent == 0 && !trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with("- ") && indent.is_none() {
            indent = Some(this_indent);
        }
        end = i + 1;
    }
    let pad = " ".repeat(indent.unwrap_or(2));
    let slot = slot.map(|s| format!(", slot: {s}")).unwrap_or_default();
    let entry = format!("{pad}- {{ name: {name}, address: {address}, role: replica{slot} }}");
    let mut out: Vec<String> = lines[..end].iter().map(|l| l.to_string()).collect();
    out.push(entry);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// Appends the replica to the inventory file unless it is there already; validates first.
pub fn append_replica(
    path: &Path,
    name: &str,
    address: &str,
    slot: Option<&str>,
    dry_run: bool,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
    if let Ok(inv) = crate::inventory::parse(path, &text)
        && let Some(h) = inv.hosts.iter().find(|h| h.name == name)
    {
        if h.address == address {
            return Ok(());
        }
        return Err(format!(
            "{}: host `{name}` is already in the inventory with address {}\nhint: drop --address, or pick another name",
            path.display(),
            h.address
        ));
    }
    let new =
        with_replica(&text, name, address, slot).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::inventory::parse(path, &new).map_err(|e| {
        format!("the inventory with `{name}` added would be invalid, so it was not changed:\n{e}")
    })?;
    if dry_run {
        return Ok(());
    }
    let tmp = path.with_extension("yaml.pgrepl.tmp");
    std::fs::write(&tmp, new)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Returns `text` with `new_primary`'s entry saying `role: primary` and every other
/// entry's `role: primary` turned into `role: replica`, keeping everything else as it is.
pub fn with_primary(text: &str, new_primary: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "hosts:")
        .ok_or("no top-level `hosts:` list")?;
    // Each host entry runs from its `- ` line to the next one at the same indent.
    let mut entries: Vec<(usize, usize)> = Vec::new();
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this = line.len() - trimmed.len();
        if this == 0 && !trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with('-') && indent.is_none_or(|n| n == this) {
            indent = Some(this);
            if let Some(last) = entries.last_mut() {
                last.1 = i;
            }
            entries.push((i, lines.len()));
        }
    }
    if let Some(last) = entries.last_mut() {
        last.1 = last.1.min(
            lines
                .iter()
                .enumerate()
                .skip(last.0 + 1)
                .find(|(_, l)| !l.starts_with(' ') && !l.trim().is_empty() && !l.starts_with('#'))
                .map_or(lines.len(), |(i, _)| i),
        );
    }
    let names_host = |line: &str| {
        line.split([',', '{', '}', '-'])
            .filter_map(|part| part.trim().strip_prefix("name:"))
            .any(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == new_primary)
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut found = false;
    for &(from, to) in &entries {
        let is_new = (from..to).any(|i| names_host(lines[i]));
        found |= is_new;
        let (old, new) = if is_new {
            ("role: replica", "role: primary")
        } else {
            ("role: primary", "role: replica")
        };
        for line in &mut out[from..to] {
            if line.contains(old) {
                *line = line.replacen(old, new, 1);
            }
        }
    }
    if !found {
        return Err(format!("host `{new_primary}` is not in the `hosts:` list"));
    }
    Ok(out.join("\n") + "\n")
}

/// Makes `new_primary` the inventory file's primary (the others replicas), validating the
/// result first; the file's comments, layout and mode are kept.
pub fn set_primary(path: &Path, new_primary: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
    let new = with_primary(&text, new_primary).map_err(|e| format!("{}: {e}", path.display()))?;
    if new == text {
        return Ok(());
    }
    let inventory = crate::inventory::parse(path, &new).map_err(|e| {
        format!("the inventory with `{new_primary}` as primary would be invalid, so it was not changed:\n{e}")
    })?;
    if inventory
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.as_str())
        != Some(new_primary)
    {
        return Err(format!(
            "{}: could not make `{new_primary}` the primary (is its role written as `role: replica`?)",
            path.display()
        ));
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions());
    let tmp = path.with_extension("yaml.pgrepl.tmp");
    std::fs::write(&tmp, new)
        .and_then(|_| match mode {
            Ok(mode) => std::fs::set_permissions(&tmp, mode),
            Err(_) => Ok(()),
        })
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Returns `text` without host `name`'s entry in its `hosts:` list: a one-line flow entry
/// (`- { name: X, ... }`, with any comment at its end) or a block entry (`- name: X` and
/// the lines indented under it). Every other line stays as it is, comments included; a
/// comment above the entry stays too, since it may speak of more than this host. Refuses
/// to leave the list empty, and checks the result lists exactly the other hosts, in order.
pub fn without_host(text: &str, name: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Hosts {
        hosts: Vec<Named>,
    }
    let names = |text: &str| -> Result<Vec<String>, String> {
        crate::yaml::from_str::<Hosts>(text)
            .map(|h| h.hosts.into_iter().map(|h| h.name).collect())
            .map_err(|e| format!("line {}: {}", e.line, e.message))
    };
    let before = names(text)?;
    if !before.iter().any(|n| n == name) {
        return Err(format!("host `{name}` is not in the `hosts:` list"));
    }
    if before.len() == 1 {
        return Err(format!(
            "`{name}` is the only host in the inventory: removing it would leave no cluster"
        ));
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            l.strip_prefix("hosts:")
                .is_some_and(|rest| rest.trim().is_empty() || rest.trim().starts_with('#'))
        })
        .ok_or("no top-level `hosts:` list in block style (`hosts:` then `  - ...` lines)")?;
    let spans = entry_spans(&lines, start);
    let entry_name = |(from, to): (usize, usize)| -> Option<String> {
        // The entry as a mapping of its own: its dash becomes a space, so the indentation
        // of a block entry's keys still lines up.
        let mut entry: Vec<String> = lines[from..to].iter().map(|l| l.to_string()).collect();
        let dash = entry[0].find('-')?;
        entry[0].replace_range(dash..dash + 1, " ");
        crate::yaml::from_str::<Named>(&entry.join("\n"))
            .ok()
            .map(|n| n.name)
    };
    let hits: Vec<(usize, usize)> = spans
        .iter()
        .copied()
        .filter(|&span| entry_name(span).as_deref() == Some(name))
        .collect();
    let [(from, to)] = hits[..] else {
        return Err(format!(
            "cannot find one entry for `{name}` under `hosts:` (found {}); remove it by hand",
            hits.len()
        ));
    };
    let mut out: Vec<&str> = lines[..from].to_vec();
    out.extend(&lines[to..]);
    let out = out.join("\n") + "\n";
    let expected: Vec<String> = before.into_iter().filter(|n| n != name).collect();
    match names(&out) {
        Ok(after) if after == expected => Ok(out),
        _ => Err(format!(
            "removing `{name}`'s lines would not leave exactly the other hosts (an unusual layout?); remove its entry by hand"
        )),
    }
}

/// Where each entry of the `hosts:` list at line `start` runs: its `-` line and the lines
/// indented deeper below it (blank lines only between them), as `(first, end)` with `end`
/// exclusive. Comments at the list's own indentation belong to no entry.
fn entry_spans(lines: &[&str], start: usize) -> Vec<(usize, usize)> {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let mut spans = Vec::new();
    let mut dash_indent = None;
    let mut i = start + 1;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let indent = indent_of(lines[i]);
        let is_entry = trimmed.starts_with('-') && dash_indent.is_none_or(|d| d == indent);
        if !is_entry {
            break;
        }
        dash_indent = Some(indent);
        let mut end = i + 1;
        for (j, line) in lines.iter().enumerate().skip(i + 1) {
            if line.trim().is_empty() {
                continue;
            }
            if indent_of(line) <= indent {
                break;
            }
            end = j + 1;
        }
        spans.push((i, end));
        i = end;
    }
    spans
}

/// Removes host `name` from the inventory file (see [`without_host`]), validating the
/// result first; the file's comments, layout and mode are kept, and the write is atomic.
pub fn remove_host(path: &Path, name: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
    let new = without_host(&text, name).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::inventory::parse(path, &new).map_err(|e| {
        format!("the inventory without `{name}` would be invalid, so it was not changed:\n{e}")
    })?;
    let mode = std::fs::metadata(path).map(|m| m.permissions());
    let tmp = path.with_extension("yaml.pgrepl.tmp");
    std::fs::write(&tmp, new)
        .and_then(|_| match mode {
            Ok(mode) => std::fs::set_permissions(&tmp, mode),
            Err(_) => Ok(()),
        })
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_after_the_last_host_keeping_comments() {
        let text = "# my cluster\nhosts:\n  # the primary\n  - { name: a, address: 10.0.0.1, role: primary }\n  - name: b\n    address: 10.0.0.2\n    role: replica\n\n# trailing comment\nssh: { user: x }\n";
        let out = with_replica(text, "c", "10.0.0.3", Some("c_slot")).unwrap();
        assert_eq!(
            out,
            "# my cluster\nhosts:\n  # the primary\n  - { name: a, address: 10.0.0.1, role: primary }\n  - name: b\n    address: 10.0.0.2\n    role: replica\n  - { name: c, address: 10.0.0.3, role: replica, slot: c_slot }\n\n# trailing comment\nssh: { user: x }\n"
        );
    }
}

#[cfg(test)]
mod primary_tests {
    use super::with_primary;

    #[test]
    fn swaps_roles_in_flow_and_block_entries_keeping_comments() {
        let text = "# my cluster\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: primary }  # first\n  - name: pg1\n    address: 10.0.0.11\n    role: replica\n  - { name: pg2, address: 10.0.0.12, role: replica }\nssh: { user: ubuntu }\n";
        let out = with_primary(text, "pg1").unwrap();
        assert_eq!(
            out,
            "# my cluster\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: replica }  # first\n  - name: pg1\n    address: 10.0.0.11\n    role: primary\n  - { name: pg2, address: 10.0.0.12, role: replica }\nssh: { user: ubuntu }\n"
        );
        assert_eq!(
            with_primary(&out, "pg1").unwrap(),
            out,
            "already so: unchanged"
        );
        assert!(with_primary(text, "pg9").is_err());
    }
}

#[cfg(test)]
mod remove_tests {
    use super::without_host;

    const TEXT: &str = "# my cluster\nhosts:\n  # the primary\n  - { name: pg0, address: 10.0.0.10, role: primary }  # first\n  - name: pg1\n    # moved racks in May\n    address: 10.0.0.11\n\n    role: replica\n  - { name: pg2, address: 10.0.0.12, role: replica, slot: pg2_slot }   # az b\n\n# ssh for all hosts\nssh: { user: ubuntu }\n";

    #[test]
    fn removes_a_flow_entry_keeping_comments_and_layout() {
        let out = without_host(TEXT, "pg2").unwrap();
        assert_eq!(
            out,
            "# my cluster\nhosts:\n  # the primary\n  - { name: pg0, address: 10.0.0.10, role: primary }  # first\n  - name: pg1\n    # moved racks in May\n    address: 10.0.0.11\n\n    role: replica\n\n# ssh for all hosts\nssh: { user: ubuntu }\n"
        );
    }

    #[test]
    fn removes_a_block_entry_with_its_inner_comment() {
        let out = without_host(TEXT, "pg1").unwrap();
        assert_eq!(
            out,
            "# my cluster\nhosts:\n  # the primary\n  - { name: pg0, address: 10.0.0.10, role: primary }  # first\n  - { name: pg2, address: 10.0.0.12, role: replica, slot: pg2_slot }   # az b\n\n# ssh for all hosts\nssh: { user: ubuntu }\n"
        );
    }

    #[test]
    fn removes_the_last_entry_of_an_unindented_list_before_other_keys() {
        let text = "hosts:\n- name: a\n  address: 10.0.0.1\n  role: primary\n- name: \"b\"\n  address: 10.0.0.2\n  role: replica\n  labels: { name: x }\n# end of hosts\nreplication: { password: x }\n";
        assert_eq!(
            without_host(text, "b").unwrap(),
            "hosts:\n- name: a\n  address: 10.0.0.1\n  role: primary\n# end of hosts\nreplication: { password: x }\n"
        );
    }

    #[test]
    fn a_name_inside_labels_is_not_the_host() {
        let text = "hosts:\n  - { name: a, address: 10.0.0.1, role: primary, labels: { name: b } }\n  - { name: b, address: 10.0.0.2, role: replica }\n";
        assert_eq!(
            without_host(text, "b").unwrap(),
            "hosts:\n  - { name: a, address: 10.0.0.1, role: primary, labels: { name: b } }\n"
        );
    }

    #[test]
    fn the_only_entry_and_an_unknown_name_are_refused() {
        let only = "hosts:\n  - { name: a, address: 10.0.0.1, role: primary }\n";
        let e = without_host(only, "a").unwrap_err();
        assert!(e.contains("only host"), "{e}");
        let e = without_host(TEXT, "pg9").unwrap_err();
        assert!(e.contains("not in"), "{e}");
    }
}
