//! `remove-replica`: take a replica out of the cluster so that nothing is left behind.
//!
//! What a removal forgets comes back to bite: a slot keeps WAL on the primary until its
//! disk fills, a pg_hba rule lets the old address replicate again, and a host that boots
//! as a standby streams again. So one run works on the inventory *without* the host (every
//! template, slot list and verify sees only the members that stay) plus the host itself
//! as one extra member, the last, for its own steps ([`Cluster::add_removal`]):
//!
//! - first the primary stops counting on it: its settings (`synchronous_standby_names`)
//!   and pg_hba block are rendered again without it, and reloaded;
//! - on the host: PostgreSQL stops through its service manager; `standby.signal`,
//!   `primary_conninfo`, `primary_slot_name` and the replication passfile go, so it would
//!   start as a standalone server, never as a standby; autostart is turned off where the
//!   layout says how; its data stays (or, with `--wipe`, is moved aside, never deleted);
//! - then any walsender still serving it is ended and its slot dropped, on the primary and
//!   every other member, which also get the same settings and pg_hba block.
//!
//! These actions never delete data, and every one looks first, so a re-run changes
//! nothing that is already done.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use super::Cluster;
use super::context::HostCtx;
use crate::inventory::{Host, Layout, ServiceKind};
use crate::pg::{ServerState, literal};
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

/// Where pgrepl notes an autostart it turned off, so that starting the host again as a
/// replica (add-replica) turns it back on: `KIND WHAT PREVIOUS` on one line.
const AUTOSTART_NOTE: &str = "/var/lib/pgrepl/autostart-off";

/// The comment pgrepl puts above the mode it sets in Debian's `start.conf`.
const START_CONF_COMMENT: &str =
    "# set by pgrepl remove-replica: this host left its cluster; pgrepl add-replica sets it back";

/// The replica a `remove-replica` run takes out.
#[derive(Debug)]
pub struct Removal {
    /// Its inventory name, also its walsenders' `application_name`.
    pub name: String,
    /// Its physical slot on the primary.
    pub slot: String,
    /// The host itself; `None` when it has already left the inventory (a re-run, which
    /// only looks for a slot left for it).
    pub host: Option<Host>,
    /// Move its data dir aside instead of keeping it in place.
    pub wipe: bool,
    /// Go on without it when it cannot be reached.
    pub force: bool,
    /// The cascaded replicas that streamed from it (they move to its upstream first).
    pub children: Vec<String>,
    /// What its steps did, for the recap.
    done: Mutex<Done>,
}

/// What the steps on the removed host did.
#[derive(Debug, Default, Clone)]
struct Done {
    /// Where its data is now.
    data: Option<Data>,
    /// How its autostart was left.
    autostart: Option<String>,
}

/// Where the removed host's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// In its data dir, as it was.
    Kept(String),
    /// Moved aside by `--wipe` (this run or an earlier one).
    MovedTo(String),
    /// Its data dir is empty or missing.
    None(String),
}

impl std::fmt::Display for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Data::Kept(dir) => write!(f, "its data is kept in {dir}"),
            Data::MovedTo(dir) => write!(
                f,
                "its data was moved to {dir} (kept: delete it when you no longer need it)"
            ),
            Data::None(dir) => write!(f, "no data in {dir}"),
        }
    }
}

impl Removal {
    /// The removal of an inventory host.
    pub fn of(host: Host, wipe: bool, force: bool) -> Self {
        Removal {
            name: host.name.clone(),
            slot: host
                .slot
                .clone()
                .unwrap_or_else(|| crate::inventory::default_slot_name(&host.name)),
            host: Some(host),
            wipe,
            force,
            children: Vec::new(),
            done: Mutex::default(),
        }
    }

    /// A host no longer in the inventory: only its slot (named by the default rule) and
    /// its walsenders can be looked for.
    pub fn gone(name: &str) -> Self {
        Removal {
            name: name.to_string(),
            slot: crate::inventory::default_slot_name(name),
            host: None,
            wipe: false,
            force: false,
            children: Vec::new(),
            done: Mutex::default(),
        }
    }

    fn done(&self) -> std::sync::MutexGuard<'_, Done> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the removed host's data is, once its steps ran.
    pub fn data(&self) -> Option<Data> {
        self.done().data.clone()
    }
}

