//! The material forecast over the API and the dashboard: per part at line side, when it runs
//! out with every delivery on its promise, the probability of a stock-out within the urgent and
//! the warning horizon, and why (stock, supermarket, in transit, demand, the supplier's record).
//!
//! The view is read from the shortage agent's state on the writer, between two commits.

use crate::api::{ApiError, ApiResult, AppState};
use crate::runtime::{Ingest, IngestError};
use axum::Json;
use axum::extract::State;
use jidoka_agents::shortage::{Forecast, ShortageAgent, ShortageConfig, SupplierRecord};
use jidoka_model::event::rfc3339;
use serde_json::{Value, json};
use std::sync::Arc;

struct Copied {
    at: u64,
    forecasts: Vec<Forecast>,
    suppliers: Vec<(String, SupplierRecord)>,
    config: ShortageConfig,
    takt_s: f64,
}

fn record_json(r: &SupplierRecord) -> Value {
    json!({"deliveries": r.deliveries, "late": r.late, "short": r.short, "late_share": r.late_share(),
           "p90_late_h": r.p90_late_h()})
}

/// The parts by risk (the probability within the warning horizon, then the earliest run-out),
/// each with its supplier's record; `None` while agents or the shortage agent are off.
pub async fn view(ingest: &Ingest) -> Result<Option<Value>, IngestError> {
    let copied = ingest
        .read_agents(|agents| {
            let (at, router) = agents?;
            let agent = router.agent::<ShortageAgent>()?;
            Some(Copied {
                at,
                forecasts: agent.forecasts().cloned().collect(),
                suppliers: agent.suppliers().map(|(k, v)| (k.clone(), v.clone())).collect(),
                config: agent.config().clone(),
                takt_s: agent.takt_s(),
            })
        })
        .await?;
    let Some(mut c) = copied else { return Ok(None) };
    let far = |f: &Forecast| f.run_out.as_ref().map_or(i64::MAX, |r| r.at.timestamp_millis());
    c.forecasts.sort_by(|a, b| b.p_horizon.total_cmp(&a.p_horizon).then(far(a).cmp(&far(b))).then(a.part.cmp(&b.part)));
    let parts: Vec<Value> = c
        .forecasts
        .iter()
        .map(|f| {
            let mut v = json!(f);
            v["hours_to_run_out"] =
                json!(f.run_out.as_ref().map(|r| (r.at - f.computed_at).num_seconds() as f64 / 3600.0));
            v["supplier_record"] = f
                .supplier
                .as_ref()
                .and_then(|s| c.suppliers.iter().find(|(k, _)| k == s))
                .map_or(Value::Null, |(_, r)| record_json(r));
            v
        })
        .collect();
    let at_risk = c.forecasts.iter().filter(|f| f.p_horizon >= c.config.warn_probability).count();
    Ok(Some(json!({
        "at_seq": c.at,
        "computed_at": c.forecasts.first().map(|f| rfc3339::format(&f.computed_at)),
        "takt_s": c.takt_s,
        "horizon_h": c.config.horizon_h,
        "urgent_h": c.config.urgent_h,
        "warn_probability": c.config.warn_probability,
        "urgent_probability": c.config.urgent_probability,
        "at_risk": at_risk,
        "parts": parts,
        "suppliers": c.suppliers.iter().map(|(k, r)| (k.clone(), record_json(r))).collect::<serde_json::Map<_, _>>(),
    })))
}

/// `GET /api/shortages`: every part's forecast, the riskiest first.
pub async fn get_shortages(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    match view(&state.ingest).await {
        Ok(Some(v)) => Ok(Json(v)),
        Ok(None) => {
            Err(ApiError::new("not_found", "the material forecast is not kept: agents or the shortage agent are off"))
        }
        Err(e) => Err(ApiError::new("unavailable", e.to_string())),
    }
}

/// Where shortage warnings declare their disruptions from.
pub const SOURCE: &str = "shortage";

