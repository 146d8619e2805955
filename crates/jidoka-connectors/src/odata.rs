//! An OData v4 client (JSON) and the MES write-back sink built on it.
//!
//! - [`Client`]: GET with `$filter`, `$select`, `$expand`, `$orderby`, `$top`, `$skip`,
//!   following `@odata.nextLink`; POST of commands (`{"command": {...}}`, Opcenter style) or of
//!   entities (plain OData); OData error bodies turned into clear errors. Query values are
//!   percent-encoded with `%20` for spaces (some servers reject `+`).
//! - [`Profile`]: where entities and commands live and what their fields are called; the
//!   default follows Opcenter Execution Discrete's public naming, `plain` is a generic OData v4
//!   service where records are created by POST to the entity set.
//! - [`OdataSink`]: delivers approved actions (Nonconformance, hold, release, Andon alert, order
//!   log entry). Before every write it reads back by idempotency key, so a write that reached
//!   the MES before a crash or a lost answer is never made twice.
//!
//! Errors: 4xx (but 408 / 429) are permanent, 5xx, timeouts and refused connections transient.

use crate::sink::{Receipt, Sink, SinkError};
use jidoka_model::{Action, ActionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// How the MES names things. Integrators may write their own in the configuration; fields left
/// out keep the default (Opcenter) names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// `command`: writes are commands posted to `{base}/{Command}` with `{"command": {...}}`;
    /// `entity`: writes are POSTs of the record to `{base}/{EntitySet}`.
    pub write_style: String,
    pub nonconformance_set: String,
    pub hold_set: String,
    pub andon_set: String,
    pub order_log_set: String,
    pub create_nonconformance: String,
    pub place_hold: String,
    pub release_hold: String,
    pub raise_andon: String,
    pub append_order_log: String,
    /// Where new build sequences are recorded, and the command that writes one.
    pub sequence_set: String,
    pub resequence: String,
    /// Where material requests to suppliers (expedites) are recorded, and the command.
    pub material_request_set: String,
    pub expedite_delivery: String,
    /// The field holding Jidoka's idempotency key on every written record.
    pub key_field: String,
    /// The field holding the MES's own number for a record (reported back).
    pub number_field: String,
}

impl Default for Profile {
    /// Opcenter Execution Discrete-style names.
    fn default() -> Self {
        let s = |v: &str| v.to_string();
        Profile {
            write_style: s("command"),
            nonconformance_set: s("NonConformance"),
            hold_set: s("Hold"),
            andon_set: s("AndonAlert"),
            order_log_set: s("OrderLogEntry"),
            create_nonconformance: s("CreateNonConformance"),
            place_hold: s("PlaceHold"),
            release_hold: s("ReleaseHold"),
            raise_andon: s("RaiseAndonAlert"),
            append_order_log: s("AppendOrderLogEntry"),
            sequence_set: s("SequenceChange"),
            resequence: s("ResequenceWorkOrders"),
            material_request_set: s("MaterialRequest"),
            expedite_delivery: s("ExpediteDelivery"),
            key_field: s("IdempotencyKey"),
            number_field: s("NId"),
        }
    }
}

impl Profile {
    /// A plain OData v4 service: records are created by POST to their entity sets.
    pub fn plain() -> Profile {
        Profile { write_style: "entity".into(), ..Profile::default() }
    }

    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.write_style != "command" && self.write_style != "entity" {
            errors.push((format!("{path}.write_style"), "must be `command` or `entity`".into()));
        }
        for (name, v) in [
            ("nonconformance_set", &self.nonconformance_set),
            ("hold_set", &self.hold_set),
            ("andon_set", &self.andon_set),
            ("order_log_set", &self.order_log_set),
            ("sequence_set", &self.sequence_set),
            ("material_request_set", &self.material_request_set),
            ("key_field", &self.key_field),
        ] {
            if !is_identifier(v) {
                errors.push((format!("{path}.{name}"), "must be an OData identifier".into()));
            }
        }
    }
}

/// Percent-encoding for OData query values: unreserved characters stay, everything else
/// (spaces as `%20`, never `+`) is encoded.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An OData string literal: single quotes doubled.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A query: `$filter`, `$select`, `$expand`, `$orderby`, `$top`, `$skip`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub filter: Option<String>,
    pub select: Option<String>,
    pub expand: Option<String>,
    pub orderby: Option<String>,
    pub top: Option<u64>,
    pub skip: Option<u64>,
}

