//! Validation rules for an inventory, checked before any host is contacted.
//!
//! Each rule adds a [`Problem`] naming the line, column and field, with a hint; all rules
//! run, so one pass reports everything that is wrong.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_saphyr::Spanned;

use super::Problem;
use super::model::{HbaRuleSpec, InventoryFile, PostgresSpec, Role, SshSpec};
use super::resolve::default_slot_name;

/// Lowest PostgreSQL major version pgrepl supports (standby settings in postgresql.conf).
pub const MIN_VERSION: u32 = 12;
/// Highest PostgreSQL major version pgrepl knows.
pub const MAX_VERSION: u32 = 18;

const HBA_TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];
const HBA_METHODS: &[&str] = &[
    "trust",
    "reject",
    "scram-sha-256",
    "md5",
    "password",
    "gss",
    "sspi",
    "ident",
    "peer",
    "ldap",
    "radius",
    "cert",
    "pam",
    "bsd",
];

pub(super) fn check(file: &InventoryFile) -> Vec<Problem> {
    let mut out = Vec::new();
    check_hosts(file, &mut out);
    check_upstreams(file, &mut out);
    check_replication(file, &mut out);
    for rule in &file.hba {
        check_hba_rule(rule, &mut out);
    }
    super::endpoints::check(file, &mut out);
    out
}