/// The build disruption an urgent shortage warning declares, so the build queue is re-sequenced
/// around it (units that do not need the part pulled forward): the part unavailable from the
/// first unit expected short until the first delivery in transit is in, at its supplier's 90th
/// percentile of lateness (at least half an hour). A clear ends it. One disruption per part
/// (`shortage:<part>`), replaced by each new warning.
pub fn disruption_of(f: &jidoka_model::Finding) -> Option<Value> {
    use jidoka_agents::shortage::{CLEARED, URGENT};
    let part = f.subject.part_number.as_deref()?;
    let id = format!("{SOURCE}:{part}");
    if f.kind == CLEARED {
        return Some(json!({"disruption_id": id, "kind": "cleared", "reason": f.reason}));
    }
    if f.kind != URGENT {
        return None;
    }
    let fc = &f.details["forecast"];
    let from = fc["expected"]["at"].as_str().or(fc["run_out"]["at"].as_str())?;
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc));
    let from_t = parse(from)?;
    let p90 = f.details["supplier_record"]["p90_late_h"].as_f64().unwrap_or(0.0).max(0.0);
    let refill = fc["in_transit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| parse(t["promised_at"].as_str()?))
        .map(|t| t + chrono::Duration::milliseconds((p90 * 3_600_000.0) as i64))
        .min();
    let until = refill.unwrap_or(from_t).max(from_t + chrono::Duration::minutes(30));
    Some(json!({"disruption_id": id, "kind": "unavailable", "resource": part, "from": from,
                "until": rfc3339::format(&until), "reason": f.reason}))
}

/// Declare the disruption of `f` (see [`disruption_of`]) when re-sequencing can act on its part
/// (a part only some units take); `Ok(None)` when there is nothing to declare.
pub async fn declare_from(ingest: &Ingest, f: &jidoka_model::Finding) -> ApiResult<Option<Value>> {
    let Some(data) = disruption_of(f) else { return Ok(None) };
    let part = f.subject.part_number.clone().unwrap_or_default();
    let movable = ingest
        .read_agents(move |agents| {
            let master = agents?.1.master().clone()?;
            let rules = jidoka_agents::resequence::plant::PlantRules::from_master(&master).ok()?;
            Some(rules.resources().contains(&part))
        })
        .await
        .map_err(|e| ApiError::new("unavailable", e.to_string()))?;
    if movable != Some(true) {
        return Ok(None);
    }
    crate::build_queue::declare_as(ingest, SOURCE, data).await.map(Some)
}

