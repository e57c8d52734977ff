//! A replica that does not stream but whose data is a standby of this primary is started,
//! not copied again: a copy costs the whole database over the network and leaves the old
//! data dir on disk. Only data that cannot stream is copied, and `standby check` says why:
//! another cluster (its system identifier), not a standby (a primary, or promoted), a
//! timeline the primary's history does not lead to, or WAL the primary no longer has.
//!
//! It never starts a data dir it has not first recognised, from `pg_controldata`, as a
//! standby of this primary; a standby that then does not stream in time is left to the copy.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::context::HostCtx;
use super::replica;
use super::switchover::{format_lsn, parse_lsn};
use crate::pg::{Pg, ServerState, literal};
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

/// How long a started standby may take to stream before it is copied instead.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What `pg_controldata` says of a data dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: String,
    /// `in archive recovery`, `shut down in recovery`, `in production`, `shut down`, ...
    pub state: String,
    /// The timeline its WAL is on.
    pub timeline: u32,
    /// How far its WAL is known to go: its last checkpoint or minimum recovery point.
    pub lsn: u64,
    pub segment_size: u64,
}

/// Parses `LC_ALL=C pg_controldata` output; `None` when it is not there.
pub fn parse_controldata(text: &str) -> Option<ControlData> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    let checkpoint = field("Latest checkpoint location").and_then(parse_lsn)?;
    let min_recovery = field("Minimum recovery ending location")
        .and_then(parse_lsn)
        .unwrap_or(0);
    let min_recovery_tli = number("Min recovery ending loc's timeline").unwrap_or(0);
    let checkpoint_tli = number("Latest checkpoint's TimeLineID")?;
    Some(ControlData {
        system_identifier: field("Database system identifier")?.to_string(),
        state: field("Database cluster state")?.to_string(),
        timeline: if min_recovery > checkpoint && min_recovery_tli > 0 {
            min_recovery_tli
        } else {
            checkpoint_tli
        } as u32,
        lsn: checkpoint.max(min_recovery),
        segment_size: number("Bytes per WAL segment").unwrap_or(16 << 20),
    })
}

/// What the primary says, for judging whether a standby can stream from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrimarySide {
    pub system_identifier: String,
    pub timeline: u32,
    /// Its timeline history: (parent timeline, where the next one forked off it).
    pub forks: Vec<(u32, u64)>,
    /// Its oldest WAL segment file in pg_wal, if any.
    pub oldest_wal: Option<String>,
    /// Where the replica's slot retains WAL from, if it has a slot.
    pub slot_restart: Option<u64>,
}

