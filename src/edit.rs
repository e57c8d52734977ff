//! Appending a host to the inventory file while keeping its comments and layout.
//!
//! The new host goes in as one flow-style line after the last entry of `hosts:`, with the
//! same indentation; the result is validated before the file is replaced. The file is
//! replaced atomically (a temporary file in the same folder, renamed over it) with the
//! mode and owner it had: an inventory kept at 0600 because it names hosts and secrets must
//! never come back readable by everyone. A symlinked inventory stays a symlink.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the inventory could not be edited; nothing was changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read inventory {}: {source}{}", .path.display(), hint_line(.hint))]
    Read {
        path: PathBuf,
        source: std::io::Error,
        hint: Option<String>,
    },
    #[error("{}: no top-level `hosts:` list{}", .path.display(), hint_line(.hint))]
    NoHostsList { path: PathBuf, hint: Option<String> },
    #[error(
        "{}{}: host `{name}` is already in the inventory with address {address}{}",
        .path.display(), line_part(.line), hint_line(.hint)
    )]
    AlreadyPresent {
        path: PathBuf,
        line: Option<u64>,
        name: String,
        address: String,
        hint: Option<String>,
    },
    #[error(
        "the inventory with `{name}` added would be invalid, so {} was not changed:\n{source}{}",
        .path.display(), hint_line(.hint)
    )]
    WouldBeInvalid {
        path: PathBuf,
        name: String,
        source: Box<crate::inventory::Error>,
        hint: Option<String>,
    },
    #[error("{}: cannot make `{name}` the primary: {reason}{}", .path.display(), hint_line(.hint))]
    SetPrimary {
        path: PathBuf,
        name: String,
        reason: String,
        hint: Option<String>,
    },
    #[error("cannot write {}: {source}{}", .path.display(), hint_line(.hint))]
    Write {
        path: PathBuf,
        source: std::io::Error,
        hint: Option<String>,
    },
    #[error(
        "cannot keep the owner of {} (uid {uid}, gid {gid}) on the new version: {source}{}",
        .path.display(), hint_line(.hint)
    )]
    KeepOwner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: std::io::Error,
        hint: Option<String>,
    },
}

impl Error {
    /// The inventory file concerned.
    pub fn path(&self) -> &Path {
        match self {
            Error::Read { path, .. }
            | Error::NoHostsList { path, .. }
            | Error::AlreadyPresent { path, .. }
            | Error::WouldBeInvalid { path, .. }
            | Error::SetPrimary { path, .. }
            | Error::Write { path, .. }
            | Error::KeepOwner { path, .. } => path,
        }
    }

    /// The line of the inventory concerned, where known.
    pub fn line(&self) -> Option<u64> {
        match self {
            Error::AlreadyPresent { line, .. } => *line,
            _ => None,
        }
    }

    /// What to do about it, where pgrepl knows.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Read { hint, .. }
            | Error::NoHostsList { hint, .. }
            | Error::AlreadyPresent { hint, .. }
            | Error::WouldBeInvalid { hint, .. }
            | Error::SetPrimary { hint, .. }
            | Error::Write { hint, .. }
            | Error::KeepOwner { hint, .. } => hint.as_deref(),
        }
    }
}

fn hint_line(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\nhint: {h}"))
        .unwrap_or_default()
}

fn line_part(line: &Option<u64>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// What `add-replica NAME --address ADDR` writes into the new host's line besides those.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    /// `--slot`: its slot name.
    pub slot: Option<&'a str>,
    /// `--upstream`: the member it streams from (a cascaded replica).
    pub upstream: Option<&'a str>,
}

/// Returns `text` (the inventory at `path`) with a replica line appended to its `hosts:`
/// list.
pub fn with_replica(
    path: &Path,
    text: &str,
    name: &str,
    address: &str,
    extra: Extra<'_>,
) -> Result<String, Error> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "hosts:")
        .ok_or_else(|| Error::NoHostsList {
            path: path.to_path_buf(),
            hint: Some(
                "write the list in block style, `hosts:` then one `  - ...` line per host, or add the host by hand"
                    .into(),
            ),
        })?;
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
    let slot = extra
        .slot
        .map(|s| format!(", slot: {s}"))
        .unwrap_or_default();
    let upstream = extra
        .upstream
        .map(|u| format!(", upstream: {u}"))
        .unwrap_or_default();
    let entry =
        format!("{pad}- {{ name: {name}, address: {address}, role: replica{slot}{upstream} }}");
    let mut out: Vec<String> = lines[..end].iter().map(|l| l.to_string()).collect();
    out.push(entry);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// Appends the replica to the inventory file unless it is there already; validates first.
