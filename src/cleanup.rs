//! Data dirs pgrepl moved aside before a copy (`DATA.pgrepl-TIMESTAMP`): found and sized on
//! each host, and removed by `pgrepl cleanup` only where that is safe.
//!
//! pgrepl never deletes a data dir in the run that moves it aside: it is the way back if
//! the copy fails. Once a replica verifies healthy its old data dir is only disk used, so
//! `cleanup` removes it. It never removes one on the primary, nor one of a replica that does
//! not verify healthy (it may be the only copy of something), and it removes nothing whose
//! name is not exactly a moved-aside name beside that host's data dir, or beside a
//! tablespace location that data dir (or a moved-aside one) links to in `pg_tblspc`: the
//! tablespace dirs a copy moved aside with the data dir (`LOCATION.pgrepl-TIMESTAMP`).

use serde::Serialize;

use crate::inventory::Host;
use crate::ssh::{Command, Session};
use crate::verify::Health;

/// Above this share of its disk, verify warns about moved-aside data dirs.
pub const WARN_SHARE: f64 = 0.10;

/// The moved-aside data dirs of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aside {
    /// Size of the filesystem that holds the data dir.
    pub disk_bytes: u64,
    /// Each dir and its size in bytes.
    pub dirs: Vec<(String, u64)>,
    /// How many of `dirs` are tablespace dirs moved aside with a data dir.
    pub tablespace_dirs: usize,
}

impl Aside {
    pub fn bytes(&self) -> u64 {
        self.dirs.iter().map(|(_, b)| b).sum()
    }

    /// Their share of the disk (0 when its size is unknown).
    pub fn share(&self) -> f64 {
        if self.disk_bytes == 0 {
            0.0
        } else {
            self.bytes() as f64 / self.disk_bytes as f64
        }
    }

    /// Verify's check of them (`primary`: on the primary, which cleanup leaves alone):
    /// `None` when there are none; a warning above [`WARN_SHARE`].
    pub fn check(&self, primary: bool) -> Option<(Health, String)> {
        if self.dirs.is_empty() {
            return None;
        }
        let tablespaces = match self.tablespace_dirs {
            0 => String::new(),
            n => format!(" and {n} tablespace dir(s) moved with them"),
        };
        let used = format!(
            "{} moved-aside data dir(s){tablespaces} use {}, {:.1}% of the disk",
            self.dirs.len() - self.tablespace_dirs,
            crate::actions::human(self.bytes()),
            self.share() * 100.0
        );
        let what = if primary {
            "`pgrepl cleanup` leaves the primary's alone: check them and remove them by hand"
        } else {
            "`pgrepl cleanup` removes them once this replica verifies healthy"
        };
        Some(if self.share() > WARN_SHARE {
            (
                Health::Warn,
                format!("{used}, over {:.0}%: {what}", WARN_SHARE * 100.0),
            )
        } else {
            (Health::Ok, format!("{used}: {what}"))
        })
    }
}

/// Whether `path` is a name pgrepl gives a moved-aside `data_dir`: `DATA.pgrepl-YYYYMMDDTHHMMSS`.
pub fn is_moved_aside(data_dir: &str, path: &str) -> bool {
    let Some(stamp) = path
        .strip_prefix(data_dir.trim_end_matches('/'))
        .and_then(|rest| rest.strip_prefix(".pgrepl-"))
    else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 15
        && b[8] == b'T'
        && b[..8].iter().chain(&b[9..]).all(u8::is_ascii_digit)
        && !data_dir.trim_end_matches('/').is_empty()
}