impl Query {
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("$filter", &self.filter),
            ("$select", &self.select),
            ("$expand", &self.expand),
            ("$orderby", &self.orderby),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        if let Some(t) = self.top {
            parts.push(format!("$top={t}"));
        }
        if let Some(s) = self.skip {
            parts.push(format!("$skip={s}"));
        }
        parts.join("&")
    }
}

/// An OData failure, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OdataError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<OdataError> for SinkError {
    fn from(e: OdataError) -> Self {
        match e {
            OdataError::Transient(m) => SinkError::Transient(m),
            OdataError::Permanent(m) => SinkError::Permanent(m),
        }
    }
}

/// The message of an OData error body (`{"error": {"code", "message"}}`), or the raw text.
pub fn error_message(status: u16, body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let detail = parsed.as_ref().and_then(|v| v.get("error")).map(|e| {
        let code = e.get("code").and_then(Value::as_str).unwrap_or("");
        let msg =
            e.get("message").and_then(|m| m.as_str().or_else(|| m.get("value").and_then(Value::as_str))).unwrap_or("");
        format!("{code} {msg}").trim().to_string()
    });
    let text: String = detail.unwrap_or_else(|| body.chars().take(300).collect());
    format!("HTTP {status}: {text}")
}

fn classify(status: u16, body: &str) -> OdataError {
    let msg = error_message(status, body);
    if status >= 500 || status == 408 || status == 429 {
        OdataError::Transient(msg)
    } else {
        OdataError::Permanent(msg)
    }
}

/// OAuth2 client-credentials settings: the client secret is read from an environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret_env: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl OAuth2Config {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if !(self.token_url.starts_with("http://") || self.token_url.starts_with("https://")) {
            errors.push((format!("{path}.token_url"), "must be an http:// or https:// URL".into()));
        }
        if self.client_id.trim().is_empty() {
            errors.push((format!("{path}.client_id"), "must not be empty".into()));
        }
        if std::env::var(&self.client_secret_env).is_err() {
            errors.push((
                format!("{path}.client_secret_env"),
                format!("environment variable ${} is not set", self.client_secret_env),
            ));
        }
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Credentials {
    #[default]
    None,
    /// A fixed bearer token.
    Bearer(String),
    /// OAuth2 client credentials: tokens fetched and renewed as needed.
    OAuth2 { config: OAuth2Config, secret: String },
}

impl Credentials {
    /// From a sink's or source's settings (environment variables read here).
    pub fn from_settings(token_env: Option<&String>, oauth2: Option<&OAuth2Config>) -> Credentials {
        match (oauth2, token_env) {
            (Some(o), _) => Credentials::OAuth2 {
                config: o.clone(),
                secret: std::env::var(&o.client_secret_env).unwrap_or_default(),
            },
            (None, Some(var)) => std::env::var(var).map(Credentials::Bearer).unwrap_or_default(),
            (None, None) => Credentials::None,
        }
    }
}

/// A blocking OData v4 client for one service root.
#[derive(Debug)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    credentials: Credentials,
    /// A token from the OAuth2 server and when to stop using it.
    token: std::sync::Mutex<Option<(String, std::time::Instant)>>,
}

