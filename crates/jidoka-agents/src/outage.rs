//! [`LinkOutages`]: a controller link down while the plant produces.
//!
//! A link logs a `source_outage` event once it has been down longer than it is configured to
//! tolerate, and another when it is back. Down during a break matters to nobody; down while
//! units are built means their tightenings at that station are neither recorded nor checked,
//! which a person must know before those units ship. So the outage becomes a finding
//! (`sequence.link_down`, critical REVIEW) at the first sign of production since it began (a
//! unit entering, scanned, tightened or leaving anywhere in the plant), naming the units seen
//! at the station meanwhile; when the link is back, `sequence.link_back` (PASS, information)
//! names every unit that passed the station during the outage. An outage that ends before the
//! plant produced anything is dropped without a finding.
//!
//! Everything is judged from the log (event times, not the clock), so a replay concludes the
//! same. A link that restarts during an outage logs its start again (the same `since`, or a
//! later one when its own restart lost it): the outage already open is kept, not reported twice.

use crate::FindingDraft;
use jidoka_model::event::SourceOutage;
use jidoka_model::{Severity, StoredEvent, Subject, Timestamp, Verdict};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Units remembered per station from before an outage was logged (it is logged
/// `outage_after_s` after it began: a few takt times).
const RECENT_PER_STATION: usize = 32;

/// Units named in a finding; the count says how many more there were.
const UNITS_NAMED: usize = 200;

#[derive(Debug, Clone)]
struct Outage {
    station: String,
    since: Timestamp,
    reason: String,
    reported: bool,
    /// Units that entered the station since the outage began, in order (at most `UNITS_NAMED`).
    units: Vec<String>,
    units_total: usize,
}

impl Outage {
    fn saw(&mut self, vin: &str) {
        if self.units.last().is_some_and(|v| v == vin) {
            return;
        }
        self.units_total += 1;
        if self.units.len() < UNITS_NAMED {
            self.units.push(vin.to_string());
        }
    }

    fn named_units(&self) -> String {
        if self.units.is_empty() {
            return "no unit seen there yet".into();
        }
        let more = self.units_total - self.units.len();
        let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
        format!("{} unit(s) there since: {}{tail}", self.units_total, self.units.join(", "))
    }
}

/// Open outages by source, and what tells whether the plant is producing.
#[derive(Debug, Clone, Default)]
pub struct LinkOutages {
    open: BTreeMap<String, Outage>,
    /// The newest units that entered each station, with when.
    recent: HashMap<String, VecDeque<(Timestamp, String)>>,
    /// When the newest unit-level event happened.
    last_production: Option<Timestamp>,
}

/// A finding about `station` only, of the given severity (the sequence agent's draft).
fn finding(
    kind: &str,
    verdict: Verdict,
    severity: Severity,
    reason: String,
    station: &str,
    details: serde_json::Value,
) -> FindingDraft {
    let station = Subject { station: Some(station.to_string()), ..Subject::default() };
    let mut d = crate::sequence::draft(kind, verdict, reason, station, details);
    d.severity = severity;
    d
}

impl LinkOutages {
    /// A `source_outage` event: an outage begins (or is restated) or ends.
    pub fn on_outage(&mut self, event: &StoredEvent, o: &SourceOutage, out: &mut Vec<FindingDraft>) {
        let source = &event.event.source;
        match o.until {
            None => {
                if self.open.contains_key(source) {
                    return;
                }
                let mut outage = Outage {
                    station: o.station.clone(),
                    since: o.since,
                    reason: o.reason.clone(),
                    reported: false,
                    units: Vec::new(),
                    units_total: 0,
                };
                for (at, vin) in self.recent.get(&o.station).into_iter().flatten() {
                    if *at >= o.since {
                        outage.saw(vin);
                    }
                }
                if self.last_production.is_some_and(|t| t >= o.since) {
                    out.push(Self::report(source, &mut outage, self.last_production));
                }
                self.open.insert(source.clone(), outage);
            }
            Some(until) => {
                let Some(outage) = self.open.remove(source) else { return };
                if !outage.reported {
                    return;
                }
                let minutes = (until - outage.since).num_seconds() as f64 / 60.0;
                out.push(finding(
                    "link_back",
                    Verdict::Pass,
                    Severity::Info,
                    format!(
                        "Controller link {source} at {} back after {minutes:.1} min; {}. Their results are uploaded \
                         from the controller; any it cannot give are reported as a data gap",
                        outage.station,
                        outage.named_units()
                    ),
                    &outage.station,
                    json!({"source": source, "since": outage.since, "until": until, "units": outage.units,
                           "units_total": outage.units_total}),
                ));
            }
        }
    }

    /// A unit-level event at `station` (`entered`: the unit entered it): the plant produces.
    pub fn on_production(&mut self, at: Timestamp, station: &str, entered: Option<&str>, out: &mut Vec<FindingDraft>) {
        if self.last_production.is_none_or(|t| t < at) {
            self.last_production = Some(at);
        }
        if let Some(vin) = entered {
            let recent = self.recent.entry(station.to_string()).or_default();
            if recent.len() == RECENT_PER_STATION {
                recent.pop_front();
            }
            recent.push_back((at, vin.to_string()));
        }
        for (source, outage) in &mut self.open {
            if let Some(vin) = entered
                && outage.station == station
                && at >= outage.since
            {
                outage.saw(vin);
            }
            if !outage.reported && at >= outage.since {
                out.push(Self::report(source, outage, Some(at)));
            }
        }
    }

    fn report(source: &str, outage: &mut Outage, producing_at: Option<Timestamp>) -> FindingDraft {
        outage.reported = true;
        let why = if outage.reason.is_empty() { String::new() } else { format!(" ({})", outage.reason) };
        finding(
            "link_down",
            Verdict::Review,
            Severity::Critical,
            format!(
                "Controller link {source} at {} down since {}{why} while the plant is producing: tightenings there \
                 are neither recorded nor checked; {}",
                outage.station,
                outage.since.format("%Y-%m-%dT%H:%M:%SZ"),
                outage.named_units()
            ),
            &outage.station,
            json!({"source": source, "since": outage.since, "reason": outage.reason, "producing_at": producing_at,
                   "units": outage.units, "units_total": outage.units_total}),
        )
    }
}
