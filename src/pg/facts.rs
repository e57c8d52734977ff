//! What preflight learns of a host and its server, parsed from the JSON its one script prints.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Facts gathered from a host by preflight.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Facts {
    /// Major version of the installed server binaries.
    pub binary_major: u32,
    pub running: bool,
    /// Free bytes on the filesystem holding the data directory's parent.
    pub free_bytes: u64,
    pub postgres_home: String,
    /// Facts only a running server can tell.
    pub server: Option<ServerFacts>,
    /// The managed config files as preflight read them (`None`: absent).
    #[serde(skip)]
    pub files: BTreeMap<String, Option<String>>,
    /// `OWNER MODE\nSHA256\n` of the replication passfile as preflight saw it.
    #[serde(skip)]
    pub passfile_probe: Option<String>,
    /// On the primary, when the run lock was taken in the same round trip: what taking
    /// it answered (`lock acquired` or `lock held LINE`).
    #[serde(skip)]
    pub lock_answer: Option<String>,
    /// On a replica: what trying the primary's port from here said (`open`, a refusal,
    /// or why not), asked in the same round trip.
    #[serde(skip)]
    pub reach_said: Option<String>,
}

/// What a running server says about itself.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerFacts {
    pub version_num: u32,
    /// Which cluster this is (`pg_control_system()`): a copy shares its primary's.
    #[serde(default)]
    pub system_identifier: Option<String>,
    pub in_recovery: bool,
    pub db_bytes: u64,
    pub settings: BTreeMap<String, String>,
    /// The wal receiver, on a standby.
    pub receiver: Option<Receiver>,
    /// Settings changed in the files that wait for a restart (`pg_settings.pending_restart`).
    #[serde(default)]
    pub pending_restart: String,
    /// The replication role, if it exists.
    #[serde(default)]
    pub role: Option<RoleFacts>,
    /// The server's replication slots.
    #[serde(default)]
    pub slots: Vec<SlotFacts>,
    /// Its tablespaces outside the data dir (`pg_default` and `pg_global` are not).
    #[serde(default)]
    pub tablespaces: Vec<Tablespace>,
}

/// A tablespace and where it lives: a copy puts it at the same path on the replica.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Tablespace {
    pub name: String,
    pub location: String,
    /// Its size on the server (`pg_tablespace_size`).
    pub bytes: u64,
}

/// The replication role as `pg_authid` has it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoleFacts {
    pub login: bool,
    pub replication: bool,
    /// The stored SCRAM verifier (never the password).
    pub verifier: Option<String>,
}

/// One replication slot.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlotFacts {
    pub name: String,
    pub physical: bool,
}

/// A standby's `pg_stat_wal_receiver` row.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Receiver {
    pub status: Option<String>,
    pub slot_name: Option<String>,
    pub sender_host: Option<String>,
    pub sender_port: Option<i64>,
}
