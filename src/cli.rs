//! The command line: clap types only. Every `///` here is `--help` text, written for users.
//!
//! Each command takes only the options that do something there: its variant flattens the
//! option groups it uses (`ChangeOptions`, `ReadOptions`, ...), so `pgrepl COMMAND --help`
//! lists those and no others. Every option is also accepted before the command
//! (`pgrepl -i inv.yaml verify`), through [`Global`]; [`Cli::parse_checked`] refuses one
//! given there that the command does not take, as clap refuses it after the command.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::report::Format;

/// Set up and check PostgreSQL streaming replication over SSH, from one inventory.
///
/// Options go before or after the command; each command takes only those its own --help
/// lists (`pgrepl COMMAND --help`).
///
/// Exit codes: 0 success; 1 warnings (verify); 2 a check or step failed; 64 invalid input
/// (inventory, playbook, template, flags); 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "pgrepl",
    version,
    after_help = "Examples:\n  pgrepl -i inventory.yaml bootstrap\n  pgrepl verify --format json\n  pgrepl add-replica replica-2 --address 10.0.1.22\n  pgrepl remove-replica replica-2\n  pgrepl plan bootstrap"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line. An option given before the command that the command does
    /// not take is a usage error, as it is after the command; either way the error names
    /// the option and the command.
    pub fn parse_checked<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cli = Cli::command();
        let matches = match cli.try_get_matches_from_mut(&args) {
            Ok(matches) => matches,
            Err(e) => return Err(explain(&mut cli, &args, e)),
        };
        if let Some((name, _)) = matches.subcommand() {
            let takes = |id: &clap::Id| {
                cli.find_subcommand(name)
                    .is_some_and(|sub| sub.get_arguments().any(|a| a.get_id() == id))
            };
            let misplaced = cli.get_arguments().find(|a| {
                matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
                    && !takes(a.get_id())
            });
            if let Some(arg) = misplaced {
                let flag = match (arg.get_long(), arg.get_short()) {
                    (Some(long), _) => format!("--{long}"),
                    (None, Some(short)) => format!("-{short}"),
                    (None, None) => arg.get_id().to_string(),
                };
                return Err(not_taken(&mut cli, &flag, name));
            }
        }
        Cli::from_arg_matches(&matches)
    }

    /// Every option the command line gives, before the command or after it (after wins;
    /// `-v` counts add up). Unset options are `None` here; [`crate::settings`] defaults them.
    pub fn options(&self) -> Global {
        self.command.options().or(self.global.clone())
    }
}

/// "`FLAG` does not apply to `pgrepl COMMAND`", as a usage error.
fn not_taken(cli: &mut clap::Command, flag: &str, command: &str) -> clap::Error {
    cli.error(
        ErrorKind::ArgumentConflict,
        format!(
            "{flag} does not apply to `pgrepl {command}`\n\n  tip: `pgrepl {command} --help` lists the options it takes"
        ),
    )
}

/// clap's "unexpected argument" after a command, when the argument is an option of other
/// commands: said as [`not_taken`] says it before the command.
fn explain(cli: &mut clap::Command, args: &[OsString], e: clap::Error) -> clap::Error {
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    let Some(ContextValue::String(given)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let flag = given.split('=').next().unwrap_or_default().to_string();
    let known = cli.get_arguments().any(|a| {
        a.get_long().is_some_and(|l| flag == format!("--{l}"))
            || a.get_short().is_some_and(|s| flag == format!("-{s}"))
    });
    let command = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| cli.find_subcommand(a).is_some())
        .map(str::to_string);
    match (known, command) {
        (true, Some(command)) => not_taken(cli, &flag, &command),
        _ => e,
    }
}

/// Every option, as accepted before the command. A command takes only some of them (its
/// `--help` lists which).
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub ssh: Ssh,
    #[command(flatten)]
    pub forks: Forks,
    #[command(flatten)]
    pub limit: Limit,
    #[command(flatten)]
    pub playbooks: Playbooks,
    #[command(flatten)]
    pub lock: Lock,
}