impl Cluster {
    /// Adds the host being removed as the engine's last member (index
    /// `inventory.node_count()`: after the members and the proxies), outside the inventory;
    /// returns its index. Call it before connecting.
    pub fn add_removal(&mut self, removal: Removal) -> Option<usize> {
        let index = removal.host.is_some().then(|| {
            self.sessions.push(None);
            self.unreachable.push(None);
            self.memos.push(Default::default());
            self.backup_pids.push(Mutex::new(None));
            self.inventory.node_count()
        });
        self.removal = Some(removal);
        index
    }

    /// The removed host's index, when it is a member of this run.
    pub fn removal_index(&self) -> Option<usize> {
        let r = self.removal.as_ref()?;
        r.host.as_ref().map(|_| self.inventory.node_count())
    }
}

/// With `--force`, the removed host that could not be reached is passed over: each of its
/// steps is skipped, saying so, instead of failing.
pub fn passed_over(cluster: &Cluster, index: usize) -> Option<Outcome> {
    let removal = cluster.removal.as_ref()?;
    cluster.unreachable.get(index)?.as_ref()?;
    (removal.force && cluster.removal_index() == Some(index))
        .then(|| Outcome::skipped("not reached (--force): left as it was"))
}

/// The recap's line on the removed host.
pub fn left_as(cluster: &Cluster, index: usize, failed: bool) -> Option<String> {
    let removal = cluster.removal.as_ref()?;
    if cluster.removal_index() != Some(index) {
        return None;
    }
    let primary = cluster
        .inventory
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map_or("the primary", |h| h.name.as_str());
    if passed_over(cluster, index).is_some() {
        return Some(format!(
            "not reached, so still set up as a standby of {primary}: if it comes back it cannot stream (its slot and pg_hba rules are gone) but will keep trying; on it, stop PostgreSQL, remove standby.signal from its data dir and turn its autostart off"
        ));
    }
    if failed || cluster.options.check {
        return None;
    }
    let done = removal.done();
    let data = done
        .data
        .as_ref()
        .map_or_else(|| "its data dir is as it was".to_string(), Data::to_string);
    let autostart = done.autostart.clone().unwrap_or_default();
    Some(format!(
        "out of the cluster: PostgreSQL stopped, no standby configuration (it would start standalone){autostart}; {data}"
    ))
}

/// On the removed host: `standby.signal`, `primary_conninfo` and `primary_slot_name` go,
/// so the server would start standalone, never as a standby; so does the replication
/// passfile, which holds the cluster's replication password.
pub async fn drop_standby_config(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let look = r#"d="$1"; home=$(getent passwd postgres | cut -d: -f6)
[ -f "$d/standby.signal" ] && echo "signal $d/standby.signal"
[ -f "$d/postgresql.auto.conf" ] && grep -qE '^[[:space:]]*(primary_conninfo|primary_slot_name)[[:space:]]*=' "$d/postgresql.auto.conf" && echo "conf $d/postgresql.auto.conf"
[ -n "$home" ] && [ -f "$home/.pgrepl_pgpass" ] && echo "passfile $home/.pgrepl_pgpass"
true"#;
    let data = &ctx.host.pg.data_dir;
    let found = ctx
        .session
        .run(&Command::script(look, &[data]).as_root())
        .await?
        .stdout;
    let mut what = Vec::new();
    for line in found.lines() {
        match line.split_once(' ') {
            Some(("signal", path)) => what.push(path.to_string()),
            Some(("conf", path)) => what.push(format!(
                "primary_conninfo and primary_slot_name from {path}"
            )),
            Some(("passfile", path)) => what.push(format!("the replication passfile {path}")),
            _ => {}
        }
    }
    if what.is_empty() {
        return Ok(Outcome::ok("no standby configuration left"));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would remove {}",
            what.join(", ")
        )));
    }
    // postgresql.auto.conf is rewritten atomically with its owner and mode.
    let change = r#"set -e; d="$1"; f="$d/postgresql.auto.conf"; home=$(getent passwd postgres | cut -d: -f6)
rm -f "$d/standby.signal"
if [ -f "$f" ]; then
  tmp="$f.pgrepl.tmp"
  grep -vE '^[[:space:]]*(primary_conninfo|primary_slot_name)[[:space:]]*=' "$f" > "$tmp" || true
  chown --reference="$f" "$tmp"; chmod --reference="$f" "$tmp"; mv -f "$tmp" "$f"
