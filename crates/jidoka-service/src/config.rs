//! Plant configuration: TOML → raw sections → [`Config::validate`] → typed [`Config`].
//!
//! Each top-level section and each `[[sources]]` / `[[sinks]]` entry is read on its own, so one
//! broken entry does not hide the errors of the others: `jidoka config check` prints every
//! problem with its path at once. Unknown keys are errors.

use crate::auth::TokenConfig;
use jidoka_agents::AgentsConfig;
use jidoka_connectors::{SinkConfig, SourceConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One configuration problem: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All problems found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Folder holding the embedded store (and the default sink files).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A file outside the database (best on another volume or host mount) where the audit
    /// chain's head is appended on a schedule; `jidoka audit verify` then checks that every
    /// head written there is still in the chain, which catches a consistent rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_anchor: Option<PathBuf>,
    /// How often the head is anchored (seconds).
    #[serde(default = "default_anchor_seconds")]
    pub audit_anchor_seconds: u64,
}

fn default_anchor_seconds() -> u64 {
    600
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("jidoka-data")
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { data_dir: default_data_dir(), audit_anchor: None, audit_anchor_seconds: default_anchor_seconds() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most events in one ingest request.
    #[serde(default = "default_max_batch")]
    pub max_batch_events: usize,
    /// Let scrapers on this machine read /metrics without a token.
    #[serde(default = "yes")]
    pub metrics_open_to_loopback: bool,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// People who log in with a password (`POST /api/login`).
    #[serde(default)]
    pub users: Vec<crate::auth::UserConfig>,
    /// Open HTTP connections at once, all peers together (lowered to fit the open-file limit).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open HTTP connections at once from one address.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// A connection that sends no complete request head for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// A request whose body has not arrived and been answered within this time gets 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Host names the service answers to besides IP addresses and `localhost` (the names a
    /// tablet uses to reach it); a request for any other name gets 421.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// TLS on the listener with the plant's certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
}

fn default_max_connections() -> usize {
    crate::http::HttpLimits::default().max_connections
}
fn default_max_connections_per_peer() -> usize {
    crate::http::HttpLimits::default().max_connections_per_peer
}
fn default_idle_timeout() -> u64 {
    crate::http::HttpLimits::default().idle_timeout.as_secs()
}
fn default_request_timeout() -> u64 {
    crate::http::HttpLimits::default().request_timeout.as_secs()
}

impl ApiConfig {
    /// The listener's limits as configured.
    pub fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_seconds),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:8480".into()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}
fn default_max_batch() -> usize {
    10_000
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            max_batch_events: default_max_batch(),
            metrics_open_to_loopback: true,
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            idle_timeout_seconds: default_idle_timeout(),
            request_timeout_seconds: default_request_timeout(),
            tls: None,
            allowed_hosts: Vec::new(),
            tokens: Vec::new(),
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Ingest requests queued for the store writer before senders wait (backpressure).
    #[serde(default = "default_channel")]
    pub channel_capacity: usize,
    /// Most events in one group commit.
    #[serde(default = "default_group")]
    pub group_commit_max_events: usize,
    /// Events the agent router reads and commits at a time.
    #[serde(default = "default_agent_chunk")]
    pub agent_chunk_events: usize,
    /// How often the outbox looks for approved actions when nothing wakes it.
    #[serde(default = "default_outbox_poll")]
    pub outbox_poll_ms: u64,
    /// A folder of inspection and NCR images: an event whose `image_ref` is a relative path in
    /// it gets the image's perceptual hash (`image_hash`) before it is stored, which the defect
    /// pattern agent clusters uncoded NCRs by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_dir: Option<PathBuf>,
}

fn default_channel() -> usize {
    1024
}
fn default_group() -> usize {
    8192
}
fn default_agent_chunk() -> usize {
    1000
}
fn default_outbox_poll() -> u64 {
    1000
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            channel_capacity: default_channel(),
            group_commit_max_events: default_group(),
            agent_chunk_events: default_agent_chunk(),
            outbox_poll_ms: default_outbox_poll(),
            image_dir: None,
        }
    }
}

/// Where the plant's master data (BOM, ECOs, routing) comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterDataConfig {
    /// A plant description (TOML, as in examples/plants/default.toml)...
    #[serde(default)]
    pub plant: Option<PathBuf>,
    /// ...or a master data document (TOML: `[[bom]]`, `[[changes]]`, `[[routing]]`,
    /// `lots_on_hold`; see examples/master_data.toml)...
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// ...or the MES, over OData (BOM lines, released changes, lots on hold), read at start-up;
    /// the last good read is kept in the data directory for a start while the MES is down.
    #[serde(default)]
    pub mes: Option<jidoka_connectors::mes_master::MesMasterConfig>,
    /// While serving, read the source again this often (seconds; default 5 for a file, 300
    /// for the MES; 0: only at start-up) and log what changed as a `master_data_changed`.
    #[serde(default)]
    pub poll_seconds: Option<u64>,
}

