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

/// Ensures one physical slot per replica (or for the command's target only).
pub async fn slots(ctx: &HostCtx<'_>, scope: SlotScope) -> Result<Outcome, StepError> {
    let inv = &ctx.cluster.inventory;
    let wanted: Vec<&str> = inv
        .hosts
        .iter()
        .filter(|h| {
            scope == SlotScope::All || ctx.cluster.target.as_deref() == Some(h.name.as_str())
        })
        .filter_map(|h| h.slot.as_deref())
        .collect();
    let pg = ctx.pg();
    let seen = ctx
        .state()
        .await
        .facts
        .as_ref()
        .and_then(|f| f.server.as_ref())
        .map(|s| s.slots.clone());
    let rows: Vec<SlotFacts> = match seen {
        Some(rows) => rows,
        None => pg
            .query("SELECT coalesce(json_agg(json_build_object('name', slot_name, 'physical', slot_type = 'physical')), '[]') FROM pg_replication_slots")
            .await?,
    };
    let mut created = Vec::new();
    for slot in wanted {
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
    if !ctx.check_mode() && !created.is_empty() {
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