/// With `dry_run` it checks everything and writes nothing.
pub fn append_replica(
    path: &Path,
    name: &str,
    address: &str,
    extra: Extra<'_>,
    dry_run: bool,
) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
        hint: Some("pass the inventory with -i FILE".into()),
    })?;
    if let Ok(inv) = crate::inventory::parse(path, &text)
        && let Some(h) = inv.hosts.iter().find(|h| h.name == name)
    {
        if h.address == address {
            return Ok(());
        }
        return Err(Error::AlreadyPresent {
            path: path.to_path_buf(),
            line: host_line(&text, name),
            name: name.to_string(),
            address: h.address.clone(),
            hint: Some("drop --address, or pick another name".into()),
        });
    }
    let new = with_replica(path, &text, name, address, extra)?;
    crate::inventory::parse(path, &new).map_err(|e| Error::WouldBeInvalid {
        path: path.to_path_buf(),
        name: name.to_string(),
        source: Box::new(e),
        hint: None,
    })?;
    if dry_run {
        return Ok(());
    }
    replace_keeping_metadata(path, &new)
}

/// The 1-based line on which host `name` is declared (`name: NAME`), if it can be found.
fn host_line(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .position(|l| names_host(l, name))
        .map(|i| i as u64 + 1)
}

/// Whether a line declares host `name` (`name: NAME`, bare or quoted, flow or block style).
fn names_host(line: &str, name: &str) -> bool {
    line.split("name:").skip(1).any(|rest| {
        let value = rest.trim_start();
        value
            .strip_prefix(name)
            .or_else(|| {
                value
                    .strip_prefix(['"', '\''])
                    .and_then(|v| v.strip_prefix(name))
                    .and_then(|v| v.strip_prefix(['"', '\'']))
            })
            .is_some_and(|after| after.is_empty() || after.starts_with([',', '}', ' ', '#']))
    })
}

/// Replaces the file at `path` with `text` atomically, keeping its mode and owner. A
/// symlink is followed, so the link stays and its target is replaced.
fn replace_keeping_metadata(path: &Path, text: &str) -> Result<(), Error> {
    let write_err = |source: std::io::Error, hint: Option<&str>| Error::Write {
        path: path.to_path_buf(),
        source,
        hint: hint.map(str::to_string),
    };
    let target = std::fs::canonicalize(path).map_err(|e| write_err(e, None))?;
    let meta = std::fs::metadata(&target).map_err(|e| write_err(e, None))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".pgrepl.tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            write_err(
                e,
                Some("pgrepl writes a temporary file beside the inventory and renames it: the folder must be writable"),
            )
        })?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| write_err(e, None))?;
    let file = tmp.as_file();
    let now = file.metadata().map_err(|e| write_err(e, None))?;
    if (now.uid(), now.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())).map_err(|source| {
            Error::KeepOwner {
                path: path.to_path_buf(),
                uid: meta.uid(),
                gid: meta.gid(),
                source,
                hint: Some(
                    "run pgrepl as the inventory's owner (or root), or add the host to the file by hand"
                        .into(),
                ),
            }
        })?;
    }
    // After the chown, which may clear set-id bits.
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| write_err(e, None))?;
    file.sync_all().map_err(|e| write_err(e, None))?;
    tmp.persist(&target).map_err(|e| write_err(e.error, None))?;
    // The rename is durable once the folder is on disk; failing to sync it is no reason to
    // report the edit as failed.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Returns `text` with `new_primary`'s entry saying `role: primary` and every other
/// entry's `role: primary` turned into `role: replica`, keeping everything else as it is.
pub fn with_primary(path: &Path, text: &str, new_primary: &str) -> Result<String, Error> {
    let fail = |reason: &str| {
        Error::SetPrimary {
        path: path.to_path_buf(),
        name: new_primary.to_string(),
        reason: reason.to_string(),
        hint: Some("set the roles in the inventory by hand: one `role: primary`, the others `role: replica`".into()),
    }
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "hosts:")
        .ok_or_else(|| fail("no top-level `hosts:` list"))?;
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
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut found = false;
    for &(from, to) in &entries {
        let is_new = (from..to).any(|i| names_host(lines[i], new_primary));
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
        return Err(fail("it is not in the `hosts:` list"));
    }
    // The new primary streams from no one: a cascaded replica promoted loses its upstream.
    rewrite_upstreams(
        &(out.join("\n") + "\n"),
        |name, _| name == new_primary,
        None,
    )
    .map_err(|e| fail(&e))
}

