//! The line as the dashboard shows it: a projection of the event log kept in memory by a task
//! that follows the log (units per station, Andon state, each tool's SPC chart, the recent
//! defects behind the Pareto). It is rebuilt from the tail of the log at start, so it needs no
//! table of its own and never disagrees with the log for long.

use jidoka_agents::patterns::Defect;
use jidoka_agents::torque::drift::{Chart, DriftConfig, western_electric};
use jidoka_model::event::{MaintenanceKind, OkNok};
use jidoka_model::{EventPayload, StoredEvent, Timestamp};
use jidoka_store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Points kept per tool chart.
pub const CHART_POINTS: usize = 150;
/// Defects kept for the Pareto and the association table.
pub const DEFECT_WINDOW: usize = 20_000;
/// How far back the projection reads at start.
pub const WARM_EVENTS: u64 = 200_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct StationState {
    pub station: String,
    /// Units that left the station since the projection started.
    pub units: u64,
    /// The unit at the station now.
    pub current_vin: Option<String>,
    /// The Andon shown for the station: a line stop first, else the oldest open one.
    pub andon: Option<AndonState>,
    /// Every Andon open at the station.
    pub andons_open: usize,
    #[serde(skip)]
    open: Vec<AndonState>,
    pub tightenings: u64,
    pub tightenings_nok: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AndonState {
    pub andon_id: String,
    pub fault_code: String,
    pub line_stopped: bool,
    pub since: Timestamp,
    pub event_id: String,
}

/// One point of a tool's chart: final torque over target (or final torque without a target).
#[derive(Debug, Clone, Serialize)]
pub struct ChartPoint {
    pub event_id: String,
    pub at: Timestamp,
    pub value: f64,
    /// Standardised against the chart's baseline, once it has one.
    pub z: Option<f64>,
    /// Western Electric rules broken at this point.
    pub rules: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolChart {
    pub tool: String,
    pub station: String,
    /// Baseline mean and standard deviation (learned from the first values after a start or a
    /// calibration, as the torque audit's drift chart does).
    pub baseline: Option<(f64, f64)>,
    pub points: VecDeque<ChartPoint>,
    #[serde(skip)]
    chart: Chart,
    #[serde(skip)]
    recent: VecDeque<f64>,
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    stations: BTreeMap<String, StationState>,
    tools: HashMap<(String, String), ToolChart>,
    defects: VecDeque<(Timestamp, Defect)>,
    andons_raised: u64,
}

/// Shared between the follower task and the pages.
#[derive(Debug, Default)]
pub struct LineView {
    state: Mutex<State>,
    /// The torque audit's drift settings, so the charts learn their baseline as its charts do.
    drift: DriftConfig,
    /// Bumped after every applied page: the live stream waits on it.
    pub version: tokio::sync::watch::Sender<u64>,
    closed: std::sync::atomic::AtomicBool,
    /// Live streams open per dashboard session (keyed by the session's CSRF digest, never the
    /// token itself).
    streams: Mutex<HashMap<String, usize>>,
    /// The live streams' line summary, computed once for all of them (and when it was).
    summary: Mutex<Option<(std::time::Instant, Arc<String>)>>,
}

/// One open live stream of a session; given back when the stream ends.
#[derive(Debug)]
pub struct StreamSlot {
    view: Arc<LineView>,
    key: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.view.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = streams.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

/// What the overview and the live stream show of the line.
#[derive(Debug, Clone, Serialize)]
pub struct LineSnapshot {
    pub seq: u64,
    pub stations: Vec<StationState>,
    pub andons_open: usize,
    pub line_stopped: bool,
}

impl LineView {
    pub fn new(drift: DriftConfig) -> LineView {
        LineView { drift, ..LineView::default() }
    }

    /// The shared line summary if it is younger than `max_age`.
    pub fn fresh_summary(&self, max_age: Duration) -> Option<Arc<String>> {
        let s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        s.as_ref().filter(|(at, _)| at.elapsed() < max_age).map(|(_, text)| text.clone())
    }

    /// Keep `text` as the shared line summary.
    pub fn keep_summary(&self, text: String) -> Arc<String> {
        let text = Arc::new(text);
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), text.clone()));
        text
    }

    /// A place for one more live stream of the session `key`, unless it has `cap` open.
    pub fn open_stream(self: &Arc<Self>, key: &str, cap: usize) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = streams.entry(key.to_string()).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(StreamSlot { view: self.clone(), key: key.to_string() })
    }

    /// The server is stopping: live streams end at their next wake-up, which this causes.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.version.send_modify(|v| *v += 1);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    pub fn snapshot(&self) -> LineSnapshot {
        let s = self.lock();
        let stations: Vec<StationState> = s.stations.values().cloned().collect();
        let andons_open = stations.iter().map(|st| st.andons_open).sum();
        let line_stopped = stations.iter().any(|st| st.andon.as_ref().is_some_and(|a| a.line_stopped));
        LineSnapshot { seq: s.seq, stations, andons_open, line_stopped }
    }

    /// A tool's chart at a station (the torque audit keeps one per station and tool too).
    pub fn tool_chart(&self, station: &str, tool: &str) -> Option<ToolChart> {
        self.lock().tools.get(&(station.to_string(), tool.to_string())).cloned()
    }

    /// The defects in the window, oldest first.
    pub fn defects(&self) -> Vec<Defect> {
        self.lock().defects.iter().map(|(_, d)| d.clone()).collect()
    }

    /// Apply stored events in log order.
    pub fn apply(&self, events: &[StoredEvent]) {
        let mut guard = self.lock();
        let s = &mut *guard;
        for ev in events {
            s.seq = s.seq.max(ev.seq);
            let at = ev.event.occurred_at;
            let id = &ev.event.event_id;
            match &ev.event.payload {
                EventPayload::UnitEnteredStation(u) => {
                    station(s, &u.station).current_vin = Some(u.vin.clone());
                }
                EventPayload::UnitLeftStation(u) => {
                    let st = station(s, &u.station);
                    st.units += 1;
                    if st.current_vin.as_deref() == Some(u.vin.as_str()) {
                        st.current_vin = None;
                    }
                }
                EventPayload::AndonRaised(a) => {
                    s.andons_raised += 1;
                    let st = station(s, &a.station);
                    st.open.retain(|x| x.andon_id != a.andon_id);
                    st.open.push(AndonState {
                        andon_id: a.andon_id.clone(),
                        fault_code: a.fault_code.clone(),
                        line_stopped: a.line_stopped,
                        since: at,
                        event_id: id.clone(),
                    });
                    st.show_andon();
                }
                EventPayload::AndonCleared(a) => {
                    let st = station(s, &a.station);
                    st.open.retain(|x| x.andon_id != a.andon_id);
                    st.show_andon();
                }
                EventPayload::TighteningResult(t) => {
                    let st = station(s, &t.station);
                    st.tightenings += 1;
                    if t.controller_verdict == Some(OkNok::Nok) {
                        st.tightenings_nok += 1;
                    }
                    let value = match t.torque_target_nm {
                        Some(target) if target > 0.0 => t.final_torque_nm / target,
                        _ => t.final_torque_nm,
                    };
                    let chart = s.tools.entry((t.station.clone(), t.tool.clone())).or_insert_with(|| ToolChart {
                        tool: t.tool.clone(),
                        station: t.station.clone(),
                        ..ToolChart::default()
                    });
                    chart.push(id, at, value, &self.drift);
                }
                EventPayload::MaintenanceRecord(m)
                    if matches!(m.maintenance_kind, MaintenanceKind::Calibration | MaintenanceKind::Corrective) =>
                {
                    // The audit restarts the tool's charts after a calibration; so does the view.
                    for chart in s.tools.values_mut().filter(|c| c.tool == m.equipment) {
                        chart.chart = Chart::new();
                        chart.baseline = None;
                        chart.recent.clear();
                    }
                }
                EventPayload::NcrCreated(n) => {
                    let mut context = Vec::new();
                    let fields: [(&'static str, &Option<String>); 7] = [
                        ("station", &n.station),
                        ("shift", &n.shift),
                        ("tool", &n.tool),
                        ("fixture", &n.fixture),
                        ("operator", &n.operator),
                        ("part_number", &n.part_number),
                        ("supplier_lot", &n.supplier_lot),
                    ];
                    for (field, value) in fields {
                        if let Some(v) = value {
                            context.push((field, v.clone()));
                        }
                    }
                    let code = n.defect_code.clone().unwrap_or_else(|| "(uncoded)".into());
                    if s.defects.len() == DEFECT_WINDOW {
                        s.defects.pop_front();
                    }
                    s.defects.push_back((at, Defect { code, context, event_id: id.clone() }));
                }
                _ => {}
            }
        }
        drop(guard);
        self.version.send_modify(|v| *v += 1);
    }
}