impl Client {
    /// `base` is the service root, e.g. `https://mes:8443/sit-svc/Application/AppJidoka/odata`.
    /// With `ca_pem`, https is trusted only to certificates issued by those CAs (a plant's own
    /// PKI); without, to the public web PKI.
    pub fn new(
        base: &str,
        credentials: Credentials,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Client, String> {
        let mut builder = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout));
        if let Some(pem) = ca_pem {
            let certs = parse_ca(pem)?;
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
            builder = builder.tls_config(tls);
        }
        let agent = builder.build().into();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            credentials,
            token: std::sync::Mutex::new(None),
        })
    }

    /// The bearer token to send, fetching a new OAuth2 token when there is none or it expires.
    fn bearer(&self, renew: bool) -> Result<Option<String>, OdataError> {
        let (config, secret) = match &self.credentials {
            Credentials::None => return Ok(None),
            Credentials::Bearer(t) => return Ok(Some(t.clone())),
            Credentials::OAuth2 { config, secret } => (config, secret),
        };
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if !renew
            && let Some((t, until)) = cached.as_ref()
            && std::time::Instant::now() < *until
        {
            return Ok(Some(t.clone()));
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", secret.as_str()),
        ];
        if let Some(scope) = &config.scope {
            form.push(("scope", scope.as_str()));
        }
        let answer =
            Self::read(self.agent.post(&config.token_url).header("Accept", "application/json").send_form(form))
                .map_err(|e| match e {
                    OdataError::Transient(m) => OdataError::Transient(format!("OAuth2 token: {m}")),
                    OdataError::Permanent(m) => OdataError::Permanent(format!("OAuth2 token: {m}")),
                })?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OdataError::Permanent("OAuth2 token: no access_token in the answer".into()))?
            .to_string();
        let lifetime = answer.get("expires_in").and_then(Value::as_u64).unwrap_or(300);
        // Renew a little before the server would refuse it.
        let until = std::time::Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1));
        *cached = Some((token.clone(), until));
        Ok(Some(token))
    }

    /// Send a request built by `make` with the current credentials; an OAuth2 token the server
    /// refuses (401) is renewed once and the request sent again.
    fn send(
        &self,
        make: impl Fn(Option<&str>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, OdataError> {
        let token = self.bearer(false)?;
        let first = make(token.as_deref());
        let refused = matches!(&first, Ok(r) if r.status().as_u16() == 401);
        if refused && matches!(self.credentials, Credentials::OAuth2 { .. }) {
            let token = self.bearer(true)?;
            return Self::read(make(token.as_deref()));
        }
        Self::read(first)
    }

    fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, OdataError> {
        let mut resp = resp.map_err(|e| OdataError::Transient(format!("cannot reach the MES: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| OdataError::Transient(format!("reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| OdataError::Permanent(format!("the answer is not JSON: {e}")))
    }

    /// Every record of `entity_set` matching `query`, following server-driven paging.
    pub fn get_all(&self, entity_set: &str, query: &Query, max_pages: usize) -> Result<Vec<Value>, OdataError> {
        let url = format!("{}/{}", self.base, relative_url(entity_set, query));
        let page = self.send(|token| with_auth(self.agent.get(&url), token).call())?;
        self.rest_of_pages(entity_set, page, max_pages)
    }

    /// The records of a first page and of the pages its `@odata.nextLink` leads to.
    fn rest_of_pages(&self, entity_set: &str, mut page: Value, max_pages: usize) -> Result<Vec<Value>, OdataError> {
        let mut out = Vec::new();
        for _ in 0..max_pages.max(1) {
            if let Some(items) = page.get("value").and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            let url = match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) if next.starts_with("http") => next.to_string(),
                Some(next) => format!("{}/{}", self.base, next.trim_start_matches('/')),
                None => return Ok(out),
            };
            page = self.send(|token| with_auth(self.agent.get(&url), token).call())?;
        }
        Err(OdataError::Permanent(format!("{entity_set}: more than {max_pages} pages")))
    }

    /// Several reads in one round trip: a JSON `$batch` (OData 4.01) of GETs, each answer's
    /// further pages followed one by one. `Ok(None)` when the service offers no JSON batch
    /// (404, 405, 415 or 501 to the batch request), so the caller reads one set at a time.
    #[allow(clippy::type_complexity)]
    pub fn batch_get_all(
        &self,
        reads: &[(&str, Query)],
        max_pages: usize,
    ) -> Result<Option<Vec<Result<Vec<Value>, OdataError>>>, OdataError> {
        let requests: Vec<Value> = reads
            .iter()
            .enumerate()
            .map(|(i, (set, q))| {
                json!({"id": (i + 1).to_string(), "method": "GET", "url": relative_url(set, q),
                       "headers": {"accept": "application/json"}})
            })
            .collect();
        let body = json!({ "requests": requests });
        let url = format!("{}/$batch", self.base);
        let answer = self.send(|token| {
            with_auth(self.agent.post(&url), token)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .send_json(&body)
        });
        let answer = match answer {
            Ok(a) => a,
            Err(OdataError::Permanent(m))
                if ["HTTP 404", "HTTP 405", "HTTP 415", "HTTP 501"].iter().any(|s| m.starts_with(s)) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let responses = answer
            .get("responses")
            .and_then(Value::as_array)
            .ok_or_else(|| OdataError::Permanent("$batch: the answer has no `responses` array".into()))?;
        let mut out = Vec::with_capacity(reads.len());
        for (i, (set, _)) in reads.iter().enumerate() {
            let id = (i + 1).to_string();
            let Some(r) = responses.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(id.as_str())) else {
                out.push(Err(OdataError::Permanent(format!("$batch: no answer for {set} (request {id})"))));
                continue;
            };
            let status = r.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
            let body = r.get("body").cloned().unwrap_or(Value::Null);
            out.push(if (200..300).contains(&status) {
                self.rest_of_pages(set, body, max_pages)
            } else {
                Err(classify(status, &body.to_string()))
            });
        }
        Ok(Some(out))
    }

    /// POST `body` to `{base}/{path}`.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, OdataError> {
        let url = format!("{}/{path}", self.base);
        self.send(|token| {
            with_auth(self.agent.post(&url), token).header("Content-Type", "application/json").send_json(body)
        })
    }
}