/// A problem at a spanned value of the file.
pub(super) fn problem<T>(
    at: &Spanned<T>,
    field: impl Into<String>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Problem {
    Problem {
        line: at.referenced.line(),
        column: at.referenced.column(),
        field: field.into(),
        message: message.into(),
        hint: hint.into(),
    }
}

fn check_hosts(file: &InventoryFile, out: &mut Vec<Problem>) {
    let primaries: Vec<_> = file
        .hosts
        .iter()
        .filter(|h| h.value.role == Role::Primary)
        .collect();
    match primaries.len() {
        1 => {}
        0 => out.push(Problem {
            line: file.hosts.first().map(|h| h.referenced.line()).unwrap_or(1),
            column: 1,
            field: "hosts".into(),
            message: "no host has `role: primary`".into(),
            hint: "mark exactly one host with `role: primary`".into(),
        }),
        n => {
            for h in &primaries[1..] {
                out.push(problem(
                    &h.value.name,
                    format!("hosts[{}].role", h.value.name.value),
                    format!("{n} hosts have `role: primary`; a cluster has exactly one"),
                    "set `role: replica` on all but one",
                ));
            }
        }
    }
    check_ports_and_version(&file.postgres, &file.ssh, "", out);
    let mut names = HashMap::new();
    let mut addresses = HashMap::new();
    let mut slots = HashMap::new();
    for h in &file.hosts {
        let host = &h.value;
        let name = &host.name.value;
        if !valid_host_name(name) {
            out.push(problem(
                &host.name,
                "hosts[].name",
                format!("`{name}` is not a valid host name"),
                "use letters, digits, `-`, `_` and `.` (it becomes the replica's application_name)",
            ));
        }
        if let Some(first) = names.insert(name.clone(), host.name.referenced.line()) {
            out.push(problem(
                &host.name,
                format!("hosts[{name}].name"),
                format!("duplicate host name `{name}` (first at line {first})"),
                "give every host a unique name",
            ));
        }
        let address = &host.address.value;
        if !valid_address(address) {
            out.push(problem(
                &host.address,
                format!("hosts[{name}].address"),
                format!("`{address}` is neither an IP address nor a DNS name"),
                "write an IPv4/IPv6 address such as 10.0.1.10, or a host name",
            ));
        }
        if let Some(first) = addresses.insert(address.clone(), host.address.referenced.line()) {
            out.push(problem(
                &host.address,
                format!("hosts[{name}].address"),
                format!("duplicate address `{address}` (first at line {first})"),
                "every host needs its own address",
            ));
        }
        if host.role == Role::Replica {
            let (slot, at_line, at_col) = match &host.slot {
                Some(s) => (s.value.clone(), s.referenced.line(), s.referenced.column()),
                None => (
                    default_slot_name(name),
                    host.name.referenced.line(),
                    host.name.referenced.column(),
                ),
            };
            if !valid_slot_name(&slot) {
                out.push(Problem {
                    line: at_line,
                    column: at_col,
                    field: format!("hosts[{name}].slot"),
                    message: format!("`{slot}` is not a valid replication slot name"),
                    hint: "use only lowercase letters, digits and `_`, at most 63 characters"
                        .into(),
                });
            }
            if let Some(first) = slots.insert(slot.clone(), at_line) {
                out.push(Problem {
                    line: at_line,
                    column: at_col,
                    field: format!("hosts[{name}].slot"),
                    message: format!("duplicate slot `{slot}` (first at line {first})"),
                    hint: "every replica needs its own slot; set `slot:` explicitly".into(),
                });
            }
        } else if let (Role::Primary, Some(slot)) = (host.role, &host.slot) {
            out.push(problem(
                slot,
                format!("hosts[{name}].slot"),
                "the primary has no slot of its own",
                "remove `slot:` from the primary",
            ));
        }
        check_ports_and_version(&host.postgres, &host.ssh, &format!("hosts[{name}]."), out);
    }
}

/// `upstream:` names a member that is not this host, only on a replica, and every chain of
/// upstreams ends at the primary (no cycle).
fn check_upstreams(file: &InventoryFile, out: &mut Vec<Problem>) {
    let role_of = |name: &str| {
        file.hosts
            .iter()
            .find(|h| h.value.name.value == name)
            .map(|h| h.value.role)
    };
    let members: Vec<&str> = file
        .hosts
        .iter()
        .filter(|h| h.value.role != Role::Proxy)
        .map(|h| h.value.name.value.as_str())
        .collect();
    for h in &file.hosts {
        let host = &h.value;
        let name = &host.name.value;
        let Some(up) = &host.upstream else { continue };
        let field = format!("hosts[{name}].upstream");
        if host.role != Role::Replica {
            out.push(problem(
                up,
                field,
                format!(
                    "only a replica has an upstream; `{name}` is the {}",
                    if host.role == Role::Primary {
                        "primary"
                    } else {
                        "proxy"
                    }
                ),
                "remove `upstream:` from this host",
            ));
            continue;
        }
        match role_of(&up.value) {
            _ if up.value == *name => out.push(problem(
                up,
                field,
                format!("`{name}` cannot stream from itself"),
                "name another replica, or remove `upstream:` to stream from the primary",
            )),
            None => out.push(problem(
                up,
                field,
                format!("`{}` is not a host of this inventory", up.value),
                format!("name a member it can stream from: {}", members.join(", ")),
            )),
            Some(Role::Proxy) => out.push(problem(
                up,
                field,
                format!("`{}` is a proxy: it runs no PostgreSQL", up.value),
                format!("name a member it can stream from: {}", members.join(", ")),
            )),
            Some(_) => {
                // Walk up: a chain that comes back to a host it passed is a cycle.
                let mut chain = vec![name.as_str()];
                let mut at = up.value.as_str();
                while let Some(next) = file.hosts.iter().find(|h| h.value.name.value == at) {
                    if chain.contains(&at) {
                        chain.push(at);
                        out.push(problem(
                            up,
                            field.clone(),
                            format!("upstreams form a cycle: {}", chain.join(" -> ")),
                            "every chain of upstreams must end at the primary: remove `upstream:` from one of them",
                        ));
                        break;
                    }
                    chain.push(at);
                    match (&next.value.upstream, next.value.role) {
                        (Some(u), Role::Replica) => at = u.value.as_str(),
                        _ => break,
                    }
                }
            }
        }
    }
}

fn check_ports_and_version(pg: &PostgresSpec, ssh: &SshSpec, scope: &str, out: &mut Vec<Problem>) {
    if let Some(v) = &pg.version
        && !(MIN_VERSION..=MAX_VERSION).contains(&v.value)
    {
        out.push(problem(
            v,
            format!("{scope}postgres.version"),
            format!("PostgreSQL {} is not supported", v.value),
            format!("use a major version from {MIN_VERSION} to {MAX_VERSION}"),
        ));
    }
    if let Some(p) = &pg.port
        && p.value == 0
    {
        out.push(problem(
            p,
            format!("{scope}postgres.port"),
            "port 0 is not a valid port",
            "use PostgreSQL's port, usually 5432",
        ));
    }
    if let Some(p) = &ssh.port
        && p.value == 0
    {
        out.push(problem(
            p,
            format!("{scope}ssh.port"),
            "port 0 is not a valid port",
            "use the SSH port, usually 22",
        ));
    }
}

fn check_replication(file: &InventoryFile, out: &mut Vec<Problem>) {
    let r = &file.replication;
    if let Some(user) = &r.user
        && !valid_role_name(&user.value)
    {
        out.push(problem(
            user,
            "replication.user",
            format!("`{}` is not a plain PostgreSQL role name", user.value),
            "use lowercase letters, digits and `_`, starting with a letter",
        ));
    }
    let sources = [
        r.password_env.as_ref(),
        r.password_file.as_ref(),
        r.password.as_ref(),
    ];
    let given: Vec<_> = sources.into_iter().flatten().collect();
    if given.len() > 1 {
        out.push(problem(
            given[1],
            "replication",
            "more than one password source is set",
            "keep exactly one of password_env, password_file and password",
        ));
    }
    if let Some(rate) = &r.backup_max_rate {
        let digits = rate.value.trim_end_matches(['k', 'M']);
        let valid = !digits.is_empty()
            && digits.len() + 1 >= rate.value.len()
            && digits.chars().all(|c| c.is_ascii_digit());
        if !valid {
            out.push(problem(
                rate,
                "replication.backup_max_rate",
                format!("`{}` is not a pg_basebackup rate", rate.value),
                "write kilobytes per second, or a number with k or M, e.g. 50M",
            ));
        }
    }
    for (name, value) in &r.settings {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
            || name.is_empty()
        {
            out.push(problem(
                value,
                format!("replication.settings.{name}"),
                format!("`{name}` is not a PostgreSQL setting name"),
                "use the name as in postgresql.conf, e.g. wal_keep_size",
            ));
        }
        if let super::model::SettingValue::Text(t) = &value.value
            && t.contains(['\n', '\r'])
        {
            out.push(problem(
                value,
                format!("replication.settings.{name}"),
                "a setting value cannot span lines",
                "write the value on one line",
            ));
        }
    }
}

fn check_hba_rule(rule: &Spanned<HbaRuleSpec>, out: &mut Vec<Problem>) {
    let r = &rule.value;
    if !HBA_TYPES.contains(&r.kind.as_str()) {
        out.push(problem(
            rule,
            "hba[].type",
            format!("`{}` is not a pg_hba.conf connection type", r.kind),
            format!("use one of {}", HBA_TYPES.join(", ")),
        ));
    }
    if !HBA_METHODS.contains(&r.method.as_str()) {
        out.push(problem(
            rule,
            "hba[].method",
            format!("`{}` is not a pg_hba.conf auth method", r.method),
            "use scram-sha-256 for password logins",
        ));
    }
    for (field, value) in [("database", &r.database), ("user", &r.user)] {
        if value.is_empty() || value.contains(char::is_whitespace) || value.contains('#') {
            out.push(problem(
                rule,
                format!("hba[].{field}"),
                format!("`{value}` is not a valid {field} field"),
                "use a name, a comma-separated list, or `all`",
            ));
        }
    }
    match (r.kind.as_str(), &r.address) {
        ("local", Some(_)) => out.push(problem(
            rule,
            "hba[].address",
            "a `local` rule has no address",
            "remove `address:` or use `type: host`",
        )),
        ("local", None) => {}
        (_, None) => out.push(problem(
            rule,
            "hba[].address",
            "a host rule needs an address",
            "add `address: 10.0.1.0/24` (a CIDR)",
        )),
        (_, Some(a)) if !valid_cidr(a) && !matches!(a.as_str(), "all" | "samehost" | "samenet") => {
            out.push(problem(
                rule,
                "hba[].address",
                format!("`{a}` is not a valid CIDR"),
                "write an address with a prefix length, e.g. 10.0.1.0/24 or 10.0.1.5/32",
            ))
        }
        _ => {}
    }
}

/// A host name usable as application_name: letters, digits, `-`, `_`, `.`.
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// PostgreSQL's rule for replication slot names.
pub fn valid_slot_name(slot: &str) -> bool {
    !slot.is_empty()
        && slot.len() <= 63
        && slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn valid_role_name(role: &str) -> bool {
    role.len() <= 63
        && role
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An IP address or an RFC 1123 DNS name.
pub fn valid_address(address: &str) -> bool {
    if address.parse::<IpAddr>().is_ok() {
        return true;
    }
    // Something that looks like a dotted quad but did not parse is a typo, not a DNS name.
    if address
        .split('.')
        .all(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    address.len() <= 253
        && address.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An address with a prefix length that fits it (`10.0.1.0/24`, `fd00::/8`).
pub fn valid_cidr(cidr: &str) -> bool {
    let Some((ip, len)) = cidr.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => len <= 32,
        Ok(IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}
