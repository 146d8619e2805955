//! The build queue over the API and the dashboard: the released work orders waiting for the
//! line with the frozen head marked, the disruptions in force, the newest re-sequencing plan;
//! and the door through which a supervisor, the MES or logistics declares a disruption (a
//! `build_disruption` event, so it is in the log, audited and replayed like any other).
//!
//! The view is read from the build queue agent's state on the writer, between two commits,
//! copying only the head of the queue a page shows.

use crate::api::{ApiError, ApiResult, AppState};
use crate::runtime::{Ingest, IngestError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jidoka_agents::build_queue::{BuildQueueAgent, Declared, QueuedUnit, describe};
use jidoka_model::event::rfc3339;
use jidoka_store::AppendOutcome;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Queued units a view shows at most.
pub const MAX_SHOWN: usize = 2000;

/// What a view copies from the agent on the writer: no more than the page shows.
struct Copied {
    at: u64,
    now: Option<jidoka_model::event::Timestamp>,
    queued: usize,
    units: Vec<QueuedUnit>,
    started: Vec<QueuedUnit>,
    disruptions: Vec<Declared>,
    plan: Option<(u64, Value)>,
    master: jidoka_agents::Master,
}

/// The queue's head (`limit` units), the last units started, the disruptions in force and the
/// newest plan, at the writer's committed position; `None` while agents are off or the build
/// queue is not kept. The writer only copies them between two commits; the rules are read and
/// the view is built here.
pub async fn view(ingest: &Ingest, limit: usize) -> Result<Option<Value>, IngestError> {
    let limit = limit.min(MAX_SHOWN);
    let copied = ingest
        .read_agents(move |agents| {
            let (at, router) = agents?;
            let agent = router.agent::<BuildQueueAgent>()?;
            Some(Copied {
                at,
                now: agent.now(),
                queued: agent.queued_len(),
                units: agent.queue().take(limit).cloned().collect(),
                started: agent.started().rev().take(5).cloned().collect(),
                disruptions: agent.disruptions().cloned().collect(),
                plan: agent.plan().cloned(),
                master: router.master().clone(),
            })
        })
        .await?;
    let Some(c) = copied else { return Ok(None) };
    let sequencing = c.master.as_ref().and_then(|m| m.sequencing.clone());
    let frozen = sequencing.as_ref().map_or(0, |q| q.frozen_units as usize);
    let units: Vec<Value> = c
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let mut v = json!(u);
            v["position"] = json!(i);
            v["frozen"] = json!(i < frozen);
            v
        })
        .collect();
    let disruptions: Vec<Value> = c
        .disruptions
        .iter()
        .map(|d| {
            json!({"disruption_id": d.disruption.disruption_id, "description": describe(&d.disruption),
                   "declared_at": rfc3339::format(&d.declared_at), "event_id": d.event_id,
                   "disruption": d.disruption})
        })
        .collect();
    // What can be declared unavailable: the parts only some units take, the equipment.
    let resources = c
        .master
        .as_deref()
        .and_then(|m| jidoka_agents::resequence::plant::PlantRules::from_master(m).ok())
        .map(|r| r.resources())
        .unwrap_or_default();
    Ok(Some(json!({
        "at_seq": c.at,
        "now": c.now.map(|t| rfc3339::format(&t)),
        "queued": c.queued,
        "frozen": frozen,
        "rules": sequencing,
        "resources": resources,
        "units": units,
        "last_started": c.started,
        "disruptions": disruptions,
        "plan": c.plan.map(|(seq, result)| json!({"computed_from_seq": seq, "result": result})),
    })))
}

#[derive(Debug, Deserialize)]
pub struct ViewQuery {
    limit: Option<usize>,
}

/// `GET /api/build-queue?limit=N` (default 100, at most [`MAX_SHOWN`]).
pub async fn get_build_queue(
    State(state): State<Arc<AppState>>,
    q: Result<Query<ViewQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let limit = match q {
        Ok(Query(q)) => q.limit.unwrap_or(100),
        Err(e) => return Err(ApiError::new("invalid_query", format!("limit: {e}")).field("limit")),
    };
    match view(&state.ingest, limit).await {
        Ok(Some(v)) => Ok(Json(v)),
        Ok(None) => {
            Err(ApiError::new("not_found", "the build queue is not kept: agents or the build queue agent are off"))
        }
        Err(e) => Err(ApiError::new("unavailable", e.to_string())),
    }
}

