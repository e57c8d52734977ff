//! Site-specific steps a playbook may add: a shell command, or SQL.

use super::context::HostCtx;
use crate::playbook::ShellUser;
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

pub async fn shell(
    ctx: &HostCtx<'_>,
    command: &str,
    user: ShellUser,
) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::skipped(format!(
            "check mode: would run `{command}`"
        )));
    }
    let cmd = Command::script(command, &[]);
    let cmd = match user {
        ShellUser::Login => cmd,
        ShellUser::Root => cmd.as_root(),
        ShellUser::Postgres => cmd.as_postgres(),
    };
    let out = ctx.session.run(&cmd).await?;
    Ok(Outcome::changed(format!(
        "ran `{command}`{}",
        last_line(&out.stdout)
    )))
}

pub async fn sql(ctx: &HostCtx<'_>, sql: &str) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::skipped("check mode: SQL not run"));
    }
    let out = ctx.pg().sql(sql).await?;
    Ok(Outcome::changed(format!("ran SQL{}", last_line(&out))))
}

fn last_line(text: &str) -> String {
    text.lines()
        .last()
        .map(|l| format!(": {l}"))
        .unwrap_or_default()
}
