//! End-to-end tests of the `host` binary: real plugins (components built from
//! `plugins/`), the real engine on a synthetic tiny model, a real SQLite file.
//! One binary, a module per area.

mod common;
mod containment;
mod docs;
mod download;
mod load;
mod plugins;
mod results;
mod robustness;
mod serving;
mod web;
mod workloads;