fi
if [ -n "$home" ]; then rm -f "$home/.pgrepl_pgpass"; fi"#;
    ctx.session
        .run(&Command::script(change, &[data]).as_root())
        .await?;
    Ok(Outcome::changed(format!("removed {}", what.join(", "))))
}

/// How PostgreSQL starts at boot on a host, as far as its layout says.
enum Autostart {
    /// Debian's `start.conf` (`auto`, `manual` or `disabled`), which the boot-time systemd
    /// generator, `postgresql@.service` and `pg_ctlcluster` all obey.
    StartConf(String),
    /// A systemd unit, enabled or not.
    Unit(String),
    /// `pg_ctl`: whatever starts it at boot is outside what the inventory says.
    Unknown,
}

fn autostart_of(host: &Host) -> Autostart {
    let pg = &host.pg;
    if pg.layout == Layout::Debian || pg.service == ServiceKind::PgCtlcluster {
        Autostart::StartConf(format!(
            "/etc/postgresql/{}/{}/start.conf",
            pg.version, pg.cluster
        ))
    } else if pg.service == ServiceKind::Systemd {
        Autostart::Unit(pg.unit.clone())
    } else {
        Autostart::Unknown
    }
}

/// On the removed host: PostgreSQL no longer starts at boot. Debian: `start.conf` says
/// `disabled` (so neither boot, `systemctl` nor `pg_ctlcluster` starts it by accident);
/// systemd: the unit is disabled. The previous state is noted on the host so that
/// add-replica turns it back on ([`autostart_back_on`]).
pub async fn autostart_off(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let (kind, what, current, off) = match autostart_of(ctx.host) {
        Autostart::Unknown => {
            if let Some(r) = &ctx.cluster.removal {
                r.done().autostart = Some(
                    ", autostart unknown (service: pg_ctl): whatever starts it at boot would start it standalone".into(),
                );
            }
            return Ok(Outcome::skipped(
                "with `service: pg_ctl` pgrepl does not know what starts PostgreSQL at boot here; if something does, it comes up standalone, not as a standby",
            ));
        }
        Autostart::StartConf(path) => {
            let look = r#"if [ -f "$1" ]; then sed -e 's/#.*//' "$1" | tr -d ' \t' | grep -v '^$' | head -n1; fi"#;
            let out = ctx
                .session
                .run(&Command::script(look, &[&path]).as_root())
                .await?;
            let mode = match out.stdout.trim() {
                "" => "auto".to_string(),
                m => m.to_string(),
            };
            let off = mode == "disabled";
            ("start.conf", path, mode, off)
        }
        Autostart::Unit(unit) => {
            let look =
                Command::script(r#"systemctl is-enabled "$1" 2>/dev/null || true"#, &[&unit])
                    .as_root();
            let state = ctx.session.run(&look).await?.stdout.trim().to_string();
            let off = state != "enabled";
            ("systemd", unit, state, off)
        }
    };
    if off {
        let detail = if kind == "start.conf" {
            format!("{what} already says disabled")
        } else {
            format!("systemd unit {what} is not enabled ({current})")
        };
        remember_autostart(ctx, &detail);
        return Ok(Outcome::ok(detail));
    }
    let (would, done) = if kind == "start.conf" {
        (
            format!("would set {what} to disabled (now {current})"),
            format!("{what} set to disabled (was {current})"),
        )
    } else {
        (
            format!("would disable systemd unit {what}"),
            format!("systemd unit {what} disabled"),
        )
    };
    if ctx.check_mode() {
        return Ok(Outcome::changed(would));
    }
    let script = if kind == "start.conf" {
        format!(
            r#"set -e; f="$1"; mode='^[[:space:]]*(auto|manual|disabled)'
if grep -qE "$mode" "$f" 2>/dev/null; then
  sed -i -E "0,/$mode/s/$mode/{START_CONF_COMMENT}\ndisabled/" "$f"
else
  printf '%s\ndisabled\n' '{START_CONF_COMMENT}' >> "$f"
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
mkdir -p "$(dirname "$3")"; printf 'start.conf %s %s\n' "$1" "$2" > "$3""#
        )
    } else {
        r#"set -e; systemctl disable "$1"
mkdir -p "$(dirname "$3")"; printf 'systemd %s %s\n' "$1" "$2" > "$3""#
            .to_string()
    };
    ctx.session
        .run(&Command::script(&script, &[&what, &current, AUTOSTART_NOTE]).as_root())
        .await?;
    remember_autostart(ctx, &done);
    Ok(Outcome::changed(done))
}

fn remember_autostart(ctx: &HostCtx<'_>, detail: &str) {
    if let Some(r) = &ctx.cluster.removal {
        r.done().autostart = Some(format!(", autostart off ({detail})"));
    }
}

/// Before a host starts as a replica again: turns back on the autostart that
/// [`autostart_off`] turned off (nothing when pgrepl did not). Returns what it did.
pub async fn autostart_back_on(ctx: &HostCtx<'_>) -> Result<Option<String>, StepError> {
    let script = format!(
        r#"m="$1"; [ -f "$m" ] || exit 0; read -r kind what prev < "$m"; set -e
case "$kind" in
start.conf)
  mode='^[[:space:]]*(auto|manual|disabled)'
  sed -i -E -e '/^{START_CONF_COMMENT}$/d' -e "0,/$mode/s/$mode/$prev/" "$what"
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi ;;
systemd) systemctl enable "$what" ;;
esac
rm -f "$m"; echo "$kind $what $prev""#
    );
    let out = ctx
        .session
        .run(&Command::script(&script, &[AUTOSTART_NOTE]).as_root())
        .await?;
    let said = out.stdout.trim();
    Ok((!said.is_empty()).then(|| {
        let mut words = said.split_whitespace();
        let (kind, what, prev) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        match kind {
            "start.conf" => format!("{what} says {prev} again"),
            _ => format!("systemd unit {what} enabled again"),
        }
    }))
}