/// Lists, beside data dir `$d`: the disk's size, each moved-aside data dir and each
/// moved-aside tablespace dir, with sizes (`disk N`, `dir N PATH`, `tsdir N LOC\tPATH`).
/// Shell built-ins where they do (verify runs it on every host): `du` only per dir found.
pub(crate) const LIST_BODY: &str = r#"parent=${d%/*}; while [ -n "$parent" ] && [ ! -d "$parent" ]; do parent=${parent%/*}; done
if fs=$(stat -f -c '%b %S' "${parent:-/}"); then printf 'disk %s\n' "$(( ${fs% *} * ${fs#* } ))"; fi
for a in "$d".pgrepl-*; do [ -d "$a" ] || continue; printf 'dir %s %s\n' "$(du -sb "$a" | cut -f1)" "$a"; done
# Tablespace dirs moved aside with a data dir: beside each location a data dir links to.
links=false; for l in "$d"/pg_tblspc/* "$d".pgrepl-*/pg_tblspc/*; do if [ -L "$l" ]; then links=true; break; fi; done
if [ "$links" = true ]; then
for l in "$d"/pg_tblspc/* "$d".pgrepl-*/pg_tblspc/*; do [ -L "$l" ] && readlink "$l"; done | sort -u | while IFS= read -r t; do
  for a in "$t".pgrepl-*; do [ -d "$a" ] || continue; printf 'tsdir %s %s\t%s\n' "$(du -sb "$a" | cut -f1)" "$t" "$a"; done
done
fi"#;

/// Finds the moved-aside data dirs beside the host's data dir, with their sizes.
pub async fn list(session: &Session, host: &Host) -> Result<Aside, crate::ssh::Error> {
    let out = session
        .run(
            &Command::script(
                &format!("d=\"${{1%/}}\"\n{LIST_BODY}"),
                &[&host.pg.data_dir],
            )
            .as_root(),
        )
        .await?;
    Ok(parse_list(&out.stdout, &host.pg.data_dir))
}

/// Reads [`LIST_BODY`]'s lines for data dir `data_dir`.
pub(crate) fn parse_list(text: &str, data_dir: &str) -> Aside {
    let mut aside = Aside::default();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("disk ") {
            aside.disk_bytes = n.trim().parse().unwrap_or(0);
        } else if let Some((size, path)) = line.strip_prefix("dir ").and_then(|r| r.split_once(' '))
            && is_moved_aside(data_dir, path)
        {
            aside
                .dirs
                .push((path.to_string(), size.parse().unwrap_or(0)));
        } else if let Some((size, rest)) =
            line.strip_prefix("tsdir ").and_then(|r| r.split_once(' '))
            && let Some((location, path)) = rest.split_once('\t')
            && location.starts_with('/')
            && is_moved_aside(location, path)
        {
            aside
                .dirs
                .push((path.to_string(), size.parse().unwrap_or(0)));
            aside.tablespace_dirs += 1;
        }
    }
    aside
}

/// Removes one moved-aside data dir or tablespace dir (refusing any path [`list`] does
/// not find on the host now).
pub async fn remove(session: &Session, host: &Host, path: &str) -> Result<(), String> {
    let listed = list(session, host).await.map_err(|e| e.to_string())?;
    if !listed.dirs.iter().any(|(p, _)| p == path) {
        return Err(format!(
            "{path} is not a moved-aside data dir of {} nor a tablespace dir moved aside with one",
            host.pg.data_dir
        ));
    }
    session
        .run(&Command::new("rm").args(["-rf", "--", path]).as_root())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What cleanup does with one dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    Removed,
    WouldRemove,
    Kept,
    /// Its removal failed.
    Failed,
}

/// One moved-aside data dir as cleanup reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub host: String,
    pub path: String,
    pub bytes: u64,
    pub action: Fate,
    /// Why it is kept (or why its removal failed).
    pub reason: Option<String>,
}

/// Why a host's moved-aside dirs must stay, if they must: on the primary, or on a replica
/// that does not verify healthy (`failing`: the names of its failed checks).
pub fn keep_reason(host: &Host, health: Option<Health>, failing: &[String]) -> Option<String> {
    if host.is_primary() {
        return Some(
            "on the primary: pgrepl never removes them there; check and remove by hand".into(),
        );
    }
    match health {
        None => Some(format!("`{}` was not verified", host.name)),
        Some(Health::Fail) => Some(format!(
            "`{}` does not verify healthy ({}): it may still need it",
            host.name,
            failing.join(", ")
        )),
        Some(_) => None,
    }
}

/// The human table: one line per dir, and what was freed.
pub fn render(entries: &[Entry], check: bool) -> String {
    if entries.is_empty() {
        return "no moved-aside data dirs\n".into();
    }
    let mut out = String::new();
    for e in entries {
        let what = match e.action {
            Fate::Removed => "removed".to_string(),
            Fate::WouldRemove => "would remove".to_string(),
            Fate::Kept => format!("kept: {}", e.reason.clone().unwrap_or_default()),
            Fate::Failed => format!("FAILED: {}", e.reason.clone().unwrap_or_default()),
        };
        out.push_str(&format!(
            "{}  {}  {}  {what}\n",
            e.host,
            e.path,
            crate::actions::human(e.bytes)
        ));
    }
    let freed: u64 = entries
        .iter()
        .filter(|e| matches!(e.action, Fate::Removed | Fate::WouldRemove))
        .map(|e| e.bytes)
        .sum();
    out.push_str(&format!(
        "{} {}\n",
        if check { "would free" } else { "freed" },
        crate::actions::human(freed)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_pgrepl_gives_are_moved_aside_dirs() {
        let d = "/var/lib/postgresql/15/main";
        assert!(is_moved_aside(
            d,
            "/var/lib/postgresql/15/main.pgrepl-20250101T101010"
        ));
        assert!(is_moved_aside("/data/", "/data.pgrepl-20250101T101010"));
        for other in [
            "/var/lib/postgresql/15/main",
            "/var/lib/postgresql/15/main.pgrepl-",
            "/var/lib/postgresql/15/main.pgrepl-2025010T101010",
            "/var/lib/postgresql/15/main.pgrepl-20250101T101010/..",
            "/var/lib/postgresql/15/main.pgrepl-20250101T10101x",
            "/var/lib/postgresql/15/other.pgrepl-20250101T101010",
        ] {
            assert!(!is_moved_aside(d, other), "{other}");
        }
        assert!(!is_moved_aside("/", "/.pgrepl-20250101T101010"));
    }

    #[test]
    fn listing_keeps_only_moved_aside_dirs_and_verify_warns_over_a_tenth_of_the_disk() {
        let d = "/var/lib/postgresql/15/main";
        let text = format!(
            "disk 1000\ndir 60 {d}.pgrepl-20250101T101010\ndir 50 {d}.pgrepl-20250102T101010\ndir 999 /etc\n"
        );
        let aside = parse_list(&text, d);
        assert_eq!(aside.disk_bytes, 1000);
        assert_eq!(aside.dirs.len(), 2);
        // A tablespace dir moved aside with one: only a moved-aside name of its location.
        let with_ts = parse_list(
            &format!(
                "{text}tsdir 7 /srv/ts1\t/srv/ts1.pgrepl-20250101T101010\ntsdir 9 /srv/ts1\t/etc\ntsdir 9 rel\trel.pgrepl-20250101T101010\n"
            ),
            d,
        );
        assert_eq!(
            with_ts.dirs.last(),
            Some(&("/srv/ts1.pgrepl-20250101T101010".to_string(), 7))
        );
        assert_eq!(with_ts.dirs.len(), 3);
        assert_eq!(with_ts.tablespace_dirs, 1);
        assert!(
            with_ts.check(false).unwrap().1.starts_with(
                "2 moved-aside data dir(s) and 1 tablespace dir(s) moved with them use"
            ),
            "{:?}",
            with_ts.check(false)
        );
        assert_eq!(aside.bytes(), 110);
        let (health, detail) = aside.check(false).unwrap();
        assert_eq!(health, Health::Warn, "{detail}");
        assert!(detail.contains("11.0% of the disk, over 10%"), "{detail}");
        let small = Aside {
            dirs: vec![aside.dirs[0].clone()],
            ..aside.clone()
        };
        assert_eq!(small.check(false).unwrap().0, Health::Ok);
        assert!(small.check(true).unwrap().1.contains("by hand"));
        assert_eq!(Aside::default().check(false), None);
    }
}
