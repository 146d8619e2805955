//! `/ui/shortages`: the parts at line side by risk of running out, each with its explanation:
//! stock at line side and in the supermarket, what is in transit and when it was promised, the
//! demand of the build queue, the first unit short with every delivery on its promise, the
//! probabilities within the urgent and the warning horizon, and the supplier's delivery record.

use super::html::{esc, page};
use super::{internal, session};
use crate::api::{ApiError, AppState};
use crate::auth::Permission;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write;
use std::sync::Arc;

pub(super) async fn shortages_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match session(&state, &headers, Permission::ReadBuildQueue) {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    // The expedites waiting for a decision: each decided on its finding's page.
    let waiting = crate::api::with_store(&state, |st| {
        st.actions(&jidoka_store::ActionQuery {
            status: Some(jidoka_model::ActionStatus::PendingApproval),
            kind: Some(jidoka_model::ActionKind::ExpediteDelivery),
            limit: 50,
            ..Default::default()
        })
    })
    .await;
    let waiting = match waiting {
        Ok(page) => page.items,
        Err(e) => return internal(e),
    };
    let body = match crate::shortage::view(&state.ingest).await {
        Ok(Some(v)) => render(&v) + &render_expedites(&waiting),
        Ok(None) => {
            "<p class=\"notice\">The material forecast is not kept: the agents or the shortage agent are off.</p>"
                .to_string()
        }
        Err(e) => return internal(ApiError::new("unavailable", e.to_string())),
    };
    Html(page("Material", Some(&s.nav("/ui/shortages")), &body)).into_response()
}

/// The expedites waiting for approval: call-off, part, supplier, why; a link to decide each.
fn render_expedites(waiting: &[jidoka_store::ActionRecord]) -> String {
    let mut body = String::from("<h2 id=\"expedites\">Expedites waiting for a decision</h2>");
    if waiting.is_empty() {
        body.push_str("<p class=\"muted\">None: no overdue delivery puts the line at risk.</p>");
        return body;
    }
    body.push_str(
        "<table><thead><tr><th scope=\"col\">Call-off</th><th scope=\"col\">Part</th>\
         <th scope=\"col\">Supplier</th><th scope=\"col\">Needed by</th><th scope=\"col\">Why</th>\
         <th scope=\"col\">Decide</th></tr></thead><tbody>",
    );
    for r in waiting {
        let e = &r.action.payload["details"]["expedite"];
        let text = |k: &str| esc(e[k].as_str().unwrap_or("-"));
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/ui/findings/{}\">Decide</a></td></tr>",
            text("call_off_id"),
            text("part"),
            text("supplier"),
            text("needed_by"),
            esc(r.action.payload["reason"].as_str().unwrap_or_default()),
            esc(&r.action.finding_id),
        );
    }
    body.push_str("</tbody></table>");
    body
}

fn pct(v: &Value) -> String {
    format!("{:.0} %", v.as_f64().unwrap_or(0.0) * 100.0)
}

fn num(v: &Value) -> String {
    format!("{:.0}", v.as_f64().unwrap_or(0.0))
}

/// The page body from the view of [`crate::shortage::view`].
pub fn render(view: &Value) -> String {
    let mut body = String::with_capacity(16 * 1024);
    let parts = view["parts"].as_array().cloned().unwrap_or_default();
    let (horizon, urgent) = (view["horizon_h"].as_f64().unwrap_or(8.0), view["urgent_h"].as_f64().unwrap_or(2.0));
    let _ = write!(
        body,
        "<p>{} of {} parts at line side may run out within {horizon} h{}. The forecast puts the build queue on the \
         line's takt ({:.0} s), explodes it through the BOM in force, and draws each delivery's lateness from its \
         supplier's record.</p>",
        view["at_risk"].as_u64().unwrap_or(0),
        parts.len(),
        view["computed_at"].as_str().map(|t| format!(" (as of {})", esc(t))).unwrap_or_default(),
        view["takt_s"].as_f64().unwrap_or(0.0),
    );
    if parts.is_empty() {
        body.push_str(
            "<p class=\"muted\">No part is tracked yet: a part is tracked from its first line-side count \
             (<code>material_transaction</code> with <code>movement: count</code>).</p>",
        );
        return body;
    }
    let _ = write!(
        body,
        "<div class=\"scroll\"><table id=\"shortages\"><thead><tr><th scope=\"col\">Part</th><th scope=\"col\">Station</th>\
         <th scope=\"col\">Within {urgent} h</th><th scope=\"col\">Within {horizon} h</th>\
         <th scope=\"col\">Runs out (deliveries on promise)</th><th scope=\"col\">Line side</th>\
         <th scope=\"col\">Supermarket</th><th scope=\"col\">In transit</th><th scope=\"col\">Demand /h</th>\
         <th scope=\"col\">Supplier record</th></tr></thead><tbody>"
    );
    for p in &parts {
        let transit: Vec<String> = p["in_transit"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{} × {} promised {}",
                    num(&t["quantity"]),
                    esc(t["call_off_id"].as_str().unwrap_or("")),
                    esc(t["promised_at"].as_str().unwrap_or(""))
                )
            })
            .collect();
        let overdue = p["overdue_h"].as_f64().unwrap_or(0.0);
        let run_out = match p["run_out"]["vin"].as_str() {
            Some(vin) => format!(
                "{} at {} (in {:.1} h)",
                esc(vin),
                esc(p["run_out"]["at"].as_str().unwrap_or("")),
                p["hours_to_run_out"].as_f64().unwrap_or(0.0)
            ),
            None => "not within the queue".into(),
        };
        let r = &p["supplier_record"];
        let record = if r.is_null() {
            "no delivery yet".to_string()
        } else {
            format!(
                "{}: {} deliveries, {} late, 90 % within {:.1} h",
                esc(p["supplier"].as_str().unwrap_or("")),
                r["deliveries"].as_u64().unwrap_or(0),
                pct(&r["late_share"]),
                r["p90_late_h"].as_f64().unwrap_or(0.0)
            )
        };
        let risky = p["p_horizon"].as_f64().unwrap_or(0.0) >= view["warn_probability"].as_f64().unwrap_or(0.5);
        let _ = write!(
            body,
            "<tr{}><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{run_out}</td><td>{}</td><td>{}</td>\
             <td>{}{}</td><td>{:.1}</td><td>{record}</td></tr>",
            if risky { " class=\"risk\"" } else { "" },
            esc(p["part"].as_str().unwrap_or("")),
            esc(p["station"].as_str().unwrap_or("")),
            pct(&p["p_urgent"]),
            pct(&p["p_horizon"]),
            num(&p["stock"]),
            num(&p["supermarket"]),
            if transit.is_empty() { "nothing".into() } else { transit.join("<br>") },
            if overdue > 0.0 {
                format!(" <span class=\"badge review\">{overdue:.1} h overdue</span>")
            } else {
                String::new()
            },
            p["demand_per_h"].as_f64().unwrap_or(0.0),
        );
    }
    body.push_str("</tbody></table></div>");
    body
}