impl Global {
    /// These options, and `before`'s where these are unset.
    fn or(self, before: Global) -> Global {
        Global {
            input: Input {
                inventory: self.input.inventory.or(before.input.inventory),
                format: self.input.format.or(before.input.format),
            },
            output: Output {
                verbose: self.output.verbose.saturating_add(before.output.verbose),
                log_file: self.output.log_file.or(before.output.log_file),
            },
            ssh: Ssh {
                ssh_config: self.ssh.ssh_config.or(before.ssh.ssh_config),
                accept_new_host_keys: self.ssh.accept_new_host_keys
                    || before.ssh.accept_new_host_keys,
                connect_timeout: self.ssh.connect_timeout.or(before.ssh.connect_timeout),
                ssh_keepalive: self.ssh.ssh_keepalive.or(before.ssh.ssh_keepalive),
            },
            forks: Forks {
                forks: self.forks.forks.or(before.forks.forks),
            },
            limit: Limit {
                limit: self.limit.limit.or(before.limit.limit),
            },
            playbooks: Playbooks {
                playbooks: self.playbooks.playbooks.or(before.playbooks.playbooks),
                templates: self.playbooks.templates.or(before.playbooks.templates),
            },
            lock: Lock {
                break_lock: self.lock.break_lock || before.lock.break_lock,
            },
        }
    }
}