impl StationState {
    fn show_andon(&mut self) {
        self.andons_open = self.open.len();
        self.andon = self.open.iter().find(|a| a.line_stopped).or_else(|| self.open.first()).cloned();
    }
}

fn station<'a>(s: &'a mut State, name: &str) -> &'a mut StationState {
    s.stations.entry(name.to_string()).or_insert_with(|| StationState { station: name.into(), ..Default::default() })
}

impl ToolChart {
    fn push(&mut self, event_id: &str, at: Timestamp, value: f64, config: &DriftConfig) {
        if !value.is_finite() {
            return;
        }
        self.chart.push(value, config);
        self.baseline = self.chart.baseline();
        let z = self.baseline.map(|(mean, sigma)| (value - mean) / sigma).filter(|z| z.is_finite());
        let rules = match z {
            Some(z) => {
                if self.recent.len() == 20 {
                    self.recent.pop_front();
                }
                self.recent.push_back(z);
                western_electric(&self.recent)
            }
            None => Vec::new(),
        };
        if self.points.len() == CHART_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(ChartPoint { event_id: event_id.to_string(), at, value, z, rules });
    }
}

/// Follow the log into `view` until `stop` is set: first the tail of the log (the last
/// [`WARM_EVENTS`]), then every new page as it is stored.
pub async fn follow(store: Arc<dyn Store>, view: Arc<LineView>, stop: tokio::sync::watch::Receiver<bool>) {
    let start = match tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.last_seq()
    })
    .await
    {
        Ok(Ok(last)) => last.saturating_sub(WARM_EVENTS),
        _ => 0,
    };
    let mut after = start;
    loop {
        if *stop.borrow() {
            return;
        }
        let page = tokio::task::spawn_blocking({
            let store = store.clone();
            move || store.events_after(after, 2000)
        })
        .await;
        match page {
            Ok(Ok(page)) => {
                if let Some(last) = page.last_seq() {
                    view.apply(&page.events);
                    after = last;
                    continue;
                }
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "dashboard cannot read the event log; retrying"),
            Err(err) => tracing::warn!(error = %err, "dashboard log follower failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jidoka_model::{Event, StoredEvent};
    use serde_json::json;

    fn stored(seq: u64, kind: &str, data: serde_json::Value) -> StoredEvent {
        let v = json!({"source": "plc", "source_txn_id": format!("t{seq}"), "occurred_at": "2026-11-24T08:00:00Z",
                       "kind": kind, "data": data});
        let event = Event::parse(v, chrono::Utc::now()).expect("event");
        StoredEvent { seq, event }
    }

    #[test]
    fn a_second_andon_at_a_station_does_not_hide_a_line_stop() {
        let view = LineView::default();
        let raise = |seq, id: &str, stop| {
            stored(
                seq,
                "andon_raised",
                json!({"andon_id": id, "station": "ST030", "fault_code": "F1", "line_stopped": stop}),
            )
        };
        let clear = |seq, id: &str| stored(seq, "andon_cleared", json!({"andon_id": id, "station": "ST030"}));
        view.apply(&[raise(1, "A", true), raise(2, "B", false)]);
        let s = view.snapshot();
        assert!(s.line_stopped);
        assert_eq!((s.andons_open, s.stations[0].andon.as_ref().map(|a| a.andon_id.as_str())), (2, Some("A")));
        view.apply(&[clear(3, "B")]);
        let s = view.snapshot();
        assert!(s.line_stopped && s.andons_open == 1);
        view.apply(&[clear(4, "A")]);
        let s = view.snapshot();
        assert!(!s.line_stopped && s.andons_open == 0 && s.stations[0].andon.is_none());
        assert_eq!(view.seq(), 4);
    }
}