/// `{entity_set}?{query}` (or the set alone), relative to the service root.
fn relative_url(entity_set: &str, query: &Query) -> String {
    let qs = query.to_query_string();
    if qs.is_empty() { entity_set.to_string() } else { format!("{entity_set}?{qs}") }
}

/// The MES's number for a record: its number field, else its key (a null number, as a plain
/// service leaves it, falls back to the key).
fn reference_of(record: &Value, number_field: &str) -> Option<String> {
    [number_field, "Id", "ID"].iter().find_map(|f| {
        record.get(*f).and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
    })
}

/// The certificates of a PEM bundle; an error when there are none or one is malformed.
pub fn parse_ca(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("not a PEM certificate bundle: {e}")),
        }
    }
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// Read and check a CA file named in the configuration.
/// Whether `v` is an OData identifier (an entity set or field name).
pub fn is_identifier(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where an OData service is and how to reach it; shared by the source, the sink and the
/// master data reader.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub base_url: &'a str,
    pub token_env: Option<&'a String>,
    pub oauth2: Option<&'a OAuth2Config>,
    pub ca_file: Option<&'a std::path::Path>,
    pub timeout_ms: u64,
}

impl Endpoint<'_> {
    /// The URL, the CA file, the token variable and the OAuth2 settings.
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            errors.push((format!("{path}.base_url"), "must be an http:// or https:// URL".into()));
        }
        if let Some(file) = self.ca_file {
            check_ca_file(path, file, errors);
        }
        if let Some(var) = self.token_env
            && std::env::var(var).is_err()
        {
            errors.push((format!("{path}.token_env"), format!("environment variable ${var} is not set")));
        }
        if let Some(o) = self.oauth2 {
            o.validate(&format!("{path}.oauth2"), errors);
        }
    }

    /// A client with these settings and `credentials` (normally [`Self::credentials`]).
    pub fn client_with(&self, credentials: Credentials) -> Result<Client, String> {
        let ca = match self.ca_file {
            Some(f) => Some(std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?),
            None => None,
        };
        Client::new(self.base_url, credentials, Duration::from_millis(self.timeout_ms), ca.as_deref())
    }

    /// The credentials the settings name, read from the environment.
    pub fn credentials(&self) -> Credentials {
        Credentials::from_settings(self.token_env, self.oauth2)
    }

    pub fn client(&self) -> Result<Client, String> {
        self.client_with(self.credentials())
    }
}

fn check_ca_file(path: &str, file: &std::path::Path, errors: &mut Vec<(String, String)>) {
    match std::fs::read(file) {
        Ok(pem) => {
            if let Err(e) = parse_ca(&pem) {
                errors.push((format!("{path}.ca_file"), format!("{}: {e}", file.display())));
            }
        }
        Err(e) => errors.push((format!("{path}.ca_file"), format!("cannot read {}: {e}", file.display()))),
    }
}

fn with_auth<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    let req = req.header("Accept", "application/json");
    match token {
        Some(t) => req.header("Authorization", &format!("Bearer {t}")),
        None => req,
    }
}

/// Configuration of the OData write-back sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdataSinkConfig {
    pub name: String,
    /// Service root, e.g. `http://mes:8080/sit-svc/Application/AppJidoka/odata`.
    pub base_url: String,
    /// `opcenter` (default) or `plain`.
    #[serde(default = "opcenter")]
    pub profile_name: String,
    /// Overrides of the profile's names.
    #[serde(default)]
    pub profile: Option<Box<Profile>>,
    /// Environment variable holding a bearer token for the MES.
    #[serde(default)]
    pub token_env: Option<String>,
    /// OAuth2 client credentials (instead of a fixed token).
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    /// PEM bundle of the CAs to trust for https (the plant's own PKI); default: the public ones.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// Action kinds this sink writes (default: all it knows).
    #[serde(default)]
    pub kinds: Vec<ActionKind>,
}