/// On the removed host: its data stays where it is, or with `--wipe` is moved aside to
/// `DATA.pgrepl-removed-TIMESTAMP` (never deleted).
pub async fn retire_data_dir(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let data = ctx.host.pg.data_dir.clone();
    let wipe = ctx.cluster.removal.as_ref().is_some_and(|r| r.wipe);
    let remember = |data: Data| {
        if let Some(r) = &ctx.cluster.removal {
            r.done().data = Some(data);
        }
    };
    let look = r#"d="$1"; if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then echo here; fi
for a in "$d".pgrepl-removed-*; do [ -e "$a" ] && echo "aside $a"; done; true"#;
    let out = ctx
        .session
        .run(&Command::script(look, &[&data]).as_root())
        .await?
        .stdout;
    let here = out.lines().any(|l| l == "here");
    let aside: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("aside "))
        .collect();
    if !wipe {
        let kept = if here {
            Data::Kept(data.clone())
        } else {
            Data::None(data.clone())
        };
        let detail = format!("{kept} (--wipe would move it aside)");
        remember(kept);
        return Ok(Outcome::ok(detail));
    }
    if !here {
        let found = match aside.last() {
            Some(a) => Data::MovedTo(a.to_string()),
            None => Data::None(data.clone()),
        };
        let detail = found.to_string();
        remember(found);
        return Ok(Outcome::ok(detail));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would move {data} to {data}.pgrepl-removed-TIMESTAMP"
        )));
    }
    if ctx.pg().state().await? == ServerState::Running {
        return Err(StepError::new(
            format!("PostgreSQL still runs on {data}; refusing to move it"),
            "stop it first (the stop step)",
        ));
    }
    // Its tablespace dirs (where its pg_tblspc links point) go aside with it, with the
    // same stamp: a host taken out keeps no data of the cluster in place.
    let script = r#"d="$1"; stamp=$(date +%Y%m%dT%H%M%S); a="$d.pgrepl-removed-$stamp"
