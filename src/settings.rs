//! The command line resolved once into typed settings: what to do, on which inventory, and
//! how. Everything after this reads settings, never the clap structs, and every default
//! (verify thresholds, timeouts) is applied here or in the type it belongs to.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::cli::CommandKind;
use crate::cli::{
    ChangeFlags, Cli, Command, Forks, Global, Input, Limit, Lock, Output, Playbooks, Ssh,
    SyncState, VerifyFlags,
};
use crate::error::Error;
use crate::report::Format;
use crate::ssh::ConnectOptions;
use crate::verify::VerifyOptions;

/// The defaults of the options (their `--help` says the same).
const DEFAULT_INVENTORY: &str = "inventory.yaml";
const DEFAULT_FORKS: usize = 10;
const DEFAULT_CONNECT_TIMEOUT: u64 = 10;
const DEFAULT_SSH_KEEPALIVE: u64 = 15;

/// Everything a command needs to know, validated.
#[derive(Clone)]
pub struct Settings {
    pub inventory: PathBuf,
    pub format: Format,
    pub verbose: u8,
    pub log_file: Option<PathBuf>,
    /// How to reach the hosts (the trace callback is added when the reporter exists).
    pub connect: ConnectOptions,
    pub break_lock: bool,
    /// How many hosts work at once within a step (at least 1).
    pub forks: usize,
    pub playbooks: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    /// Only these hosts (inventory names), if set.
    pub limit: Option<Vec<String>>,
    pub job: Job,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Job {
    /// Run a command's playbook on the hosts.
    Run(RunSettings),
    /// Print the steps of a command without contacting any host.
    Plan {
        command: CommandKind,
        target: Option<String>,
        address: Option<String>,
    },
    /// Print a shell completion script.
    Completions(clap_complete::Shell),
    /// Show what each host is now.
    Status,
    /// List moved-aside data dirs and remove those of healthy replicas (verifying first).
    Cleanup { check: bool, verify: VerifyOptions },
}

/// A command that runs a playbook.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub command: CommandKind,
    /// The host named on the command line (add-replica).
    pub target: Option<String>,
    /// add-replica: append the target to the inventory with this address.
    pub address: Option<String>,
    /// add-replica: the appended host's slot.
    pub slot: Option<String>,
    /// add-replica: the appended host's upstream (a cascaded replica).
    pub upstream: Option<String>,
    /// Only look, change nothing.
    pub check: bool,
    /// Show diffs of config files that change.
    pub diff: bool,
    /// Allow restarting the primary where a step would refuse.
    pub allow_restart: bool,
    pub verify: VerifyOptions,
    /// failover: the user states the unreachable old primary is off or isolated.
    pub old_primary_fenced: bool,
    /// failover: promoting a replica that received less than another is allowed.
    pub allow_data_loss: bool,
    /// switchover: how long the candidate may take to receive the old primary's last WAL.
    pub catch_up_timeout: Duration,
    /// sync on: even when too few named standbys stream; remove-replica: go on when the
    /// host cannot be reached.
    pub force: bool,
    /// remove-replica: move the host's data dir aside instead of leaving it in place.
    pub wipe: bool,
}

impl RunSettings {
    /// add-replica: what `--slot` and `--upstream` write into the appended host's line.
    pub fn extra(&self) -> crate::edit::Extra<'_> {
        crate::edit::Extra {
            slot: self.slot.as_deref(),
            upstream: self.upstream.as_deref(),
        }
    }

    /// Whether the run may change hosts (and so holds the cluster lock).
    pub fn changes_hosts(&self) -> bool {
        self.command != CommandKind::Verify && !self.check
    }
}