/// Withdraw the expedite still waiting for the delivery a `shortage.expedite_withdrawn` finding
/// names (it came in before anyone decided); the ids of the actions withdrawn.
pub fn withdraw_expedite(
    store: &dyn jidoka_store::Store,
    f: &jidoka_model::Finding,
) -> jidoka_store::Result<Vec<String>> {
    let Some(call_off) = f.details["expedite"]["call_off_id"].as_str() else { return Ok(Vec::new()) };
    let note = format!("{call_off} was delivered before the expedite was decided (finding {})", f.finding_id);
    crate::build_queue::expire_waiting(store, jidoka_model::ActionKind::ExpediteDelivery, &note, |a| {
        a.payload["details"]["expedite"]["call_off_id"].as_str() == Some(call_off)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use jidoka_model::{Finding, Severity, Subject, Verdict};

    fn finding(kind: &str, details: Value) -> Finding {
        Finding {
            finding_id: "F-1".into(),
            agent: "shortage".into(),
            agent_version: "1.0.0".into(),
            kind: kind.into(),
            verdict: Verdict::Pass,
            severity: Severity::Critical,
            confidence: 0.9,
            reason: "SEAT-STD at ST040 runs out within 2 h".into(),
            subject: Subject { part_number: Some("SEAT-STD".into()), ..Subject::default() },
            evidence: vec!["ev-1".into()],
            correlation_id: "c".into(),
            source_txn_id: "t".into(),
            occurred_at: chrono::Utc::now(),
            details,
        }
    }

    #[test]
    fn an_urgent_warning_declares_its_part_unavailable_until_the_late_delivery_is_in() {
        let f = finding(
            jidoka_agents::shortage::URGENT,
            json!({"forecast": {"expected": {"vin": "V1", "at": "2026-11-02T10:00:00Z"},
                                "run_out": {"vin": "V0", "at": "2026-11-02T09:30:00Z"},
                                "in_transit": [{"promised_at": "2026-11-02T09:00:00Z"}, {"promised_at": "2026-11-02T10:30:00Z"}]},
                   "supplier_record": {"p90_late_h": 2.0}}),
        );
        let d = disruption_of(&f).unwrap();
        assert_eq!(d["disruption_id"], "shortage:SEAT-STD");
        assert_eq!((d["kind"].as_str(), d["resource"].as_str()), (Some("unavailable"), Some("SEAT-STD")));
        // From the median first unit short, until the first call-off is in at its 90th percentile.
        assert_eq!(d["from"], "2026-11-02T10:00:00Z");
        assert_eq!(d["until"], "2026-11-02T11:00:00.000Z");
        // Nothing in transit: half an hour from the run-out at least.
        let f = finding(
            jidoka_agents::shortage::URGENT,
            json!({"forecast": {"run_out": {"vin": "V0", "at": "2026-11-02T09:30:00Z"}, "in_transit": []}}),
        );
        assert_eq!(disruption_of(&f).unwrap()["until"], "2026-11-02T10:00:00.000Z");
        // A clear ends it; a plain warning declares nothing.
        let cleared = disruption_of(&finding(jidoka_agents::shortage::CLEARED, json!({}))).unwrap();
        assert_eq!(
            (cleared["kind"].as_str(), cleared["disruption_id"].as_str()),
            (Some("cleared"), Some("shortage:SEAT-STD"))
        );
        assert!(disruption_of(&finding(jidoka_agents::shortage::PREDICTED, json!({}))).is_none());
    }

    #[test]
    fn a_delivery_in_withdraws_only_its_expedite_still_waiting() {
        use jidoka_store::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = jidoka_store::SqliteStore::open(dir.path().join("j.sqlite")).unwrap();
        let mut findings = Vec::new();
        let mut actions = Vec::new();
        for (i, call_off) in ["CO-1", "CO-2"].iter().enumerate() {
            let mut f = finding(
                jidoka_agents::shortage::EXPEDITE,
                json!({"expedite": {"call_off_id": call_off, "supplier": "SUP-SEAT", "part": "SEAT-STD",
                                    "quantity": 40.0}}),
            );
            f.finding_id = format!("F-{i}");
            f.verdict = Verdict::Review;
            actions.extend(crate::governance::propose(&f, &[]));
            findings.push(f);
        }
        store.commit_findings("agents", 0, &findings, &actions).unwrap();
        let delivered = finding(
            jidoka_agents::shortage::EXPEDITE_WITHDRAWN,
            json!({"expedite": {"call_off_id": "CO-1", "supplier": "SUP-SEAT", "part": "SEAT-STD"}}),
        );
        let withdrawn = withdraw_expedite(&store, &delivered).unwrap();
        assert_eq!(withdrawn, [actions[0].action_id.clone()]);
        let first = store.action(&actions[0].action_id).unwrap().unwrap();
        assert_eq!(first.action.status, jidoka_model::ActionStatus::Expired);
        assert!(first.note.unwrap_or_default().contains("CO-1 was delivered"));
        let second = store.action(&actions[1].action_id).unwrap().unwrap();
        assert_eq!(second.action.status, jidoka_model::ActionStatus::PendingApproval);
        // Again: nothing left to withdraw.
        assert!(withdraw_expedite(&store, &delivered).unwrap().is_empty());
    }
}
