//! `/ui/build-queue`: the planned sequence of the coming hours with the frozen head marked, the
//! disruptions in force, and the newest re-sequencing proposal (which units move, by how much,
//! why, and the line stops and rule violations before and after, beside the push-back rule). A
//! proposal is decided in the approvals queue like any action.

use super::html::{esc, page};
use super::{Session, check_form, internal, refused, session};
use crate::api::{ApiError, AppState, with_store};
use crate::auth::Permission;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use jidoka_model::{ActionKind, ActionStatus};
use serde::Deserialize;
use serde_json::Value;
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    limit: Option<usize>,
}

/// Units shown by default: an hour and a half at 60 jobs per hour, past the frozen head.
const SHOWN: usize = 90;

pub(super) async fn build_queue_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let s = match session(&state, &headers, Permission::ReadBuildQueue) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let limit = q.ok().and_then(|Query(q)| q.limit).unwrap_or(SHOWN);
    let view = match crate::build_queue::view(&state.ingest, limit).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            let body =
                "<p class=\"notice\">The build queue is not kept: the agents or the build queue agent are off.</p>";
            return Html(page("Build queue", Some(&s.nav("/ui/build-queue")), body)).into_response();
        }
        Err(e) => return internal(ApiError::new("unavailable", e.to_string())),
    };
    // The proposal waiting for a decision, if any: decided on its finding's page.
    let waiting = with_store(&state, |st| {
        st.actions(&jidoka_store::ActionQuery {
            status: Some(ActionStatus::PendingApproval),
            kind: Some(ActionKind::Resequence),
            limit: 1,
            ..Default::default()
        })
    })
    .await;
    let waiting = match waiting {
        Ok(page) => page.items.into_iter().next().map(|r| r.action.finding_id),
        Err(e) => return internal(e),
    };
    let mut body = render(&view, waiting.as_deref());
    if s.may(Permission::DeclareDisruption) {
        body.push_str(&declare_form(&s, &view));
    }
    Html(page("Build queue", Some(&s.nav("/ui/build-queue")), &body)).into_response()
}

/// The form that declares a part or equipment unavailable, in minutes from the line's time.
fn declare_form(s: &Session, view: &Value) -> String {
    let resources: Vec<&str> = view["resources"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if resources.is_empty() {
        return "<p class=\"muted\">The sequencing rules name no part or equipment that only some units need: \
                nothing to declare here.</p>"
            .into();
    }
    let mut options = String::new();
    for r in resources {
        let _ = write!(options, "<option value=\"{0}\">{0}</option>", esc(r));
    }
    format!(
        "<h2 id=\"declare\">Declare a part or equipment unavailable</h2>\
         <form method=\"post\" action=\"/ui/build-queue/disruptions\" class=\"declare\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{0}\">\
         <label>Part or equipment <select name=\"resource\" required>{options}</select></label>\
         <label>Missing from (minutes from the line's time) <input type=\"number\" name=\"from_minutes\" min=\"0\" max=\"10080\" value=\"30\" required></label>\
         <label>For (minutes) <input type=\"number\" name=\"for_minutes\" min=\"1\" max=\"10080\" value=\"120\" required></label>\
         <label>Reason <input type=\"text\" name=\"reason\" maxlength=\"500\"></label>\
         <div class=\"buttons\"><button type=\"submit\">Declare and propose a new sequence</button></div></form>\
         <h2 id=\"hold\">Put units on hold</h2>\
         <form method=\"post\" action=\"/ui/build-queue/disruptions\" class=\"hold\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{0}\"><input type=\"hidden\" name=\"kind\" value=\"hold\">\
         <label>VINs (one per line) <textarea name=\"vins\" rows=\"3\" required maxlength=\"8000\"></textarea></label>\
         <label>Reason <input type=\"text\" name=\"reason\" maxlength=\"500\"></label>\
         <div class=\"buttons\"><button type=\"submit\">Hold and propose a new sequence</button></div></form>",
        esc(&s.csrf)
    )
}

/// Every field has a default, so a form is only read into this once the session is known and
/// nothing is refused before it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct DeclareForm {
    csrf: String,
    /// `hold` (units by VIN), else a part or equipment unavailable.
    kind: String,
    vins: String,
    resource: String,
    from_minutes: i64,
    for_minutes: i64,
    reason: String,
}