impl Settings {
    /// Resolves the parsed command line; bad values are invalid input.
    pub fn from_cli(cli: Cli) -> Result<Settings, Error> {
        let options = cli.options();
        let job = match cli.command {
            Command::Completions { shell } => Job::Completions(shell),
            Command::Status { .. } => Job::Status,
            Command::Cleanup { check, verify, .. } => Job::Cleanup {
                check,
                verify: verify_options(&verify)?,
            },
            Command::Plan {
                command,
                name,
                address,
                ..
            } => {
                if matches!(
                    command,
                    CommandKind::AddReplica | CommandKind::Switchover | CommandKind::RemoveReplica
                ) && name.is_none()
                {
                    return Err(Error::usage(
                        format!("plan {} needs a host name", command.as_str()),
                        format!("pgrepl plan {} NAME", command.as_str()),
                    ));
                }
                Job::Plan {
                    command,
                    target: name,
                    address,
                }
            }
            Command::Bootstrap { flags, verify, .. } => {
                Job::Run(run(CommandKind::Bootstrap, None, &flags, &verify)?)
            }
            Command::AddReplica {
                name,
                address,
                slot,
                upstream,
                allow_restart,
                flags,
                verify,
                ..
            } => Job::Run(RunSettings {
                address,
                slot,
                upstream,
                allow_restart,
                ..run(CommandKind::AddReplica, Some(name), &flags, &verify)?
            }),
            Command::Switchover {
                to,
                allow_restart,
                catch_up_timeout,
                flags,
                verify,
                ..
            } => Job::Run(RunSettings {
                allow_restart,
                catch_up_timeout: Duration::from_secs(catch_up_timeout.max(1)),
                ..run(CommandKind::Switchover, Some(to), &flags, &verify)?
            }),
            Command::Failover {
                to,
                old_primary_fenced,
                allow_data_loss,
                flags,
                verify,
                ..
            } => Job::Run(RunSettings {
                old_primary_fenced,
                allow_data_loss,
                ..run(CommandKind::Failover, to, &flags, &verify)?
            }),
            Command::Endpoints { flags, verify, .. } => {
                Job::Run(run(CommandKind::Endpoints, None, &flags, &verify)?)
            }
            Command::Rejoin {
                name,
                flags,
                verify,
                ..
            } => Job::Run(run(CommandKind::Rejoin, Some(name), &flags, &verify)?),
            Command::Sync {
                state,
                force,
                flags,
                ..
            } => {
                if force && state == SyncState::Off {
                    return Err(Error::usage(
                        "--force is for `pgrepl sync on`",
                        "pgrepl sync off needs no force: it only stops commits waiting",
                    ));
                }
                let command = match state {
                    SyncState::On => CommandKind::SyncOn,
                    SyncState::Off => CommandKind::SyncOff,
                };
                Job::Run(RunSettings {
                    force,
                    ..run(command, None, &flags, &VerifyFlags::default())?
                })
            }
            Command::RemoveReplica {
                name,
                wipe,
                force,
                flags,
                verify,
                ..
            } => Job::Run(RunSettings {
                wipe,
                force,
                ..run(CommandKind::RemoveReplica, Some(name), &flags, &verify)?
            }),
            Command::Verify { verify, .. } => {
                let flags = ChangeFlags {
                    check: false,
                    diff: false,
                };
                Job::Run(run(CommandKind::Verify, None, &flags, &verify)?)
            }
        };
        let Global {
            input: Input { inventory, format },
            output: Output { verbose, log_file },
            ssh:
                Ssh {
                    ssh_config,
                    accept_new_host_keys,
                    connect_timeout,
                    ssh_keepalive,
                },
            forks: Forks { forks },
            limit: Limit { limit },
            playbooks:
                Playbooks {
                    playbooks,
                    templates,
                },
            lock: Lock { break_lock },
        } = options;
        let inventory = inventory.unwrap_or_else(|| PathBuf::from(DEFAULT_INVENTORY));
        let format = format.unwrap_or(Format::Human);
        let forks = forks.unwrap_or(DEFAULT_FORKS);
        let connect_timeout = connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let ssh_keepalive = ssh_keepalive.unwrap_or(DEFAULT_SSH_KEEPALIVE);
        if format == Format::Prometheus && !matches!(job, Job::Status) {
            return Err(Error::usage(
                "--format prometheus is only for `pgrepl status`",
                "use --format human or json here",
            ));
        }
        if forks == 0 {
            return Err(Error::usage(
                "--forks 0 would run nothing",
                "give --forks a number of hosts to work on at once, 1 or more (default 10)",
            ));
        }
        Ok(Settings {
            inventory,
            format,
            verbose,
            log_file,
            connect: ConnectOptions {
                ssh_config,
                accept_new_host_keys,
                connect_timeout: Duration::from_secs(connect_timeout.max(1)),
                keepalive: Duration::from_secs(ssh_keepalive.max(1)),
                trace: None,
            },
            break_lock,
            forks,
            playbooks,
            templates,
            limit,
            job,
        })
    }
}

