//! The HTTP API (axum): `/health` (open), `/metrics` (loopback or a token with the metrics
//! permission), and everything under `/api/` behind a bearer token checked against the
//! permission table in [`crate::auth`].
//!
//! Errors are JSON `{"error": {"code", "message"}}` with a small code mapped once to an HTTP
//! status; internals (SQL, file paths, panics) never reach the client.

use crate::auth::{Auth, Permission, Principal, allows};
use crate::metrics::Metrics;
use crate::runtime::{Ingest, IngestError};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jidoka_model::{ActionKind, ActionStatus, Event, Verdict};
use jidoka_store::{ActionQuery, AppendOutcome, FindingQuery, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    pub ingest: Ingest,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    pub max_batch_events: usize,
    /// Scrapers on this machine may read /metrics without a token (turn off behind a local
    /// reverse proxy, where every caller looks local).
    pub metrics_open_to_loopback: bool,
    pub agents: Vec<(&'static str, &'static str)>,
    /// Minutes a proposed action waits for a decision before it expires.
    pub approval_ttl_minutes: u64,
    /// The line as the dashboard shows it (followed from the log by the server).
    pub view: Arc<crate::dashboard::view::LineView>,
    /// New findings as the agents commit them (the dashboard's live stream).
    pub findings: tokio::sync::broadcast::Sender<Arc<jidoka_model::Finding>>,
    /// The plant's master data in force (work instructions beside findings; changes through
    /// the API are checked against it).
    pub master: crate::runtime::MasterInForce,
    /// The language model that may rewrite narratives, when configured.
    pub narrator: Option<Arc<crate::narrate::Narrator>>,
    /// The controller links (Open Protocol sources): name, station and their live state.
    pub links: Vec<ControllerLink>,
}

/// One controller link as the status, the metrics and the dashboard show it.
#[derive(Debug, Clone)]
pub struct ControllerLink {
    pub name: String,
    pub station: String,
    pub address: String,
    pub stats: Arc<jidoka_connectors::openprotocol::client::LinkStats>,
}

impl ControllerLink {
    pub fn to_json(&self) -> Value {
        let mut v = self.stats.to_json();
        v["name"] = json!(self.name);
        v["kind"] = json!("open_protocol");
        v["station"] = json!(self.station);
        v["address"] = json!(self.address);
        v
    }
}