/// Makes `new_primary` the inventory file's primary (the others replicas), validating the
/// result first; the file's comments, layout, mode and owner are kept.
pub fn set_primary(path: &Path, new_primary: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
        hint: None,
    })?;
    let new = with_primary(path, &text, new_primary)?;
    if new == text {
        return Ok(());
    }
    let inventory = crate::inventory::parse(path, &new).map_err(|e| Error::SetPrimary {
        path: path.to_path_buf(),
        name: new_primary.to_string(),
        reason: format!("the result would be invalid:\n{e}"),
        hint: None,
    })?;
    if inventory
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.as_str())
        != Some(new_primary)
    {
        return Err(Error::SetPrimary {
            path: path.to_path_buf(),
            name: new_primary.to_string(),
            reason: "its role is not written as `role: replica` on its entry".into(),
            hint: Some("write `role: replica` (or primary) on every host entry".into()),
        });
    }
    replace_keeping_metadata(path, &new)
}

/// Returns `text` without host `name`'s entry in its `hosts:` list: a one-line flow entry
/// (`- { name: X, ... }`, with any comment at its end) or a block entry (`- name: X` and
/// the lines indented under it). Every other line stays as it is, comments included; a
/// comment above the entry stays too, since it may speak of more than this host. Refuses
/// to leave the list empty, and checks the result lists exactly the other hosts, in order.
///
/// Replicas that streamed from it (`upstream: NAME`) are given its own upstream (the
/// `upstream:` removed when that is the primary), as the cluster moves them there.
pub fn without_host(text: &str, name: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        upstream: Option<String>,
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
    let hits: Vec<(usize, usize)> = spans
        .iter()
        .copied()
        .filter(|&span| parse_entry::<Named>(&lines, span).is_some_and(|n| n.name == name))
        .collect();
    let [(from, to)] = hits[..] else {
        return Err(format!(
            "cannot find one entry for `{name}` under `hosts:` (found {}); remove it by hand",
            hits.len()
        ));
    };
    let its_upstream = parse_entry::<Entry>(&lines, (from, to)).and_then(|e| e.upstream);
    let mut out: Vec<&str> = lines[..from].to_vec();
    out.extend(&lines[to..]);
    let out = out.join("\n") + "\n";
    let expected: Vec<String> = before.into_iter().filter(|n| n != name).collect();
    match names(&out) {
        Ok(after) if after == expected => reparent(&out, name, its_upstream.as_deref()),
        _ => Err(format!(
            "removing `{name}`'s lines would not leave exactly the other hosts (an unusual layout?); remove its entry by hand"
        )),
    }
}

/// The host entry at `span` read as a mapping of its own (its dash becomes a space, so
/// the indentation of a block entry's keys still lines up); `None` if it does not read as
/// a `T`.
fn parse_entry<T: serde::de::DeserializeOwned>(
    lines: &[&str],
    (from, to): (usize, usize),
) -> Option<T> {
    let mut entry: Vec<String> = lines[from..to].iter().map(|l| l.to_string()).collect();
    let dash = entry[0].find('-')?;
    entry[0].replace_range(dash..dash + 1, " ");
    crate::yaml::from_str::<T>(&entry.join("\n")).ok()
}

/// Returns `text` with every host entry that says `upstream: FROM` saying `upstream: TO`
/// instead, or (`to` = `None`) no `upstream:` at all. Other lines stay as they are.
pub fn reparent(text: &str, from: &str, to: Option<&str>) -> Result<String, String> {
    rewrite_upstreams(text, |_, upstream| upstream == from, to)
}

