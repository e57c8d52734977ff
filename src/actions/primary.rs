//! Primary-side actions: the replication role and the replicas' slots.

use secrecy::ExposeSecret;

use super::context::HostCtx;
use super::context::{RoleFacts, SlotFacts};
use crate::pg::{ident, literal, scram};
use crate::playbook::SlotScope;
use crate::step::{Outcome, StepError};

/// Ensures the replication role can log in and replicate with the inventory's password.
/// The password goes to the server only as a SCRAM-SHA-256 verifier computed here.
pub async fn replication_role(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let user = &ctx.cluster.inventory.replication.user;
    let password = ctx.cluster.password.as_ref().ok_or_else(|| {
        StepError::new(
            "no replication password",
            "set replication.password_env or password_file",
        )
    })?;
    let pg = ctx.pg();
    // Preflight read the role moments ago; ask again only without its facts.
    let seen = ctx
        .state()
        .await
        .facts
        .as_ref()
        .and_then(|f| f.server.as_ref())
        .map(|s| s.role.clone());
    let row: Option<RoleFacts> = match seen {
        Some(row) => row,
        None => {
            let sql = format!(
                "SELECT coalesce((SELECT row_to_json(r) FROM (SELECT rolcanlogin AS login, rolreplication AS replication, rolpassword AS verifier FROM pg_authid WHERE rolname = {}) r), 'null')",
                literal(user)
            );
            pg.query(&sql).await?
        }
    };
    let current = row.as_ref().is_some_and(|r| {
        r.login
            && r.replication
            && r.verifier
                .as_deref()
                .is_some_and(|v| scram::matches(v, password.expose_secret()))
    });
    if current {
        return Ok(Outcome::ok(format!("role {user} is up to date")));
    }
    let verb = if row.is_some() { "ALTER" } else { "CREATE" };
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would {} role {user}",
            verb.to_lowercase()
        )));
    }
    let verifier = scram::verifier(password.expose_secret());
    let sql = format!(
        "{verb} ROLE {} WITH LOGIN REPLICATION PASSWORD {}",
        ident(user),
        literal(&verifier)
    );
    pg.sql(&sql).await?;
    Ok(Outcome::changed(format!(
        "{} role {user}",
        if row.is_some() { "updated" } else { "created" }
    )))
}

/// Ensures one physical slot for each replica that streams from this host (or for the
/// command's target only). Cascaded replicas have theirs on their upstream
/// ([`upstream_slot`]).
pub async fn slots(ctx: &HostCtx<'_>, scope: SlotScope) -> Result<Outcome, StepError> {
    let inv = &ctx.cluster.inventory;
    let wanted: Vec<&str> = inv
        .children_of(ctx.index)
        .into_iter()
        .map(|c| &inv.hosts[c])
        .filter(|h| {
            scope == SlotScope::All || ctx.cluster.target.as_deref() == Some(h.name.as_str())
        })
        .filter_map(|h| h.slot.as_deref())
        .collect();
    if wanted.is_empty() {
        return Ok(Outcome::ok("no replica streams from here"));
    }
    // Preflight's list of slots holds on the primary; a replica's may be from before a copy.
    let seen = match ctx.host.is_primary() {
        true => ctx
            .state()
            .await
            .facts
            .as_ref()
            .and_then(|f| f.server.as_ref())
            .map(|s| s.slots.clone()),
        false => None,
    };
    let created = ensure_slots(&ctx.pg(), seen, &wanted, ctx.check_mode()).await?;
    if created.is_empty() {
        Ok(Outcome::ok("every replica has its slot"))
    } else if ctx.check_mode() {
        Ok(Outcome::changed(format!(
            "would create slot(s) {}",
            created.join(", ")
        )))
    } else {
        Ok(Outcome::changed(format!(
            "created slot(s) {}",
            created.join(", ")
        )))
    }
}

/// On a replica: its slot on the member it streams from (the primary's step made those of
/// the primary's replicas already; a cascaded replica's upstream is a standby, which can
/// hold physical slots too). Runs after the upstream's own copy: a copy has no slots.
pub async fn upstream_slot(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let Some(slot) = ctx.host.slot.as_deref() else {
        return Ok(Outcome::skipped("not a replica"));
    };
    let (upstream, session) = ctx.upstream()?;
    let pg = crate::pg::Pg::new(session, upstream);
    if ctx.check_mode() && pg.state().await? != crate::pg::ServerState::Running {
        return Ok(Outcome::changed(format!(
            "would create slot {slot} on `{}` once it runs",
            upstream.name
        )));
    }
    let created = ensure_slots(&pg, None, &[slot], ctx.check_mode()).await?;
    let would = if ctx.check_mode() {
        "would create"
    } else {
        "created"
    };
    Ok(match created.is_empty() {
        true => Outcome::ok(format!("slot {slot} is on `{}`", upstream.name)),
        false => Outcome::changed(format!("{would} slot {slot} on `{}`", upstream.name)),
    })
}