/// `POST /api/build-queue/disruptions`: the body is a `build_disruption` event's data. Logged
/// from `api:<user>` at this service's time; the same body sent twice is one disruption.
pub async fn post_disruption(
    State(state): State<Arc<AppState>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let data: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new("invalid_event", format!("$: not JSON: {e}")).field("$"))?;
    let stored = declare(&state, &principal, data).await?;
    Ok((StatusCode::OK, Json(stored)).into_response())
}

/// Log a disruption declared by `principal` (`data`: a `build_disruption` event's data), from
/// `api:<user>` at this service's time, keyed by its content: the same declaration twice is one.
pub async fn declare(state: &AppState, principal: &crate::auth::Principal, data: Value) -> ApiResult<Value> {
    declare_as(&state.ingest, &format!("api:{}", principal.name), data).await
}

/// Log a disruption from `source` at this service's time, keyed by its content.
pub async fn declare_as(ingest: &Ingest, source: &str, data: Value) -> ApiResult<Value> {
    let now = chrono::Utc::now();
    let txn = format!("disruption:sha256:{}", jidoka_model::sha256_hex(data.to_string().as_bytes()));
    let event = jidoka_model::Event::parse(
        json!({"source": source, "source_txn_id": txn, "occurred_at": rfc3339::format(&now),
               "kind": "build_disruption", "data": data}),
        now,
    )
    .map_err(|e| ApiError::new("invalid_event", format!("{}: {}", e.field, e.reason)).field(e.field.clone()))?;
    let outcome = ingest.append(vec![event], None).await.map_err(crate::api::unavailable)?;
    match outcome.into_iter().next() {
        Some(AppendOutcome::Stored { seq, event_id }) => {
            Ok(json!({"status": "stored", "seq": seq, "event_id": event_id}))
        }
        // The same declaration again (at another time) is the same disruption.
        Some(AppendOutcome::Duplicate { seq, event_id }) | Some(AppendOutcome::Conflict { seq, event_id, .. }) => {
            Ok(json!({"status": "duplicate", "seq": seq, "event_id": event_id}))
        }
        Some(AppendOutcome::Rejected { error }) => {
            Err(ApiError::new("invalid_event", format!("{}: {}", error.field, error.reason)).field(error.field))
        }
        None => Err(ApiError::internal("no outcome for the disruption")),
    }
}

/// A newer proposal withdraws the older ones still waiting: each expires, its audit record
/// naming the finding of the proposal that replaced it, so nobody approves a sequence computed
/// from a queue that has moved on. (Should one be approved all the same, the MES and the demo's
/// line refuse a change whose units are no longer at the numbers it was computed from.)
/// Returns the actions withdrawn.
pub fn supersede(store: &dyn jidoka_store::Store, newest: &jidoka_model::Finding) -> jidoka_store::Result<Vec<String>> {
    let note = format!("superseded by the newer re-sequencing proposal of finding {}", newest.finding_id);
    expire_waiting(store, jidoka_model::ActionKind::Resequence, &note, |a| {
        a.finding_id != newest.finding_id && a.created_at <= newest.occurred_at
    })
}

/// Expire the actions of `kind` still waiting for a decision that `which` picks, with `note`;
/// the ids of those expired (one a person decided meanwhile is left as decided).
pub fn expire_waiting(
    store: &dyn jidoka_store::Store,
    kind: jidoka_model::ActionKind,
    note: &str,
    which: impl Fn(&jidoka_model::Action) -> bool,
) -> jidoka_store::Result<Vec<String>> {
    use jidoka_model::ActionStatus;
    let pending = store.actions(&jidoka_store::ActionQuery {
        status: Some(ActionStatus::PendingApproval),
        kind: Some(kind),
        limit: 100,
        ..Default::default()
    })?;
    let older: Vec<&jidoka_store::ActionRecord> = pending.items.iter().filter(|r| which(&r.action)).collect();
    let moves: Vec<jidoka_store::StatusMove<'_>> = older
        .iter()
        .map(|r| jidoka_store::StatusMove {
            action_id: &r.action.action_id,
            actor: "governance",
            from: ActionStatus::PendingApproval,
            to: ActionStatus::Expired,
            note: Some(note),
        })
        .collect();
    let done = store.set_action_statuses(&moves)?;
    Ok(older.iter().zip(done).filter(|(_, ok)| *ok).map(|(r, _)| r.action.action_id.clone()).collect())
}