/// `POST /ui/build-queue/disruptions`: the form's unavailability (in minutes from the line's
/// time) or hold.
pub(super) async fn declare(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<DeclareForm>,
) -> Response {
    let s = match session(&state, &headers, Permission::DeclareDisruption) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    if let Err(d) = check_form(&headers, Some(&s.csrf), &form.csrf) {
        return d.into_response();
    }
    let now = match state
        .ingest
        .read_agents(|a| a.and_then(|(_, r)| r.agent::<jidoka_agents::build_queue::BuildQueueAgent>()?.now()))
        .await
    {
        Ok(Some(now)) => now,
        Ok(None) => {
            let e = ApiError::new("not_found", "the build queue has no time yet: no work order is released");
            return refused(&s, "Not declared", e);
        }
        Err(e) => return internal(ApiError::new("unavailable", e.to_string())),
    };
    let data = if form.kind == "hold" {
        // The event's checks name a bad VIN (`data.vins[2]`) and the limit on how many.
        let vins: Vec<&str> = form.vins.split(['\n', ',', ' ', '\r', '\t']).filter(|v| !v.is_empty()).collect();
        json!({
            "disruption_id": format!("HOLD-{}-{}", now.format("%Y%m%dT%H%M"), vins.first().copied().unwrap_or("")),
            "kind": "hold", "vins": vins, "reason": form.reason,
        })
    } else {
        if !(0..=10_080).contains(&form.from_minutes) || !(1..=10_080).contains(&form.for_minutes) {
            let e = ApiError::new("invalid_event", "minutes: from 0 to 10080, for 1 to 10080");
            return refused(&s, "Not declared", e);
        }
        let at = |m: i64| jidoka_model::event::rfc3339::format(&(now + chrono::Duration::minutes(m)));
        json!({
            "disruption_id": format!("{}-{}", form.resource, now.format("%Y%m%dT%H%M")),
            "kind": "unavailable", "resource": form.resource, "from": at(form.from_minutes),
            "until": at(form.from_minutes + form.for_minutes), "reason": form.reason,
        })
    };
    match crate::build_queue::declare(&state, &s.principal, data).await {
        Ok(_) => Redirect::to("/ui/build-queue").into_response(),
        Err(e) => refused(&s, "Not declared", e),
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The page body from the view of [`crate::build_queue::view`]; `waiting`: the finding of the
/// proposal waiting for a decision.
pub fn render(view: &Value, waiting: Option<&str>) -> String {
    let mut body = String::with_capacity(32 * 1024);
    let queued = count(&view["queued"]);
    let frozen = count(&view["frozen"]);
    let units = view["units"].as_array().cloned().unwrap_or_default();
    let _ = write!(
        body,
        "<p>{queued} work order{} released and waiting for the line{}; the first {frozen} are frozen (already in the \
         paint shop's sequence: they can no longer move).</p>",
        if queued == 1 { "" } else { "s" },
        view["now"].as_str().map(|t| format!(" at {}", esc(t))).unwrap_or_default()
    );
    // Disruptions in force.
    body.push_str("<h2>Disruptions in force</h2>");
    match view["disruptions"].as_array() {
        Some(ds) if !ds.is_empty() => {
            body.push_str("<ul>");
            for d in ds {
                let reason = d["disruption"]["reason"].as_str().unwrap_or("");
                let _ = write!(
                    body,
                    "<li><strong>{}</strong>: {} <span class=\"muted\">(declared {}{})</span></li>",
                    esc(d["disruption_id"].as_str().unwrap_or("")),
                    esc(d["description"].as_str().unwrap_or("")),
                    esc(d["declared_at"].as_str().unwrap_or("")),
                    if reason.is_empty() { String::new() } else { format!("; {}", esc(reason)) }
                );
            }
            body.push_str("</ul>");
        }
        _ => body.push_str(
            "<p class=\"muted\">None. A part or option-specific equipment unavailable, units on hold or a rush order \
             is declared with <code>POST /api/build-queue/disruptions</code> (supervisors, the MES, logistics).</p>",
        ),
    }
    // The newest plan.
    let moved: HashMap<String, (Option<u64>, u64)> = view["plan"]["result"]["moves"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["vin"].as_str()?.to_string(), (m["from"].as_u64(), m["to"].as_u64()?))))
        .collect();
    body.push_str(&proposal(&view["plan"]));
    if let Some(finding) = waiting {
        let _ = write!(
            body,
            "<p><a class=\"button\" href=\"/ui/findings/{}\">Decide the proposal waiting for approval</a></p>",
            esc(finding)
        );
    }
    // The queue's head.
    let _ = write!(
        body,
        "<h2>The next {} units</h2><div class=\"scroll\"><table id=\"build-queue\"><thead><tr><th scope=\"col\">Slot</th>\
         <th scope=\"col\">Planned no.</th><th scope=\"col\">VIN</th><th scope=\"col\">Work order</th>\
         <th scope=\"col\">Model</th><th scope=\"col\">Options</th><th scope=\"col\">Planned start</th>\
         <th scope=\"col\">Proposal</th></tr></thead><tbody>",
        units.len()
    );
    for u in &units {
        let vin = u["vin"].as_str().unwrap_or("");
        let options: Vec<String> = u["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|o| esc(o.split_once('=').map_or(o, |(_, v)| v)))
            .collect();
        let change = match moved.get(vin) {
            Some((Some(from), to)) => format!("moves to slot {to} ({:+})", *to as i64 - *from as i64),
            Some((None, to)) => format!("to slot {to}"),
            None => String::new(),
        };
        let is_frozen = u["frozen"].as_bool().unwrap_or(false);
        let _ = write!(
            body,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if is_frozen { " class=\"frozen\"" } else { "" },
            count(&u["position"]),
            if is_frozen { " <span class=\"badge plain\">frozen</span>" } else { "" },
            count(&u["sequence"]),
            esc(vin),
            esc(u["work_order"].as_str().unwrap_or("")),
            esc(u["model"].as_str().unwrap_or("")),
            options.join(" · "),
            esc(u["planned_start"].as_str().unwrap_or("")),
            esc(&change)
        );
    }
    body.push_str("</tbody></table></div>");
    if (units.len() as u64) < queued {
        let _ = write!(
            body,
            "<p class=\"muted\">{} more queued; <a href=\"/ui/build-queue?limit=2000\">show up to 2,000</a>.</p>",
            queued - units.len() as u64
        );
    }
    body
}

/// The newest plan: its figures beside doing nothing and the push-back rule, and the moves.
fn proposal(plan: &Value) -> String {
    let mut out = String::from("<h2>Re-sequencing proposal</h2>");
    let r = &plan["result"];
    if plan.is_null() {
        out.push_str("<p class=\"muted\">None yet: one is computed when a disruption is declared.</p>");
        return out;
    }
    if let Some(error) = r["error"].as_str() {
        let _ = write!(out, "<p class=\"notice\">No proposal: {}</p>", esc(error));
        return out;
    }
    let changes = r["resequence"].as_array().map_or(0, Vec::len);
    let _ = write!(
        out,
        "<p>Computed from log position {} around {} in {:.0} ms (first proposal after {:.1} ms): units moved: {}; \
         work orders whose planned number changes: {changes}{}.</p>",
        count(&plan["computed_from_seq"]),
        esc(&r["disruption_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")),
        r["search_ms"].as_f64().unwrap_or(0.0),
        r["first_ms"].as_f64().unwrap_or(0.0),
        r["moves"].as_array().map_or(0, Vec::len),
        if changes > 0 { ". Once a supervisor approves it, the new numbers are written to the MES" } else { "" }
    );
    out.push_str(
        "<table id=\"proposal-figures\"><thead><tr><th scope=\"col\"></th><th scope=\"col\">No action</th>\
         <th scope=\"col\">Affected units to the end</th><th scope=\"col\">Proposal</th></tr></thead><tbody>",
    );
    for (label, field) in [
        ("Takts lost (line stops, empty slots)", "lost_takts"),
        ("Units that would stop the line", "stopping_cars"),
        ("Rush order slots late", "rush_late_slots"),
        ("High-priority rule violations", "high"),
        ("Colour changes", "paint"),
        ("Low-priority rule violations", "low"),
        ("Units over the paint limit", "cars_over_paint_limit"),
    ] {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{label}</th><td>{}</td><td>{}</td><td><strong>{}</strong></td></tr>",
            count(&r["before"][field]),
            count(&r["push_back"][field]),
            count(&r["after"][field])
        );
    }
    out.push_str("</tbody></table>");
    let moves = r["moves"].as_array().cloned().unwrap_or_default();
    if !moves.is_empty() {
        out.push_str("<ol class=\"moves\">");
        for m in moves.iter().take(50) {
            let _ = write!(
                out,
                "<li><strong>{}</strong> {}: {}</li>",
                esc(m["vin"].as_str().unwrap_or("")),
                match m["from"].as_u64() {
                    Some(from) => format!("slot {from} → {}", count(&m["to"])),
                    None => format!("into slot {}", count(&m["to"])),
                },
                esc(m["why"].as_str().unwrap_or(""))
            );
        }
        out.push_str("</ol>");
    }
    if let Some(removed) = r["removed"].as_array().filter(|a| !a.is_empty()) {
        let _ = write!(
            out,
            "<p>Out of the sequence while on hold: {}.</p>",
            esc(&removed.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        );
    }
    for note in r["notes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let _ = write!(out, "<p class=\"notice\">{}</p>", esc(note));
    }
    out
}
