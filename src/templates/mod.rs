//! Config snippets rendered from minijinja templates, with a typed context.
//!
//! Defaults are embedded in the binary; `--templates DIR` overrides any of them by name.
//! Undefined variables are errors (strict mode), so a typo never renders as an empty string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::inventory::{HbaRule, Host, Role};

/// The templates shipped with pgrepl, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "primary.conf.j2",
        include_str!("../../templates/primary.conf.j2"),
    ),
    (
        "replica.conf.j2",
        include_str!("../../templates/replica.conf.j2"),
    ),
    (
        "pg_hba.conf.j2",
        include_str!("../../templates/pg_hba.conf.j2"),
    ),
    (
        "haproxy.cfg.j2",
        include_str!("../../templates/haproxy.cfg.j2"),
    ),
];

/// A template that could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read template {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "template {name}: {message}\nhint: check the template's syntax and that it only uses the variables listed in README (host, primary, replicas, members, settings, standby_minimums, replication, hba, endpoints_hba; haproxy.cfg.j2: proxy, endpoint, members, check, backends, admin_socket)"
    )]
    Render { name: String, message: String },
}

/// The loaded template set.
pub struct Templates {
    env: Environment<'static>,
}

/// One host as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub name: String,
    pub address: String,
    /// The address as a pg_hba.conf address: `/32` or `/128` for IPs, the bare name otherwise.
    pub cidr: String,
    pub role: Role,
    pub slot: Option<String>,
    pub port: u16,
    pub version: u32,
    pub labels: BTreeMap<String, String>,
}

impl HostView {
    pub fn of(host: &Host) -> Self {
        let cidr = cidr_of(&host.address);
        HostView {
            name: host.name.clone(),
            address: host.address.clone(),
            cidr,
            role: host.role,
            slot: host.slot.clone(),
            port: host.pg.port,
            version: host.pg.version,
            labels: host.labels.clone(),
        }
    }
}

/// An address as a pg_hba.conf address: `/32` or `/128` for IPs, the bare name otherwise.
pub fn cidr_of(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{address}/32"),
        Ok(std::net::IpAddr::V6(_)) => format!("{address}/128"),
        Err(_) => address.to_string(),
    }
}

/// The replication section as templates see it (no password).
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationView {
    pub user: String,
}

/// Everything a template may use. Ordered maps keep renders stable run after run.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub host: HostView,
    pub primary: HostView,
    pub replicas: Vec<HostView>,
    /// Every host of the cluster, primary first.
    pub members: Vec<HostView>,
    /// postgresql.conf settings for the cluster, already PostgreSQL literals.
    pub settings: BTreeMap<String, String>,
    /// Settings a standby must have at least as high as its primary (replicas only).
    pub standby_minimums: BTreeMap<String, String>,
    pub replication: ReplicationView,
    pub hba: Vec<HbaRule>,
    /// Rules for the endpoints: the health-check role and the application roles from each
    /// proxy's address.
    pub endpoints_hba: Vec<HbaRule>,
}

impl Templates {
    /// The embedded templates, each overridden by a same-named file in `dir` if given.
    pub fn load(dir: Option<&Path>) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .map_err(|e| Error::Render {
                    name: "(syntax)".into(),
                    message: e.to_string(),
                })?,
        );
        let mut sources: BTreeMap<String, String> = EMBEDDED
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "j2") {
                    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                        path: path.clone(),
                        source,
                    })?;
                    sources.insert(entry.file_name().to_string_lossy().into_owned(), text);
                }
            }
        }
        for (name, source) in sources {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| Error::Render {
                    name: name.clone(),
                    message: describe(&e),
                })?;
        }
        Ok(Templates { env })
    }

    /// Renders one template.
    pub fn render(&self, name: &str, ctx: &Context) -> Result<String, Error> {
        self.render_with(name, ctx)
    }

    /// Renders one template with another typed context (`haproxy.cfg.j2`).
    pub fn render_with<T: Serialize>(&self, name: &str, ctx: &T) -> Result<String, Error> {
        let template = self.env.get_template(name).map_err(|e| Error::Render {
            name: name.into(),
            message: describe(&e),
        })?;
        template
            .render(minijinja::value::Serde(ctx))
            .map_err(|e| Error::Render {
                name: name.into(),
                message: describe(&e),
            })
    }

    /// Whether a template of that name exists.
    pub fn has(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests;