fn run(
    command: CommandKind,
    target: Option<String>,
    flags: &ChangeFlags,
    verify: &VerifyFlags,
) -> Result<RunSettings, Error> {
    Ok(RunSettings {
        command,
        target,
        address: None,
        slot: None,
        upstream: None,
        check: flags.check,
        diff: flags.diff,
        allow_restart: false,
        verify: verify_options(verify)?,
        old_primary_fenced: false,
        allow_data_loss: false,
        catch_up_timeout: Duration::from_secs(30),
        force: false,
        wipe: false,
    })
}

/// The verify thresholds: the flags given, the defaults for the rest.
fn verify_options(v: &VerifyFlags) -> Result<VerifyOptions, Error> {
    let defaults = VerifyOptions::default();
    let seconds = |flag: &str, value: Option<f64>, default: Duration| match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(Error::usage(
            format!("--{flag} {s} is not a positive number of seconds"),
            format!("e.g. --{flag} {}", default.as_secs_f64()),
        )),
    };
    Ok(VerifyOptions {
        max_lag_bytes: v.max_lag_bytes.unwrap_or(defaults.max_lag_bytes),
        max_lag_seconds: seconds(
            "max-lag-seconds",
            v.max_lag_seconds,
            Duration::from_secs_f64(defaults.max_lag_seconds),
        )?
        .as_secs_f64(),
        max_slot_retained: v.max_slot_retained.unwrap_or(defaults.max_slot_retained),
        probe_timeout: seconds("probe-timeout", v.probe_timeout, defaults.probe_timeout)?,
        probe_database: match &v.probe_database {
            None => defaults.probe_database,
            Some(name) => probe_database(name)?,
        },
    })
}

