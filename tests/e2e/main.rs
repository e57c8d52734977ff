//! End-to-end tests: the real `pgrepl` binary against real sshd and PostgreSQL in the
//! container lab (`lab/lab`). Each test brings up its own lab and tears it down, even when
//! it fails. Set PGREPL_E2E=0 to skip them (unit tests still run).

mod support;

mod add_replica;
mod agent;
mod bootstrap;
mod cascade;
mod cleanup;
mod conninfo;
mod endpoints;
mod engine;
mod failover;
mod faults;
mod flavours;
mod lab;
mod remove_replica;
mod saslprep;
mod ssh;
mod switchover;
mod sync;
mod tablespaces;
mod terminal;
mod verify;
mod versions;