/// Rewrites the `upstream:` of every host entry for which `which(name, upstream)` holds
/// (see [`reparent`]).
fn rewrite_upstreams(
    text: &str,
    which: impl Fn(&str, &str) -> bool,
    to: Option<&str>,
) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        upstream: Option<String>,
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == "hosts:") else {
        return Ok(text.to_string());
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for span in entry_spans(&lines, start) {
        let Some(Entry {
            name,
            upstream: Some(from),
        }) = parse_entry::<Entry>(&lines, span)
        else {
            continue;
        };
        if !which(&name, &from) {
            continue;
        }
        let from = from.as_str();
        let (first, end) = span;
        let mut done = false;
        for line in &mut out[first..end] {
            let Some(at) = line.find("upstream:") else {
                continue;
            };
            let value_start = at + "upstream:".len();
            let rest = &line[value_start..];
            let value_len = rest.len() - rest.trim_start().len()
                + rest
                    .trim_start()
                    .find([',', '}', ' ', '#'])
                    .unwrap_or(rest.trim_start().len());
            let value = rest[..value_len].trim();
            if value.trim_matches(['"', '\'']) != from {
                continue;
            }
            *line = match to {
                Some(to) => format!(
                    "{}upstream: {to}{}",
                    &line[..at],
                    &line[value_start + value_len..]
                ),
                None if line.trim_start().starts_with("upstream:") => String::from("\u{0}"),
                None => {
                    // Flow style: drop the key with the comma before (or after) it.
                    let before = line[..at].trim_end();
                    let after = &line[value_start + value_len..];
                    match before.strip_suffix(',') {
                        Some(b) => format!("{b}{after}"),
                        None => format!(
                            "{before} {}",
                            after.trim_start().trim_start_matches(',').trim_start()
                        ),
                    }
                }
            };
            done = true;
        }
        if !done {
            let name = lines[first].trim();
            return Err(format!(
                "cannot rewrite `upstream: {from}` in `{name}`; edit it by hand"
            ));
        }
    }
    let out: Vec<String> = out.into_iter().filter(|l| l != "\u{0}").collect();
    Ok(out.join("\n") + "\n")
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

    const INVENTORY: &str = "# my cluster\nreplication: { password: x }\nhosts:\n  - { name: a, address: 10.0.0.1, role: primary }\n  - { name: b, address: 10.0.0.2, role: replica }\n";

    fn file_with(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, INVENTORY).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "inventory.yaml" && n != "real.yaml")
            .collect()
    }

    #[test]
    fn appends_after_the_last_host_keeping_comments() {
        let text = "# my cluster\nhosts:\n  # the primary\n  - { name: a, address: 10.0.0.1, role: primary }\n  - name: b\n    address: 10.0.0.2\n    role: replica\n\n# trailing comment\nssh: { user: x }\n";
        let out = with_replica(
            Path::new("i.yaml"),
            text,
            "c",
            "10.0.0.3",
            Extra {
                slot: Some("c_slot"),
                upstream: Some("b"),
            },
        )
        .unwrap();
        assert_eq!(
            out,
            "# my cluster\nhosts:\n  # the primary\n  - { name: a, address: 10.0.0.1, role: primary }\n  - name: b\n    address: 10.0.0.2\n    role: replica\n  - { name: c, address: 10.0.0.3, role: replica, slot: c_slot, upstream: b }\n\n# trailing comment\nssh: { user: x }\n"
        );
    }

    /// Regression: the edit went through `fs::write` of a new file, so 0600 became 0644.
    #[test]
    fn appending_keeps_the_files_mode() {
        for wanted in [0o600, 0o640, 0o644] {
            let (dir, path) = file_with(wanted);
            append_replica(&path, "c", "10.0.0.3", Extra::default(), false).unwrap();
            assert_eq!(mode(&path), wanted, "mode {wanted:o}");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("name: c, address: 10.0.0.3"), "{text}");
            assert!(text.starts_with("# my cluster\n"));
            assert!(
                leftovers(dir.path()).is_empty(),
                "{:?}",
                leftovers(dir.path())
            );
        }
    }

    #[test]
    fn appending_keeps_the_files_owner() {
        let (_dir, path) = file_with(0o600);
        // Only root may give a file away; elsewhere the owner is ours anyway.
        if std::os::unix::fs::chown(&path, Some(4242), Some(4343)).is_err() {
            eprintln!("not root: owner change not exercised");
            return;
        }
        append_replica(&path, "c", "10.0.0.3", Extra::default(), false).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symlinked_inventory_stays_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, INVENTORY).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("inventory.yaml");
        std::os::unix::fs::symlink("real.yaml", &link).unwrap();
        append_replica(&link, "c", "10.0.0.3", Extra::default(), false).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(std::fs::read_to_string(&real).unwrap().contains("name: c"));
        assert_eq!(mode(&real), 0o600);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn dry_run_and_a_host_already_there_change_nothing() {
        let (_dir, path) = file_with(0o600);
        append_replica(&path, "c", "10.0.0.3", Extra::default(), true).unwrap();
        append_replica(&path, "b", "10.0.0.2", Extra::default(), false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), INVENTORY);
    }

    #[test]
    fn errors_name_the_file_the_line_and_a_hint() {
        let (_dir, path) = file_with(0o600);
        let err = append_replica(&path, "b", "10.0.0.9", Extra::default(), false).unwrap_err();
        assert!(matches!(err, Error::AlreadyPresent { .. }), "{err:?}");
        assert_eq!(err.path(), path);
        assert_eq!(err.line(), Some(5));
        assert_eq!(
            err.to_string(),
            format!(
                "{}:5: host `b` is already in the inventory with address 10.0.0.2\nhint: drop --address, or pick another name",
                path.display()
            )
        );

        let err = append_replica(&path, "c", "10.0.0.2", Extra::default(), false).unwrap_err();
        assert!(matches!(err, Error::WouldBeInvalid { .. }), "{err:?}");
        assert!(err.to_string().contains("duplicate address"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), INVENTORY);

        let err = append_replica(
            &path.with_file_name("missing.yaml"),
            "c",
            "1.2.3.4",
            Extra::default(),
            false,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Read { .. }) && err.hint().is_some());
        assert!(err.to_string().contains("missing.yaml"), "{err}");

        let err = with_replica(&path, "hosts: []\n", "c", "1.2.3.4", Extra::default()).unwrap_err();
        assert!(matches!(err, Error::NoHostsList { .. }));
        assert!(
            err.to_string()
                .contains("\nhint: write the list in block style")
        );
    }

    #[test]
    fn host_lines_are_found_in_flow_and_block_style() {
        let text = "hosts:\n  - { name: ab, address: x }\n  - name: a\n  - name: \"c\" # q\n";
        assert_eq!(host_line(text, "a"), Some(3));
        assert_eq!(host_line(text, "ab"), Some(2));
        assert_eq!(host_line(text, "c"), Some(4));
        assert_eq!(host_line(text, "d"), None);
    }
}