/// The segment number of a WAL file name (`TTTTTTTTLLLLLLLLSSSSSSSS`).
pub fn segment_number(name: &str, segment_size: u64) -> Option<u64> {
    if name.len() != 24 {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(log * (0x1_0000_0000 / segment_size.max(1)) + seg)
}

/// Whether a replica's data can stream from the primary: `Ok` with what it is, or `Err`
/// with why it must be copied.
pub fn verdict(replica: Option<&ControlData>, primary: &PrimarySide) -> Result<String, String> {
    let Some(r) = replica else {
        return Err("its data dir holds no cluster (pg_controldata finds none)".into());
    };
    if r.system_identifier != primary.system_identifier {
        return Err(format!(
            "it holds another cluster (system identifier {}, the primary's is {})",
            r.system_identifier, primary.system_identifier
        ));
    }
    if !matches!(
        r.state.as_str(),
        "in archive recovery" | "shut down in recovery"
    ) {
        return Err(format!(
            "it is not a standby (cluster state `{}`): it was promoted or ran as a primary",
            r.state
        ));
    }
    if r.timeline > primary.timeline {
        return Err(format!(
            "its timeline {} is ahead of the primary's {}",
            r.timeline, primary.timeline
        ));
    }
    if r.timeline < primary.timeline {
        match primary
            .forks
            .iter()
            .find(|(parent, _)| *parent == r.timeline)
        {
            None => {
                return Err(format!(
                    "its timeline {} is not in the primary's history (timeline {})",
                    r.timeline, primary.timeline
                ));
            }
            Some((_, at)) if r.lsn > *at => {
                return Err(format!(
                    "its WAL goes to {} on timeline {}, past {} where the primary's history left that timeline: it diverged",
                    format_lsn(r.lsn),
                    r.timeline,
                    format_lsn(*at)
                ));
            }
            Some(_) => {}
        }
    }
    let needed = r.lsn / r.segment_size.max(1);
    let retained_by_slot = primary.slot_restart.is_some_and(|s| s <= r.lsn);
    let oldest = primary
        .oldest_wal
        .as_deref()
        .and_then(|n| segment_number(n, r.segment_size));
    if !retained_by_slot
        && let (Some(oldest), Some(name)) = (oldest, &primary.oldest_wal)
        && oldest > needed
    {
        return Err(format!(
            "the WAL it needs from {} is gone on the primary (its oldest WAL segment is {name})",
            format_lsn(r.lsn)
        ));
    }
    Ok(format!(
        "a standby of this primary (system identifier {}, timeline {}, at {})",
        r.system_identifier,
        r.timeline,
        format_lsn(r.lsn)
    ))
}

/// Reads `pg_controldata` of the host's data dir (`None`: no cluster there).
async fn control_data(ctx: &HostCtx<'_>) -> Result<Option<ControlData>, StepError> {
    let script = r#"if [ -f "$1/global/pg_control" ]; then exec runuser -u postgres -- env LC_ALL=C LANG=C "$2/pg_controldata" -D "$1"; fi"#;
    let out = ctx
        .session
        .run(&Command::script(script, &[&ctx.host.pg.data_dir, &ctx.host.pg.bin_dir]).as_root())
        .await?;
    Ok(parse_controldata(&out.stdout))
}

#[derive(Debug, Deserialize)]
struct PrimaryRow {
    system_identifier: String,
    timeline: u32,
    history: Option<String>,
    oldest_wal: Option<String>,
    slot_restart: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UpstreamRow {
    oldest_wal: Option<String>,
    slot_restart: Option<String>,
}

async fn primary_side(ctx: &HostCtx<'_>) -> Result<PrimarySide, StepError> {
    let (primary, session) = ctx.primary()?;
    let slot = ctx.host.slot.clone().unwrap_or_default();
    let sql = format!(
        "SELECT json_build_object(
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'timeline', t.tl,
  'history', CASE WHEN t.tl > 1 THEN pg_read_file('pg_wal/' || upper(lpad(to_hex(t.tl), 8, '0')) || '.history', 0, 1048576, true) END,
  'oldest_wal', (SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{{24}}$'),
  'slot_restart', (SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = {}))
FROM (SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tl) t",
        literal(&slot)
    );
    let mut row: PrimaryRow = Pg::new(session, primary).query(&sql).await?;
    // A cascaded replica's WAL and slot are on its upstream, a standby: read them there.
    if ctx.cascaded() {
        let (upstream, session) = ctx.upstream()?;
        let sql = format!(
            "SELECT json_build_object(
  'oldest_wal', (SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{{24}}$'),
  'slot_restart', (SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = {}))",
            literal(&slot)
        );
        let there: UpstreamRow = Pg::new(session, upstream).query(&sql).await?;
        row.oldest_wal = there.oldest_wal;
        row.slot_restart = there.slot_restart;
    }
    let forks = row
        .history
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, parse_lsn(f.next()?)?))
        })
        .collect();
    Ok(PrimarySide {
        system_identifier: row.system_identifier,
        timeline: row.timeline,
        forks,
        oldest_wal: row.oldest_wal,
        slot_restart: row.slot_restart.as_deref().and_then(parse_lsn),
    })
}

/// The verdict for this host, read once per run and remembered.
pub async fn can_stream(ctx: &HostCtx<'_>) -> Result<Result<String, String>, StepError> {
    if let Some(v) = ctx.state().await.standby.clone() {
        return Ok(v);
    }
    // Data of another cluster (a fresh host's own, say) needs no more of the primary than
    // the identifier its facts hold: only a possible standby of it is looked at closer.
    let primary_id = ctx
        .primary_facts_or_gather()
        .await
        .ok()
        .and_then(|f| f.server)
        .and_then(|s| s.system_identifier);
    let (replica, primary) = match primary_id {
        Some(id) => {
            let replica = control_data(ctx).await?;
            let primary = match &replica {
                Some(r) if r.system_identifier == id => primary_side(ctx).await?,
                _ => PrimarySide {
                    system_identifier: id,
                    ..PrimarySide::default()
                },
            };
            (replica, primary)
        }
        None => tokio::try_join!(control_data(ctx), primary_side(ctx))?,
    };
    let v = verdict(replica.as_ref(), &primary);
    let mut memo = ctx.state().await;
    memo.standby = Some(v.clone());
    if let Err(why) = &v {
        memo.copy_reason = Some(why.clone());
    }
    Ok(v)
}

/// The `standby_check` action: whether the replica's data can stream, and if not, why.
pub async fn check(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    Ok(match can_stream(ctx).await? {
        Ok(what) => Outcome::ok(format!("{what}: it is started, not copied")),
        Err(why) => Outcome::ok(format!("cannot stream: {why}; it is copied")),
    })
}