impl MasterDataConfig {
    /// How often the source is read again while serving; `None`: never.
    pub fn poll_interval(&self) -> Option<std::time::Duration> {
        let default = if self.mes.is_some() { 300 } else { 5 };
        let secs = self.poll_seconds.unwrap_or(default);
        let configured = self.mes.is_some() || self.file.is_some() || self.plant.is_some();
        (configured && secs > 0).then(|| std::time::Duration::from_secs(secs))
    }

    /// The origin a logged change names (`master-data:<origin>` is its event source).
    pub fn origin(&self) -> &'static str {
        if self.mes.is_some() {
            "mes"
        } else if self.file.is_some() {
            "file"
        } else {
            "plant"
        }
    }
}

/// Governance: how long a proposed action waits for a person before it expires (an expired
/// action is never executed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    #[serde(default = "default_approval_ttl")]
    pub approval_ttl_minutes: u64,
    /// Policies per finding kind, verdict and confidence; the first match decides, the
    /// default policy covers the rest.
    #[serde(default)]
    pub policies: Vec<crate::governance::Policy>,
}

fn default_approval_ttl() -> u64 {
    480
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig { approval_ttl_minutes: default_approval_ttl(), policies: Vec::new() }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub store: StoreConfig,
    pub master_data: MasterDataConfig,
    pub api: ApiConfig,
    pub runtime: RuntimeConfig,
    pub agents: AgentsConfig,
    pub governance: GovernanceConfig,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    /// An on-prem language model that may rewrite narratives for people (optional).
    pub narrative: Option<crate::narrate::NarrativeConfig>,
    pub planners: PlannersConfig,
}

/// `[planners]`: slow computations on a worker thread, their results logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannersConfig {
    /// Every joint's capability (Cp, Cpk, golden batch statistics) recomputed this often
    /// (minutes; 0: never).
    #[serde(default = "default_capability_minutes")]
    pub joint_capability_minutes: u64,
    /// A plan still running after this long is stopped and nothing is logged.
    #[serde(default = "default_plan_deadline")]
    pub deadline_seconds: u64,
    /// Search time of a re-sequencing proposal, asked for whenever a build disruption is
    /// declared (milliseconds; the first proposal comes well before).
    #[serde(default = "default_resequence_ms")]
    pub resequence_ms: u64,
}

fn default_resequence_ms() -> u64 {
    800
}

fn default_capability_minutes() -> u64 {
    60
}
fn default_plan_deadline() -> u64 {
    60
}

impl Default for PlannersConfig {
    fn default() -> Self {
        PlannersConfig {
            joint_capability_minutes: default_capability_minutes(),
            deadline_seconds: default_plan_deadline(),
            resequence_ms: default_resequence_ms(),
        }
    }
}

const SECTIONS: &[&str] =
    &["store", "master_data", "api", "runtime", "agents", "governance", "sources", "sinks", "narrative", "planners"];

fn read_section<T: DeserializeOwned>(path: &str, value: toml::Value, errors: &mut Vec<ConfigError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let inner = err.path().to_string();
            let full = if inner == "." { path.to_string() } else { format!("{path}.{inner}") };
            errors.push(ConfigError { path: full, message: err.into_inner().to_string() });
            None
        }
    }
}