#[cfg(test)]
mod primary_tests {
    use super::with_primary;

    #[test]
    fn swaps_roles_in_flow_and_block_entries_keeping_comments() {
        let text = "# my cluster\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: primary }  # first\n  - name: pg1\n    address: 10.0.0.11\n    role: replica\n  - { name: pg2, address: 10.0.0.12, role: replica }\nssh: { user: ubuntu }\n";
        let p = std::path::Path::new("i.yaml");
        let out = with_primary(p, text, "pg1").unwrap();
        assert_eq!(
            out,
            "# my cluster\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: replica }  # first\n  - name: pg1\n    address: 10.0.0.11\n    role: primary\n  - { name: pg2, address: 10.0.0.12, role: replica }\nssh: { user: ubuntu }\n"
        );
        assert_eq!(
            with_primary(p, &out, "pg1").unwrap(),
            out,
            "already so: unchanged"
        );
        assert!(with_primary(p, text, "pg9").is_err());
        let hyphens = "hosts:\n  - { name: db-a-0, address: a, role: primary }\n  - { name: db-b-0, address: b, role: replica }\n";
        let swapped = with_primary(p, hyphens, "db-b-0").unwrap();
        assert!(
            swapped.contains("name: db-b-0, address: b, role: primary"),
            "{swapped}"
        );
        assert!(
            swapped.contains("name: db-a-0, address: a, role: replica"),
            "{swapped}"
        );
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

    #[test]
    fn removing_an_upstream_moves_its_replicas_to_its_own_upstream() {
        let text = "hosts:\n  - { name: a, address: 10.0.0.1, role: primary }\n  - { name: b, address: 10.0.0.2, role: replica }\n  - { name: c, address: 10.0.0.3, role: replica, upstream: b }  # zone b\n  - name: d\n    address: 10.0.0.4\n    role: replica\n    upstream: c\n  - { name: e, address: 10.0.0.5, upstream: b, role: replica }\n";
        // b streams from the primary: c and e lose their `upstream:`.
        let out = without_host(text, "b").unwrap();
        assert_eq!(
            out,
            "hosts:\n  - { name: a, address: 10.0.0.1, role: primary }\n  - { name: c, address: 10.0.0.3, role: replica }  # zone b\n  - name: d\n    address: 10.0.0.4\n    role: replica\n    upstream: c\n  - { name: e, address: 10.0.0.5, role: replica }\n"
        );
        // c streams from b: d (block style) now streams from b.
        let out = without_host(text, "c").unwrap();
        assert!(
            out.contains("    role: replica\n    upstream: b\n"),
            "{out}"
        );
        assert!(!out.contains("name: c,"), "{out}");
        // And with no upstream left at all, the block line goes.
        let out = crate::edit::reparent(text, "c", None).unwrap();
        assert!(out.contains("    role: replica\n  - { name: e"), "{out}");
    }
}
