//! pgrepl: set up and check PostgreSQL streaming replication over SSH, from one inventory.
//!
//! The flow runs one way: [`cli`] → [`settings`] → [`inventory`] (validated) → [`plan`]
//! (pure data) → [`engine`] (generic over a [`engine::Runner`]) with [`actions::Cluster`]
//! as the runner → [`pg`] and [`ssh`] → hosts. What people see leaves the engine as
//! [`engine::Events`], which [`report`] renders; [`error`] decides the exit code.

pub mod actions;
pub mod app;
pub mod cleanup;
pub mod cli;
pub mod edit;
pub mod engine;
pub mod error;
pub mod haproxy;
pub mod inventory;
pub mod pg;
pub mod plan;
pub mod playbook;
pub mod promotion;
pub mod report;
pub mod settings;
pub mod ssh;
pub mod status;
pub mod step;
pub mod templates;
pub mod verify;
pub mod yaml;