fn read_list<T: DeserializeOwned>(name: &str, value: toml::Value, errors: &mut Vec<ConfigError>) -> Vec<T> {
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(idx, item)| read_section(&format!("{name}[{idx}]"), item, errors))
            .collect(),
        _ => {
            errors
                .push(ConfigError { path: name.into(), message: format!("expected an array of tables ([[{name}]])") });
            Vec::new()
        }
    }
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError { path: path.display().to_string(), message: format!("cannot read: {e}") }])
        })?;
        Config::parse(&text)
    }

    /// Parse and validate configuration text, reporting every error found.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError { path: "$".into(), message: e.to_string().trim().replace('\n', " ") }])
        })?;
        let mut errors = Vec::new();
        let mut config = Config::default();
        for (key, value) in table {
            match key.as_str() {
                "store" => config.store = read_section(&key, value, &mut errors).unwrap_or_default(),
                "master_data" => config.master_data = read_section(&key, value, &mut errors).unwrap_or_default(),
                "api" => config.api = read_section(&key, value, &mut errors).unwrap_or_default(),
                "runtime" => config.runtime = read_section(&key, value, &mut errors).unwrap_or_default(),
                "agents" => config.agents = read_section(&key, value, &mut errors).unwrap_or_default(),
                "governance" => config.governance = read_section(&key, value, &mut errors).unwrap_or_default(),
                "sources" => config.sources = read_list(&key, value, &mut errors),
                "sinks" => config.sinks = read_list(&key, value, &mut errors),
                "narrative" => config.narrative = read_section(&key, value, &mut errors),
                "planners" => config.planners = read_section(&key, value, &mut errors).unwrap_or_default(),
                other => errors.push(ConfigError {
                    path: other.to_string(),
                    message: format!("unknown section, expected one of: {}", SECTIONS.join(", ")),
                }),
            }
        }
        errors.extend(config.validate());
        if errors.is_empty()
            && let Err(e) = config.agents.load_encoder()
        {
            errors.push(ConfigError { path: "agents.embeddings".into(), message: e.to_string() });
        }
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }

    /// Checks across fields; every problem is returned.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let given = [self.master_data.plant.is_some(), self.master_data.file.is_some(), self.master_data.mes.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            errors.push(("master_data".into(), "give one of `plant`, `file` and `mes`, not more".into()));
        }
        if let Some(n) = &self.narrative {
            n.validate("narrative", &mut errors);
        }
        if !(1..=86_400).contains(&self.store.audit_anchor_seconds) {
            errors.push(("store.audit_anchor_seconds".into(), "must be between 1 and 86400".into()));
        }
        if !(1..=3600).contains(&self.planners.deadline_seconds) {
            errors.push(("planners.deadline_seconds".into(), "must be between 1 and 3600".into()));
        }
        if !(10..=60_000).contains(&self.planners.resequence_ms) {
            errors.push(("planners.resequence_ms".into(), "must be between 10 and 60000".into()));
        }
        if self.master_data.poll_seconds.is_some_and(|s| s > 86_400) {
            errors.push(("master_data.poll_seconds".into(), "must be at most 86400 (0: read only at start-up)".into()));
        }
        if let Some(mes) = &self.master_data.mes {
            mes.validate("master_data.mes", &mut errors);
        }
        if self.store.data_dir.as_os_str().is_empty() {
            errors.push(("store.data_dir".into(), "must not be empty".into()));
        }
        if self.api.listen.parse::<SocketAddr>().is_err() {
            errors
                .push(("api.listen".into(), format!("`{}` is not an address such as 127.0.0.1:8480", self.api.listen)));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            errors.push(("api.max_body_bytes".into(), "must be between 1024 and 1073741824".into()));
        }
        if !(1..=1_000_000).contains(&self.api.max_batch_events) {
            errors.push(("api.max_batch_events".into(), "must be between 1 and 1000000".into()));
        }
        if !(1..=1_000_000).contains(&self.api.max_connections) {
            errors.push(("api.max_connections".into(), "must be between 1 and 1000000".into()));
        }
        if !(1..=self.api.max_connections.max(1)).contains(&self.api.max_connections_per_peer) {
            errors.push(("api.max_connections_per_peer".into(), "must be between 1 and api.max_connections".into()));
        }
        if let Some(tls) = &self.api.tls {
            tls.validate("api.tls", &mut errors);
        }
        if !(1..=3600).contains(&self.api.idle_timeout_seconds) {
            errors.push(("api.idle_timeout_seconds".into(), "must be between 1 and 3600".into()));
        }
        if !(1..=3600).contains(&self.api.request_timeout_seconds) {
            errors.push(("api.request_timeout_seconds".into(), "must be between 1 and 3600".into()));
        }
        let mut user_names = HashSet::new();
        for (idx, user) in self.api.users.iter().enumerate() {
            user.validate(&format!("api.users[{idx}]"), &mut errors);
            if !user_names.insert(user.name.as_str()) {
                errors.push((format!("api.users[{idx}].name"), format!("`{}` is used twice", user.name)));
            }
        }
        let mut token_names = HashSet::new();
        for (idx, token) in self.api.tokens.iter().enumerate() {
            token.validate(&format!("api.tokens[{idx}]"), &mut errors);
            if user_names.contains(token.name.as_str()) {
                errors.push((
                    format!("api.tokens[{idx}].name"),
                    format!("`{}` is also a user: a token must not pass for a person", token.name),
                ));
            }
            if !token_names.insert(token.name.as_str()) {
                errors.push((format!("api.tokens[{idx}].name"), format!("`{}` is used twice", token.name)));
            }
        }
        let rt = &self.runtime;
        if let Some(dir) = &rt.image_dir
            && !dir.is_dir()
        {
            errors.push(("runtime.image_dir".into(), format!("{} is not a folder", dir.display())));
        }
        for (name, value, lo, hi) in [
            ("runtime.channel_capacity", rt.channel_capacity as u64, 1, 1_000_000),
            ("runtime.group_commit_max_events", rt.group_commit_max_events as u64, 1, 1_000_000),
            ("runtime.agent_chunk_events", rt.agent_chunk_events as u64, 1, 100_000),
            ("runtime.outbox_poll_ms", rt.outbox_poll_ms, 10, 600_000),
            ("governance.approval_ttl_minutes", self.governance.approval_ttl_minutes, 1, 60 * 24 * 90),
        ] {
            if !(lo..=hi).contains(&value) {
                errors.push((name.into(), format!("must be between {lo} and {hi}")));
            }
        }
        errors.extend(self.agents.validate());
        for (idx, p) in self.governance.policies.iter().enumerate() {
            p.validate(&format!("governance.policies[{idx}]"), &mut errors);
        }
        let mut names = HashSet::new();
        for (idx, source) in self.sources.iter().enumerate() {
            source.validate(&format!("sources[{idx}]"), &mut errors);
            if !names.insert(source.name().to_string()) {
                errors.push((format!("sources[{idx}].name"), format!("`{}` is used twice", source.name())));
            }
        }
        let mut names = HashSet::new();
        for (idx, sink) in self.sinks.iter().enumerate() {
            sink.validate(&format!("sinks[{idx}]"), &mut errors);
            if !names.insert(sink.name().to_string()) {
                errors.push((format!("sinks[{idx}].name"), format!("`{}` is used twice", sink.name())));
            }
        }
        errors.into_iter().map(|(path, message)| ConfigError { path, message }).collect()
    }

    /// Load and validate the master data, when configured; every malformed row is reported.
    pub fn load_master(&self) -> anyhow::Result<jidoka_agents::Master> {
        if let Some(mes) = &self.master_data.mes {
            return master_from_mes(mes, &self.store.data_dir);
        }
        if let Some(path) = &self.master_data.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("master_data.file: cannot read {}: {e}", path.display()))?;
            let master: jidoka_model::master::MasterData = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("master_data.file {}: {}", path.display(), e.to_string().trim()))?;
            return master_from(master);
        }
        let Some(path) = &self.master_data.plant else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("master_data.plant: cannot read {}: {e}", path.display()))?;
        let plant = jidoka_sim::Plant::parse(&text)
            .map_err(|e| anyhow::anyhow!("master_data.plant {}:\n{e}", path.display()))?;
        master_from(plant.master_data())
    }

    /// A one-paragraph summary for `config check`.
    pub fn summary(&self) -> String {
        // Which agents run depends only on whether there is master data: the MES is not asked
        // (nor its copy rewritten) just to list them.
        let master = match &self.master_data.mes {
            Some(_) => Some(std::sync::Arc::new(jidoka_model::master::MasterData::default())),
            None => self.load_master().ok().flatten(),
        };
        let roles: Vec<String> = self.api.tokens.iter().map(|t| format!("{} ({})", t.name, t.role.as_str())).collect();
        format!(
            "store: {}\napi: {} ({} token(s){}{})\nagents: {}\nsources: {}\nsinks: {}",
            self.store.data_dir.display(),
            self.api.listen,
            self.api.tokens.len(),
            if roles.is_empty() { "" } else { ": " },
            roles.join(", "),
            jidoka_agents::build_agents(&self.agents, &master).iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
            if self.sources.is_empty() {
                "none besides the HTTP API".to_string()
            } else {
                self.sources.iter().map(|s| s.name().to_string()).collect::<Vec<_>>().join(", ")
            },
            if self.sinks.is_empty() {
                "none".to_string()
            } else {
                self.sinks.iter().map(|s| s.name().to_string()).collect::<Vec<_>>().join(", ")
            },
        )
    }
}