mv "$d" "$a" || exit 1; echo "data $a"
for l in "$a"/pg_tblspc/*; do
  [ -L "$l" ] || continue; t=$(readlink "$l")
  if [ -d "$t" ] && [ -n "$(ls -A "$t")" ]; then
    if mv "$t" "$t.pgrepl-removed-$stamp"; then echo "tablespace $t.pgrepl-removed-$stamp"; else echo "stayed $t"; fi
  fi
done"#;
    let out = ctx
        .session
        .run(&Command::script(script, &[&data]).as_root())
        .await?
        .stdout;
    let field = |key: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(str::to_string)
            .collect()
    };
    let moved = field("data ").pop().unwrap_or_default();
    remember(Data::MovedTo(moved.clone()));
    let tablespaces = field("tablespace ");
    let stayed = field("stayed ");
    let mut detail = format!("moved {data} to {moved}");
    if !tablespaces.is_empty() {
        detail.push_str(&format!(
            ", its tablespace dir(s) to {}",
            tablespaces.join(", ")
        ));
    }
    detail.push_str(" (never deleted by pgrepl)");
    if !stayed.is_empty() {
        detail.push_str(&format!(
            "; could not move tablespace dir(s) {} aside: they still hold its data",
            stayed.join(", ")
        ));
    }
    Ok(Outcome::changed(detail))
}

/// On the primary and the other members: ends every walsender still serving the removed
/// replica and drops its slot.
pub async fn drop_removed_slot(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let removal = ctx.cluster.removal.as_ref().ok_or_else(|| {
        StepError::msg("drop_removed_slot only runs in `pgrepl remove-replica NAME`")
    })?;
    leftover(ctx, &removal.name, &removal.slot).await
}

#[derive(Debug, Deserialize)]
struct Leftover {
    /// `physical` or `logical`, if a slot of that name exists.
    kind: Option<String>,
    active: Option<bool>,
    /// Bytes of WAL the slot holds back.
    retained: Option<i64>,
    /// Walsenders serving that name or holding the slot.
    senders: Vec<i64>,
}

const LEFTOVER_SQL: &str = "SELECT json_build_object(
  'kind', (SELECT slot_type FROM pg_replication_slots WHERE slot_name = {SLOT}),
  'active', (SELECT active FROM pg_replication_slots WHERE slot_name = {SLOT}),
  'retained', (SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::bigint
               FROM pg_replication_slots WHERE slot_name = {SLOT}),
  'senders', (SELECT coalesce(json_agg(pid ORDER BY pid), '[]') FROM (
      SELECT pid FROM pg_stat_replication WHERE application_name = {NAME}
      UNION SELECT active_pid FROM pg_replication_slots WHERE slot_name = {SLOT} AND slot_type = 'physical' AND active_pid IS NOT NULL) s))";

/// Ends the walsenders serving `name` and drops its physical slot `slot` on this host,
/// unless a member of the inventory uses a slot of that name.
pub async fn leftover(ctx: &HostCtx<'_>, name: &str, slot: &str) -> Result<Outcome, StepError> {
    if let Some(owner) = ctx
        .cluster
        .inventory
        .hosts
        .iter()
        .find(|h| h.slot.as_deref() == Some(slot))
    {
        return Ok(Outcome::ok(format!(
            "slot {slot} belongs to `{}`: left alone",
            owner.name
        )));
    }
    let sql = LEFTOVER_SQL
        .replace("{SLOT}", &literal(slot))
        .replace("{NAME}", &literal(name));
    let pg = ctx.pg();
    let Some(mut seen) = pg.query_if_running::<Leftover>(&sql).await? else {
        if ctx.host.is_primary() {
            return Err(StepError::new(
                "PostgreSQL is not running on the primary",
                "start it, then re-run: its slots and walsenders can only be seen while it runs",
            ));
        }
        return Ok(Outcome::skipped(
            "PostgreSQL is not running here: no slot can be looked at",
        ));
    };
    let logical = seen.kind.as_deref() == Some("logical");
    let physical = seen.kind.as_deref() == Some("physical");
    if !physical && seen.senders.is_empty() {
        return Ok(Outcome::ok(if logical {
            format!("slot {slot} here is a logical slot, not `{name}`'s: left alone")
        } else {
            format!("no slot {slot} and no walsender for `{name}`")
        }));
    }
    let slot_part = physical.then(|| {
        let held = seen
            .retained
            .map(|b| format!(" ({} of WAL behind it)", super::human(b.max(0) as u64)))
            .unwrap_or_default();
        format!("slot {slot}{held}")
    });
    let senders = (!seen.senders.is_empty())
        .then(|| format!("{} walsender(s) still serving `{name}`", seen.senders.len()));
    let said = |verb_end: &str, verb_drop: &str| {
        [
            senders.as_ref().map(|s| format!("{verb_end} {s}")),
            slot_part.as_ref().map(|s| format!("{verb_drop} {s}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
    };
    if ctx.check_mode() {
        return Ok(Outcome::changed(said("would end", "would drop")));
    }
    let end = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_replication WHERE application_name = {name}
           UNION SELECT active_pid FROM pg_replication_slots WHERE slot_name = {slot} AND slot_type = 'physical' AND active_pid IS NOT NULL) s",
        name = literal(name),
        slot = literal(slot)
    );
    let drop = crate::pg::drop_unused_slot_sql(slot);
    // A walsender takes a moment to exit; a standby that still runs may reconnect before
    // the slot goes (its pg_hba rule went first, so not for long): try a few times.
    for _ in 0..DROP_ATTEMPTS {
        if !seen.senders.is_empty() {
            pg.sql(&end).await?;
        }
        if seen.kind.as_deref() == Some("physical") && seen.active != Some(true) {
            // It may turn active between the look and the drop: then look again.
            let _ = pg.sql(&drop).await;
        }
        seen = pg.query(&sql).await?;
        if seen.kind.as_deref() != Some("physical") && seen.senders.is_empty() {
            return Ok(Outcome::changed(said("ended", "dropped")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(StepError::new(
        format!(
            "something still streams as `{name}` or through slot {slot} here (walsender pid(s) {:?})",
            seen.senders
        ),
        "find who connects as that replica in pg_stat_replication (client_addr) and stop it; then re-run",
    ))
}

/// How many times [`leftover`] ends walsenders and tries to drop the slot.
const DROP_ATTEMPTS: usize = 25;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::inventory;
    use crate::plan;
    use crate::playbook::{self, Action};

    fn inventories() -> (inventory::Inventory, inventory::Inventory) {
        let text = "replication: { password: x }\nhosts:\n  - { name: db0, address: 10.0.0.10, role: primary }\n  - { name: db1, address: 10.0.0.11, role: replica }\n  - { name: db2, address: 10.0.0.12, role: replica }\n";
        let full = inventory::parse(Path::new("i.yaml"), text).unwrap();
        let reduced_text = crate::edit::without_host(text, "db1").unwrap();
        let reduced = inventory::parse(Path::new("i.yaml"), &reduced_text).unwrap();
        (full, reduced)
    }

    #[test]
    fn the_removed_host_runs_only_its_own_steps_and_the_rest_never_see_it() {
        let (full, mut members) = inventories();
        members.hosts.push(full.hosts[1].clone());
        let (book, source) = playbook::load("remove-replica", None).unwrap();
        let plan = plan::build(
            "remove-replica",
            &source,
            &book,
            &members,
            Some("db1"),
            None,
        )
        .unwrap();
        // db0 and db2 are 0 and 1; the removed db1 is the last member.
        for step in &plan.steps {
            let acts = step.work.actions();
            let on_removed = step.hosts.contains(&2);
            let own = acts.iter().all(|a| {
                matches!(
                    a,
                    Action::Stop
                        | Action::DropStandbyConfig
                        | Action::AutostartOff
                        | Action::RetireDataDir
                )
            });
            assert_eq!(on_removed, own, "step `{}` on {:?}", step.name, step.hosts);
            if on_removed {
                assert_eq!(step.hosts, vec![2]);
                assert_eq!(step.on_failure, crate::engine::OnFailure::Stop);
            }
        }
        let hba: Vec<usize> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.work.actions()[..], [Action::Hba { .. }]))
            .flat_map(|s| s.hosts.clone())
            .collect();
        assert_eq!(hba, vec![0, 1], "pg_hba on every member that stays");
        let at = |host: usize, what: fn(&Action) -> bool| {
            plan.steps
                .iter()
                .position(|s| s.hosts.contains(&host) && s.work.actions().iter().any(|a| what(a)))
                .unwrap()
        };
        let removed = at(2, |a| matches!(a, Action::Stop));
        assert!(
            at(0, |a| matches!(a, Action::Config { .. })) < removed
                && at(0, |a| matches!(a, Action::Hba { .. })) < removed
                && at(0, |a| matches!(a, Action::Apply { .. })) < removed,
            "the primary stops counting on the host (synchronous standbys, pg_hba) before it stops"
        );
        assert!(
            removed < at(0, |a| matches!(a, Action::DropRemovedSlot)),
            "the host stops before its slot goes"
        );
    }
}
