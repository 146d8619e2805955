//! Jidoka's service: command-line commands, runtime wiring, HTTP API.
//!
//! Code map: [`config`] (TOML → validated config), [`runtime`] (writer, agent router, outbox
//! threads), [`governance`] (findings → proposed actions), [`api`] + [`auth`] (HTTP and roles),
//! [`dashboard`] (the supervisor dashboard under `/ui`),
//! [`server`] (serve / demo), [`commands`] (import, replay, token), [`bench`], [`eval`], [`report`]
//! (tables, JSON, progress), [`metrics`], [`simulate`] (sim, bench sim, the demo feed), [`triage`] (eval triage, eval clusters, bench triage), [`op`] (Open Protocol source, op decode, bench openprotocol), [`mqtt`] (MQTT source, findings publisher, bench mqtt), [`narrate`] (the optional language-model rewrite of narratives, citations checked). The `jidoka` binary is `main.rs`.

pub mod api;
pub mod auth;
pub mod bench;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod eval;
pub mod governance;
pub mod images;
pub mod metrics;
pub mod mqtt;
pub mod narrate;
pub mod op;
pub mod openapi;
pub mod report;
pub mod runtime;
pub mod server;
pub mod simulate;
pub mod torque;
pub mod triage;