/// Validate master data and share it with the agents.
/// The last good read of the MES's master data, kept for a start while the MES is down.
#[derive(Debug, Serialize, Deserialize)]
struct MasterSnapshot {
    read_at: chrono::DateTime<chrono::Utc>,
    base_url: String,
    master: jidoka_model::master::MasterData,
    /// The rows behind it, which the next incremental read puts its rows into.
    #[serde(default)]
    rows: Option<jidoka_connectors::mes_master::MasterRows>,
}

/// Read the master data from the MES and keep a copy; with the MES unreachable, use the copy.
/// Rows the MES gives that cannot be read are left out and logged; master data that does not
/// hold together (a change to a part no BOM line has) is refused, row by row.
pub fn master_from_mes(
    mes: &jidoka_connectors::mes_master::MesMasterConfig,
    data_dir: &std::path::Path,
) -> anyhow::Result<jidoka_agents::Master> {
    let snapshot = data_dir.join("master-data-mes.json");
    let client = mes.client().map_err(|e| anyhow::anyhow!("master_data.mes: {e}"))?;
    let kept = std::fs::read(&snapshot)
        .ok()
        .and_then(|b| serde_json::from_slice::<MasterSnapshot>(&b).ok())
        .filter(|k| k.base_url == mes.base_url);
    let read = match mes.read_since(&client, kept.as_ref().and_then(|k| k.rows.as_ref())) {
        Ok(read) => read,
        Err(err) => {
            let Some(kept) = kept else {
                anyhow::bail!("master_data.mes: {err}; no earlier read in {}", snapshot.display());
            };
            tracing::warn!(error = %err, read_at = %kept.read_at, "MES master data unreachable; using the last good read");
            return master_from(kept.master);
        }
    };
    for (row, reason) in &read.skipped {
        tracing::warn!(row, reason, "MES master data row left out");
    }
    let errors = read.errors(&mes.names);
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|(row, reason)| format!("  {row}: {reason}")).collect();
        anyhow::bail!("master data from the MES rejected, {} row(s):\n{}", errors.len(), lines.join("\n"));
    }
    tracing::info!(
        bom_lines = read.master.bom.len(),
        changes = read.master.changes.len(),
        lots_on_hold = read.master.lots_on_hold.len(),
        left_out = read.skipped.len(),
        batched = read.batched,
        rows_read = read.rows_read,
        incremental = read.rows.since_whole > 0,
        "master data read from the MES"
    );
    let copy = MasterSnapshot {
        read_at: chrono::Utc::now(),
        base_url: mes.base_url.clone(),
        master: read.master,
        rows: Some(read.rows),
    };
    if let Err(e) = write_atomically(&snapshot, &serde_json::to_vec(&copy)?) {
        tracing::warn!(error = %e, path = %snapshot.display(), "cannot keep a copy of the MES master data");
    }
    master_from(copy.master)
}