fn opcenter() -> String {
    "opcenter".into()
}
fn timeout_ms() -> u64 {
    10_000
}

impl OdataSinkConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.name.trim().is_empty() {
            errors.push((format!("{path}.name"), "must not be empty".into()));
        }
        self.endpoint().validate(path, errors);
        if self.profile_name != "opcenter" && self.profile_name != "plain" {
            errors.push((format!("{path}.profile_name"), "must be `opcenter` or `plain`".into()));
        }
        if let Some(p) = &self.profile {
            p.validate(&format!("{path}.profile"), errors);
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            errors.push((format!("{path}.timeout_ms"), "must be between 100 and 600000".into()));
        }
    }

    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            base_url: &self.base_url,
            token_env: self.token_env.as_ref(),
            oauth2: self.oauth2.as_ref(),
            ca_file: self.ca_file.as_deref(),
            timeout_ms: self.timeout_ms,
        }
    }

    pub fn resolved_profile(&self) -> Profile {
        match &self.profile {
            Some(p) => (**p).clone(),
            None if self.profile_name == "plain" => Profile::plain(),
            None => Profile::default(),
        }
    }
}

/// Writes approved actions to the MES, idempotently.
#[derive(Debug)]
pub struct OdataSink {
    name: String,
    client: Client,
    profile: Profile,
    kinds: Vec<ActionKind>,
}

impl OdataSink {
    pub fn new(config: &OdataSinkConfig) -> Result<OdataSink, SinkError> {
        OdataSink::with_credentials(config, config.endpoint().credentials())
    }

    /// With credentials given directly rather than read from the environment.
    pub fn with_credentials(config: &OdataSinkConfig, credentials: Credentials) -> Result<OdataSink, SinkError> {
        let client = config.endpoint().client_with(credentials).map_err(SinkError::Permanent)?;
        Ok(OdataSink {
            name: config.name.clone(),
            client,
            profile: config.resolved_profile(),
            kinds: config.kinds.clone(),
        })
    }

    /// The MES number of a record already written with this key, if any.
    fn existing(&self, set: &str, key: &str) -> Result<Option<String>, OdataError> {
        let p = &self.profile;
        let query =
            Query { filter: Some(format!("{} eq {}", p.key_field, literal(key))), top: Some(1), ..Query::default() };
        let found = self.client.get_all(set, &query, 1)?;
        Ok(found.first().map(|r| reference_of(r, &p.number_field).unwrap_or_else(|| "existing".to_string())))
    }
}