/// On a replica now streaming from its upstream: its slot on any other member (where it
/// streamed before its `upstream:` changed) is dropped, if unused, so it pins no WAL there.
/// Only members whose slots preflight listed with it are asked.
pub async fn drop_slot_elsewhere(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let Some(slot) = ctx.host.slot.as_deref() else {
        return Ok(Outcome::skipped("not a replica"));
    };
    let upstream = ctx.upstream()?.0.name.clone();
    let inv = &ctx.cluster.inventory;
    let mut dropped = Vec::new();
    let mut unchecked = Vec::new();
    for (i, member) in inv.hosts.iter().enumerate() {
        if member.name == ctx.host.name || member.name == upstream {
            continue;
        }
        let Some(session) = ctx.cluster.sessions[i].as_deref() else {
            continue;
        };
        // Only where preflight saw the slot: no query at all in the usual case.
        let seen_there = ctx.cluster.memos[i]
            .lock()
            .await
            .facts
            .as_ref()
            .and_then(|f| f.server.as_ref())
            .is_some_and(|s| s.slots.iter().any(|r| r.name == slot));
        if !seen_there {
            continue;
        }
        let pg = crate::pg::Pg::new(session, member);
        let verb = if ctx.check_mode() {
            "count(*)"
        } else {
            "count(pg_drop_replication_slot(slot_name))"
        };
        let sql = format!(
            "SELECT coalesce(json_agg(n), '[]') FROM (SELECT {verb} AS n FROM pg_replication_slots WHERE slot_name = {} AND NOT active) s",
            literal(slot)
        );
        let counts = match pg.query_if_running::<Vec<i64>>(&sql).await {
            Ok(counts) => counts,
            // Another replica of this run may be starting (not yet accepting connections)
            // or stopping right now: this cleanup must not fail this replica's copy for it.
            Err(e) if !member.is_primary() => {
                unchecked.push(format!("`{}` ({})", member.name, e.to_string().trim()));
                None
            }
            Err(e) => return Err(e.into()),
        };
        if counts.is_some_and(|c| c.iter().sum::<i64>() > 0) {
            dropped.push(format!("`{}`", member.name));
        }
    }
    let unchecked = if unchecked.is_empty() {
        String::new()
    } else {
        format!("; not checked on {}", unchecked.join(", "))
    };
    if dropped.is_empty() {
        return Ok(Outcome::ok(format!("no slot {slot} elsewhere{unchecked}")));
    }
    let would = if ctx.check_mode() {
        "would drop"
    } else {
        "dropped"
    };
    Ok(Outcome::changed(format!(
        "{would} its unused slot {slot} on {} (it streams from `{upstream}` now){unchecked}",
        dropped.join(", ")
    )))
}

/// Creates the physical slots in `wanted` that the server lacks (reserving WAL at once);
/// returns their names. `seen`: the server's slots if already read.
async fn ensure_slots(
    pg: &crate::pg::Pg<'_>,
    seen: Option<Vec<SlotFacts>>,
    wanted: &[&str],
    check: bool,
) -> Result<Vec<String>, StepError> {
    let rows: Vec<SlotFacts> = match seen {
        Some(rows) => rows,
        None => pg
            .query("SELECT coalesce(json_agg(json_build_object('name', slot_name, 'physical', slot_type = 'physical')), '[]') FROM pg_replication_slots")
            .await?,
    };
    let mut created = Vec::new();
    for &slot in wanted {
        match rows.iter().find(|r| r.name == slot) {
            Some(r) if r.physical => continue,
            Some(_) => {
                return Err(StepError::new(
                    format!("slot {slot} exists but is a logical slot"),
                    "pick another slot name for this replica (hosts[].slot) or drop the logical slot",
                ));
            }
            None => {}
        }
        created.push(slot.to_string());
    }
    if !check && !created.is_empty() {
        // One round trip for all of them (each its own statement, as one at a time would).
        let sql: String = created
            .iter()
            .map(|slot| {
                format!(
                    "SELECT pg_create_physical_replication_slot({}, true);\n",
                    literal(slot)
                )
            })
            .collect();
        pg.sql(&sql).await?;
    }
    Ok(created)
}