/// Write a file whole or not at all: a temporary file beside it, fsynced, renamed over it.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn master_from(master: jidoka_model::master::MasterData) -> anyhow::Result<jidoka_agents::Master> {
    let errors = master.validate();
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|(row, reason)| format!("  {row}: {reason}")).collect();
        anyhow::bail!("master data rejected, {} row(s):\n{}", errors.len(), lines.join("\n"));
    }
    Ok(Some(std::sync::Arc::new(master)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid_with_defaults() {
        let c = Config::parse("").expect("valid");
        assert_eq!(c.api.listen, "127.0.0.1:8480");
        assert!(!c.agents.torque_window.enabled && c.agents.torque_audit.enabled);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = r#"
            colour = "red"
            [store]
            data_dir = ""
            [api]
            listen = "nowhere"
            max_batch_events = "many"
            [runtime]
            channel_capacity = 0
            agent_chunk = 5
            [agents.torque_window]
            enabled = "yes"
            [[sources]]
            type = "file"
            name = "a"
            path = "/x"
            [[sources]]
            type = "file"
            name = "a"
            path = "/y"
            [[sources]]
            type = "carrier-pigeon"
            [[sinks]]
            type = "jsonl"
            name = "out"
            path = "/z"
            kinds = ["fax"]
        "#;
        let errs = Config::parse(text).expect_err("invalid").0;
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "colour",
            "store.data_dir",
            "api.max_batch_events",
            "runtime.agent_chunk",
            "agents.torque_window.enabled",
            "sources[2].type",
            "sinks[0]",
            "sources[1].name",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
        let message = |path: &str| errs.iter().find(|e| e.path == path).map(|e| e.message.clone()).unwrap_or_default();
        assert!(message("runtime.agent_chunk").contains("unknown field"), "{errs:?}");
        assert!(message("sinks[0]").contains("fax"), "{errs:?}");
        assert!(message("sources[2].type").contains("carrier-pigeon"), "{errs:?}");
    }

    #[test]
    fn toml_syntax_error_names_the_line() {
        let errs = Config::parse("[api\nlisten = 1").expect_err("invalid").0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("line 1"), "{}", errs[0].message);
    }
}
