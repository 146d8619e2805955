//! The supervisor dashboard, served by the binary itself under `/ui`: server-rendered HTML
//! with SVG charts drawn here, a small script of our own for live updates (server-sent
//! events), nothing fetched from elsewhere.
//!
//! Sign-in is the API's: a person's password login (or an API token) opens a session whose
//! token lives in an `HttpOnly`, `SameSite=Strict` cookie. Every page checks the same
//! permission table as the API ([`crate::auth::allows`]); a form that changes something also
//! carries a token derived from the session (CSRF) and must come from this origin. Buttons
//! appear only for roles allowed to press them, and the server refuses the rest anyway.

pub mod build_queue;
pub mod html;
pub mod shortage;
pub mod view;

use crate::api::{
    ApiError, AppState, SMALL_BODY_BYTES, acknowledge_reviews, check_password, decide_action, with_store,
};
use crate::auth::{Permission, Principal, allows};
use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use html::{Nav, badge, esc, page};
use jidoka_model::audit::StoredAudit;
use jidoka_model::{ActionStatus, Finding, Verdict};
use jidoka_store::{ActionQuery, ActionRecord, FindingQuery};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

const COOKIE: &str = "jidoka_session";

/// Every dashboard route and the permission it needs (`None`: open). Tests walk it with every
/// role.
pub const ROUTES: &[(&str, &str, Option<Permission>)] = &[
    ("GET", "/ui/login", None),
    ("POST", "/ui/login", None),
    ("POST", "/ui/logout", None),
    ("GET", "/ui/static/app.css", None),
    ("GET", "/ui/static/app.js", None),
    ("GET", "/ui", Some(Permission::ReadFindings)),
    ("GET", "/ui/live", Some(Permission::ReadFindings)),
    ("GET", "/ui/findings/{finding_id}", Some(Permission::ReadFindings)),
    ("GET", "/ui/patterns", Some(Permission::ReadFindings)),
    ("GET", "/ui/queue", Some(Permission::ReadActions)),
    ("GET", "/ui/build-queue", Some(Permission::ReadBuildQueue)),
    ("POST", "/ui/build-queue/disruptions", Some(Permission::DeclareDisruption)),
    ("GET", "/ui/shortages", Some(Permission::ReadBuildQueue)),
    ("POST", "/ui/actions/{action_id}/decide", Some(Permission::DecideActions)),
    ("POST", "/ui/actions/acknowledge", Some(Permission::DecideActions)),
    ("POST", "/ui/cases/{case_id}/decide", Some(Permission::DecideActions)),
    ("GET", "/ui/audit", Some(Permission::ReadAudit)),
    ("GET", "/ui/audit/export", Some(Permission::ReadAudit)),
];

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(overview))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_page).post(login).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/ui/logout", post(logout).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/ui/live", get(live))
        .route("/ui/queue", get(queue))
        .route("/ui/build-queue", get(build_queue::build_queue_page))
        .route("/ui/shortages", get(shortage::shortages_page))
        .route("/ui/build-queue/disruptions", post(build_queue::declare).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/ui/findings/{finding_id}", get(finding_page))
        .route("/ui/actions/{action_id}/decide", post(decide).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/ui/actions/acknowledge", post(acknowledge).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/ui/cases/{case_id}/decide", post(decide_case_form).layer(DefaultBodyLimit::max(SMALL_BODY_BYTES)))
        .route("/ui/patterns", get(patterns))
        .route("/ui/audit", get(audit))
        .route("/ui/audit/export", get(audit_export))
        .route("/ui/static/app.css", get(|| async { asset("text/css", include_str!("static/app.css")) }))
        .route("/ui/static/app.js", get(|| async { asset("text/javascript", include_str!("static/app.js")) }))
        .layer(middleware::map_response(security_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A signed-in person as a page sees them.
#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    csrf: String,
}

impl Session {
    fn may(&self, perm: Permission) -> bool {
        allows(self.principal.role, perm)
    }

    fn nav<'a>(&'a self, current: &'a str) -> Nav<'a> {
        let mut links = vec![("/ui", "Line")];
        if self.may(Permission::ReadActions) {
            links.push(("/ui/queue", "Approvals"));
        }
        if self.may(Permission::ReadBuildQueue) {
            links.push(("/ui/build-queue", "Build queue"));
            links.push(("/ui/shortages", "Material"));
        }
        links.push(("/ui/patterns", "Defects"));
        if self.may(Permission::ReadAudit) {
            links.push(("/ui/audit", "Audit"));
        }
        Nav { current, links, user: &self.principal.name, role: self.principal.role.as_str(), csrf: &self.csrf }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: derived from its token, so nothing more is stored.
pub fn csrf_of(token: &str) -> String {
    hex::encode(Sha256::digest(format!("jidoka-dashboard-csrf\n{token}").as_bytes()))
}

/// Why a page cannot be shown.
enum Denied {
    /// Not signed in (or the session ended): to the sign-in page.
    SignIn,
    Forbidden(String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn => Redirect::to("/ui/login").into_response(),
            Denied::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                Html(page(
                    "Not allowed",
                    None,
                    &format!("<p class=\"notice\">{}</p><p><a href=\"/ui\">Back to the line</a></p>", esc(&why)),
                )),
            )
                .into_response(),
        }
    }
}

fn session(state: &AppState, headers: &HeaderMap, perm: Permission) -> Result<Session, Denied> {
    let token = cookie_token(headers).ok_or(Denied::SignIn)?;
    let principal = state.auth.authenticate(token).ok_or(Denied::SignIn)?;
    if !allows(principal.role, perm) {
        return Err(Denied::Forbidden(format!("Your role ({}) may not see this page.", principal.role.as_str())));
    }
    Ok(Session { csrf: csrf_of(token), principal })
}

/// A form that changes state must come from this origin and carry the session's CSRF token.
fn check_form(headers: &HeaderMap, expected_csrf: Option<&str>, csrf: &str) -> Result<(), Denied> {
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let host = host.to_str().unwrap_or("");
        let same = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        if !same {
            return Err(Denied::Forbidden("This form was sent from another site.".into()));
        }
    }
    if let Some(expected) = expected_csrf
        && !constant_time_eq(expected.as_bytes(), csrf.as_bytes())
    {
        return Err(Denied::Forbidden("This form has expired; reload the page and try again.".into()));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn internal(err: ApiError) -> Response {
    (err.status, Html(page("Something went wrong", None, &format!("<p class=\"notice\">{}</p>", esc(&err.message)))))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Sign-in

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    error: Option<String>,
}

async fn login_page(Query(q): Query<LoginQuery>) -> Html<String> {
    let notice = match q.error.as_deref() {
        Some("credentials") => "<p class=\"notice\" role=\"alert\">Unknown user or wrong password.</p>",
        Some("token") => "<p class=\"notice\" role=\"alert\">Unknown, expired or revoked token.</p>",
        Some("wait") => "<p class=\"notice\" role=\"alert\">Too many failed sign-ins; wait a minute and try again.</p>",
        Some(_) => "<p class=\"notice\" role=\"alert\">Sign-in failed; try again.</p>",
        None => "",
    };
    Html(page(
        "Sign in",
        None,
        &format!(
            "{notice}<form class=\"card narrow\" method=\"post\" action=\"/ui/login\">\
             <label>User <input name=\"user\" autocomplete=\"username\" autofocus></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
             <button type=\"submit\">Sign in</button>\
             <details><summary>Sign in with an API token</summary>\
             <label>Token <input name=\"token\" type=\"password\" autocomplete=\"off\"></label></details></form>"
        ),
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm").field("user", &self.user).finish_non_exhaustive()
    }
}

fn session_cookie(token: &str, max_age: u64) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

async fn login(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Form<LoginForm>,
) -> Response {
    if let Err(denied) = check_form(&headers, None, "") {
        return denied.into_response();
    }
    let Form(form) = form;
    let token = form.token.trim().to_string();
    let token = if !token.is_empty() {
        // The cookie gets a session of the token's holder, never the long-lived token.
        let session = (token.len() <= 200).then(|| state.auth.session_for_token(&token)).flatten();
        match session {
            Some(s) => s,
            None => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                return Redirect::to("/ui/login?error=token").into_response();
            }
        }
    } else {
        match check_password(&state, form.user, form.password, peer.ip()).await {
            Ok((token, _)) => token,
            Err(e) if e.code == "too_many_requests" => return Redirect::to("/ui/login?error=wait").into_response(),
            Err(_) => return Redirect::to("/ui/login?error=credentials").into_response(),
        }
    };
    let cookie = session_cookie(&token, crate::auth::SESSION_TTL.as_secs());
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Some(token) = cookie_token(&headers) {
        if let Err(denied) = check_form(&headers, Some(&csrf_of(token)), &form.csrf) {
            return denied.into_response();
        }
        state.auth.end_session(token);
    }
    ([(header::SET_COOKIE, session_cookie("", 0))], Redirect::to("/ui/login")).into_response()
}

// ---------------------------------------------------------------------------------------------
// The line

/// What the overview and the live stream show.
async fn line_summary(state: &Arc<AppState>) -> Result<Value, ApiError> {
    let snapshot = state.view.snapshot();
    let pending = with_store(state, |s| {
        s.actions(&ActionQuery { status: Some(ActionStatus::PendingApproval), limit: 1000, ..Default::default() })
    })
    .await?;
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    let mut findings = std::collections::HashSet::new();
    for a in &pending.items {
        if findings.insert(a.action.finding_id.clone()) {
            let severity = a.action.payload.get("severity").and_then(Value::as_str).unwrap_or("unknown");
            *open.entry(severity.to_string()).or_default() += 1;
        }
    }
    let more = pending.next_cursor.is_some();
    let actions = pending.items.len();
    let cases = crate::cases::group(pending.items).len();
    Ok(json!({
        "line": snapshot,
        "open_by_severity": open,
        "pending_cases": cases,
        "pending_actions": actions,
        "pending_more": more,
        "findings_since_start": state.metrics.findings_total(),
    }))
}

async fn overview(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match session(&state, &headers, Permission::ReadFindings) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let summary = match line_summary(&state).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    // Informational results (a PASS, an NCR triage with no suggestion) are not news: the latest
    // HOLDs and REVIEWs, looking back a few pages at most.
    let latest = with_store(&state, |s| {
        let mut latest = Vec::new();
        let mut before = None;
        for limit in [30, 100, 400] {
            let page = s.findings(&FindingQuery { limit, before, ..Default::default() })?;
            latest.extend(page.items.into_iter().filter(|f| f.verdict != Verdict::Pass));
            match page.next_cursor {
                Some(next) if latest.len() < 15 => before = Some(next),
                _ => break,
            }
        }
        latest.truncate(15);
        Ok(latest)
    })
    .await;
    let latest = match latest {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<section class=\"tiles\" aria-live=\"polite\">");
    let open = &summary["open_by_severity"];
    for (label, key) in [("Critical open", "critical"), ("Warning open", "warning"), ("Info open", "info")] {
        let _ = write!(
            body,
            "<div class=\"tile sev-{key}\"><span class=\"n\" data-live=\"open.{key}\">{}</span><span>{label}</span></div>",
            open.get(key).and_then(Value::as_u64).unwrap_or(0)
        );
    }
    let andons = summary["line"]["andons_open"].as_u64().unwrap_or(0);
    let stopped = summary["line"]["line_stopped"].as_bool().unwrap_or(false);
    let _ = write!(
        body,
        "<div class=\"tile {}\"><span class=\"n\" data-live=\"andons\">{andons}</span><span data-live=\"andon-label\">{}</span></div>\
         <div class=\"tile\"><span class=\"n\" data-live=\"cases\">{}</span><span>Cases awaiting decision</span></div>",
        if stopped {
            "stopped"
        } else if andons > 0 {
            "andon"
        } else {
            ""
        },
        if stopped { "Andon open · LINE STOPPED" } else { "Andon open" },
        summary["pending_cases"].as_u64().unwrap_or(0)
    );
    if !state.links.is_empty() {
        // A controller link that is down loses nothing while the controller keeps its results,
        // but nothing is checked live meanwhile: the supervisor should see it.
        let down: Vec<&str> = state
            .links
            .iter()
            .filter(|l| !l.stats.connected.load(std::sync::atomic::Ordering::Relaxed))
            .map(|l| l.station.as_str())
            .collect();
        let up = state.links.len() - down.len();
        let _ = write!(
            body,
            "<div class=\"tile {}\"><span class=\"n\">{up}/{}</span><span>Controller links up{}</span></div>",
            if down.is_empty() { "" } else { "andon" },
            state.links.len(),
            if down.is_empty() { String::new() } else { format!(" · down: {}", esc(&down.join(", "))) }
        );
    }
    body.push_str("</section><h2>Stations</h2><div class=\"scroll\"><table id=\"stations\"><thead><tr><th scope=\"col\">Station</th><th scope=\"col\">Units out</th><th scope=\"col\">Unit now</th><th scope=\"col\">Tightenings (NOK)</th><th scope=\"col\">Andon</th></tr></thead><tbody>");
    if let Some(stations) = summary["line"]["stations"].as_array() {
        for st in stations {
            body.push_str(&station_row(st));
        }
    }
    body.push_str("</tbody></table></div><h2>Latest findings</h2><ul id=\"latest\" class=\"findings\">");
    for f in &latest {
        body.push_str(&finding_item(f));
    }
    body.push_str("</ul>");
    Html(page("Line", Some(&s.nav("/ui")), &body)).into_response()
}

fn station_row(st: &Value) -> String {
    let andon = match st.get("andon").filter(|a| !a.is_null()) {
        Some(a) => format!(
            "<span class=\"badge {}\">{}{}</span>",
            if a["line_stopped"].as_bool().unwrap_or(false) { "hold" } else { "review" },
            esc(a["fault_code"].as_str().unwrap_or("")),
            if a["line_stopped"].as_bool().unwrap_or(false) { " · stopped" } else { "" }
        ),
        None => "<span class=\"badge pass\">clear</span>".into(),
    };
    format!(
        "<tr data-station=\"{0}\"><th scope=\"row\">{0}</th><td>{1}</td><td>{2}</td><td>{3} ({4})</td><td>{andon}</td></tr>",
        esc(st["station"].as_str().unwrap_or("")),
        st["units"].as_u64().unwrap_or(0),
        esc(st["current_vin"].as_str().unwrap_or("—")),
        st["tightenings"].as_u64().unwrap_or(0),
        st["tightenings_nok"].as_u64().unwrap_or(0),
    )
}

fn finding_item(f: &Finding) -> String {
    format!(
        "<li data-verdict=\"{}\">{} {} <a href=\"/ui/findings/{}\">{}</a> <span class=\"muted\">{} · {}</span><div>{}</div></li>",
        f.verdict.as_str(),
        badge(f.verdict.as_str()),
        badge(f.severity.as_str()),
        esc(&f.finding_id),
        esc(&f.kind),
        esc(f.subject.station.as_deref().unwrap_or("")),
        esc(&f.occurred_at.to_rfc3339()),
        esc(&f.reason)
    )
}

/// Server-sent events: `line` (the summary) when the line moved, at most once a second, and
/// `finding` for each new REVIEW / HOLD.
/// Live streams one dashboard session may hold open at once (a few tabs); each costs a task and
/// a summary every second, so one session must not open hundreds.
pub const MAX_LIVE_STREAMS_PER_SESSION: usize = 6;

async fn live(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let signed_in = match session(&state, &headers, Permission::ReadFindings) {
        Ok(s) => s,
        Err(Denied::SignIn) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(other) => return other.into_response(),
    };
    let Some(slot) = state.view.open_stream(&signed_in.csrf, MAX_LIVE_STREAMS_PER_SESSION) else {
        return (StatusCode::TOO_MANY_REQUESTS, "too many live streams open for this session; close a tab")
            .into_response();
    };
    struct Live {
        _slot: crate::dashboard::view::StreamSlot,
        state: Arc<AppState>,
        headers: HeaderMap,
        version: tokio::sync::watch::Receiver<u64>,
        findings: tokio::sync::broadcast::Receiver<Arc<Finding>>,
        first: bool,
    }
    let live = Live {
        _slot: slot,
        version: state.view.version.subscribe(),
        findings: state.findings.subscribe(),
        state: state.clone(),
        headers,
        first: true,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            // The stream ends with the server, and with the session: after sign-out or expiry
            // it sends nothing more.
            if live.state.view.is_closed() || session(&live.state, &live.headers, Permission::ReadFindings).is_err() {
                return None;
            }
            if !live.first {
                tokio::select! {
                    // Re-check the session now and then even when the line is quiet.
                    _ = tokio::time::sleep(Duration::from_secs(30)) => continue,
                    changed = live.version.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        if live.state.view.is_closed() {
                            return None;
                        }
                        // At most one summary a second, however busy the line.
                        tokio::time::sleep(Duration::from_millis(1000)).await;
                        live.version.borrow_and_update();
                    }
                    f = live.findings.recv() => match f {
                        Ok(f) if f.verdict != Verdict::Pass => {
                            let data = json!({
                                "finding_id": f.finding_id, "verdict": f.verdict.as_str(),
                                "severity": f.severity.as_str(), "kind": f.kind, "reason": f.reason,
                                "station": f.subject.station, "occurred_at": f.occurred_at.to_rfc3339(),
                            });
                            let ev = SseEvent::default().event("finding").data(data.to_string());
                            return Some((Ok::<_, Infallible>(ev), live));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
            live.first = false;
            // Every open stream sends the same summary: it is computed once a second at most,
            // whatever the number of streams.
            if let Some(text) = live.state.view.fresh_summary(Duration::from_millis(900)) {
                return Some((Ok(SseEvent::default().event("line").data(text.as_str())), live));
            }
            match line_summary(&live.state).await {
                Ok(summary) => {
                    let text = live.state.view.keep_summary(summary.to_string());
                    let ev = SseEvent::default().event("line").data(text.as_str());
                    return Some((Ok(ev), live));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

// ---------------------------------------------------------------------------------------------
// Approvals

#[derive(Debug, Default, Deserialize)]
struct QueueQuery {
    #[serde(default)]
    verdict: Option<String>,
}

/// Actions read for the queue, grouped into cases; HOLDs come first, then by severity, newest
/// first. Cases shown at most.
const QUEUE_READ: usize = 1000;
const QUEUE_SHOWN: usize = 100;

async fn queue(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, QueryRejection>,
) -> Response {
    let s = match session(&state, &headers, Permission::ReadActions) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let verdict = match q.map(|Query(q)| q.verdict) {
        Ok(None) => None,
        Ok(Some(v)) if v.is_empty() => None,
        Ok(Some(v)) => match Verdict::parse(&v) {
            Some(v) => Some(v),
            None => return (StatusCode::BAD_REQUEST, "verdict: must be HOLD, REVIEW or PASS").into_response(),
        },
        Err(_) => return (StatusCode::BAD_REQUEST, "verdict: must be HOLD, REVIEW or PASS").into_response(),
    };
    let read = with_store(&state, move |st| {
        let (mut cases, more) = crate::cases::open_cases(st, QUEUE_READ)?;
        cases.retain(|c| verdict.is_none_or(|v| c.worst().0 == v));
        crate::cases::sort(&mut cases);
        let total = cases.len();
        let waiting = cases.iter().map(|c| c.actions.len()).sum::<usize>();
        // Waiting review requests by finding kind, for the bulk acknowledgement forms.
        let mut reviews: BTreeMap<String, usize> = BTreeMap::new();
        for a in cases.iter().flat_map(|c| &c.actions) {
            if a.action.kind == jidoka_model::ActionKind::SupervisorReview
                && let Some(kind) = a.action.payload.get("finding_kind").and_then(Value::as_str)
            {
                *reviews.entry(kind.to_string()).or_default() += 1;
            }
        }
        cases.truncate(QUEUE_SHOWN);
        let mut shown = Vec::with_capacity(cases.len());
        for case in cases {
            let mut findings = Vec::new();
            for id in case.findings() {
                findings.push(st.finding(id)?);
            }
            shown.push((case, findings));
        }
        Ok((shown, total, waiting, reviews, more))
    })
    .await;
    let (shown, total, waiting, reviews, more) = match read {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let mut body = String::with_capacity(32 * 1024);
    if shown.is_empty() {
        body.push_str("<p class=\"notice\">Nothing is waiting for a decision.</p>");
    } else {
        let _ = write!(
            body,
            "<p>{total}{} case{} waiting ({} action{}): the findings about one problem are one case with one decision; \
             HOLDs first, then by severity, newest first{}.</p>",
            if more { "+" } else { "" },
            if total == 1 { "" } else { "s" },
            waiting,
            if waiting == 1 { "" } else { "s" },
            if total > shown.len() { format!(" (the first {} shown)", shown.len()) } else { String::new() }
        );
    }
    let filter = |v: &str, label: &str| {
        let on = verdict.map(|x| x.as_str()) == Some(v) || (v.is_empty() && verdict.is_none());
        format!(
            "<a href=\"/ui/queue{}\"{}>{label}</a>",
            if v.is_empty() { String::new() } else { format!("?verdict={v}") },
            if on { " aria-current=\"true\"" } else { "" }
        )
    };
    let _ = write!(
        body,
        "<p class=\"filters\">Show: {} · {} · {}</p>",
        filter("", "all"),
        filter("HOLD", "HOLD only"),
        filter("REVIEW", "REVIEW only")
    );
    body.push_str(&bulk_forms(&s, reviews, more));
    body.push_str("<ol class=\"queue\">");
    for (case, findings) in &shown {
        let (worst, _) = case.worst();
        let _ = write!(
            body,
            "<li class=\"card\" data-verdict=\"{}\" data-case=\"{}\">",
            worst.as_str(),
            esc(&case.case_id)
        );
        if let [a] = case.actions.as_slice() {
            match findings.first().and_then(Option::as_ref) {
                Some(f) => {
                    let _ = write!(
                        body,
                        "<h2>{} {} <a href=\"/ui/findings/{}\">{}</a></h2><p class=\"reason\">{}</p>\
                         <p class=\"muted\">{} · VIN {} · {}</p>",
                        badge(f.verdict.as_str()),
                        badge(f.severity.as_str()),
                        esc(&f.finding_id),
                        esc(&f.kind),
                        esc(&f.reason),
                        esc(f.subject.station.as_deref().unwrap_or("")),
                        esc(f.subject.vin.as_deref().unwrap_or("—")),
                        esc(&f.occurred_at.to_rfc3339())
                    );
                    body.push_str(&evidence_list(f));
                    let cases: Vec<Value> = f
                        .details
                        .get("similar")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .take(5)
                        .cloned()
                        .collect();
                    body.push_str(&similar_list(&cases));
                }
                None => {
                    let _ = write!(body, "<h2>Finding {} not found</h2>", esc(&a.action.finding_id));
                }
            }
            body.push_str(&action_block(&s, a, &[]));
        } else {
            body.push_str(&case_block(&s, case, findings));
        }
        body.push_str("</li>");
    }
    body.push_str("</ol>");
    Html(page("Approvals", Some(&s.nav("/ui/queue")), &body)).into_response()
}

/// A case of several findings: what they are, why they are one case, and one decision for all
/// of its actions (each can still be decided alone on its finding's page).
fn case_block(s: &Session, case: &crate::cases::Case, findings: &[Option<jidoka_model::Finding>]) -> String {
    let (verdict, severity) = case.worst();
    let mut out = format!(
        "<h2>{} {} {}</h2><p class=\"muted\">One case: {}. {} findings, {} waiting actions.</p><ul class=\"findings\">",
        badge(verdict.as_str()),
        badge(severity.as_str()),
        esc(&case.title),
        esc(case.why),
        findings.len(),
        case.actions.len()
    );
    for f in findings.iter().flatten().take(50) {
        let _ = write!(
            out,
            "<li>{} <a href=\"/ui/findings/{}\">{}</a> <span class=\"muted\">VIN {} · {}</span><div>{}</div></li>",
            badge(f.verdict.as_str()),
            esc(&f.finding_id),
            esc(&f.kind),
            esc(f.subject.vin.as_deref().unwrap_or("—")),
            esc(&f.occurred_at.to_rfc3339()),
            esc(&f.reason)
        );
    }
    if findings.len() > 50 {
        let _ = write!(out, "<li class=\"muted\">and {} more</li>", findings.len() - 50);
    }
    out.push_str("</ul><p class=\"muted\">Actions: ");
    let kinds: Vec<String> =
        case.actions.iter().map(|a| format!("{} {}", esc(a.action.kind.as_str()), esc(&a.action.action_id))).collect();
    out.push_str(&kinds.join(" · "));
    out.push_str("</p>");
    let may_all = case.actions.iter().all(|a| crate::governance::may_decide_action(s.principal.role, &a.action));
    if s.may(Permission::DecideActions) && may_all {
        let ids: Vec<&str> = case.actions.iter().map(|a| a.action.action_id.as_str()).collect();
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/cases/{0}/decide\" class=\"decide\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{1}\">\
             <input type=\"hidden\" name=\"actions\" value=\"{2}\">\
             <label>Reason for the whole case (required) <textarea name=\"reason\" required maxlength=\"2000\" rows=\"2\"></textarea></label>\
             <div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"approve\" class=\"approve\">Approve all {3}</button>\
             <button type=\"submit\" name=\"decision\" value=\"reject\" class=\"reject\">Reject all {3}</button></div></form>",
            esc(&case.case_id),
            esc(&s.csrf),
            esc(&ids.join(",")),
            case.actions.len()
        );
    }
    out
}

async fn decide_case_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    let (s, to) = match decision_form(&state, &headers, &form.csrf, &form.decision, &form.reason) {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    let shown: Vec<String> =
        form.actions.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    match crate::api::decide_case(&state, s.principal.clone(), case_id, to, Some(form.reason), Some(shown)).await {
        Ok(_) => Redirect::to("/ui/queue").into_response(),
        Err(e) => refused(&s, "Decision not recorded", e),
    }
}

fn evidence_list(f: &Finding) -> String {
    let mut out = String::from("<p class=\"muted\">Evidence: ");
    for (i, e) in f.evidence.iter().take(10).enumerate() {
        let _ = write!(out, "{}<code>{}</code>", if i > 0 { ", " } else { "" }, esc(e));
    }
    out.push_str("</p>");
    out
}

/// Similar past cases (from [`crate::api::similar_cases`]) with, when known, how each was
/// resolved.
fn similar_list(cases: &[Value]) -> String {
    if cases.is_empty() {
        return String::new();
    }
    let mut out = String::from("<details><summary>Similar past cases</summary><ul>");
    for c in cases {
        let reference = c["reference"].as_str().unwrap_or("");
        let modes: Vec<&str> =
            c["failure_modes"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let resolution = c["resolution"]
            .as_array()
            .map(|acts| {
                acts.iter()
                    .map(|a| {
                        format!("{} {}", esc(a["kind"].as_str().unwrap_or("")), esc(a["status"].as_str().unwrap_or("")))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no decision recorded".into());
        let _ = write!(
            out,
            "<li><a href=\"/ui/findings/{0}\">{1}</a> · {2} · distance {3:.2} · {resolution}</li>",
            esc(reference),
            esc(c["tightening_id"].as_str().unwrap_or(reference)),
            esc(&modes.join(", ")),
            c["distance"].as_f64().unwrap_or(f64::NAN)
        );
    }
    out.push_str("</ul></details>");
    out
}

/// An action's status and, for a role allowed to decide it, the decision form.
fn action_block(s: &Session, a: &ActionRecord, history: &[StoredAudit]) -> String {
    let act = &a.action;
    let mut out = format!(
        "<div class=\"action\" data-action=\"{0}\"><p><strong>{1}</strong> · <span class=\"status\">{2}</span>",
        esc(&act.action_id),
        esc(act.kind.as_str()),
        esc(act.status.as_str())
    );
    if crate::governance::needs_four_eyes(act) {
        let _ = write!(out, " · four-eyes: {} of 2 approvals", a.approvals.len());
    }
    if let Some(note) = &a.note {
        let _ = write!(out, " · <span class=\"muted\">{}</span>", esc(note));
    }
    out.push_str("</p>");
    if !history.is_empty() {
        out.push_str("<ol class=\"history\">");
        for r in history {
            let rec: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let _ = write!(
                out,
                "<li><span class=\"muted\">{}</span> {} <strong>{}</strong>{}</li>",
                esc(rec["at"].as_str().unwrap_or("")),
                esc(rec["actor"].as_str().unwrap_or("")),
                esc(rec["what"].as_str().unwrap_or("").trim_start_matches("action_")),
                rec["details"]["note"].as_str().map(|n| format!(" — {}", esc(n))).unwrap_or_default()
            );
        }
        out.push_str("</ol>");
    }
    if act.status == ActionStatus::PendingApproval
        && s.may(Permission::DecideActions)
        && crate::governance::may_decide_action(s.principal.role, act)
    {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/ui/actions/{0}/decide\" class=\"decide\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{1}\">\
             <label>Reason (required) <textarea name=\"reason\" required maxlength=\"2000\" rows=\"2\"></textarea></label>\
             <div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"approve\" class=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"decision\" value=\"reject\" class=\"reject\">Reject</button></div></form>",
            esc(&act.action_id),
            esc(&s.csrf)
        );
    }
    out.push_str("</div>");
    out
}

/// The waiting review requests, counted by finding kind, each kind with a form that
/// acknowledges them all with one reason (for the roles that may decide reviews; holds are
/// never in it). `more`: other actions wait beyond those read, so a count may be higher.
fn bulk_forms(s: &Session, reviews: BTreeMap<String, usize>, more: bool) -> String {
    if !crate::governance::may_decide(s.principal.role, jidoka_model::ActionKind::SupervisorReview) {
        return String::new();
    }
    let mut kinds: Vec<(String, usize)> = reviews.into_iter().filter(|(_, n)| *n >= 2).collect();
    if kinds.is_empty() {
        return String::new();
    }
    kinds.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let mut out =
        String::from("<details class=\"bulk\"><summary>Acknowledge reviews that need no action, by kind</summary><ul>");
    for (kind, n) in kinds {
        let _ = write!(
            out,
            "<li><form method=\"post\" action=\"/ui/actions/acknowledge\" class=\"decide\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"finding_kind\" value=\"{kind}\">\
             <label>{n}{plus} reviews of <code>{kind}</code>: reason \
             <input name=\"reason\" required maxlength=\"2000\"></label> \
             <button type=\"submit\">Acknowledge all</button></form></li>",
            csrf = esc(&s.csrf),
            kind = esc(&kind),
            plus = if more { "+" } else { "" },
        );
    }
    out.push_str("</ul></details>");
    out
}

#[derive(Debug, Deserialize)]
struct AcknowledgeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    finding_kind: String,
    #[serde(default)]
    reason: String,
}

async fn acknowledge(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<AcknowledgeForm>,
) -> Response {
    let s = match session(&state, &headers, Permission::DecideActions) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    if let Err(d) = check_form(&headers, Some(&s.csrf), &form.csrf) {
        return d.into_response();
    }
    let kind = form.finding_kind.clone();
    match acknowledge_reviews(&state, s.principal.clone(), form.finding_kind, None, form.reason, 5000).await {
        Ok(done) => {
            let skipped = done["skipped"].as_array().map_or(0, Vec::len);
            let expired = done["expired"].as_array().map_or(0, Vec::len);
            Html(page(
                "Reviews acknowledged",
                Some(&s.nav("/ui/queue")),
                &format!(
                    "<p class=\"notice\">{} reviews of <code>{}</code> acknowledged{}{}{}.</p>\
                     <p><a href=\"/ui/queue\">Back to approvals</a></p>",
                    done["acknowledged"].as_u64().unwrap_or(0),
                    esc(&kind),
                    if expired > 0 { format!("; {expired} had expired") } else { String::new() },
                    if skipped > 0 { format!("; {skipped} left for a decision of their own") } else { String::new() },
                    if done["more"].as_bool() == Some(true) { "; more wait" } else { "" },
                ),
            ))
            .into_response()
        }
        Err(e) => refused(&s, "Nothing acknowledged", e),
    }
}

/// The page that says a decision or acknowledgement was refused, and why, with the way back.
fn refused(s: &Session, title: &str, e: ApiError) -> Response {
    let body = format!(
        "<p class=\"notice\" role=\"alert\">{}</p><p><a href=\"/ui/queue\">Back to approvals</a></p>",
        esc(&e.message)
    );
    (e.status, Html(page(title, Some(&s.nav("")), &body))).into_response()
}

/// A decision form's checks, for one action or a case: a session that may decide, the form's
/// CSRF token, `approve` or `reject`, and a reason (asked for approvals too: the audit trail
/// should say why).
fn decision_form(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    csrf: &str,
    decision: &str,
    reason: &str,
) -> Result<(Session, ActionStatus), Box<Response>> {
    let s = session(state, headers, Permission::DecideActions).map_err(|d| Box::new(d.into_response()))?;
    check_form(headers, Some(&s.csrf), csrf).map_err(|d| Box::new(d.into_response()))?;
    let to = match decision {
        "approve" => ActionStatus::Approved,
        "reject" => ActionStatus::Rejected,
        _ => return Err(Box::new((StatusCode::BAD_REQUEST, "decision: must be approve or reject").into_response())),
    };
    if reason.trim().is_empty() {
        return Err(Box::new(
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Html(page("Reason needed", Some(&s.nav("")), "<p class=\"notice\">A decision needs a reason.</p>")),
            )
                .into_response(),
        ));
    }
    Ok((s, to))
}

/// A decision form: of one action, or of a case with its action ids as shown.
#[derive(Debug, Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    /// A case's action ids as shown, comma-separated.
    #[serde(default)]
    actions: String,
}

async fn decide(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    let (s, to) = match decision_form(&state, &headers, &form.csrf, &form.decision, &form.reason) {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    match decide_action(&state, s.principal.clone(), id.clone(), Some(form.reason), to).await {
        Ok(Some(record)) => Redirect::to(&format!("/ui/findings/{}", record.action.finding_id)).into_response(),
        Ok(None) => Redirect::to("/ui/queue").into_response(),
        Err(e) => refused(&s, "Decision not recorded", e),
    }
}

// ---------------------------------------------------------------------------------------------
// A finding

/// The narrative with its citations marked; the language model's rewrite instead when one is
/// configured and kept every citation (the grounded original stays a click away).
fn narrative_section(original: &str, shown: Option<crate::narrate::Shown>) -> String {
    use crate::narrate::Shown;
    let mark = |text: &str| {
        let mut out = esc(text);
        for c in jidoka_agents::narrative::citations(text) {
            let token = format!("[{c}]");
            out = out.replace(&esc(&token), &format!("<code class=\"cite\">{}</code>", esc(&token)));
        }
        out
    };
    match shown {
        Some(Shown::Rewritten { text, model }) => format!(
            "<h2>Narrative</h2><p class=\"narrative\">{}</p><p class=\"muted\">Rewritten by {} for reading; every \
             citation checked against the original.</p><details><summary>Original</summary><p>{}</p></details>",
            mark(&text),
            esc(&model),
            mark(original)
        ),
        Some(Shown::Original { reason }) => format!(
            "<h2>Narrative</h2><p class=\"narrative\">{}</p><p class=\"muted\">Not rewritten: {}.</p>",
            mark(original),
            esc(&reason)
        ),
        None => format!("<h2>Narrative</h2><p class=\"narrative\">{}</p>", mark(original)),
    }
}

/// The work instructions of the finding's station (its operation's first), for the person who
/// has to act on it at the line.
fn instructions_at(state: &AppState, f: &jidoka_model::Finding) -> String {
    let master = state.master.get();
    let (Some(master), Some(station)) = (&master, &f.subject.station) else { return String::new() };
    let mut here: Vec<&jidoka_model::master::WorkInstruction> =
        master.instructions.iter().filter(|w| &w.station == station).collect();
    if here.is_empty() {
        return String::new();
    }
    let operation = f.details.get("operation").and_then(Value::as_str);
    here.sort_by_key(|w| (Some(w.operation.as_str()) != operation, w.instruction_id.clone()));
    let mut out = format!("<h2>Work instructions at {}</h2><ul class=\"instructions\">", esc(station));
    for w in here {
        let _ = write!(
            out,
            "<li><strong>{}</strong> <span class=\"muted\">{} {}{}</span><p>{}</p></li>",
            esc(&w.title),
            esc(&w.instruction_id),
            esc(&w.operation),
            if w.min_certification > 0 {
                format!(" · certification ≥ {}", w.min_certification)
            } else {
                String::new()
            },
            esc(&w.text)
        );
    }
    out.push_str("</ul>");
    out
}

async fn finding_page(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = match session(&state, &headers, Permission::ReadFindings) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let with_actions = s.may(Permission::ReadActions);
    let lookup = id.clone();
    let loaded = with_store(&state, move |st| {
        let Some(f) = st.finding(&lookup)? else { return Ok(None) };
        let event = match f.evidence.first() {
            Some(e) => st.event(e)?,
            None => None,
        };
        let mut actions = Vec::new();
        if with_actions {
            for a in st.actions(&ActionQuery { finding_id: Some(lookup), limit: 50, ..Default::default() })?.items {
                let history = st.audit_of(&a.action.action_id, 50)?;
                actions.push((a, history));
            }
        }
        let similar = crate::api::similar_cases(st, &f, with_actions, 5)?;
        Ok(Some((f, event, actions, similar)))
    })
    .await;
    let (f, event, actions, similar) = match loaded {
        Ok(Some(x)) => x,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Html(page(
                    "Not found",
                    Some(&s.nav("")),
                    &format!("<p class=\"notice\">No finding <code>{}</code>.</p>", esc(&id)),
                )),
            )
                .into_response();
        }
        Err(e) => return internal(e),
    };
    let mut body = String::with_capacity(32 * 1024);
    let _ = write!(
        body,
        "<p>{} {} <span class=\"muted\">confidence {:.2} · {} {}</span></p><p class=\"reason\">{}</p>",
        badge(f.verdict.as_str()),
        badge(f.severity.as_str()),
        f.confidence,
        esc(&f.agent),
        esc(&f.agent_version),
        esc(&f.reason)
    );
    body.push_str("<dl class=\"facts\">");
    let subject = [
        ("Station", &f.subject.station),
        ("VIN", &f.subject.vin),
        ("Tool", &f.subject.tool),
        ("Joint", &f.subject.joint),
        ("Part", &f.subject.part_number),
        ("Work order", &f.subject.work_order),
    ];
    for (label, value) in subject {
        if let Some(v) = value {
            let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", esc(v));
        }
    }
    let _ = write!(
        body,
        "<dt>Occurred</dt><dd>{}</dd><dt>Correlation</dt><dd><code>{}</code></dd></dl>",
        esc(&f.occurred_at.to_rfc3339()),
        esc(&f.correlation_id)
    );
    if let Some(narrative) = f.details.get("narrative").and_then(Value::as_str) {
        let shown = match state.narrator.clone() {
            Some(n) => {
                let (id, text) = (f.finding_id.clone(), narrative.to_string());
                tokio::task::spawn_blocking(move || n.show(&id, &text)).await.ok()
            }
            None => None,
        };
        body.push_str(&narrative_section(narrative, shown));
    }
    body.push_str(&evidence_list(&f));
    body.push_str(&instructions_at(&state, &f));
    if let Some(modes) = f.details.get("failure_modes").and_then(Value::as_array).filter(|m| !m.is_empty()) {
        body.push_str("<h2>Detectors that fired</h2><ul>");
        for m in modes {
            let _ = write!(
                body,
                "<li>{} <strong>{}</strong> — {}</li>",
                badge(m["verdict"].as_str().unwrap_or("")),
                esc(m["mode"].as_str().unwrap_or("")),
                esc(m["reason"].as_str().unwrap_or(""))
            );
        }
        body.push_str("</ul>");
        if let Some(score) = f.details.get("anomaly_score").and_then(Value::as_f64) {
            let _ = write!(
                body,
                "<p>Anomaly score <strong>{score:.2}</strong> against a golden batch of {}.</p>",
                f.details["golden_size"].as_u64().unwrap_or(0)
            );
        }
    }
    if let Some(ev) = &event
        && let Some(svg) = crate::api::curve_svg(&f, ev)
    {
        let _ = write!(body, "<h2>Torque–angle curve and golden envelope</h2><figure>{svg}</figure>");
    }
    body.push_str(&features_table(&f.details));
    if let Some(tool) = f.subject.tool.as_deref()
        && let Some(chart) = state.view.tool_chart(f.subject.station.as_deref().unwrap_or(""), tool)
    {
        let _ = write!(body, "<h2>Tool {} — SPC chart</h2><figure>{}</figure>", esc(tool), html::spc_svg(&chart));
        let broken: Vec<&view::ChartPoint> = chart.points.iter().filter(|p| !p.rules.is_empty()).collect();
        if let Some((mean, sigma)) = chart.baseline {
            let _ = write!(
                body,
                "<p class=\"muted\">Baseline x̄ {mean:.4}, σ {sigma:.4}; limits x̄ ± 3σ = {:.4} … {:.4}. {} of the last {} points broke a Western Electric rule.</p>",
                mean - 3.0 * sigma,
                mean + 3.0 * sigma,
                broken.len(),
                chart.points.len()
            );
        } else {
            body.push_str("<p class=\"muted\">The chart is still learning its baseline.</p>");
        }
        if !broken.is_empty() {
            body.push_str("<ul class=\"rules\">");
            for p in broken.iter().rev().take(5) {
                let _ = write!(body, "<li><code>{}</code>: {}</li>", esc(&p.event_id), esc(&p.rules.join("; ")));
            }
            body.push_str("</ul>");
        }
    }
    if with_actions {
        body.push_str("<h2>Actions</h2>");
        if actions.is_empty() {
            body.push_str("<p class=\"muted\">No actions were proposed.</p>");
        }
        for (a, history) in &actions {
            body.push_str(&action_block(&s, a, history));
        }
    }
    body.push_str(&similar_list(&similar));
    Html(page(&format!("Finding {}", f.kind), Some(&s.nav("")), &body)).into_response()
}

fn features_table(details: &Value) -> String {
    let Some(features) = details.get("features").and_then(Value::as_object) else { return String::new() };
    let deviations: BTreeMap<&str, f64> = details
        .get("deviations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d.get(0)?.as_str()?, d.get(3)?.as_f64()?)))
        .collect();
    let mut out = String::from(
        "<h2>Features</h2><div class=\"scroll\"><table><thead><tr><th scope=\"col\">Feature</th><th scope=\"col\">Value</th><th scope=\"col\">Deviation (z)</th></tr></thead><tbody>",
    );
    for (name, value) in features {
        let Some(v) = value.as_f64() else { continue };
        let z = deviations.get(name.as_str());
        let _ = write!(
            out,
            "<tr{}><th scope=\"row\">{}</th><td>{v:.4}</td><td>{}</td></tr>",
            if z.is_some_and(|z| z.abs() >= 3.0) { " class=\"off\"" } else { "" },
            esc(name),
            z.map(|z| format!("{z:+.1}")).unwrap_or_default()
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

// ---------------------------------------------------------------------------------------------
// Defects

async fn patterns(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match session(&state, &headers, Permission::ReadFindings) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let view = state.view.clone();
    let computed = tokio::task::spawn_blocking(move || {
        let defects = view.defects();
        let bars = jidoka_agents::patterns::pareto(&defects);
        let assoc = jidoka_agents::patterns::associations(&defects, &Default::default());
        (defects.len(), bars, assoc)
    })
    .await;
    let Ok((n, bars, assoc)) = computed else {
        return internal(ApiError::new("internal", "the defect analysis failed"));
    };
    let mut body = String::with_capacity(16 * 1024);
    if n == 0 {
        body.push_str("<p class=\"notice\">No nonconformances recorded yet.</p>");
        return Html(page("Defects", Some(&s.nav("/ui/patterns")), &body)).into_response();
    }
    let _ = write!(
        body,
        "<p>The last {n} nonconformances (NCRs), by defect code.</p><figure>{}</figure>",
        html::pareto_svg(&bars)
    );
    body.push_str("<h2>Over-represented context</h2>");
    if assoc.is_empty() {
        body.push_str("<p class=\"muted\">No station, shift, tool, fixture, operator or supplier lot is over-represented in any code (Benjamini–Hochberg q &lt; 0.01).</p>");
    } else {
        body.push_str("<p class=\"muted\">Hypergeometric test per code and context value, Benjamini–Hochberg corrected over the whole table; shown when q &lt; 0.01.</p><div class=\"scroll\"><table id=\"associations\"><thead><tr><th scope=\"col\">Code</th><th scope=\"col\">Context</th><th scope=\"col\">Defects with it</th><th scope=\"col\">Expected share</th><th scope=\"col\">Lift</th><th scope=\"col\">p</th><th scope=\"col\">q</th></tr></thead><tbody>");
        for a in assoc.iter().take(30) {
            let _ = write!(
                body,
                "<tr><th scope=\"row\">{}</th><td>{} = <strong>{}</strong></td><td>{} of {}</td><td>{:.0}%</td><td>{:.1}×</td><td>{:.1e}</td><td>{:.1e}</td></tr>",
                esc(&a.code),
                esc(a.field),
                esc(&a.value),
                a.hits,
                a.code_total,
                100.0 * a.value_total as f64 / a.total.max(1) as f64,
                a.lift,
                a.p_value,
                a.q_value
            );
        }
        body.push_str("</tbody></table></div>");
    }
    Html(page("Defects", Some(&s.nav("/ui/patterns")), &body)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Audit

/// Records on one audit page.
const AUDIT_PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    /// The page of records just before this one.
    #[serde(default)]
    before: Option<u64>,
    /// Only the records about this action or finding.
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    verify: Option<String>,
}

async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let s = match session(&state, &headers, Permission::ReadAudit) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let Ok(Query(q)) = q else { return (StatusCode::BAD_REQUEST, "after: must be a record number").into_response() };
    let verify = q.verify.is_some();
    let before = q.before;
    let reference = q.reference.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let filter = reference.clone();
    let loaded = with_store(&state, move |st| {
        let verdict = if verify { Some(crate::audit::verify_chain(st)?) } else { None };
        if let Some(r) = &filter {
            return Ok((verdict, st.audit_of(r, 1000)?));
        }
        // Newest first: the page ending at the head, or the page ending just before `before`.
        let end = match before {
            Some(b) => b.saturating_sub(1),
            None => st.audit_head()?,
        };
        let start = end.saturating_sub(AUDIT_PAGE as u64);
        let rows = if end == 0 { Vec::new() } else { st.audit_after(start, (end - start) as usize)? };
        Ok((verdict, rows))
    })
    .await;
    let (verdict, rows) = match loaded {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let mut body = String::with_capacity(32 * 1024);
    match verdict {
        Some(Ok((records, head))) => {
            let _ = write!(
                body,
                "<p class=\"notice ok\" role=\"status\" id=\"verify\">Chain intact: {records} records; head {records}:<code>{}</code>.</p>",
                esc(&head)
            );
        }
        Some(Err(b)) => {
            let _ = write!(
                body,
                "<p class=\"notice\" role=\"alert\" id=\"verify\">Chain broken at record {}: {}.</p>",
                b.seq,
                esc(&b.reason)
            );
        }
        None => body.push_str(
            "<form method=\"get\" action=\"/ui/audit\"><input type=\"hidden\" name=\"verify\" value=\"1\"><button type=\"submit\">Verify the whole chain</button></form>",
        ),
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/audit\" class=\"inline\"><label>Action or finding id \
         <input name=\"ref\" value=\"{}\"></label><button type=\"submit\">Show its history</button></form>",
        esc(reference.as_deref().unwrap_or(""))
    );
    let first = rows.first().map(|r| r.seq).unwrap_or(1);
    let last = rows.last().map(|r| r.seq).unwrap_or(0);
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/audit/export\" class=\"inline\"><label>From record <input name=\"from\" type=\"number\" min=\"1\" value=\"{first}\"></label>\
         <label>to <input name=\"to\" type=\"number\" min=\"1\" value=\"{last}\"></label><button type=\"submit\">Export (JSON Lines)</button></form>"
    );
    body.push_str("<div class=\"scroll\"><table id=\"audit\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">When</th><th scope=\"col\">Actor</th><th scope=\"col\">What</th><th scope=\"col\">Subject</th><th scope=\"col\">Hash</th></tr></thead><tbody>");
    for r in rows.iter().rev() {
        let rec: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let d = &rec["details"];
        let subject = ["action_id", "finding_id"].iter().find_map(|k| d[*k].as_str()).unwrap_or("");
        let detail = ["kind", "verdict", "note"].iter().filter_map(|k| d[*k].as_str()).collect::<Vec<_>>().join(" · ");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} <span class=\"muted\">{}</span></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            r.seq,
            esc(rec["at"].as_str().unwrap_or("")),
            esc(rec["actor"].as_str().unwrap_or("")),
            esc(rec["what"].as_str().unwrap_or("")),
            esc(&detail),
            esc(subject),
            esc(&r.hash.chars().take(12).collect::<String>())
        );
    }
    body.push_str("</tbody></table></div><p class=\"pager\">");
    if first > 1 && reference.is_none() {
        let _ = write!(body, "<a href=\"/ui/audit?before={first}\">Older</a> ");
    }
    body.push_str("<a href=\"/ui/audit\">Newest</a></p>");
    Html(page("Audit trail", Some(&s.nav("/ui/audit")), &body)).into_response()
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    from: Option<u64>,
    to: Option<u64>,
}

async fn audit_export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Response {
    let s = match session(&state, &headers, Permission::ReadAudit) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let Ok(Query(q)) = q else {
        return (StatusCode::BAD_REQUEST, "from, to: must be record numbers").into_response();
    };
    let (from, to) = (q.from.unwrap_or(1).max(1), q.to);
    if to.is_some_and(|t| t < from) {
        return (StatusCode::BAD_REQUEST, "to: must not be before from").into_response();
    }
    let store = state.store.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        crate::audit::write_audit(store.as_ref(), from, to, &mut buf).map(|_| buf)
    })
    .await;
    match out {
        Ok(Ok(buf)) => {
            tracing::info!(actor = %s.principal.actor(), from, to, "audit export");
            let name = format!(
                "attachment; filename=\"jidoka-audit-{from}-{}.jsonl\"",
                to.map(|t| t.to_string()).unwrap_or_else(|| "head".into())
            );
            ([(header::CONTENT_TYPE, "application/x-ndjson".to_string()), (header::CONTENT_DISPOSITION, name)], buf)
                .into_response()
        }
        Ok(Err(e)) => internal(ApiError::new("internal", format!("export failed: {e}"))),
        Err(e) => internal(ApiError::new("internal", format!("export failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; jidoka_session=tok123; b=2"));
        assert_eq!(cookie_token(&h), Some("tok123"));
        h.insert(header::COOKIE, HeaderValue::from_static("jidoka_session="));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn forms_from_another_origin_or_without_the_token_are_refused() {
        let t = csrf_of("t");
        let s = Some(t.as_str());
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("line-pc:8080"));
        assert!(check_form(&h, s, &csrf_of("t")).is_ok());
        assert!(check_form(&h, s, "forged").is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(check_form(&h, s, &csrf_of("t")).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://line-pc:8080"));
        assert!(check_form(&h, s, &csrf_of("t")).is_ok());
    }
}