/// `--probe-database NAME`: a database name PostgreSQL can hold (at most 63 bytes, no
/// control characters), and not a template (a table in template1 would be copied into every
/// database created later; template0 takes no connections).
fn probe_database(name: &str) -> Result<String, Error> {
    let hint = "name a database that exists on the primary (default postgres)";
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return Err(Error::usage(
            format!(
                "--probe-database {name:?} is not a database name (1 to 63 bytes, no control characters)"
            ),
            hint,
        ));
    }
    if name == "template0" || name == "template1" {
        return Err(Error::usage(
            format!("--probe-database {name}: verify does not write into a template database"),
            hint,
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, Error> {
        let cli = Cli::parse_checked(std::iter::once("pgrepl").chain(args.iter().copied()))
            .expect("parses");
        Settings::from_cli(cli)
    }

    impl std::fmt::Debug for Settings {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Settings {{ inventory: {:?}, .. }}", self.inventory)
        }
    }

    #[test]
    fn verify_thresholds_default_in_one_place_and_reach_bootstrap() {
        let Job::Run(verify) = settings(&["verify"]).unwrap().job else {
            panic!("verify runs")
        };
        assert_eq!(
            verify.verify.max_lag_bytes,
            VerifyOptions::default().max_lag_bytes
        );
        let Job::Run(boot) = settings(&["bootstrap", "--max-lag-bytes", "5"])
            .unwrap()
            .job
        else {
            panic!("bootstrap runs")
        };
        assert_eq!(boot.verify.max_lag_bytes, 5);
        assert_eq!(boot.command, CommandKind::Bootstrap);
    }

    #[test]
    fn options_before_and_after_the_command_merge_the_one_after_winning() {
        let s = settings(&[
            "-i", "a.yaml", "-v", "--forks", "3", "verify", "-i", "b.yaml", "-v",
        ])
        .unwrap();
        assert_eq!(s.inventory, PathBuf::from("b.yaml"));
        assert_eq!((s.verbose, s.forks), (2, 3));
        let s = settings(&["status"]).unwrap();
        assert_eq!(s.inventory, PathBuf::from(DEFAULT_INVENTORY));
        assert_eq!((s.forks, s.format), (DEFAULT_FORKS, Format::Human));
        let s = settings(&["cleanup", "--limit", "a,b", "--break-lock"]).unwrap();
        assert_eq!(s.limit, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(s.break_lock);
    }

    #[test]
    fn the_probe_database_reaches_verify_and_the_commands_that_end_with_it() {
        for args in [
            &["verify", "--probe-database", "appdb"][..],
            &["bootstrap", "--probe-database", "appdb"],
            &["add-replica", "db2", "--probe-database", "appdb"],
        ] {
            let Job::Run(r) = settings(args).unwrap().job else {
                panic!("{args:?} runs")
            };
            assert_eq!(r.verify.probe_database, "appdb", "{args:?}");
        }
        let Job::Cleanup { verify, .. } = settings(&["cleanup", "--probe-database", "My App"])
            .unwrap()
            .job
        else {
            panic!("cleanup")
        };
        assert_eq!(verify.probe_database, "My App");
        let Job::Run(r) = settings(&["verify"]).unwrap().job else {
            panic!("verify runs")
        };
        assert_eq!(r.verify.probe_database, "postgres");
        for bad in ["", "template1", "template0", "a\nb", &"x".repeat(64)] {
            let e = settings(&["verify", "--probe-database", bad]).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::exit::INVALID, "{bad:?}");
            assert!(e.to_string().contains("--probe-database"), "{e}");
        }
    }

    #[test]
    fn forks_0_and_a_bad_timeout_are_invalid_input() {
        let e = settings(&["--forks", "0", "bootstrap"]).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit::INVALID);
        assert!(e.to_string().contains("--forks"), "{e}");
        let e = settings(&["verify", "--probe-timeout=-1"]).unwrap_err();
        assert!(e.to_string().contains("--probe-timeout"), "{e}");
    }

    #[test]
    fn only_verify_and_check_runs_leave_hosts_unchanged() {
        let run = |args: &[&str]| match settings(args).unwrap().job {
            Job::Run(r) => r.changes_hosts(),
            _ => panic!("runs"),
        };
        assert!(run(&["bootstrap"]));
        assert!(!run(&["bootstrap", "--check"]));
        assert!(!run(&["verify"]));
        assert!(run(&["remove-replica", "db2"]));
        assert!(!run(&["remove-replica", "db2", "--check"]));
        assert!(run(&["sync", "off"]));
        assert!(!run(&["sync", "on", "--check"]));
    }

    #[test]
    fn sync_on_and_off_run_their_playbooks_and_force_is_only_for_on() {
        let Job::Run(on) = settings(&["sync", "on", "--force"]).unwrap().job else {
            panic!("sync on runs")
        };
        assert_eq!((on.command, on.force), (CommandKind::SyncOn, true));
        assert_eq!(on.command.as_str(), "sync-on");
        let Job::Run(off) = settings(&["sync", "off"]).unwrap().job else {
            panic!("sync off runs")
        };
        assert_eq!(off.command.as_str(), "sync-off");
        let e = settings(&["sync", "off", "--force"]).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit::INVALID);
    }

    #[test]
    fn remove_replica_takes_its_name_wipe_and_force() {
        let Job::Run(r) = settings(&["remove-replica", "db2", "--wipe"]).unwrap().job else {
            panic!("remove-replica runs")
        };
        assert_eq!(
            (r.command, r.target.as_deref(), r.wipe, r.force),
            (CommandKind::RemoveReplica, Some("db2"), true, false)
        );
        let e = settings(&["plan", "remove-replica"]).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit::INVALID);
    }
}