/// The inventory, and the form of the results.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Inventory and output")]
pub struct Input {
    /// The inventory file describing the cluster [default: inventory.yaml].
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Results as text for people, or as one JSON document on stdout [default: human].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// What a command that contacts hosts shows while it works.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Inventory and output")]
pub struct Output {
    /// Show each remote command (-v), and pg_basebackup's own lines (-vv). Secrets are redacted.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also write every progress and log line to this file.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// How to reach the hosts.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "SSH")]
pub struct Ssh {
    /// Use this ssh config file instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Record the host keys of hosts not yet in known_hosts (like OpenSSH's accept-new).
    /// A changed key is always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Seconds to wait for an SSH connection [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Seconds between SSH keepalives; a host silent for four of them counts as lost
    /// (OpenSSH's ServerAliveInterval with ServerAliveCountMax 4) [default: 15].
    #[arg(long, value_name = "SECONDS")]
    pub ssh_keepalive: Option<u64>,
}

/// How many hosts work at once.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Run")]
pub struct Forks {
    /// How many hosts work at once within a step [default: 10].
    #[arg(long, value_name = "N")]
    pub forks: Option<usize>,
}

/// Which hosts a command works on.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Run")]
pub struct Limit {
    /// Only work on these hosts (comma-separated inventory names).
    #[arg(long, value_delimiter = ',', value_name = "HOSTS")]
    pub limit: Option<Vec<String>>,
}

/// Where a command's playbook and templates come from.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Run")]
pub struct Playbooks {
    /// Read playbooks from this directory (COMMAND.yaml) instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub playbooks: Option<PathBuf>,
    /// Read templates from this directory; any file there replaces the built-in one of the same name.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

/// The run lock on the primary, which every command that changes hosts takes.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Run")]
pub struct Lock {
    /// Remove another run's lock on the primary first. Only when that run is dead: two runs
    /// at once can rebuild the same replica twice.
    #[arg(long)]
    pub break_lock: bool,
}

/// Options of a command that contacts hosts.
#[derive(Debug, Args, Clone, Default)]
pub struct Contact {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub ssh: Ssh,
}

/// Options of a command that runs a playbook on the hosts.
#[derive(Debug, Args, Clone, Default)]
pub struct RunOptions {
    #[command(flatten)]
    pub contact: Contact,
    #[command(flatten)]
    pub forks: Forks,
    #[command(flatten)]
    pub playbooks: Playbooks,
}

/// Options of a command that changes hosts (holding the run lock), on some or all of them.
#[derive(Debug, Args, Clone, Default)]
pub struct ChangeOptions {
    #[command(flatten)]
    pub run: RunOptions,
    #[command(flatten)]
    pub limit: Limit,
    #[command(flatten)]
    pub lock: Lock,
}

/// Options of `remove-replica`: it changes the host and every member that stays, so it takes
/// no --limit.
#[derive(Debug, Args, Clone, Default)]
pub struct RemoveOptions {
    #[command(flatten)]
    pub run: RunOptions,
    #[command(flatten)]
    pub lock: Lock,
}

/// Options of `verify`: a playbook that changes nothing, so no run lock.
#[derive(Debug, Args, Clone, Default)]
pub struct ReadOptions {
    #[command(flatten)]
    pub run: RunOptions,
    #[command(flatten)]
    pub limit: Limit,
}

/// Options of `cleanup`: no playbook, but it removes holding the run lock.
#[derive(Debug, Args, Clone, Default)]
pub struct CleanupOptions {
    #[command(flatten)]
    pub contact: Contact,
    #[command(flatten)]
    pub limit: Limit,
    #[command(flatten)]
    pub lock: Lock,
}

/// Options of `plan`: it reads the inventory and the playbook, and contacts no host.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanOptions {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub limit: Limit,
    #[command(flatten)]
    pub playbooks: Playbooks,
}

impl From<Contact> for Global {
    fn from(o: Contact) -> Global {
        let Contact { input, output, ssh } = o;
        Global {
            input,
            output,
            ssh,
            ..Global::default()
        }
    }
}

impl From<RunOptions> for Global {
    fn from(o: RunOptions) -> Global {
        Global {
            forks: o.forks,
            playbooks: o.playbooks,
            ..o.contact.into()
        }
    }
}

impl From<ChangeOptions> for Global {
    fn from(o: ChangeOptions) -> Global {
        Global {
            limit: o.limit,
            lock: o.lock,
            ..o.run.into()
        }
    }
}

impl From<RemoveOptions> for Global {
    fn from(o: RemoveOptions) -> Global {
        Global {
            lock: o.lock,
            ..o.run.into()
        }
    }
}

impl From<ReadOptions> for Global {
    fn from(o: ReadOptions) -> Global {
        Global {
            limit: o.limit,
            ..o.run.into()
        }
    }
}

impl From<CleanupOptions> for Global {
    fn from(o: CleanupOptions) -> Global {
        Global {
            limit: o.limit,
            lock: o.lock,
            ..o.contact.into()
        }
    }
}

impl From<PlanOptions> for Global {
    fn from(o: PlanOptions) -> Global {
        Global {
            input: o.input,
            limit: o.limit,
            playbooks: o.playbooks,
            ..Global::default()
        }
    }
}

/// Flags of commands that change hosts.
#[derive(Debug, Args, Clone)]
pub struct ChangeFlags {
    /// Only look: report what would change, change nothing.
    #[arg(long)]
    pub check: bool,
    /// Show unified diffs of config files that change (or would, with --check).
    #[arg(long)]
    pub diff: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a primary and its streaming replicas from freshly installed PostgreSQL, then verify.
    ///
    /// Safe to re-run: a healthy cluster reports 0 changed and nothing restarts.
    /// Example: pgrepl -i inventory.yaml bootstrap
    Bootstrap {
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// Add one replica to a running cluster without restarting the primary.
    ///
    /// Example: pgrepl add-replica replica-2 --address 10.0.1.22
    AddReplica {
        /// The new replica's name (in the inventory, or added with --address).
        name: String,
        /// Append the host to the inventory file with this address (comments are kept).
        #[arg(long, value_name = "ADDR")]
        address: Option<String>,
        /// The replica's slot name when appending it (default: derived from the name).
        #[arg(long, value_name = "SLOT", requires = "address")]
        slot: Option<String>,
        /// When appending it: the member it streams from, another replica (a cascaded
        /// replica; default: the primary).
        #[arg(long, value_name = "NAME", requires = "address")]
        upstream: Option<String>,
        /// Allow restarting the primary if a setting it lacks needs one (a short outage).
        #[arg(long)]
        allow_restart: bool,
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// Make a streaming replica the primary on purpose, losing no acknowledged write.
    ///
    /// The primary is shut down cleanly, the replica promoted once it has all of the
    /// primary's WAL, and every other member, the old primary included, streams from it
    /// afterwards (no copy when none is needed). A failure before the promotion puts the
    /// old primary back in service. The inventory's roles are updated.
    /// Example: pgrepl switchover --to replica-1
    Switchover {
        /// The replica to promote.
        #[arg(long, value_name = "NAME")]
        to: String,
        /// Allow restarting the new primary if a setting needs it (a short outage).
        #[arg(long)]
        allow_restart: bool,
        /// Seconds the candidate may take to receive the old primary's last WAL; past
        /// that the switchover is rolled back (the old primary starts again).
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        catch_up_timeout: u64,
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// The primary is down: fence it, promote the most advanced replica, rewire the others.
    ///
    /// Refuses while the primary still answers or any replica still hears from it (use
    /// switchover then). Where SSH reaches the old primary it is fenced (stopped, left
    /// read-only, kept from starting by itself); where it does not, you must say it is
    /// powered off or isolated with --old-primary-fenced. Bring it back with `rejoin`.
    /// Example: pgrepl failover --old-primary-fenced
    Failover {
        /// Promote this replica instead of the most advanced one.
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// The old primary cannot be reached, and you state it is powered off or cut off
        /// from clients (otherwise it could come back as a second primary).
        #[arg(long)]
        old_primary_fenced: bool,
        /// Allow promoting a replica that received less WAL than another (those writes are lost).
        #[arg(long)]
        allow_data_loss: bool,
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// Bring a former primary (or any diverged or stale node) back as a replica.
    ///
    /// No copy when its WAL did not fork off the primary's timeline; otherwise the WAL
    /// only it has is reported (range and bytes) and it is copied again, its old data dir
    /// moved aside.
    /// Example: pgrepl rejoin pg0
    Rejoin {
        /// The host to bring back (a replica in the inventory).
        name: String,
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// Put HAProxy in front of the cluster: a write port (the primary) and a read port
    /// (the replicas) on each `role: proxy` host of the inventory's `endpoints`.
    ///
    /// Also creates the inventory's application roles and databases on the primary, and
    /// the pg_hba rules for the proxies. Bootstrap, add-replica, switchover, failover and
    /// rejoin end with the same haproxy step, so the endpoints follow the primary.
    /// Example: pgrepl endpoints --check --diff
    Endpoints {
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// Turn synchronous replication off (the escape hatch when its standbys are down and
    /// commits hang) or back on as the inventory says.
    ///
    /// `off` sets synchronous_standby_names = '' on the primary by reload: every waiting
    /// commit returns, and commits wait for no standby until `sync on` (a later bootstrap
    /// keeps it off). `on` refuses while fewer named standbys stream than
    /// replication.synchronous.count needs, then restores the inventory's value by reload.
    /// Example: pgrepl sync off
    Sync {
        /// `off`: commits stop waiting for standbys; `on`: the inventory's setting again.
        state: SyncState,
        /// With `on`: turn it on even when too few named standbys stream (commits then wait
        /// until enough do).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        opts: ChangeOptions,
    },
    /// Show what each host is now: role, timeline, positions, upstream, lag. Read-only.
    ///
    /// Needs no password and writes nothing. Exits 0 when every host is as the inventory
    /// says, 1 degraded (a replica down, lagging or elsewhere), 2 no primary or more than
    /// one (split brain). --format json or prometheus for machines.
    /// Example: pgrepl status --format prometheus > /var/lib/node_exporter/pgrepl.prom
    Status {
        #[command(flatten)]
        opts: Contact,
    },
    /// Take a replica out of the cluster, leaving no slot, pg_hba rule or standby behind.
    ///
    /// On the host, PostgreSQL is stopped, its standby configuration removed (it would
    /// start as a standalone server, never as a standby again) and its autostart turned
    /// off; its data stays, or is moved aside with --wipe. On the primary and every other
    /// member, its pg_hba rules and its place among the synchronous standbys go (reload
    /// only), its walsender is ended and its slot dropped. Then it leaves the inventory
    /// file. The primary cannot be removed. Running it again for a host already gone only
    /// checks that no slot is left for it.
    /// Example: pgrepl remove-replica replica-2
    RemoveReplica {
        /// The replica to remove, as named in the inventory.
        name: String,
        /// Move its data dir aside (DATA.pgrepl-removed-TIMESTAMP, never deleted) instead
        /// of leaving it in place.
        #[arg(long)]
        wipe: bool,
        /// Go on when the host cannot be reached: drop its slot and rules and take it out
        /// of the inventory anyway (it is left as it was, still set up as a standby).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        flags: ChangeFlags,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: RemoveOptions,
    },
    /// Check replication health; exits 0 healthy, 1 warnings, 2 failures.
    ///
    /// Writes one probe row on the primary and measures when each replica sees it. Needs no
    /// replication password.
    /// Example: pgrepl verify --max-lag-seconds 5 --format json
    Verify {
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: ReadOptions,
    },
    /// List the data dirs pgrepl moved aside before a copy; remove those no longer needed.
    ///
    /// Shows every moved-aside data dir (`DATA.pgrepl-TIMESTAMP`) with its size. Those of
    /// replicas that verify healthy are removed; those on the primary, and those of a
    /// replica that does not verify healthy, are kept, saying why. Runs verify first (its
    /// one probe row); needs no replication password.
    /// Example: pgrepl cleanup --check
    Cleanup {
        /// Only list, and say what would be removed; remove nothing.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        verify: VerifyFlags,
        #[command(flatten)]
        opts: CleanupOptions,
    },
    /// Print the steps a command would run on each host, without contacting any host.
    ///
    /// Example: pgrepl plan bootstrap
    Plan {
        /// The command to plan.
        command: CommandKind,
        /// For add-replica and remove-replica: the replica's name.
        name: Option<String>,
        /// For add-replica: plan as if the host were appended with this address (the
        /// inventory file is not changed).
        #[arg(long, value_name = "ADDR", requires = "name")]
        address: Option<String>,
        #[command(flatten)]
        opts: PlanOptions,
    },
    /// Print a shell completion script.
    ///
    /// Example: pgrepl completions bash > /etc/bash_completion.d/pgrepl
    Completions { shell: clap_complete::Shell },
}

impl Command {
    /// The options given after the command (`None` where unset; none for a command that
    /// takes none).
    fn options(&self) -> Global {
        match self {
            Command::Bootstrap { opts, .. }
            | Command::AddReplica { opts, .. }
            | Command::Switchover { opts, .. }
            | Command::Failover { opts, .. }
            | Command::Rejoin { opts, .. }
            | Command::Endpoints { opts, .. }
            | Command::Sync { opts, .. } => opts.clone().into(),
            Command::RemoveReplica { opts, .. } => opts.clone().into(),
            Command::Verify { opts, .. } => opts.clone().into(),
            Command::Status { opts } => opts.clone().into(),
            Command::Cleanup { opts, .. } => opts.clone().into(),
            Command::Plan { opts, .. } => opts.clone().into(),
            Command::Completions { .. } => Global::default(),
        }
    }
}

/// The commands that run a playbook (and so can be planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CommandKind {
    Bootstrap,
    AddReplica,
    Verify,
    Switchover,
    Failover,
    Rejoin,
    /// Point every replica at the inventory's primary (the second phase of a switchover).
    Rewire,
    Endpoints,
    /// Synchronous replication off on the primary, by reload.
    SyncOff,
    /// Synchronous replication on again, as the inventory says.
    SyncOn,
    RemoveReplica,
}

/// `pgrepl sync on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncState {
    On,
    Off,
}

impl CommandKind {
    /// The command's name, which is also its playbook's name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Bootstrap => "bootstrap",
            CommandKind::AddReplica => "add-replica",
            CommandKind::Verify => "verify",
            CommandKind::Switchover => "switchover",
            CommandKind::Failover => "failover",
            CommandKind::Rejoin => "rejoin",
            CommandKind::Rewire => "rewire",
            CommandKind::Endpoints => "endpoints",
            CommandKind::SyncOff => "sync-off",
            CommandKind::SyncOn => "sync-on",
            CommandKind::RemoveReplica => "remove-replica",
        }
    }
}

/// Thresholds of `verify` (also used by the verify step of the commands that end with one).
/// Unset flags take the defaults of `VerifyOptions::default()`.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Verify")]
pub struct VerifyFlags {
    /// Warn when a replica is more than this many bytes behind [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_lag_bytes: Option<u64>,
    /// Warn when a replica's replay lag exceeds this many seconds [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub max_lag_seconds: Option<f64>,
    /// Warn when a slot retains more WAL than this many bytes [default: 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub max_slot_retained: Option<u64>,
    /// Fail a replica that has not replayed the probe row within this many seconds [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub probe_timeout: Option<f64>,
    /// The database verify writes its probe row in (schema `pgrepl`, table `pgrepl.probe`,
    /// created if missing) [default: postgres].
    #[arg(long, value_name = "NAME")]
    pub probe_database: Option<String>,
}
