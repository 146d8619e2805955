//! [`AndonAgent`]: triage of line stops. For each Andon raised it names the team to send
//! (electrical, mechanical, quality, material, IT), the first steps that cleared the most
//! similar past stops, and the station's recent maintenance, each cited.
//!
//! The team comes from a text model (see [`crate::text`]) trained on past stops (description,
//! fault code and station → the team that cleared them, from the Andon-cleared event). Until
//! it has enough history, or when it is unsure, the stated rules decide: the fault code's first
//! letter (`E` electrical, `M` mechanical, `Q` quality, `L` material, `I` IT), configurable.
//! To overrule a rule the model needs 0.9. The finding says which one decided.

use crate::narrative::cite;
use crate::text::{Case, Learner, prepare};
use crate::{Agent, FindingDraft};
use jidoka_model::{EventKind, EventPayload, Severity, StoredEvent, Subject, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The teams a stop is routed to.
pub const TEAMS: [&str; 5] = ["electrical", "mechanical", "quality", "material", "it"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AndonConfig {
    pub enabled: bool,
    /// Cleared stops needed before the model routes.
    pub min_history: usize,
    /// Below this confidence the rules decide.
    pub min_confidence: f64,
    /// Fault-code prefix → team, the rules used without (or against an unsure) model.
    pub rules: BTreeMap<String, String>,
}

impl Default for AndonConfig {
    fn default() -> Self {
        let rules = [("E", "electrical"), ("M", "mechanical"), ("Q", "quality"), ("L", "material"), ("I", "it")]
            .into_iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        AndonConfig { enabled: true, min_history: 20, min_confidence: 0.6, rules }
    }
}

impl AndonConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        for (prefix, team) in &self.rules {
            if !TEAMS.contains(&team.as_str()) {
                errors.push((format!("{path}.rules.{prefix}"), format!("team must be one of {}", TEAMS.join(", "))));
            }
        }
        if self.min_history < 10 {
            errors.push((format!("{path}.min_history"), "must be at least 10".into()));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            errors.push((format!("{path}.min_confidence"), "must be between 0 and 1".into()));
        }
    }

    /// The team the rules give a fault code: the longest matching prefix.
    pub fn rule_for(&self, fault_code: &str) -> Option<(&str, &str)> {
        self.rules
            .iter()
            .filter(|(p, _)| fault_code.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }
}

#[derive(Debug, Clone)]
struct OpenStop {
    event_id: String,
    text: String,
    context: Vec<String>,
}

impl Case for PastStop {
    fn text(&self) -> &str {
        &self.text
    }

    fn context(&self) -> Vec<String> {
        self.context.clone()
    }

    fn label(&self) -> &str {
        &self.team
    }
}

#[derive(Debug, Clone)]
struct PastStop {
    andon_id: String,
    raised_event: String,
    cleared_event: String,
    fault_code: String,
    text: String,
    context: Vec<String>,
    team: String,
    resolution: Option<String>,
}

/// Triage of line stops; see the module docs.
#[derive(Debug, Clone)]
pub struct AndonAgent {
    config: AndonConfig,
    open: HashMap<String, OpenStop>,
    /// Open stops in the order raised, so the oldest is dropped when too many stay open.
    open_order: VecDeque<String>,
    /// Cleared stops and the team model trained on them.
    learner: Learner<PastStop>,
    /// Station → its latest maintenance records (event id, equipment, what was done).
    maintenance: HashMap<String, VecDeque<(String, String, String)>>,
}

const MAX_HISTORY: usize = 5000;
const MAX_OPEN: usize = 10_000;

impl AndonAgent {
    pub fn new(config: AndonConfig, encoder: Option<std::sync::Arc<crate::encoder::Encoder>>) -> Self {
        AndonAgent {
            open: HashMap::new(),
            open_order: VecDeque::new(),
            learner: Learner::new(config.min_history, MAX_HISTORY, 10).with_encoder(encoder),
            maintenance: HashMap::new(),
            config,
        }
    }

    fn text_of(a: &jidoka_model::event::AndonRaised) -> (String, Vec<String>) {
        let text = a.description.as_deref().and_then(|d| prepare(d).ok()).map(|p| p.0).unwrap_or_default();
        let prefix: String = a.fault_code.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        let context =
            vec![format!("fault={}", a.fault_code), format!("prefix={prefix}"), format!("station={}", a.station)];
        (text, context)
    }

    fn triage(&self, event: &StoredEvent, a: &jidoka_model::event::AndonRaised, out: &mut Vec<FindingDraft>) {
        let (text, context) = Self::text_of(a);
        let rule = self.config.rule_for(&a.fault_code);
        let (mut team, mut confidence, mut method, mut alternatives) = (None, 0.0, "none", Vec::new());
        let mut x = None;
        if let Some(model) = self.learner.model() {
            let v = model.vectorizer.transform(&text, &context);
            let ranked = model.predict_vector(&v);
            // Against a stated rule the model needs to be sure: on a plant whose fault codes
            // name the team, the rule is right and a model trained on a few dozen stops is not.
            let needed = match rule {
                Some((_, t)) if ranked.first().is_some_and(|b| b.label != t) => self.config.min_confidence.max(0.9),
                _ => self.config.min_confidence,
            };
            if let Some(best) = ranked.first()
                && best.confidence >= needed
            {
                team = Some(best.label.clone());
                confidence = best.confidence;
                method = "model";
            }
            alternatives = ranked.into_iter().take(3).collect();
            x = Some(v);
        }
        if team.is_none()
            && let Some((_, t)) = rule
        {
            team = Some(t.to_string());
            confidence = 0.5;
            method = "rules";
        }
        let why = match (self.learner.model(), method) {
            (None, _) => format!("no model yet: {}", self.learner.why_not()),
            (Some(_), "model") => format!("model trained on {} cleared stops", self.learner.trained_on()),
            (Some(_), _) => "the model was unsure, or not sure enough to overrule the rule".to_string(),
        };
        // First steps: how the most similar past stops routed to this team were cleared, each
        // resolution once.
        let mut steps: Vec<(f32, &PastStop, &str)> = Vec::new();
        if let (Some(x), Some(team)) = (&x, &team) {
            for (s, h) in self.learner.nearest(x, |h| h.team == *team) {
                if let Some(r) = h.resolution.as_deref()
                    && !steps.iter().any(|(_, _, seen)| *seen == r)
                {
                    steps.push((s, h, r));
                    if steps.len() == 3 {
                        break;
                    }
                }
            }
        }
        let maintenance: Vec<&(String, String, String)> =
            self.maintenance.get(&a.station).map(|m| m.iter().rev().take(3).collect()).unwrap_or_default();
        let event_id = &event.event.event_id;
        let team_text =
            team.clone().unwrap_or_else(|| "no team (no rule for this fault code): the supervisor decides".into());
        let mut narrative = format!(
            "{} {} at {} {}: {} \"{}\". Route to {} ({}, {}).",
            if a.line_stopped { "Line stop" } else { "Andon" },
            a.andon_id,
            a.station,
            cite(event_id),
            a.fault_code,
            a.description.as_deref().unwrap_or(""),
            team_text,
            method,
            why
        );
        if let (Some((prefix, t)), true) = (rule, method == "model") {
            narrative.push_str(&format!(" The rule for prefix {prefix} would send it to {t}."));
        }
        if !steps.is_empty() {
            let list: Vec<String> =
                steps.iter().map(|(_, h, r)| format!("\"{r}\" ({} {})", h.andon_id, cite(&h.cleared_event))).collect();
            narrative.push_str(&format!(" Similar stops were cleared by: {}.", list.join("; ")));
        }
        if !maintenance.is_empty() {
            let list: Vec<String> = maintenance.iter().map(|(e, eq, d)| format!("{eq}: {d} {}", cite(e))).collect();
            narrative.push_str(&format!(" Latest maintenance at {}: {}.", a.station, list.join("; ")));
        }
        out.push(FindingDraft {
            kind: "andon.triage".into(),
            verdict: Verdict::Pass,
            severity: if a.line_stopped { Severity::Warning } else { Severity::Info },
            confidence,
            reason: format!("{} at {} ({}): route to {team_text} ({method})", a.andon_id, a.station, a.fault_code),
            subject: Subject { station: Some(a.station.clone()), ..Subject::default() },
            extra_evidence: steps.iter().map(|(_, h, _)| h.cleared_event.clone()).collect(),
            details: json!({
                "andon_id": a.andon_id, "fault_code": a.fault_code, "team": team, "method": method,
                "rule": rule.map(|(p, t)| json!({"prefix": p, "team": t})),
                "alternatives": alternatives,
                "first_steps": steps.iter().map(|(s, h, r)| json!({"resolution": r, "andon_id": h.andon_id,
                    "fault_code": h.fault_code, "event_id": h.cleared_event, "raised_event": h.raised_event,
                    "similarity": s})).collect::<Vec<_>>(),
                "maintenance": maintenance.iter().map(|(e, eq, d)| json!({"event_id": e, "equipment": eq,
                    "description": d})).collect::<Vec<_>>(),
                "trained_on": self.learner.trained_on(), "narrative": narrative,
            }),
        });
    }
}

impl Agent for AndonAgent {
    fn name(&self) -> &'static str {
        "andon"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn subscriptions(&self) -> &'static [EventKind] {
        &[EventKind::AndonRaised, EventKind::AndonCleared, EventKind::MaintenanceRecord]
    }

    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        match &event.event.payload {
            EventPayload::AndonRaised(a) => {
                self.triage(event, a, out);
                let (text, context) = Self::text_of(a);
                let stop = OpenStop { event_id: event.event.event_id.clone(), text, context };
                if self.open.insert(a.andon_id.clone(), stop).is_none() {
                    self.open_order.push_back(a.andon_id.clone());
                }
                // A stop whose clear never arrives must not stop the learning: drop the oldest.
                while self.open.len() > MAX_OPEN {
                    match self.open_order.pop_front() {
                        Some(old) => {
                            self.open.remove(&old);
                        }
                        None => break,
                    }
                }
                if self.open_order.len() > 2 * MAX_OPEN {
                    let open = &self.open;
                    self.open_order.retain(|id| open.contains_key(id));
                }
            }
            EventPayload::AndonCleared(c) => {
                let Some(open) = self.open.remove(&c.andon_id) else { return };
                // The team that cleared it, as "electrical" or "electrical-team".
                let team = c.cleared_by.as_deref().map(|b| b.trim().to_lowercase()).and_then(|b| {
                    TEAMS.iter().find(|t| b == **t || b.strip_suffix("-team") == Some(**t)).map(|t| t.to_string())
                });
                if let Some(team) = team {
                    let fault_code =
                        open.context.first().map(|f| f.trim_start_matches("fault=").to_string()).unwrap_or_default();
                    self.learner.learn(PastStop {
                        andon_id: c.andon_id.clone(),
                        raised_event: open.event_id,
                        cleared_event: event.event.event_id.clone(),
                        fault_code,
                        text: open.text,
                        context: open.context,
                        team,
                        resolution: c.resolution.clone().filter(|r| !r.trim().is_empty()),
                    });
                }
            }
            EventPayload::MaintenanceRecord(m) => {
                if let Some(station) = &m.station {
                    let list = self.maintenance.entry(station.clone()).or_default();
                    list.push_back((event.event.event_id.clone(), m.equipment.clone(), m.description.clone()));
                    if list.len() > 5 {
                        list.pop_front();
                    }
                }
            }
            _ => {}
        }
    }
}