/// The entity set, command and record of an action under `p`. The record names who approved
/// the action and why (from the audit chain, `payload.approval`). An order log entry needs the
/// unit's work order: without one the action is refused for good (a VIN is not a work order,
/// and an MES refuses it).
fn plan(p: &Profile, a: &Action) -> Result<(String, String, Value), SinkError> {
    let pl = &a.payload;
    let s = |v: &Value| v.as_str().map(str::to_string);
    let subject = pl.get("subject").cloned().unwrap_or(Value::Null);
    let serial = subject.get("serial").and_then(s).or_else(|| subject.get("vin").and_then(s));
    let reason = pl.get("reason").and_then(s).unwrap_or_default();
    // The strings of an array field (missing or not an array: none).
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(s).collect()).unwrap_or_default()
    };
    let evidence = strings(pl, "evidence");
    let approval = pl.get("approval").map(|ap| match strings(ap, "notes") {
        notes if notes.is_empty() => format!("approved by {}", strings(ap, "by").join(", ")),
        notes => notes.join("; "),
    });
    let description = format!(
        "{reason}\nFinding {} ({}, {} {}). Evidence: {}{}",
        a.finding_id,
        pl.get("finding_kind").and_then(s).unwrap_or_default(),
        pl.get("agent").and_then(s).unwrap_or_default(),
        pl.get("agent_version").and_then(s).unwrap_or_default(),
        evidence.join(", "),
        approval.as_ref().map(|ap| format!("\nDecision: {ap}")).unwrap_or_default()
    );
    let mut record = json!({ (p.key_field.clone()): a.idempotency_key, "CorrelationId": a.correlation_id });
    let (set, command) = match a.kind {
        ActionKind::CreateNonconformance => {
            let severity = match pl.get("severity").and_then(Value::as_str) {
                Some("critical") => "High",
                Some("warning") => "Medium",
                _ => "Low",
            };
            record["Severity"] = json!(severity);
            record["SerialNumber"] = json!(serial);
            record["MaterialNId"] = json!(subject.get("part_number").and_then(s));
            record["WorkOrderNId"] = json!(subject.get("work_order").and_then(s));
            record["OperationNId"] = json!(subject.get("station").and_then(s));
            record["EquipmentNId"] = json!(subject.get("tool").and_then(s));
            record["Description"] = json!(description);
            (p.nonconformance_set.clone(), p.create_nonconformance.clone())
        }
        ActionKind::PlaceHold | ActionKind::ReleaseHold => {
            record["SerialNumber"] = json!(serial);
            record["Reason"] = json!(description);
            let cmd = if a.kind == ActionKind::PlaceHold { p.place_hold.clone() } else { p.release_hold.clone() };
            let set = if a.kind == ActionKind::PlaceHold { p.hold_set.clone() } else { p.order_log_set.clone() };
            (set, cmd)
        }
        ActionKind::RaiseAndon => {
            record["Station"] = json!(subject.get("station").and_then(s));
            record["Message"] = json!(reason);
            (p.andon_set.clone(), p.raise_andon.clone())
        }
        ActionKind::AppendOrderLog | ActionKind::SupervisorReview => {
            let Some(order) = subject.get("work_order").and_then(s) else {
                return Err(SinkError::Permanent(format!(
                    "subject.work_order: an order log entry needs the unit's work order, and none is known for {}",
                    serial.as_deref().unwrap_or("this finding")
                )));
            };
            record["WorkOrderNId"] = json!(order);
            // A supervisor's review is the decision, not a second copy of the automatic entry.
            let text = if a.kind == ActionKind::SupervisorReview {
                format!("Supervisor review: {description}")
            } else {
                description
            };
            record["Text"] = json!(text);
            (p.order_log_set.clone(), p.append_order_log.clone())
        }
        ActionKind::Resequence => {
            // The work orders whose planned sequence number changes, with the new number.
            let items: Vec<Value> = a
                .sequence_changes()
                .map_err(SinkError::Permanent)?
                .into_iter()
                // The number it had when the proposal was made: the MES refuses the change if
                // the sequence moved since (another re-sequencing, a unit started).
                .map(|c| json!({"WorkOrderNId": c.work_order, "Sequence": c.to_sequence, "PreviousSequence": c.from_sequence}))
                .collect();
            record["Reason"] = json!(description);
            record["Sequence"] = json!(items);
            (p.sequence_set.clone(), p.resequence.clone())
        }
        ActionKind::ExpediteDelivery => {
            let e = a.expedite().map_err(SinkError::Permanent)?;
            record["CallOffNId"] = json!(e.call_off_id);
            record["SupplierNId"] = json!(e.supplier);
            record["MaterialNId"] = json!(e.part);
            record["Quantity"] = json!(e.quantity);
            record["NeededBy"] = json!(e.needed_by);
            record["Reason"] = json!(description);
            (p.material_request_set.clone(), p.expedite_delivery.clone())
        }
    };
    // Drop nulls: MES commands often reject unknown or null fields.
    if let Some(obj) = record.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    Ok((set, command, record))
}