/// The `start_standby` action: start (or reload) a standby of this primary and wait until
/// it streams. One that does not is left, not failed, for the copy after it.
pub async fn start(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if replica::streams_from_upstream(ctx).await? {
        return Ok(Outcome::ok("streaming from its upstream"));
    }
    if ctx.check_mode() {
        ctx.state().await.will_stream = true;
        return Ok(Outcome::changed(
            "would start it and wait for it to stream (no copy)",
        ));
    }
    let pg = ctx.pg();
    let primary = ctx.upstream()?.0.name.clone();
    let how = if pg.state().await? == ServerState::Running {
        pg.reload().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pending: String = pg
            .sql("SELECT coalesce(string_agg(name, ', '), '') FROM pg_settings WHERE pending_restart")
            .await?;
        if pending.is_empty() {
            "reloaded"
        } else {
            pg.restart().await?;
            "restarted"
        }
    } else {
        ctx.state().await.was_running.get_or_insert(false);
        if let Err(e) = pg.start().await {
            let why = format!("it did not start as a standby: {e}");
            ctx.state().await.copy_reason = Some(why.clone());
            return Ok(Outcome::changed(format!("{why}; it is copied")));
        }
        "started"
    };
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if replica::streams_from_upstream(ctx).await? {
            replica::caught_up(ctx).await;
            let done = format!(
                "{how}; streaming from {primary} after {:.1}s, no copy",
                started.elapsed().as_secs_f64()
            );
            ctx.state().await.started_standby = Some(done.clone());
            return Ok(Outcome::changed(done));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let why = format!(
        "it was {how} but did not stream within {}s (its server log says why)",
        START_TIMEOUT.as_secs()
    );
    ctx.state().await.copy_reason = Some(why.clone());
    Ok(Outcome::changed(format!("{why}; it is copied")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDBY: &str = "pg_control version number:            1300
Database system identifier:           7312345678901234567
Database cluster state:               shut down in recovery
Latest checkpoint location:           0/5000060
Latest checkpoint's REDO location:    0/5000028
Latest checkpoint's TimeLineID:       1
Minimum recovery ending location:     0/5000110
Min recovery ending loc's timeline:   1
Bytes per WAL segment:                16777216
";

    fn primary() -> PrimarySide {
        PrimarySide {
            system_identifier: "7312345678901234567".into(),
            timeline: 1,
            forks: vec![],
            oldest_wal: Some("000000010000000000000004".into()),
            slot_restart: None,
        }
    }

    fn standby() -> ControlData {
        parse_controldata(STANDBY).expect("parses")
    }

    #[test]
    fn reads_pg_controldata() {
        let c = standby();
        assert_eq!(c.system_identifier, "7312345678901234567");
        assert_eq!(c.state, "shut down in recovery");
        assert_eq!((c.timeline, c.lsn), (1, 0x5000110));
        assert_eq!(
            parse_controldata("pg_controldata: error: could not open file"),
            None
        );
        assert_eq!(
            segment_number("000000010000000000000004", 16 << 20),
            Some(4)
        );
        assert_eq!(
            segment_number("0000000100000001000000FF", 16 << 20),
            Some(256 + 255)
        );
    }

    #[test]
    fn a_stopped_standby_of_this_primary_is_started_not_copied() {
        let v = verdict(Some(&standby()), &primary());
        assert!(
            v.as_ref()
                .is_ok_and(|m| m.contains("a standby of this primary")),
            "{v:?}"
        );
        // Running (crashed or not) in recovery counts too.
        let running = ControlData {
            state: "in archive recovery".into(),
            ..standby()
        };
        assert!(verdict(Some(&running), &primary()).is_ok());
    }

    #[test]
    fn data_that_cannot_stream_is_copied_and_says_why() {
        let why = |c: Option<&ControlData>, p: &PrimarySide| verdict(c, p).unwrap_err();
        assert!(why(None, &primary()).contains("no cluster"));
        let other = ControlData {
            system_identifier: "1".into(),
            ..standby()
        };
        assert!(why(Some(&other), &primary()).contains("another cluster (system identifier 1"));
        let promoted = ControlData {
            state: "in production".into(),
            ..standby()
        };
        assert!(why(Some(&promoted), &primary()).contains("not a standby"));
        let ahead = ControlData {
            timeline: 3,
            ..standby()
        };
        assert!(why(Some(&ahead), &primary()).contains("ahead"));
        // The primary moved to timeline 2 at 0/5000000: the standby went past it.
        let forked = PrimarySide {
            timeline: 2,
            forks: vec![(1, 0x5000000)],
            ..primary()
        };
        assert!(why(Some(&standby()), &forked).contains("diverged"));
        let not_in_history = PrimarySide {
            timeline: 3,
            forks: vec![(2, 0x6000000)],
            ..primary()
        };
        assert!(why(Some(&standby()), &not_in_history).contains("not in the primary's history"));
        // Forked later than where the standby is: it can follow.
        let later = PrimarySide {
            timeline: 2,
            forks: vec![(1, 0x6000000)],
            ..primary()
        };
        assert!(verdict(Some(&standby()), &later).is_ok());
        // Its segment (5) is gone: the oldest left is 6.
        let gone = PrimarySide {
            oldest_wal: Some("000000010000000000000006".into()),
            ..primary()
        };
        assert!(why(Some(&standby()), &gone).contains("is gone on the primary"));
        // ... unless its slot retains it.
        let kept = PrimarySide {
            slot_restart: Some(0x5000000),
            ..gone
        };
        assert!(verdict(Some(&standby()), &kept).is_ok());
    }
}
