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
