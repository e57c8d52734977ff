//! pgrepl: set up and check PostgreSQL streaming replication over SSH, from one inventory.
//!
//! The flow runs one way: [`cli`] → [`inventory`] (validated) → [`plan`] (pure data) →
//! [`engine`] → [`ssh`] → hosts, with [`report`] rendering results for people or machines.

pub mod actions;
pub mod app;
pub mod cli;
pub mod edit;
pub mod engine;
pub mod inventory;
pub mod pg;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod ssh;
pub mod templates;
pub mod verify;
pub mod yaml;