impl Sink for OdataSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, kind: ActionKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    fn deliver(&mut self, action: &Action) -> Result<Receipt, SinkError> {
        let (set, command, record) = plan(&self.profile, action)?;
        // Read back first: an earlier attempt may have reached the MES and lost its answer.
        if let Some(number) = self.existing(&set, &action.idempotency_key)? {
            return Ok(Receipt { reference: Some(number), already_delivered: true });
        }
        let answer = if self.profile.write_style == "command" {
            self.client.post(&command, &json!({ "command": record }))?
        } else {
            self.client.post(&set, &record)?
        };
        let reference = reference_of(&answer, &self.profile.number_field);
        Ok(Receipt { reference, already_delivered: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: ActionKind, subject: Value, approval: Option<Value>) -> Action {
        let mut payload = json!({"subject": subject, "reason": "J1 left NOK", "finding_kind": "sequence.tightening_nok",
                                 "agent": "sequence-integrity", "agent_version": "1.0.0", "evidence": ["ev-1"]});
        if let Some(a) = approval {
            payload["approval"] = a;
        }
        Action {
            action_id: "A-1".into(),
            finding_id: "F-1".into(),
            kind,
            status: jidoka_model::ActionStatus::Approved,
            payload,
            idempotency_key: "K-1".into(),
            correlation_id: "C-1".into(),
            created_at: chrono::Utc::now(),
        }
    }

    /// Regressions: the order log's `WorkOrderNId` was filled with the VIN when no work order was
    /// known; the approver and the reason never reached the MES; a supervisor's review wrote an
    /// entry identical to the automatic one.
    #[test]
    fn mes_records_carry_the_work_order_and_the_decision() {
        let p = Profile::default();
        let vin_only = json!({"vin": "1HGCM82633A004352", "station": "ST040"});
        let err = plan(&p, &action(ActionKind::AppendOrderLog, vin_only.clone(), None)).unwrap_err();
        assert!(
            matches!(&err, SinkError::Permanent(why) if why.starts_with("subject.work_order") && why.contains("1HGCM82633A004352")),
            "{err:?}"
        );
        let unit = json!({"vin": "1HGCM82633A004352", "station": "ST040", "work_order": "WO-17"});
        let approval = json!({"by": ["user:anna"], "notes": ["approved by user:anna: J1 re-tightened, hold released"]});
        let (_, _, auto) =
            plan(&p, &action(ActionKind::AppendOrderLog, unit.clone(), Some(json!({"by": ["policy"], "notes": []}))))
                .unwrap();
        let (_, _, review) =
            plan(&p, &action(ActionKind::SupervisorReview, unit.clone(), Some(approval.clone()))).unwrap();
        assert_eq!(auto["WorkOrderNId"], "WO-17");
        assert!(auto["Text"].as_str().unwrap().ends_with("Decision: approved by policy"), "{auto}");
        let text = review["Text"].as_str().unwrap();
        assert!(text.starts_with("Supervisor review: ") && text.contains("user:anna: J1 re-tightened"), "{review}");
        assert_ne!(auto["Text"], review["Text"]);
        let (_, _, ncr) = plan(&p, &action(ActionKind::CreateNonconformance, vin_only, Some(approval))).unwrap();
        assert_eq!(ncr["SerialNumber"], "1HGCM82633A004352");
        assert!(ncr.get("WorkOrderNId").is_none(), "no work order known: none sent, not the VIN");
        assert!(ncr["Description"].as_str().unwrap().contains("Decision: approved by user:anna"), "{ncr}");
    }

    #[test]
    fn query_values_encode_spaces_as_percent_20_and_quotes_double() {
        let q = Query {
            filter: Some(format!("IdempotencyKey eq {}", literal("jidoka:A'1 x"))),
            top: Some(1),
            ..Query::default()
        };
        assert_eq!(q.to_query_string(), "$filter=IdempotencyKey%20eq%20%27jidoka%3AA%27%271%20x%27&$top=1");
    }

    #[test]
    fn errors_are_classified_and_read_from_odata_bodies() {
        let e = classify(400, r#"{"error":{"code":"400","message":"IdempotencyKey is required"}}"#);
        assert_eq!(e, OdataError::Permanent("HTTP 400: 400 IdempotencyKey is required".into()));
        assert!(matches!(classify(503, "down"), OdataError::Transient(_)));
        assert!(matches!(classify(429, ""), OdataError::Transient(_)));
        assert!(matches!(classify(404, "<html>"), OdataError::Permanent(m) if m.contains("<html>")));
    }
}

/// Configuration of an OData source: released work orders polled from the MES by a
/// modified-timestamp watermark kept as the source checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdataSourceConfig {
    pub name: String,
    /// Service root, e.g. `http://mes:8080/sit-svc/Application/AppJidoka/odata`.
    pub base_url: String,
    #[serde(default = "work_order_set")]
    pub entity_set: String,
    /// The timestamp field that moves whenever a record changes.
    #[serde(default = "modified_field")]
    pub modified_field: String,
    #[serde(default = "wo_number_field")]
    pub number_field: String,
    #[serde(default = "vin_field")]
    pub vin_field: String,
    #[serde(default = "model_field")]
    pub model_field: String,
    #[serde(default = "sequence_field")]
    pub sequence_field: String,
    /// Only records in this status are released work (none: all).
    #[serde(default)]
    pub status_filter: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    /// PEM bundle of the CAs to trust for https; default: the public ones.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default = "poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// Records per page asked for (`$top`); the server may page further by `@odata.nextLink`.
    #[serde(default = "page_size")]
    pub page_size: u64,
}

fn work_order_set() -> String {
    "WorkOrder".into()
}
fn modified_field() -> String {
    "LastUpdatedOn".into()
}
fn wo_number_field() -> String {
    "NId".into()
}
fn vin_field() -> String {
    "Vin".into()
}
fn model_field() -> String {
    "ProductionType".into()
}
fn sequence_field() -> String {
    "Sequence".into()
}
fn poll_ms() -> u64 {
    5000
}
fn page_size() -> u64 {
    500
}

impl OdataSourceConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        self.endpoint().validate(path, errors);
        for (name, v) in [
            ("entity_set", &self.entity_set),
            ("modified_field", &self.modified_field),
            ("number_field", &self.number_field),
            ("vin_field", &self.vin_field),
            ("model_field", &self.model_field),
            ("sequence_field", &self.sequence_field),
        ] {
            if !is_identifier(v) {
                errors.push((format!("{path}.{name}"), "must be an OData identifier".into()));
            }
        }
        if !(100..=3_600_000).contains(&self.poll_interval_ms) {
            errors.push((format!("{path}.poll_interval_ms"), "must be between 100 and 3600000".into()));
        }
        if !(1..=10_000).contains(&self.page_size) {
            errors.push((format!("{path}.page_size"), "must be between 1 and 10000".into()));
        }
    }

    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            base_url: &self.base_url,
            token_env: self.token_env.as_ref(),
            oauth2: self.oauth2.as_ref(),
            ca_file: self.ca_file.as_deref(),
            timeout_ms: self.timeout_ms,
        }
    }

    pub fn client(&self) -> Result<Client, String> {
        self.endpoint().client()
    }

    /// One poll: the records changed at or after `watermark` (an RFC 3339 time; none: all), as
    /// `work_order_released` events in wire form, oldest first, and the new watermark. A record
    /// that cannot be turned into an event is returned as an error with its number and field.
    #[allow(clippy::type_complexity)]
    pub fn poll(
        &self,
        client: &Client,
        watermark: Option<&str>,
    ) -> Result<(Vec<Result<Value, (String, String)>>, Option<String>), OdataError> {
        let mut filters = Vec::new();
        if let Some(w) = watermark {
            // `ge`, not `gt`: a record stamped with the same instant as the last one seen is
            // read again and absorbed as a duplicate rather than missed.
            filters.push(format!("{} ge {w}", self.modified_field));
        }
        if let Some(status) = &self.status_filter {
            filters.push(format!("Status eq {}", literal(status)));
        }
        let query = Query {
            filter: (!filters.is_empty()).then(|| filters.join(" and ")),
            orderby: Some(format!("{} asc,{} asc", self.modified_field, self.number_field)),
            top: Some(self.page_size),
            ..Query::default()
        };
        let records = client.get_all(&self.entity_set, &query, 1000)?;
        let mut latest = watermark.map(str::to_string);
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let text = |f: &str| {
                r.get(f).and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
            };
            let number = text(&self.number_field).unwrap_or_default();
            let Some(modified) = text(&self.modified_field) else {
                out.push(Err((number, format!("{}: missing", self.modified_field))));
                continue;
            };
            if latest.as_deref().is_none_or(|l| modified.as_str() > l) {
                latest = Some(modified.clone());
            }
            let sequence = r.get(&self.sequence_field).and_then(Value::as_u64);
            let (Some(vin), Some(sequence)) = (text(&self.vin_field), sequence) else {
                out.push(Err((number, format!("{} or {}: missing", self.vin_field, self.sequence_field))));
                continue;
            };
            out.push(Ok(json!({
                "source": format!("odata:{}", self.name),
                "source_txn_id": format!("{number}@{modified}"),
                "occurred_at": modified,
                "kind": "work_order_released",
                "data": {
                    "work_order": number, "vin": vin,
                    "model": text(&self.model_field).unwrap_or_default(),
                    "sequence": sequence,
                },
            })));
        }
        Ok((out, latest))
    }
}
