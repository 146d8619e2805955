//! Jidoka's service: everything a plant runs, and nothing of the lab that measures it.
//!
//! Code map: [`config`] (TOML → validated config), [`runtime`] (writer, agent router, outbox
//! threads; [`runtime::bench_runtime`] starts a bare one for tests and benchmarks),
//! [`governance`] (findings → proposed actions), [`api`] + [`auth`] (HTTP and roles),
//! [`openapi`] (the document of every route), [`http`] (the listener: connection caps, idle and
//! request timeouts), [`tls`] (the listener's certificate, HSTS and secure cookies), [`dashboard`] (the supervisor dashboard under
//! `/ui`), [`server`] (serve / demo), [`op_link`] and [`mqtt_link`] (the Open Protocol and MQTT
//! source threads, the findings publisher), [`demo`] (the simulated plant behind `jidoka
//! demo`), [`commands`] (import, replay, token), [`audit`] (chain verification and export, for
//! the command line and the dashboard alike), [`curve_svg`] (a tightening against its golden
//! envelope), [`images`] (picture hashes at ingest), [`master_data`] (master data
//! into the log as `master_data_changed` events), [`planners`] (slow computations on a worker
//! thread, their results logged as `plan_computed`), [`build_queue`] (the build queue's view and
//! the declaration of a disruption, for the API and the dashboard), [`narrate`] (the optional language-model
//! rewrite of narratives, citations checked), [`metrics`], [`report`] (tables, JSON, progress).
//!
//! Invariant: no module here imports `jidoka-lab`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod build_queue;
pub mod cases;
pub mod commands;
pub mod config;
pub mod curve_svg;
pub mod dashboard;
pub mod demo;
pub mod governance;
pub mod http;
pub mod images;
pub mod master_data;
pub mod metrics;
pub mod mqtt_link;
pub mod narrate;
pub mod op_link;
pub mod openapi;
pub mod planners;
pub mod report;
pub mod runtime;
pub mod server;
pub mod shortage;
pub mod tls;