/// A client-facing error.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        let status = match code {
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "conflict" => StatusCode::CONFLICT,
            "invalid_event" => StatusCode::UNPROCESSABLE_ENTITY,
            "batch_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError { status, code, message: message.into(), field: None }
    }

    /// The request field the error is about.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "request failed");
        ApiError::new("internal", "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(field) = self.field {
            body["error"]["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<jidoka_store::StoreError> for ApiError {
    fn from(err: jidoka_store::StoreError) -> Self {
        ApiError::internal(err)
    }
}

fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::new("bad_request", format!("invalid query: {}", rejection.body_text()))
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Run a store call on the blocking pool: SQLite is synchronous, and the async workers (two on
/// a two-core line PC) must stay free for ingest acknowledgements.
pub(crate) async fn with_store<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Store) -> Result<T, jidoka_store::StoreError> + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// Build the router with every route and its permission.
/// The largest body of a route that reads it before it knows who is asking (sign-in) or that
/// takes a form: a few KiB is plenty, and a stranger cannot make the service hold megabytes.
pub const SMALL_BODY_BYTES: usize = 16 * 1024;

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let guarded = |perm: Permission| middleware::from_fn_with_state((state.clone(), perm), require);
    let api = Router::new()
        .route("/api/events", post(ingest).route_layer(guarded(Permission::IngestEvents)))
        .route("/api/events", get(list_events).route_layer(guarded(Permission::ReadEvents)))
        .route("/api/events/{event_id}", get(get_event).route_layer(guarded(Permission::ReadEvents)))
        .route("/api/findings", get(list_findings).route_layer(guarded(Permission::ReadFindings)))
        .route("/api/findings/{finding_id}", get(get_finding).route_layer(guarded(Permission::ReadFindings)))
        .route(
            "/api/findings/{finding_id}/curve.svg",
            get(finding_curve).route_layer(guarded(Permission::ReadFindings)),
        )
        .route("/api/actions", get(list_actions).route_layer(guarded(Permission::ReadActions)))
        .route("/api/actions/{action_id}", get(get_action).route_layer(guarded(Permission::ReadActions)))
        .route("/api/actions/acknowledge", post(acknowledge_actions).route_layer(guarded(Permission::DecideActions)))
        .route("/api/cases", get(list_cases).route_layer(guarded(Permission::ReadActions)))
        .route("/api/cases/{case_id}/decide", post(decide_case_route).route_layer(guarded(Permission::DecideActions)))
        .route("/api/actions/{action_id}/approve", post(approve_action).route_layer(guarded(Permission::DecideActions)))
        .route("/api/actions/{action_id}/reject", post(reject_action).route_layer(guarded(Permission::DecideActions)))
        .route("/api/audit", get(list_audit).route_layer(guarded(Permission::ReadAudit)))
        .route("/api/status", get(status).route_layer(guarded(Permission::ReadStatus)))
        .route("/api/master-data", get(get_master_data).route_layer(guarded(Permission::ReadEvents)))
        .route("/api/master-data", post(post_master_data).route_layer(guarded(Permission::ChangeMasterData)))
        .route(
            "/api/build-queue",
            get(crate::build_queue::get_build_queue).route_layer(guarded(Permission::ReadBuildQueue)),
        )
        .route(
            "/api/build-queue/disruptions",
            post(crate::build_queue::post_disruption).route_layer(guarded(Permission::DeclareDisruption)),
        )
        .route("/api/shortages", get(crate::shortage::get_shortages).route_layer(guarded(Permission::ReadBuildQueue)));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/api/login", post(login).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/api/logout", post(logout).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(crate::dashboard::router())
        .fallback(|| async { ApiError::new("not_found", "no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// Every route and the permission it needs (`None` = open). Tests walk this table with every role.
pub const ROUTES: &[(&str, &str, Option<Permission>)] = &[
    ("GET", "/health", None),
    ("GET", "/ready", None),
    ("GET", "/openapi.json", None),
    ("POST", "/api/login", None),
    ("POST", "/api/logout", None),
    ("GET", "/metrics", Some(Permission::ReadMetrics)),
    ("POST", "/api/events", Some(Permission::IngestEvents)),
    ("GET", "/api/events", Some(Permission::ReadEvents)),
    ("GET", "/api/events/{event_id}", Some(Permission::ReadEvents)),
    ("GET", "/api/findings", Some(Permission::ReadFindings)),
    ("GET", "/api/findings/{finding_id}", Some(Permission::ReadFindings)),
    ("GET", "/api/findings/{finding_id}/curve.svg", Some(Permission::ReadFindings)),
    ("GET", "/api/actions", Some(Permission::ReadActions)),
    ("GET", "/api/actions/{action_id}", Some(Permission::ReadActions)),
    ("POST", "/api/actions/acknowledge", Some(Permission::DecideActions)),
    ("GET", "/api/cases", Some(Permission::ReadActions)),
    ("POST", "/api/cases/{case_id}/decide", Some(Permission::DecideActions)),
    ("POST", "/api/actions/{action_id}/approve", Some(Permission::DecideActions)),
    ("POST", "/api/actions/{action_id}/reject", Some(Permission::DecideActions)),
    ("GET", "/api/audit", Some(Permission::ReadAudit)),
    ("GET", "/api/status", Some(Permission::ReadStatus)),
    ("GET", "/api/master-data", Some(Permission::ReadEvents)),
    ("POST", "/api/master-data", Some(Permission::ChangeMasterData)),
    ("GET", "/api/build-queue", Some(Permission::ReadBuildQueue)),
    ("POST", "/api/build-queue/disruptions", Some(Permission::DeclareDisruption)),
    ("GET", "/api/shortages", Some(Permission::ReadBuildQueue)),
];

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.metrics.http_requests.fetch_add(1, Relaxed);
    if resp.status().is_client_error() {
        state.metrics.http_client_errors.fetch_add(1, Relaxed);
    } else if resp.status().is_server_error() {
        state.metrics.http_server_errors.fetch_add(1, Relaxed);
    }
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn authorize(state: &AppState, headers: &HeaderMap, perm: Permission) -> ApiResult<Principal> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::new("unauthorized", "missing `Authorization: Bearer <token>` header"))?;
    let principal = state
        .auth
        .authenticate(token)
        .ok_or_else(|| ApiError::new("unauthorized", "unknown, expired or revoked token"))?;
    if !allows(principal.role, perm) {
        return Err(ApiError::new("forbidden", format!("role {} may not do this", principal.role.as_str())));
    }
    Ok(principal.clone())
}

async fn require(State((state, perm)): State<(Arc<AppState>, Permission)>, mut req: Request, next: Next) -> Response {
    match authorize(&state, req.headers(), perm) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A person logs in with a password and gets a session token (12 h). Unknown users and wrong
/// passwords get the same answer in the same time.
async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let login: Login = serde_json::from_slice(&body).map_err(|e| ApiError::new("invalid", format!("body: {e}")))?;
    let (token, principal) = check_password(&state, login.user, login.password, peer.ip()).await?;
    Ok(Json(json!({
        "token": token,
        "user": principal.name,
        "role": principal.role.as_str(),
        "expires_in_s": crate::auth::SESSION_TTL.as_secs(),
    })))
}

/// Check a password and open a session (the API's login and the dashboard's sign-in).
pub(crate) async fn check_password(
    state: &Arc<AppState>,
    user: String,
    password: String,
    peer: std::net::IpAddr,
) -> ApiResult<(String, Principal)> {
    if user.len() > 200 || password.len() > 1024 {
        return Err(ApiError::new("invalid", "user or password too long"));
    }
    // A guesser waits before the password is even checked: argon2 time is not spent on it.
    if let Some(wait) = state.auth.login_wait(&user, peer) {
        tracing::warn!(user = %jidoka_model::event::truncate(&user, 64), %peer, wait_s = wait.as_secs_f64(), "sign-in refused: too many failures");
        return Err(ApiError::new(
            "too_many_requests",
            format!("too many failed sign-ins for this user or address; try again in {} s", wait.as_secs().max(1)),
        ));
    }
    let name = user.clone();
    // At most two password checks at a time (argon2 is costly by design), so a flood of
    // logins cannot starve the store's blocking pool.
    static LOGINS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let _permit = LOGINS
        .get_or_init(|| tokio::sync::Semaphore::new(2))
        .acquire()
        .await
        .map_err(|_| ApiError::new("unavailable", "shutting down"))?;
    let st = state.clone();
    let outcome =
        tokio::task::spawn_blocking(move || st.auth.login(&user, &password)).await.map_err(ApiError::internal)?;
    match outcome {
        Some((token, principal)) => {
            state.auth.login_succeeded(&name, peer);
            tracing::info!(user = %principal.name, role = principal.role.as_str(), %peer, "login");
            Ok((token, principal))
        }
        None => {
            state.auth.login_failed(&name, peer);
            tracing::warn!(user = %jidoka_model::event::truncate(&name, 64), %peer, "failed login");
            // Slow down guessing.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            Err(ApiError::new("unauthorized", "unknown user or wrong password"))
        }
    }
}

/// End the login session whose token is in the `Authorization` header. API tokens are ended
/// by removing them from the configuration; for them, and without a session, nothing changes.
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Json<Value> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ended = match token {
        Some(t) if state.auth.is_session(t) => {
            state.auth.end_session(t);
            true
        }
        _ => false,
    };
    Json(json!({"ended": ended}))
}

async fn openapi() -> Json<Value> {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(crate::openapi::document).clone())
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match with_store(&state, |s| s.last_seq()).await {
        Ok(_) => Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response(),
        Err(err) => {
            tracing::error!(error = %err.message, "health check cannot read the store");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response()
        }
    }
}

/// Readiness: 200 when the store can read and commit and the agents keep up; 503 with the
/// reason otherwise (a load balancer or the line PC's monitor takes this one).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let readable = with_store(&state, |s| s.last_seq()).await.is_ok();
    let failing = state.metrics.store_failing.load(Relaxed);
    let lag = state.metrics.lag();
    let body = json!({"status": if readable && !failing { "ready" } else { "not_ready" },
                      "store": if !readable { "unreadable" } else if failing { "cannot_commit" } else { "ok" },
                      "agent_lag_events": lag});
    let status = if readable && !failing { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !(state.metrics_open_to_loopback && peer.ip().is_loopback()) {
        authorize(&state, &headers, Permission::ReadMetrics)?;
    }
    let mut body = state.metrics.render();
    if !state.links.is_empty() {
        body.push_str("# HELP jidoka_link_connected Whether the controller link's session is up (1) or not (0).\n# TYPE jidoka_link_connected gauge\n");
        for link in &state.links {
            link.stats.metrics(&link.name, &mut body);
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Split a request body into items: a JSON object (one event), a JSON array (a batch), or
/// JSON Lines when the content type says so. A bad line of JSON Lines fails alone.
/// An append that was not acknowledged: nothing of the request was stored, and it may be sent
/// again.
pub(crate) fn unavailable(e: IngestError) -> ApiError {
    match e {
        IngestError::ShuttingDown => {
            ApiError::new("unavailable", "shutting down; nothing from this request was stored, retry later")
        }
        IngestError::Store(err) => {
            tracing::error!(error = %err, "ingest commit failed");
            ApiError::new(
                "unavailable",
                "the event store could not commit; nothing from this request was stored, retry",
            )
        }
    }
}

fn too_many(max: usize) -> ApiError {
    ApiError::new("batch_too_large", format!("more than {max} events in one request; at most {max} are accepted"))
}

/// The events of a request body: one object, an array, or JSON Lines. Counted while parsing, so
/// a body with more than `max` events is refused before the rest is parsed into memory.
fn body_items(content_type: &str, body: &[u8], max: usize) -> ApiResult<(Vec<Result<Value, String>>, bool)> {
    if content_type.starts_with("application/x-ndjson") || content_type.starts_with("application/jsonl") {
        let text =
            std::str::from_utf8(body).map_err(|e| ApiError::new("bad_request", format!("body is not UTF-8: {e}")))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() > max {
            return Err(too_many(max));
        }
        let items =
            lines.into_iter().map(|l| serde_json::from_str(l).map_err(|e| format!("invalid JSON: {e}"))).collect();
        return Ok((items, false));
    }
    struct Body {
        max: usize,
    }
    const TOO_MANY: &str = "jidoka:too-many-events";
    impl<'de> serde::de::Visitor<'de> for Body {
        type Value = (Vec<Value>, bool);
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an event object or an array of events")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            Ok((vec![v], true))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element::<Value>()? {
                if items.len() == self.max {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                items.push(v);
            }
            Ok((items, false))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde::Deserializer::deserialize_any(&mut de, Body { max }).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok((items, single)) => Ok((items.into_iter().map(Ok).collect(), single)),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(too_many(max)),
        Err(e) if e.is_data() => {
            Err(ApiError::new("bad_request", "body must be an event object, an array of events, or JSON Lines"))
        }
        Err(e) => Err(ApiError::new("invalid_json", format!("body is not valid JSON: {e}"))),
    }
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // Parsing megabytes is CPU work: off the async workers, so /health and the pages stay quick.
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let max = state.max_batch_events;
    let (items, single) = tokio::task::spawn_blocking(move || body_items(&content_type, &body, max))
        .await
        .map_err(ApiError::internal)??;
    let received_at = chrono::Utc::now();
    let mut results: Vec<Value> = Vec::with_capacity(items.len());
    let mut events = Vec::new();
    let mut positions = Vec::new();
    let mut forbidden_sources = 0;
    for (idx, item) in items.into_iter().enumerate() {
        let parsed = item
            .map_err(|reason| jidoka_model::EventError::new("$", reason))
            .and_then(|v| Event::parse(v, received_at))
            .and_then(|ev| {
                if principal.may_write(&ev.source) {
                    Ok(ev)
                } else {
                    forbidden_sources += 1;
                    let reason = format!("token `{}` may not write source `{}`", principal.name, ev.source);
                    Err(jidoka_model::EventError::new("source", reason))
                }
            });
        match parsed {
            Ok(ev) => {
                positions.push(idx);
                events.push(ev);
                results.push(Value::Null);
            }
            Err(e) => results
                .push(json!({"index": idx, "status": "rejected", "error": {"field": e.field, "reason": e.reason}})),
        }
    }
    let rejected_invalid = results.len() - events.len();
    if rejected_invalid > 0 {
        state.metrics.events_rejected.fetch_add(rejected_invalid as u64, Relaxed);
    }
    if single && forbidden_sources == 1 {
        let reason = results[0]["error"]["reason"].as_str().unwrap_or("").to_string();
        return Err(ApiError::new("forbidden", format!("source: {reason}")).field("source"));
    }
    if single && rejected_invalid == 1 {
        let err = &results[0]["error"];
        return Err(ApiError {
            field: err["field"].as_str().map(str::to_string),
            ..ApiError::new(
                "invalid_event",
                format!("{}: {}", err["field"].as_str().unwrap_or("$"), err["reason"].as_str().unwrap_or("")),
            )
        });
    }
    let outcomes =
        if events.is_empty() { Vec::new() } else { state.ingest.append(events, None).await.map_err(unavailable)? };
    let (mut stored, mut duplicates, mut conflicts, mut rejected) = (0, 0, 0, rejected_invalid);
    for (idx, outcome) in positions.into_iter().zip(outcomes) {
        results[idx] = match outcome {
            AppendOutcome::Stored { seq, event_id } => {
                stored += 1;
                json!({"index": idx, "status": "stored", "seq": seq, "event_id": event_id})
            }
            AppendOutcome::Duplicate { seq, event_id } => {
                duplicates += 1;
                json!({"index": idx, "status": "duplicate", "seq": seq, "event_id": event_id})
            }
            AppendOutcome::Conflict { seq, event_id, field } => {
                conflicts += 1;
                json!({"index": idx, "status": "conflict", "seq": seq, "event_id": event_id,
                       "error": {"field": field, "reason": format!(
                           "this source transaction is already stored at seq {seq} with a different `{field}`; \
                            it was not stored")}})
            }
            AppendOutcome::Rejected { error } => {
                rejected += 1;
                json!({"index": idx, "status": "rejected", "error": {"field": error.field, "reason": error.reason}})
            }
        };
    }
    let status = if stored + duplicates > 0 {
        StatusCode::OK
    } else if conflicts > 0 {
        StatusCode::CONFLICT
    } else if rejected > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = json!({"stored": stored, "duplicates": duplicates, "conflicts": conflicts, "rejected": rejected,
                      "results": results});
    Ok((status, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventParams {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn list_events(
    State(state): State<Arc<AppState>>,
    q: Result<Query<EventParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.after;
    let page = with_store(&state, move |s| s.events_after(after, limit)).await?;
    let full = page.events.len() + page.corrupt.len() == limit;
    let next_after = if full { page.last_seq() } else { None };
    let corrupt: Vec<Value> =
        page.corrupt.iter().map(|(seq, _)| json!({"seq": seq, "reason": "stored record cannot be read"})).collect();
    Ok(Json(json!({"items": page.events, "corrupt": corrupt, "next_after": next_after})))
}

async fn get_event(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let ev = with_store(&state, move |s| s.event(&lookup))
        .await?
        .ok_or_else(|| ApiError::new("not_found", format!("no event `{id}`")))?;
    Ok(Json(json!(ev)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingParams {
    verdict: Option<String>,
    agent: Option<String>,
    kind: Option<String>,
    vin: Option<String>,
    station: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

async fn list_findings(
    State(state): State<Arc<AppState>>,
    q: Result<Query<FindingParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(bad_query)?;
    let verdict = match &q.verdict {
        Some(v) => Some(
            Verdict::parse(v)
                .ok_or_else(|| ApiError::new("bad_request", format!("verdict: `{v}` is not PASS, REVIEW or HOLD")))?,
        ),
        None => None,
    };
    let query = FindingQuery {
        verdict,
        agent: q.agent,
        kind: q.kind,
        vin: q.vin,
        station: q.station,
        before: q.before,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let page = with_store(&state, move |s| s.findings(&query)).await?;
    Ok(Json(json!(page)))
}

/// One finding; for a role that may read actions, with its actions and, for a torque finding,
/// how each of its similar past cases was resolved (the kind and status of its actions).
async fn get_finding(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let with_actions = allows(principal.role, Permission::ReadActions);
    let (f, actions, similar) = with_store(&state, move |s| {
        let f = s.finding(&lookup)?;
        let actions = if with_actions {
            s.actions(&ActionQuery { finding_id: Some(lookup), limit: 100, ..Default::default() })?.items
        } else {
            Vec::new()
        };
        let similar = match &f {
            Some(f) => similar_cases(s, f, with_actions, 10)?,
            None => Vec::new(),
        };
        Ok((f, actions, similar))
    })
    .await?;
    let f = f.ok_or_else(|| ApiError::new("not_found", format!("no finding `{id}`")))?;
    let mut body = json!({"finding": f, "similar": similar});
    if with_actions {
        body["actions"] = json!(actions);
    }
    Ok(Json(body))
}

/// A finding's similar past cases (at most `limit`), each with how it was resolved (the kind
/// and status of its actions) when the caller may read actions: the API and the dashboard.
pub(crate) fn similar_cases(
    s: &dyn Store,
    f: &jidoka_model::Finding,
    with_actions: bool,
    limit: usize,
) -> Result<Vec<Value>, jidoka_store::StoreError> {
    let mut similar = Vec::new();
    for case in f.details.get("similar").and_then(Value::as_array).into_iter().flatten().take(limit) {
        let mut case = case.clone();
        if with_actions && let Some(reference) = case.get("reference").and_then(Value::as_str).map(str::to_string) {
            let past = s.actions(&ActionQuery { finding_id: Some(reference), limit: 20, ..Default::default() })?;
            case["resolution"] = past
                .items
                .iter()
                .map(|a| json!({"kind": a.action.kind, "status": a.action.status}))
                .collect::<Vec<_>>()
                .into();
        }
        similar.push(case);
    }
    Ok(similar)
}

/// The curve of a tightening finding against its golden envelope, as SVG (for the dashboard
/// and reports). The plotted curve is the finding's own evidence, so whoever may read the
/// finding (the operator at the station, the supervisor reviewing it) may see it; the rest of
/// the event stays behind the right to read events.
async fn finding_curve(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Response> {
    let lookup = id.clone();
    let (finding, event) = with_store(&state, move |s| {
        let f = s.finding(&lookup)?;
        let ev = match f.as_ref().and_then(|f| f.evidence.first()) {
            Some(e) => s.event(e)?,
            None => None,
        };
        Ok((f, ev))
    })
    .await?;
    let finding = finding.ok_or_else(|| ApiError::new("not_found", format!("no finding `{id}`")))?;
    let svg = event
        .and_then(|e| curve_svg(&finding, &e))
        .ok_or_else(|| ApiError::new("not_found", format!("finding `{id}` has no tightening curve")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// A tightening finding's curve against its golden envelope, when its event has a curve.
pub(crate) fn curve_svg(finding: &jidoka_model::Finding, event: &jidoka_model::StoredEvent) -> Option<String> {
    let jidoka_model::EventPayload::TighteningResult(t) = &event.event.payload else { return None };
    let curve = t.curve.as_ref()?;
    let envelope: Option<Vec<(f64, f64, f64)>> = serde_json::from_value(finding.details["envelope"].clone()).ok();
    let title =
        format!("{} {} {}", finding.kind, finding.verdict.as_str(), finding.subject.joint.as_deref().unwrap_or(""));
    Some(crate::curve_svg::svg(curve, envelope.as_deref(), &title))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    reason: Option<String>,
}

async fn approve_action(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    decide(state, principal, id, body, ActionStatus::Approved).await
}

async fn reject_action(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    decide(state, principal, id, body, ActionStatus::Rejected).await
}

/// Approve or reject a waiting action: the role must be allowed for the action's kind, the
/// decision needs a reason, an action past its approval window expires instead, and the
/// decision is recorded with its actor in the audit trail.
async fn decide(
    state: Arc<AppState>,
    principal: Principal,
    id: String,
    body: Bytes,
    to: ActionStatus,
) -> ApiResult<Json<Value>> {
    let decision: Decision = if body.iter().all(u8::is_ascii_whitespace) {
        Decision::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::new("invalid", format!("body: {e}")).field("reason"))?
    };
    Ok(Json(json!(decide_action(&state, principal, id, decision.reason, to).await?)))
}

/// Every decision says why (an approval releases a hold, an NCR or an Andon into the MES, and
/// its reason travels with the action to the MES record). Checked with the action, so an
/// unknown, forbidden or already decided action is named first.
fn missing_reason(to: ActionStatus) -> (&'static str, String) {
    let what = if to == ActionStatus::Approved { "an approval" } else { "a rejection" };
    ("invalid", format!("{what} needs a reason"))
}

/// A reason, trimmed, at most 2,000 characters; required when `needed_for` names what needs it.
fn checked_reason(reason: Option<String>, needed_for: Option<&str>) -> ApiResult<Option<String>> {
    let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if let Some(what) = needed_for
        && reason.is_none()
    {
        return Err(ApiError::new("invalid", format!("{what} needs a reason")).field("reason"));
    }
    if reason.as_ref().is_some_and(|r| r.chars().count() > 2000) {
        return Err(ApiError::new("invalid", "at most 2000 characters").field("reason"));
    }
    Ok(reason)
}

/// Approve or reject a waiting action for `principal` (the API and the dashboard's forms).
pub(crate) async fn decide_action(
    state: &Arc<AppState>,
    principal: Principal,
    id: String,
    reason: Option<String>,
    to: ActionStatus,
) -> ApiResult<Option<jidoka_store::ActionRecord>> {
    let reason = checked_reason(reason, None)?;
    let ttl = state.approval_ttl_minutes;
    let actor = principal.actor();
    let person = principal.session;
    let role = principal.role;
    let lookup = id.clone();
    let outcome = with_store(state, move |s| {
        let Some(record) = s.action(&lookup)? else { return Ok(Err(("not_found", format!("no action `{lookup}`")))) };
        if !crate::governance::may_decide_action(role, &record.action) {
            return Ok(Err((
                "forbidden",
                format!("role {} may not decide a {} action", role.as_str(), record.action.kind.as_str()),
            )));
        }
        if record.action.status != ActionStatus::PendingApproval {
            return Ok(Err((
                "conflict",
                format!("action `{lookup}` is {}, not waiting for approval", record.action.status.as_str()),
            )));
        }
        // An action past its approval window expires now, whatever the sweeper has done so far:
        // an expired action is never executed.
        let cutoff = chrono::Utc::now() - chrono::Duration::minutes(ttl as i64);
        if record.stored_at.is_some_and(|t| t < cutoff) {
            let note = format!("no decision within {ttl} minutes");
            s.set_action_status(
                &lookup,
                "governance",
                ActionStatus::PendingApproval,
                ActionStatus::Expired,
                Some(&note),
            )?;
            return Ok(Err(("conflict", format!("action `{lookup}` expired unapproved"))));
        }
        let note = match &reason {
            Some(r) => format!("{} by {}: {r}", to.as_str(), actor),
            None => format!("{} by {}", to.as_str(), actor),
        };
        // Four-eyes: two different people, each logged in as themselves; the second approval
        // and the move to approved are one transaction.
        let four_eyes = to == ActionStatus::Approved && crate::governance::needs_four_eyes(&record.action);
        if four_eyes {
            if !person {
                return Ok(Err(("forbidden", "four-eyes approvals need a personal login, not an API token".into())));
            }
            if record.approvals.contains(&actor) {
                return Ok(Err(("conflict", format!("four-eyes: {actor} has approved already; a second person must"))));
            }
        }
        if reason.is_none() {
            return Ok(Err(missing_reason(to)));
        }
        if four_eyes {
            if s.record_approval(&lookup, &actor, Some(&note), 2)?.is_none() {
                return Ok(Err(("conflict", format!("action `{lookup}` is no longer waiting for approval"))));
            }
            return Ok(Ok(s.action(&lookup)?));
        }
        if !s.set_action_status(&lookup, &actor, ActionStatus::PendingApproval, to, Some(&note))? {
            return Ok(Err(("conflict", format!("action `{lookup}` changed meanwhile"))));
        }
        Ok(Ok(s.action(&lookup)?))
    })
    .await?;
    // An approved action reaches the sinks at the outbox's next poll.
    outcome.map_err(decision_error)
}

/// A decision refused inside the store's closure: an `invalid` one is about its reason.
fn decision_error((code, message): (&'static str, String)) -> ApiError {
    let e = ApiError::new(code, message);
    if code == "invalid" { e.field("reason") } else { e }
}

/// `POST /api/actions/acknowledge`: reviews that need no action, acknowledged together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Acknowledge {
    /// The kind of the findings whose reviews are acknowledged (`torque.no_golden_batch`).
    finding_kind: String,
    /// Only those at this station.
    #[serde(default)]
    station: Option<String>,
    /// Why they need no action: recorded with every one of them in the audit trail.
    reason: String,
    /// At most this many (default 1,000, at most 5,000); `more` says whether others wait.
    #[serde(default)]
    limit: Option<usize>,
}

/// Waiting actions read to group into cases (the newest).
pub(crate) const CASES_READ: usize = 10_000;

/// The open cases ([`crate::cases`]), HOLDs first, then by severity, newest first.
async fn list_cases(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let (mut cases, more) = with_store(&state, |s| crate::cases::open_cases(s, CASES_READ)).await?;
    crate::cases::sort(&mut cases);
    Ok(Json(json!({"items": cases.iter().map(crate::cases::Case::to_json).collect::<Vec<_>>(), "more": more})))
}

/// A JSON request body, a bad one named by its field path (`reason: invalid type...`).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new("invalid", format!("{path}: {}", e.inner())).field(path)
    })
}

/// `POST /api/cases/{case_id}/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDecision {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    /// The action ids of the case as the decider saw it: if others joined since, or some were
    /// decided meanwhile, nothing is decided and the answer says so.
    #[serde(default)]
    actions: Option<Vec<String>>,
}

async fn decide_case_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(case_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ask: CaseDecision = json_body(&body)?;
    let to = match ask.decision.as_str() {
        "approve" => ActionStatus::Approved,
        "reject" => ActionStatus::Rejected,
        _ => return Err(ApiError::new("invalid", "must be approve or reject").field("decision")),
    };
    Ok(Json(decide_case(&state, principal, case_id, to, ask.reason, ask.actions).await?))
}

/// Decide every waiting action of an open case: each is a decision of its own in the audit
/// trail, its note naming the case, why its findings are grouped and which they are. Refused
/// whole (nothing decided) when the case is not open, when it changed since the decider saw it
/// (`shown`: a finding joined it, or an action was decided meanwhile), when the role may not
/// decide one of its actions, or when one needs two people. Two people deciding at once: the
/// first wins, the second is told.
pub(crate) async fn decide_case(
    state: &Arc<AppState>,
    principal: Principal,
    case_id: String,
    to: ActionStatus,
    reason: Option<String>,
    shown: Option<Vec<String>>,
) -> ApiResult<Value> {
    let reason = checked_reason(reason, None)?;
    let ttl = state.approval_ttl_minutes;
    let (actor, role) = (principal.actor(), principal.role);
    let outcome = with_store(state, move |s| {
        let (cases, _) = crate::cases::open_cases(s, CASES_READ)?;
        let Some(case) = cases.into_iter().find(|c| c.case_id == case_id) else {
            return Ok(Err(("not_found", format!("no open case `{case_id}`"))));
        };
        let now: Vec<&str> = case.actions.iter().map(|a| a.action.action_id.as_str()).collect();
        if let Some(shown) = &shown {
            let joined: Vec<&str> = now.iter().copied().filter(|id| !shown.iter().any(|s| s == id)).collect();
            let gone: Vec<&str> = shown.iter().map(String::as_str).filter(|id| !now.contains(id)).collect();
            if !joined.is_empty() || !gone.is_empty() {
                return Ok(Err((
                    "conflict",
                    format!(
                        "the case changed since it was shown ({} joined it: {}; {} decided meanwhile: {}); nothing decided, look again",
                        joined.len(),
                        joined.join(", "),
                        gone.len(),
                        gone.join(", ")
                    ),
                )));
            }
        }
        for a in &case.actions {
            if !crate::governance::may_decide_action(role, &a.action) {
                return Ok(Err((
                    "forbidden",
                    format!(
                        "role {} may not decide {} ({}) of this case; nothing decided",
                        role.as_str(),
                        a.action.action_id,
                        a.action.kind.as_str()
                    ),
                )));
            }
            if to == ActionStatus::Approved && crate::governance::needs_four_eyes(&a.action) {
                return Ok(Err((
                    "conflict",
                    format!("{} needs two people: approve it on its own; nothing decided", a.action.action_id),
                )));
            }
        }
        if reason.is_none() {
            return Ok(Err(missing_reason(to)));
        }
        let findings = case.findings();
        let note = format!(
            "{} by {actor} as case {} ({}: {} finding(s), {}){}",
            to.as_str(),
            case.case_id,
            case.why,
            findings.len(),
            findings.join(", "),
            reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        );
        let moved = move_waiting(s, &case.actions, &actor, to, &note, ttl)?;
        if moved.decided.is_empty() && moved.expired.is_empty() {
            return Ok(Err(("conflict", format!("case `{}` was decided meanwhile", case.case_id))));
        }
        Ok(Ok(json!({"case_id": case.case_id, "status": to, "decided": moved.decided, "expired": moved.expired,
                     "decided_meanwhile": moved.meanwhile, "findings": findings})))
    })
    .await?;
    outcome.map_err(decision_error)
}

/// What became of waiting actions moved together.
struct Moved {
    decided: Vec<String>,
    /// Past the approval window: expired instead, never executed.
    expired: Vec<String>,
    /// No longer waiting when the move came.
    meanwhile: Vec<String>,
}

/// Move waiting actions to `to` in one transaction, each a decision of its own by `actor` with
/// `note` in its audit record; one past the approval window expires instead.
fn move_waiting(
    s: &dyn Store,
    actions: &[jidoka_store::ActionRecord],
    actor: &str,
    to: ActionStatus,
    note: &str,
    ttl_minutes: u64,
) -> jidoka_store::Result<Moved> {
    let expiry = format!("no decision within {ttl_minutes} minutes");
    let cutoff = chrono::Utc::now() - chrono::Duration::minutes(ttl_minutes as i64);
    let moves: Vec<jidoka_store::StatusMove<'_>> = actions
        .iter()
        .map(|a| {
            let expired = a.stored_at.is_some_and(|t| t < cutoff);
            jidoka_store::StatusMove {
                action_id: &a.action.action_id,
                actor: if expired { "governance" } else { actor },
                from: ActionStatus::PendingApproval,
                to: if expired { ActionStatus::Expired } else { to },
                note: Some(if expired { &expiry } else { note }),
            }
        })
        .collect();
    let mut out = Moved { decided: Vec::new(), expired: Vec::new(), meanwhile: Vec::new() };
    for (m, ok) in moves.iter().zip(s.set_action_statuses(&moves)?) {
        let list = match (ok, m.to) {
            (false, _) => &mut out.meanwhile,
            (true, ActionStatus::Expired) => &mut out.expired,
            (true, _) => &mut out.decided,
        };
        list.push(m.action_id.to_string());
    }
    Ok(out)
}

/// `POST /api/actions/acknowledge`: see [`acknowledge_reviews`].
async fn acknowledge_actions(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ask: Acknowledge = json_body(&body)?;
    let limit = ask.limit.unwrap_or(1000);
    Ok(Json(acknowledge_reviews(&state, principal, ask.finding_kind, ask.station, ask.reason, limit).await?))
}

/// Acknowledge in bulk the review requests (`supervisor_review` actions waiting for approval)
/// of the findings of one kind, at one station if given, newest first, at most `limit`
/// (1–5,000): each is approved as a decision of its own, with the reason and `acknowledged in
/// bulk` in its audit record. Only reviews: a hold, an NCR or an Andon is never decided in
/// bulk. Reviews this role may not decide, or that need two people, are listed as skipped;
/// those past their approval window expire. The API and the dashboard's Approvals page.
pub(crate) async fn acknowledge_reviews(
    state: &Arc<AppState>,
    principal: Principal,
    finding_kind: String,
    station: Option<String>,
    reason: String,
    limit: usize,
) -> ApiResult<Value> {
    let reason = checked_reason(Some(reason), Some("an acknowledgement"))?.unwrap_or_default();
    if finding_kind.trim().is_empty() {
        return Err(ApiError::new("invalid", "must name a finding kind").field("finding_kind"));
    }
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::new("invalid", "must be between 1 and 5000").field("limit"));
    }
    let station = station.filter(|s| !s.trim().is_empty());
    let ttl = state.approval_ttl_minutes;
    let (actor, role) = (principal.actor(), principal.role);
    with_store(state, move |s| {
        let mut chosen = Vec::new();
        let mut more = false;
        crate::cases::each_waiting(s, Some(ActionKind::SupervisorReview), |record| {
            let p = &record.action.payload;
            let at = p.get("subject").and_then(|s| s.get("station")).and_then(Value::as_str);
            if p.get("finding_kind").and_then(Value::as_str) == Some(finding_kind.as_str())
                && station.as_deref().is_none_or(|want| at == Some(want))
            {
                if chosen.len() == limit {
                    more = true;
                    return std::ops::ControlFlow::Break(());
                }
                chosen.push(record);
            }
            std::ops::ControlFlow::Continue(())
        })?;
        let mut skipped = Vec::new();
        chosen.retain(|r| {
            let why = if !crate::governance::may_decide_action(role, &r.action) {
                format!("role {} may not decide it", role.as_str())
            } else if crate::governance::needs_four_eyes(&r.action) {
                "it needs two people: decide it on its own".to_string()
            } else {
                return true;
            };
            skipped.push(json!({"action_id": r.action.action_id, "reason": why}));
            false
        });
        let note = format!("approved by {actor} (acknowledged in bulk, {finding_kind}): {reason}");
        let moved = move_waiting(s, &chosen, &actor, ActionStatus::Approved, &note, ttl)?;
        skipped.extend(moved.meanwhile.iter().map(|id| json!({"action_id": id, "reason": "decided meanwhile"})));
        Ok(json!({"acknowledged": moved.decided.len(), "action_ids": moved.decided, "expired": moved.expired,
                  "skipped": skipped, "more": more}))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    after: Option<u64>,
    limit: Option<usize>,
}

/// Audit records after `after` (chain order), each with its hashes.
async fn list_audit(
    State(state): State<Arc<AppState>>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(bad_query)?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = with_store(&state, move |s| s.audit_after(after, limit)).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.seq)).flatten();
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let record: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            // `body` is the exact text that was hashed, for re-checking the chain.
            json!({"seq": r.seq, "record": record, "body": r.body, "prev_hash": r.prev_hash, "hash": r.hash})
        })
        .collect();
    Ok(Json(json!({"items": items, "next_after": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionParams {
    status: Option<String>,
    kind: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

async fn list_actions(
    State(state): State<Arc<AppState>>,
    q: Result<Query<ActionParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(bad_query)?;
    let status = match &q.status {
        Some(s) => Some(
            ActionStatus::parse(s)
                .ok_or_else(|| ApiError::new("bad_request", format!("status: `{s}` is not an action status")))?,
        ),
        None => None,
    };
    let kind = match &q.kind {
        Some(k) => Some(
            ActionKind::parse(k)
                .ok_or_else(|| ApiError::new("bad_request", format!("kind: `{k}` is not an action kind")))?,
        ),
        None => None,
    };
    let query =
        ActionQuery { status, kind, finding_id: None, before: q.before, limit: q.limit.unwrap_or(100).clamp(1, 1000) };
    let page = with_store(&state, move |s| s.actions(&query)).await?;
    Ok(Json(json!(page)))
}

async fn get_action(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let a = with_store(&state, move |s| s.action(&lookup))
        .await?
        .ok_or_else(|| ApiError::new("not_found", format!("no action `{id}`")))?;
    Ok(Json(json!(a)))
}

/// The master data in force at the writer's position.
async fn get_master_data(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let master = state.master.get();
    Ok(Json(json!({"in_force": master.is_some(), "master_data": master.as_deref().cloned().unwrap_or_default()})))
}

/// Release a master data change (a `MasterDataChange`): refused whole, each row named, when it
/// does not hold together with what is in force; otherwise logged, and in force for every
/// event after it. `revision` is its idempotency key: the same revision again is a duplicate.
async fn post_master_data(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let change: jidoka_model::master::MasterDataChange = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new("invalid_event", format!("{path}: {}", e.inner())).field(path)
    })?;
    // Checked against what is in force now; the writer checks again at its own position, so
    // a change that races another is still judged in log order.
    let in_force = state.master.get().as_deref().cloned().unwrap_or_default();
    let source = format!("api:{}", principal.name);
    if let Err(errors) = in_force.apply_from(&source, &change) {
        let rows: Vec<Value> = errors.iter().map(|(row, reason)| json!({"row": row, "reason": reason})).collect();
        let message = format!(
            "the change does not hold together, nothing changed: {}",
            errors.iter().map(|(row, reason)| format!("{row}: {reason}")).collect::<Vec<_>>().join("; ")
        );
        let body =
            json!({"error": {"code": "invalid_master_data", "message": message, "field": errors[0].0, "rows": rows}});
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
    }
    let txn = match &change.revision {
        Some(r) => r.clone(),
        None => format!("sha256:{}", jidoka_model::sha256_hex(&body)),
    };
    let event = crate::master_data::change_event(&source, &txn, &change, chrono::Utc::now())
        .map_err(|e| ApiError::new("invalid_event", format!("{}: {}", e.field, e.reason)).field(e.field.clone()))?;
    let outcome = state.ingest.append(vec![event], None).await.map_err(unavailable)?;
    let body = match outcome.into_iter().next() {
        Some(AppendOutcome::Stored { seq, event_id }) => json!({"status": "stored", "seq": seq, "event_id": event_id}),
        Some(AppendOutcome::Duplicate { seq, event_id }) => {
            json!({"status": "duplicate", "seq": seq, "event_id": event_id})
        }
        // The time is this service's stamp, not the client's: the same revision with the same
        // rows sent again is the same change.
        Some(AppendOutcome::Conflict { seq, event_id, field }) if field == "occurred_at" => {
            json!({"status": "duplicate", "seq": seq, "event_id": event_id})
        }
        Some(AppendOutcome::Conflict { seq, field, .. }) => {
            return Err(ApiError::new(
                "conflict",
                format!("revision `{txn}` is already stored at seq {seq} with a different `{field}`"),
            )
            .field("revision"));
        }
        Some(AppendOutcome::Rejected { error }) => {
            return Err(ApiError::new("invalid_event", format!("{}: {}", error.field, error.reason)).field(error.field));
        }
        None => return Err(ApiError::internal("no outcome for the master data event")),
    };
    Ok(Json(body).into_response())
}

async fn status(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let stats = with_store(&state, |s| s.stats()).await?;
    let agents: Vec<Value> = state.agents.iter().map(|(n, v)| json!({"name": n, "version": v})).collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "store": stats,
        "agents": agents,
        "agent_lag_events": state.metrics.lag(),
        "findings_since_start": state.metrics.findings_total(),
        "links": state.links.iter().map(ControllerLink::to_json).collect::<Vec<_>>(),
    })))
}
