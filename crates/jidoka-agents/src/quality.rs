//! [`QualityAgent`]: defect patterns behind NCRs and triage of new NCRs.
//!
//! **Defect patterns.** For every station the agent keeps a window of the last units through
//! it, each with its context: shift, operator, fixture (from the MES unit-entered event),
//! supplier lots and parts scanned, tools that tightened. An NCR is a defect of one code on one
//! unit at one station, so the right question is "which context do the defective units share
//! more than the units built alongside them?". For each context value, and each pair of values
//! of different fields (a worn fixture may only show on one shift), the number of the code's
//! defective units carrying it is hypergeometric under "no association" with `N` units in the
//! window of which `K` carry it; the p-value is the upper tail, and the values tested for one
//! code are corrected together with Benjamini-Hochberg.
//!
//! Correlated context (a fixture used only on one shift, an operator who works one shift) makes
//! several values significant for one cause. Claims are therefore taken greedily, strongest
//! first: each further value is tested again on the units that carry none of the values already
//! claimed, and is reported as its own claim only if it is still significant there; otherwise it
//! is listed as explained by the claim that covers it. A claim reads as "what the defective
//! units share", not as proof of cause; the suggested action says what to check.
//!
//! **Triage.** Coded NCRs train a text model (see [`crate::text`]) on description and station.
//! An NCR raised without a code gets the top three codes with their probabilities, the most
//! similar past NCRs, and any defect pattern it matches as the probable cause. With too little
//! coded history the agent says so instead of guessing. Confidently predicted codes also join
//! the pattern analysis, so uncoded NCRs are not lost to it. The similar NCRs carry their
//! dispositions (`ncr_dispositioned`: use as is, rework, repair, scrap, return to supplier)
//! when they have been decided, and the most frequent one among them is offered as the likely
//! disposition, with the decisions it rests on cited.
//!
//! **Uncoded NCRs without a confident code** are clustered by their text within their station
//! (hashed word and character n-gram features, cosine to each cluster's centroid at
//! `text_cluster_similarity` or a new cluster), and each cluster is analysed for patterns as a
//! code is, so a plant whose NCRs carry no codes, or a model with too little history, still
//! has its patterns found. An uncoded NCR whose image has a perceptual hash (`image_hash`, set
//! at ingest) is clustered by its picture instead: it joins the station's image cluster whose
//! first image is at most `image_cluster_bits` bits away (Hamming), since two photos of one
//! kind of defect are alike even when their descriptions are not.
//!
//! Every claim in a finding cites the events it rests on as `[E:event-id]`.

use crate::narrative::{cite, cite_list};
use crate::patterns::{bh_adjust, hypergeometric_upper_tail};
use crate::text::{Case, Learner, cosine, normalized, prepare};
use crate::{Agent, FindingDraft};
use jidoka_model::event::Disposition;
use jidoka_model::{EventKind, EventPayload, Severity, StoredEvent, Subject, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    pub enabled: bool,
    /// Units per station in the window the patterns are tested on.
    pub window_units: usize,
    /// Claims need a Benjamini-Hochberg q below this.
    pub alpha: f64,
    /// ... at least this many defective units carrying the value ...
    pub min_hits: u64,
    /// ... and this ratio of observed to expected.
    pub min_lift: f64,
    /// Coded NCRs needed before codes are suggested.
    pub min_history: usize,
    /// Coded NCRs kept for training and similar cases.
    pub max_history: usize,
    /// A predicted code joins the pattern analysis at this confidence or above.
    pub use_prediction_at: f64,
    /// Similar past NCRs shown with a suggestion.
    pub similar: usize,
    /// An uncoded NCR without a confident code joins the text cluster of its station whose
    /// centroid is at least this similar (cosine), or starts a new one; the clusters are
    /// analysed for patterns like codes.
    pub text_cluster_similarity: f64,
    /// An uncoded NCR with an image hash joins the image cluster of its station whose first
    /// image is at most this many bits away (of 64), or starts a new one.
    pub image_cluster_bits: u32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            enabled: true,
            window_units: 2000,
            alpha: 0.001,
            min_hits: 8,
            min_lift: 1.5,
            min_history: 30,
            max_history: 5000,
            use_prediction_at: 0.8,
            similar: 5,
            text_cluster_similarity: 0.3,
            image_cluster_bits: 10,
        }
    }
}

impl QualityConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.window_units < 50 {
            errors.push((format!("{path}.window_units"), "must be at least 50".into()));
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            errors.push((format!("{path}.alpha"), "must be between 0 and 0.5".into()));
        }
        if self.min_hits < 2 {
            errors.push((format!("{path}.min_hits"), "must be at least 2".into()));
        }
        if !(self.min_lift >= 1.0 && self.min_lift.is_finite()) {
            errors.push((format!("{path}.min_lift"), "must be at least 1".into()));
        }
        if self.min_history < 10 || self.max_history < self.min_history {
            errors.push((format!("{path}.min_history"), "must be at least 10 and at most max_history".into()));
        }
        if self.max_history > 20_000 {
            errors.push((
                format!("{path}.max_history"),
                "must be at most 20000 (each case is kept with its vector, and retraining reads them all)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.text_cluster_similarity) {
            errors.push((format!("{path}.text_cluster_similarity"), "must be between 0 and 1".into()));
        }
        if self.image_cluster_bits > 32 {
            errors.push((format!("{path}.image_cluster_bits"), "must be at most 32 (of 64 bits)".into()));
        }
        if !(0.0..=1.0).contains(&self.use_prediction_at) {
            errors.push((format!("{path}.use_prediction_at"), "must be between 0 and 1".into()));
        }
    }
}

/// A (field, value) pair of a unit's context, e.g. ("fixture", "FX-040-B").
pub type Value = (&'static str, String);

/// An over-represented context among one code's defective units at one station.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub station: String,
    pub code: String,
    /// One value, or two of different fields that occur together.
    pub values: Vec<Value>,
    /// Defective units carrying the value(s) / defective units of the code in the window.
    pub hits: u64,
    pub defects: u64,
    /// Units in the window carrying the value(s) / units in the window.
    pub carriers: u64,
    pub units: u64,
    pub lift: f64,
    pub p_value: f64,
    pub q_value: f64,
    /// NCR events behind the claim (the most recent first, at most 20).
    pub evidence: Vec<String>,
    /// Values that were also over-represented but are explained by this claim.
    pub explains: Vec<String>,
    /// Other values, not part of this claim, carried by nearly the same defective units (a lot
    /// consumed during one shift): the data cannot yet tell them apart, so the claim is not
    /// reported until it can.
    pub ambiguous_with: Vec<String>,
}

impl Claim {
    pub fn describe_values(values: &[Value]) -> String {
        values.iter().map(|(f, v)| format!("{f} {v}")).collect::<Vec<_>>().join(" on ")
    }

    /// What to check first, by the fields the claim names.
    pub fn suggestion(&self) -> String {
        let value = |field: &str| self.values.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str());
        let mut steps = Vec::new();
        if let Some(f) = value("fixture") {
            let during = value("shift").map(|s| format!(" during shift {s}")).unwrap_or_default();
            steps.push(format!(
                "take fixture {f} out of service and check its locators, clamps and wear; re-inspect the units built on it{during} since the first NCR cited"
            ));
        } else if let Some(s) = value("shift") {
            steps.push(format!("compare shift {s}'s set-up, staffing and material with the other shifts"));
        }
        if let Some(l) = value("supplier_lot") {
            steps.push(format!(
                "quarantine the remaining stock of lot {l}, contain the units it was fitted to and open a supplier complaint (8D)"
            ));
        } else if let Some(p) = value("part_number") {
            steps.push(format!("check part {p}: revision, supplier and ECO status"));
        }
        if let Some(t) = value("tool") {
            steps.push(format!("check tool {t}: calibration, bit or socket wear, program"));
        }
        if let Some(o) = value("operator") {
            steps.push(format!("review the work instruction and certification with operator {o} and the team leader"));
        }
        let mut text = steps.join("; ");
        if let Some(first) = text.get(..1) {
            text = first.to_uppercase() + &text[1..];
        }
        text + "."
    }

    /// The claim in words, every number checkable and every NCR cited.
    pub fn narrative(&self) -> String {
        let expected = self.defects as f64 * self.carriers as f64 / self.units.max(1) as f64;
        let mut text = format!(
            "{} of the {} units with a {} NCR at {} (of the last {} units there) were built with {}, which only {} of those {} units carry ({:.0} %; {:.1} expected): {:.1}× the expected share, p = {:.1e}, q = {:.1e}. NCRs: {}.",
            self.hits,
            self.defects,
            self.code,
            self.station,
            self.units,
            Self::describe_values(&self.values),
            self.carriers,
            self.units,
            100.0 * self.carriers as f64 / self.units.max(1) as f64,
            expected,
            self.lift,
            self.p_value,
            self.q_value,
            cite_list(&self.evidence, 8),
        );
        if !self.explains.is_empty() {
            text.push_str(&format!(
                " Also over-represented, but not once these units are set aside: {}.",
                self.explains.join(", ")
            ));
        }
        text.push_str(" Suggested: ");
        text.push_str(&self.suggestion());
        text
    }
}

/// One station's recent units and the NCRs raised on them.
#[derive(Debug, Default, Clone)]
struct StationWindow {
    order: VecDeque<String>,
    units: HashMap<String, Vec<Value>>,
    /// Code → (VIN, NCR event id), oldest first.
    defects: BTreeMap<String, Vec<(String, String)>>,
    entered: u64,
}

impl StationWindow {
    fn enter(&mut self, vin: &str, context: Vec<Value>, window: usize) {
        if let Some(existing) = self.units.get_mut(vin) {
            for v in context {
                if !existing.contains(&v) {
                    existing.push(v);
                }
            }
            return;
        }
        self.order.push_back(vin.to_string());
        self.units.insert(vin.to_string(), context);
        while self.order.len() > window {
            if let Some(old) = self.order.pop_front() {
                self.units.remove(&old);
            }
        }
        // Forget NCRs of units that left the window, now and then.
        self.entered += 1;
        if self.entered.is_multiple_of(256) {
            let units = &self.units;
            self.defects.retain(|_, list| {
                list.retain(|(v, _)| units.contains_key(v));
                !list.is_empty()
            });
        }
    }

    fn add(&mut self, vin: &str, value: Value) {
        if let Some(ctx) = self.units.get_mut(vin)
            && !ctx.contains(&value)
        {
            ctx.push(value);
        }
    }
}

fn has_all(ctx: &[Value], values: &[Value]) -> bool {
    values.iter().all(|v| ctx.contains(v))
}

/// The main claims for one code at one station, strongest first (see the module docs).
fn analyse(station: &str, code: &str, w: &StationWindow, config: &QualityConfig) -> Vec<Claim> {
    let mut seen = HashSet::new();
    let defects: Vec<(&str, &str, &[Value])> = w
        .defects
        .get(code)
        .map(|list| {
            list.iter()
                .rev()
                .filter_map(|(vin, ev)| {
                    let ctx = w.units.get(vin)?;
                    seen.insert(vin.as_str()).then_some((vin.as_str(), ev.as_str(), ctx.as_slice()))
                })
                .collect()
        })
        .unwrap_or_default();
    let (n, big_n) = (defects.len() as u64, w.units.len() as u64);
    if n < config.min_hits {
        return Vec::new();
    }
    // Candidate values and pairs, from the defective units.
    let mut hits: HashMap<Vec<Value>, Vec<usize>> = HashMap::new();
    for (i, (_, _, ctx)) in defects.iter().enumerate() {
        for (a, va) in ctx.iter().enumerate() {
            hits.entry(vec![va.clone()]).or_default().push(i);
            for vb in &ctx[a + 1..] {
                if vb.0 != va.0 {
                    let mut pair = vec![va.clone(), vb.clone()];
                    pair.sort();
                    hits.entry(pair).or_default().push(i);
                }
            }
        }
    }
    // Values with half the hits needed for a claim still count as refinements or rivals of one.
    hits.retain(|_, h| h.len() as u64 >= config.min_hits.div_ceil(2));
    let singles: HashSet<&Value> = hits.keys().filter(|k| k.len() == 1).map(|k| &k[0]).collect();
    let mut carriers: HashMap<&Vec<Value>, u64> = hits.keys().map(|k| (k, 0)).collect();
    let mut key = Vec::with_capacity(2);
    for ctx in w.units.values() {
        let present: Vec<&Value> = ctx.iter().filter(|v| singles.contains(v)).collect();
        for (a, va) in present.iter().enumerate() {
            key.clear();
            key.push((*va).clone());
            if let Some(c) = carriers.get_mut(&key) {
                *c += 1;
            }
            for vb in &present[a + 1..] {
                if vb.0 != va.0 {
                    key.clear();
                    key.push((*va).clone());
                    key.push((*vb).clone());
                    key.sort();
                    if let Some(c) = carriers.get_mut(&key) {
                        *c += 1;
                    }
                }
            }
        }
    }
    let mut tests: Vec<(Vec<Value>, u64, u64, f64)> = hits
        .iter()
        .filter(|(_, h)| h.len() as u64 >= config.min_hits)
        .filter_map(|(values, h)| {
            let k = h.len() as u64;
            let big_k = carriers.get(values).copied().unwrap_or(0).max(k);
            (big_k < big_n).then(|| (values.clone(), k, big_k, hypergeometric_upper_tail(big_n, big_k, n, k)))
        })
        .collect();
    let q = bh_adjust(&tests.iter().map(|t| t.3).collect::<Vec<_>>());
    let p_of: HashMap<Vec<Value>, f64> = tests.iter().map(|t| (t.0.clone(), t.3)).collect();
    let mut significant: Vec<(Vec<Value>, u64, u64, f64, f64)> = tests
        .drain(..)
        .zip(q)
        .filter(|((_, k, big_k, _), q)| {
            let lift = (*k as f64 / n as f64) / (*big_k as f64 / big_n as f64);
            *q < config.alpha && lift >= config.min_lift
        })
        .map(|((v, k, big_k, p), q)| (v, k, big_k, p, q))
        .collect();
    // Pairs and the second and later claims are tested again (below), each at alpha over the
    // number of values in question (Bonferroni), so that a refinement or a second claim is not
    // a chance cluster of the background: the agent looks again at every NCR.
    let secondary_alpha = config.alpha / significant.len().max(1) as f64;
    // A pair must say more than each of its values: among the units carrying one value, the
    // other must still concentrate the defects. Otherwise the pair is only its stronger value
    // seen through a correlated one (a lot consumed during one shift, a part always tightened
    // by one tool).
    let single = |v: &Value| {
        let key = vec![v.clone()];
        (carriers.get(&key).copied().unwrap_or(0), hits.get(&key).map(|h| h.len() as u64).unwrap_or(0))
    };
    significant.retain(|(values, k, big_k, _, _)| {
        values.len() == 1
            || values.iter().all(|v| {
                let (within, within_hits) = single(v);
                within > *big_k && hypergeometric_upper_tail(within, *big_k, within_hits, *k) < secondary_alpha
            })
    });
    // Strongest first; on a tie the more specific (a pair) first, then by name for a stable order.
    significant.sort_by(|a, b| a.3.total_cmp(&b.3).then(b.0.len().cmp(&a.0.len())).then(a.0.cmp(&b.0)));
    // A claim the data cannot yet tell from another: a different value (or pair) carried by
    // nearly the same defective units with nearly as strong evidence (a lot consumed during
    // one shift), or a refinement of it
    // that holds nearly all its defects on a clearly smaller part of its units (shift B, when
    // the defects are all on one fixture during shift B but too few yet to say so).
    // Only informative alternatives: a value not carried by every unit, a pair carried by
    // fewer units than either of its values.
    let count = |k: &Vec<Value>| carriers.get(k).copied().unwrap_or(0);
    let informative = |k: &Vec<Value>| match k.as_slice() {
        [_] => count(k) < big_n,
        pair => pair.iter().all(|v| count(k) < count(&vec![v.clone()])),
    };
    let hit_sets: HashMap<&Vec<Value>, HashSet<usize>> =
        hits.iter().filter(|(k, _)| informative(k)).map(|(k, h)| (k, h.iter().copied().collect())).collect();
    let ambiguous = |values: &Vec<Value>| -> Vec<String> {
        let Some(mine) = hit_sets.get(values) else { return Vec::new() };
        let my_p = p_of.get(values).copied().unwrap_or(1.0);
        let my_carriers = carriers.get(values).copied().unwrap_or(0) as f64;
        hit_sets
            .iter()
            .filter(|(other, _)| **other != values && !other.iter().all(|v| values.contains(v)))
            .filter(|(other, theirs)| {
                let common = mine.intersection(theirs).count() as f64;
                if values.iter().all(|v| other.contains(v)) {
                    common >= 0.8 * mine.len() as f64
                        && (carriers.get(*other).copied().unwrap_or(0) as f64) <= 0.8 * my_carriers
                } else {
                    // A rival explanation: nearly the same defects, and evidence within a
                    // factor of 100 of this claim's.
                    common >= 0.8 * mine.union(theirs).count() as f64
                        && p_of.get(other.as_slice()).is_some_and(|p| *p <= 100.0 * my_p)
                }
            })
            .map(|(other, _)| Claim::describe_values(other))
            .collect()
    };
    let mut claims: Vec<Claim> = Vec::new();
    for (values, k, big_k, p, q) in significant {
        if !claims.is_empty() {
            // Test again on the units none of the claims so far covers.
            let covered = |ctx: &[Value]| claims.iter().any(|c| has_all(ctx, &c.values));
            let rest_n = w.units.values().filter(|ctx| !covered(ctx)).count() as u64;
            let rest_k = w.units.values().filter(|ctx| !covered(ctx) && has_all(ctx, &values)).count() as u64;
            let rest_d: Vec<&&[Value]> = defects.iter().map(|d| &d.2).filter(|ctx| !covered(ctx)).collect();
            let rest_hits = rest_d.iter().filter(|ctx| has_all(ctx, &values)).count() as u64;
            let rest_p = hypergeometric_upper_tail(rest_n, rest_k, rest_d.len() as u64, rest_hits);
            let lift = if rest_k == 0 || rest_d.is_empty() {
                0.0
            } else {
                (rest_hits as f64 / rest_d.len() as f64) / (rest_k as f64 / rest_n as f64)
            };
            if rest_hits < config.min_hits || rest_p >= secondary_alpha || lift < config.min_lift {
                // Explained: credit the claim that shares most of its defective units.
                let overlap =
                    |c: &Claim| defects.iter().filter(|d| has_all(d.2, &values) && has_all(d.2, &c.values)).count();
                // The strongest (earliest) claim wins a tie.
                if let Some(best) = claims.iter_mut().rev().max_by_key(|c| overlap(c)) {
                    best.explains.push(Claim::describe_values(&values));
                }
                continue;
            }
        }
        let evidence: Vec<String> =
            defects.iter().filter(|d| has_all(d.2, &values)).take(20).map(|d| d.1.to_string()).collect();
        claims.push(Claim {
            station: station.to_string(),
            code: code.to_string(),
            lift: (k as f64 / n as f64) / (big_k as f64 / big_n as f64),
            ambiguous_with: ambiguous(&values),
            values,
            hits: k,
            defects: n,
            carriers: big_k,
            units: big_n,
            p_value: p,
            q_value: q,
            evidence,
            explains: Vec::new(),
        });
    }
    claims
}

impl Case for PastNcr {
    fn text(&self) -> &str {
        &self.text
    }

    fn context(&self) -> Vec<String> {
        context_tokens(self.station.as_deref())
    }

    fn label(&self) -> &str {
        &self.code
    }
}

/// What an uncoded NCR is clustered by: its text (hashed features) or its picture's hash.
#[derive(Clone)]
enum Feature {
    Text(crate::text::Sparse),
    Image(u64),
}

/// What a cluster compares newcomers with: a text cluster the sum of its members' hashed
/// features and that sum normalised (its centroid, updated when a member joins); an image
/// cluster its first picture's hash.
#[derive(Debug, Clone)]
enum Likeness {
    Text { sum: HashMap<u32, f32>, centroid: crate::text::Sparse },
    Image(u64),
}

/// Uncoded NCRs of one station grouped by their text or their picture, with the first text or
/// picture reference and the size.
#[derive(Debug, Clone)]
struct Cluster {
    label: String,
    exemplar: String,
    likeness: Likeness,
    size: usize,
}

impl Cluster {
    /// How close a newcomer is (cosine for text, minus the bits apart for pictures); `None`
    /// for the other kind.
    fn closeness(&self, f: &Feature) -> Option<f64> {
        match (&self.likeness, f) {
            (Likeness::Text { centroid, .. }, Feature::Text(x)) => Some(f64::from(cosine(centroid, x))),
            (Likeness::Image(h), Feature::Image(g)) => Some(-f64::from((h ^ g).count_ones())),
            _ => None,
        }
    }

    /// The cluster in a claim: its first text, quoted, or its first picture.
    fn describe(&self) -> String {
        match self.likeness {
            Likeness::Text { .. } => format!("\"{}\"", self.exemplar),
            Likeness::Image(_) => format!("image {}", self.exemplar),
        }
    }
}

/// Most text clusters, and most image clusters, kept per station; beyond it the oldest cluster
/// of a single NCR makes room, or, with none, an NCR joins the nearest one.
const MAX_CLUSTERS: usize = 200;

/// Whether a new cluster may be started: below the cap, or once the oldest cluster of one NCR
/// has been dropped to make room.
fn make_room(clusters: &mut Vec<Cluster>) -> bool {
    if clusters.len() < MAX_CLUSTERS {
        return true;
    }
    match clusters.iter().position(|c| c.size == 1) {
        Some(i) => {
            clusters.remove(i);
            true
        }
        None => false,
    }
}

/// Put NCR `ncr_id` (its first text or picture reference `exemplar`) in the nearest cluster at
/// `min_closeness` or closer, or in a new one (making room at the cap, or else joining the
/// nearest); the cluster joined.
fn join_cluster<'a>(
    clusters: &'a mut Vec<Cluster>,
    ncr_id: &str,
    exemplar: &str,
    feature: Feature,
    min_closeness: f64,
) -> &'a Cluster {
    let nearest = clusters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.closeness(&feature).map(|s| (i, s)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let index = match nearest {
        Some((i, s)) if s >= min_closeness => i,
        Some((i, _)) if !make_room(clusters) => i,
        _ => {
            let (kind, likeness) = match &feature {
                Feature::Text(_) => ("text", Likeness::Text { sum: HashMap::new(), centroid: Vec::new() }),
                Feature::Image(h) => ("image", Likeness::Image(*h)),
            };
            clusters.push(Cluster {
                label: format!("{kind}:{ncr_id}"),
                exemplar: exemplar.to_string(),
                likeness,
                size: 0,
            });
            clusters.len() - 1
        }
    };
    let c = &mut clusters[index];
    c.size += 1;
    if let (Likeness::Text { sum, centroid }, Feature::Text(x)) = (&mut c.likeness, feature) {
        for (k, v) in x {
            *sum.entry(k).or_default() += v;
        }
        *centroid = normalized(sum.iter().map(|(k, v)| (*k, *v)).collect());
    }
    &clusters[index]
}

/// A coded NCR kept for training and for similar cases.
#[derive(Debug, Clone)]
struct PastNcr {
    event_id: String,
    ncr_id: String,
    station: Option<String>,
    text: String,
    code: String,
}

/// Defect patterns and NCR triage; see the module docs.
#[derive(Debug, Clone)]
pub struct QualityAgent {
    config: QualityConfig,
    stations: HashMap<String, StationWindow>,
    /// Claims already reported, by (station, code, values); cleared when the claim has gone.
    reported: HashSet<(String, String, Vec<Value>)>,
    /// The latest claims per (station, code), for the probable cause of new NCRs.
    claims: HashMap<(String, String), Vec<Claim>>,
    /// Coded NCRs and the code model trained on them.
    learner: Learner<PastNcr>,
    /// Uncoded NCRs without a confident code, clustered by text per station.
    text_clusters: HashMap<String, Vec<Cluster>>,
    /// Uncoded NCRs without a confident code that have an image hash, clustered by it.
    image_clusters: HashMap<String, Vec<Cluster>>,
    /// Dispositions by NCR id (event id, decision, cause), the oldest dropped first.
    dispositions: HashMap<String, (String, Disposition, Option<String>)>,
    disposition_order: VecDeque<String>,
}

impl QualityAgent {
    pub fn new(config: QualityConfig, encoder: Option<std::sync::Arc<crate::encoder::Encoder>>) -> Self {
        QualityAgent {
            stations: HashMap::new(),
            reported: HashSet::new(),
            claims: HashMap::new(),
            learner: Learner::new(config.min_history, config.max_history, 25).with_encoder(encoder),
            dispositions: HashMap::new(),
            disposition_order: VecDeque::new(),
            text_clusters: HashMap::new(),
            image_clusters: HashMap::new(),
            config,
        }
    }

    fn window(&mut self, station: &str) -> &mut StationWindow {
        self.stations.entry(station.to_string()).or_default()
    }

    /// Record a defect of `code` and report new patterns for it.
    fn defect(&mut self, station: &str, vin: &str, code: &str, event_id: &str, out: &mut Vec<FindingDraft>) {
        let config = self.config.clone();
        let Some(w) = self.stations.get_mut(station) else { return };
        if !w.units.contains_key(vin) {
            // The unit was never seen at the station (or has left the window): nothing to compare.
            return;
        }
        let list = w.defects.entry(code.to_string()).or_default();
        // One entry per unit and code: a repeat NCR replaces the event cited.
        match list.iter_mut().find(|(v, _)| v == vin) {
            Some(entry) => entry.1 = event_id.to_string(),
            None => list.push((vin.to_string(), event_id.to_string())),
        }
        let claims = analyse(station, code, w, &config);
        let keys: HashSet<Vec<Value>> = claims.iter().map(|c| c.values.clone()).collect();
        // A claim no longer made may be reported again if it comes back.
        self.reported.retain(|(s, c, v)| !(s == station && c == code) || keys.contains(v));
        for (rank, claim) in claims.iter().filter(|c| c.ambiguous_with.is_empty()).enumerate() {
            let key = (station.to_string(), code.to_string(), claim.values.clone());
            if !self.reported.insert(key) {
                continue;
            }
            let field = |name: &str| claim.values.iter().find(|(f, _)| *f == name).map(|(_, v)| v.clone());
            let narrative = claim.narrative();
            // A cluster is named by its first text or image as well as by its label.
            let exemplar = [&self.text_clusters, &self.image_clusters]
                .iter()
                .filter_map(|by_station| by_station.get(station))
                .flatten()
                .find(|c| c.label == code)
                .map(Cluster::describe);
            let what = match &exemplar {
                Some(e) => format!("{code} (uncoded, like {e})"),
                None => code.to_string(),
            };
            out.push(FindingDraft {
                kind: "defect.pattern".into(),
                verdict: Verdict::Review,
                severity: Severity::Warning,
                confidence: 1.0 - claim.q_value,
                reason: format!(
                    "{} NCRs at {} concentrate on {}: {} of {} units ({:.1}× expected, q = {:.1e})",
                    what,
                    claim.station,
                    Claim::describe_values(&claim.values),
                    claim.hits,
                    claim.defects,
                    claim.lift,
                    claim.q_value
                ),
                subject: Subject {
                    station: Some(station.to_string()),
                    tool: field("tool"),
                    part_number: field("part_number"),
                    ..Subject::default()
                },
                extra_evidence: claim.evidence.iter().filter(|e| e.as_str() != event_id).cloned().collect(),
                details: json!({
                    "code": claim.code,
                    "text_cluster_exemplar": exemplar,
                    "values": claim.values.iter().map(|(f, v)| json!({"field": f, "value": v})).collect::<Vec<_>>(),
                    "hits": claim.hits, "defects": claim.defects, "carriers": claim.carriers, "units": claim.units,
                    "lift": claim.lift, "p_value": claim.p_value, "q_value": claim.q_value,
                    "explains": claim.explains,
                    "rank": rank,
                    "suggestion": claim.suggestion(),
                    "narrative": narrative,
                }),
            });
        }
        if claims.is_empty() {
            self.claims.remove(&(station.to_string(), code.to_string()));
        } else {
            self.claims.insert((station.to_string(), code.to_string()), claims);
        }
    }

    fn triage(&mut self, event: &StoredEvent, ncr: &jidoka_model::event::NcrCreated, out: &mut Vec<FindingDraft>) {
        let event_id = &event.event.event_id;
        let subject = Subject { vin: ncr.vin.clone(), station: ncr.station.clone(), ..Subject::default() };
        let text = match prepare(&ncr.description) {
            Ok((text, _)) => text,
            Err(e) => {
                out.push(FindingDraft {
                    kind: "ncr.triage".into(),
                    verdict: Verdict::Pass,
                    severity: Severity::Info,
                    confidence: 0.0,
                    reason: format!("NCR {} has no code and cannot be triaged: description {}", ncr.ncr_id, e.reason),
                    subject,
                    extra_evidence: Vec::new(),
                    details: json!({"ncr_id": ncr.ncr_id, "suggestions": [], "refused": e.to_string(),
                        "narrative": format!("NCR {} {} has no code and its description cannot be read: {e}.", ncr.ncr_id, cite(event_id))}),
                });
                // Its picture can still place it.
                if ncr.image_hash.is_some() {
                    self.by_cluster(ncr, "", event_id, out);
                }
                return;
            }
        };
        let Some(model) = self.learner.model() else {
            let why = self.learner.why_not();
            out.push(FindingDraft {
                kind: "ncr.triage".into(),
                verdict: Verdict::Pass,
                severity: Severity::Info,
                confidence: 0.0,
                reason: format!("NCR {} has no code; no suggestion: {why}", ncr.ncr_id),
                subject,
                extra_evidence: Vec::new(),
                details: json!({"ncr_id": ncr.ncr_id, "suggestions": [], "insufficient_history": why,
                    "narrative": format!("NCR {} {} has no code; no code is suggested: {why}.", ncr.ncr_id, cite(event_id))}),
            });
            self.by_cluster(ncr, &text, event_id, out);
            return;
        };
        let ctx = context_tokens(ncr.station.as_deref());
        let x = model.vectorizer.transform(&text, &ctx);
        let ranked = model.predict_vector(&x);
        let top: Vec<_> = ranked.iter().take(3).cloned().collect();
        let mut similar = self.learner.nearest(&x, |_| true);
        similar.truncate(self.config.similar);
        // The probable cause: a pattern of the suggested code at this station that this NCR fits.
        let mut causes: Vec<&Claim> = Vec::new();
        if let (Some(best), Some(station), Some(vin)) = (top.first(), &ncr.station, &ncr.vin)
            && let Some(claims) = self.claims.get(&(station.clone(), best.label.clone()))
            && let Some(unit) = self.stations.get(station).and_then(|w| w.units.get(vin))
        {
            causes.extend(claims.iter().filter(|c| c.ambiguous_with.is_empty() && has_all(unit, &c.values)));
        }
        let suggestion_text =
            top.iter().map(|s| format!("{} ({:.2})", s.label, s.confidence)).collect::<Vec<_>>().join(", ");
        let decided = |ncr_id: &str| self.dispositions.get(ncr_id);
        let similar_text = similar
            .iter()
            .map(|(_, p)| {
                let decision = decided(&p.ncr_id)
                    .map(|(ev, d, _)| format!(", {} {}", d.as_str().replace('_', " "), cite(ev)))
                    .unwrap_or_default();
                format!("{} {} \"{}\" {}{decision}", p.ncr_id, p.code, p.text, cite(&p.event_id))
            })
            .collect::<Vec<_>>()
            .join("; ");
        // The likely disposition: the most frequent among the similar NCRs decided so far
        // (ties: the decision of the most similar one).
        let mut tally: BTreeMap<Disposition, (usize, usize, Vec<String>)> = BTreeMap::new();
        for (rank, (_, p)) in similar.iter().enumerate() {
            if let Some((ev, d, _)) = decided(&p.ncr_id) {
                let entry = tally.entry(*d).or_insert((0, rank, Vec::new()));
                entry.0 += 1;
                entry.2.push(ev.clone());
            }
        }
        let likely = tally
            .iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
            .map(|(d, (n, _, evs))| (*d, *n, evs.clone()));
        let decided_count: usize = tally.values().map(|t| t.0).sum();
        let mut narrative = format!(
            "NCR {} {} was raised without a code. From its description and station the model ({} coded NCRs, {} codes) suggests {}.",
            ncr.ncr_id,
            cite(event_id),
            self.learner.trained_on(),
            model.labels.len(),
            suggestion_text
        );
        if !similar.is_empty() {
            narrative.push_str(&format!(" Most similar past NCRs: {similar_text}."));
        }
        if let Some((d, n, evs)) = &likely {
            narrative.push_str(&format!(
                " {n} of the {decided_count} decided similar NCRs were dispositioned {} ({}).",
                d.as_str().replace('_', " "),
                cite_list(evs, 5)
            ));
        }
        if let Some(c) = causes.first() {
            narrative.push_str(&format!(
                " The unit was built with {}, a pattern of {} at this station (q = {:.1e}, NCRs {}).",
                Claim::describe_values(&c.values),
                c.code,
                c.q_value,
                cite_list(&c.evidence, 5)
            ));
        }
        let confidence = top.first().map(|s| s.confidence).unwrap_or(0.0);
        out.push(FindingDraft {
            kind: "ncr.triage".into(),
            verdict: Verdict::Pass,
            severity: Severity::Info,
            confidence,
            reason: format!("NCR {} has no code; suggested {suggestion_text}", ncr.ncr_id),
            subject,
            extra_evidence: similar
                .iter()
                .flat_map(|(_, p)| {
                    std::iter::once(p.event_id.clone()).chain(decided(&p.ncr_id).map(|(ev, _, _)| ev.clone()))
                })
                .collect(),
            details: json!({
                "ncr_id": ncr.ncr_id,
                "suggestions": top,
                "similar": similar.iter().map(|(s, p)| {
                    let decision = decided(&p.ncr_id);
                    json!({
                        "ncr_id": p.ncr_id, "code": p.code, "description": p.text, "station": p.station,
                        "event_id": p.event_id, "similarity": s,
                        "disposition": decision.map(|(_, d, _)| d.as_str()),
                        "disposition_event_id": decision.map(|(ev, _, _)| ev),
                        "cause": decision.and_then(|(_, _, c)| c.as_deref()),
                    })
                }).collect::<Vec<_>>(),
                "likely_disposition": likely.as_ref().map(|(d, n, evs)| json!({
                    "disposition": d.as_str(), "of_similar": n, "decided_similar": decided_count, "evidence": evs,
                })),
                "probable_causes": causes.iter().map(|c| json!({
                    "values": Claim::describe_values(&c.values), "p_value": c.p_value, "q_value": c.q_value,
                    "suggestion": c.suggestion(), "evidence": c.evidence.iter().take(5).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "trained_on": self.learner.trained_on(),
                "narrative": narrative,
            }),
        });
        // A confident suggestion counts for the patterns, so uncoded NCRs are not lost to them;
        // without one, the NCR's text cluster does.
        if let (Some(best), Some(station), Some(vin)) = (top.first(), ncr.station.clone(), ncr.vin.clone())
            && best.confidence >= self.config.use_prediction_at
        {
            let code = best.label.clone();
            self.defect(&station, &vin, &code, event_id, out);
        } else {
            self.by_cluster(ncr, &text, event_id, out);
        }
    }

    /// An NCR without a (confident) code: it joins its station's image cluster when it has an
    /// image hash, else its text cluster; the triage finding just pushed names the cluster, and
    /// the NCR counts as a defect of that cluster for the patterns.
    fn by_cluster(
        &mut self,
        ncr: &jidoka_model::event::NcrCreated,
        text: &str,
        event_id: &str,
        out: &mut Vec<FindingDraft>,
    ) {
        let Some(station) = ncr.station.clone() else { return };
        let hash = ncr.image_hash.as_deref().and_then(jidoka_model::event::parse_image_hash);
        let (clusters, key, feature, exemplar, min_closeness) = match hash {
            Some(h) => (
                self.image_clusters.entry(station.clone()).or_default(),
                "image_cluster",
                Feature::Image(h),
                ncr.image_ref.clone().unwrap_or_else(|| format!("{h:016x}")),
                -f64::from(self.config.image_cluster_bits),
            ),
            None => (
                self.text_clusters.entry(station.clone()).or_default(),
                "text_cluster",
                Feature::Text(crate::text::hashed(text)),
                text.to_string(),
                self.config.text_cluster_similarity,
            ),
        };
        let c = join_cluster(clusters, &ncr.ncr_id, &exemplar, feature, min_closeness);
        let label = c.label.clone();
        if let Some(f) = out.last_mut() {
            f.details[key] = json!({"label": c.label, "exemplar": c.exemplar, "size": c.size});
        }
        if let Some(vin) = &ncr.vin {
            self.defect(&station, vin, &label, event_id, out);
        }
    }
}

fn context_tokens(station: Option<&str>) -> Vec<String> {
    station.map(|s| vec![format!("station={s}")]).unwrap_or_default()
}

impl Agent for QualityAgent {
    fn name(&self) -> &'static str {
        "quality"
    }

    fn version(&self) -> &'static str {
        "1.1.0"
    }

    fn subscriptions(&self) -> &'static [EventKind] {
        &[
            EventKind::UnitEnteredStation,
            EventKind::ComponentScanned,
            EventKind::TighteningResult,
            EventKind::NcrCreated,
            EventKind::NcrDispositioned,
        ]
    }

    fn on_event(&mut self, event: &StoredEvent, out: &mut Vec<FindingDraft>) {
        let window = self.config.window_units;
        match &event.event.payload {
            EventPayload::UnitEnteredStation(u) => {
                let mut ctx: Vec<Value> = Vec::new();
                for (field, value) in [("shift", &u.shift), ("operator", &u.operator), ("fixture", &u.fixture)] {
                    if let Some(v) = value {
                        ctx.push((field, v.clone()));
                    }
                }
                self.window(&u.station).enter(&u.vin, ctx, window);
            }
            EventPayload::ComponentScanned(c) => {
                if let Some(w) = self.stations.get_mut(&c.station) {
                    w.add(&c.vin, ("part_number", c.part_number.clone()));
                    if let Some(lot) = &c.supplier_lot {
                        w.add(&c.vin, ("supplier_lot", lot.clone()));
                    }
                }
            }
            EventPayload::TighteningResult(t) => {
                if let (Some(vin), Some(w)) = (&t.vin, self.stations.get_mut(&t.station)) {
                    w.add(vin, ("tool", t.tool.clone()));
                }
            }
            EventPayload::NcrCreated(ncr) => {
                match ncr.defect_code.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
                    Some(code) => {
                        if let Ok((text, _)) = prepare(&ncr.description) {
                            self.learner.learn(PastNcr {
                                event_id: event.event.event_id.clone(),
                                ncr_id: ncr.ncr_id.clone(),
                                station: ncr.station.clone(),
                                text,
                                code: code.to_string(),
                            });
                        }
                        if let (Some(station), Some(vin)) = (&ncr.station, &ncr.vin) {
                            self.defect(station, vin, code, &event.event.event_id, out);
                        }
                    }
                    None => self.triage(event, ncr, out),
                }
            }
            EventPayload::NcrDispositioned(d) => {
                let bound = self.config.max_history.max(1) * 2;
                let decision = (event.event.event_id.clone(), d.disposition, d.cause.clone());
                // A later decision for the same NCR replaces the earlier one.
                if self.dispositions.insert(d.ncr_id.clone(), decision).is_none() {
                    self.disposition_order.push_back(d.ncr_id.clone());
                }
                while self.disposition_order.len() > bound {
                    if let Some(old) = self.disposition_order.pop_front() {
                        self.dispositions.remove(&old);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(clusters: &mut Vec<Cluster>, ncr: &str, hash: u64, bits: u32) -> (String, usize) {
        let c = join_cluster(clusters, ncr, "x.png", Feature::Image(hash), -f64::from(bits));
        (c.label.clone(), c.size)
    }

    #[test]
    fn a_full_station_drops_its_oldest_single_cluster_instead_of_merging_unrelated_ones() {
        let mut images = Vec::new();
        // Cluster 0 has two NCRs; the rest one each, all far apart.
        image(&mut images, "N0", 0, 10);
        image(&mut images, "N0b", 1, 10);
        for i in 1..MAX_CLUSTERS as u64 {
            image(&mut images, &format!("N{i}"), i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0);
        }
        assert_eq!(images.len(), MAX_CLUSTERS);
        let far = u64::MAX;
        assert_eq!(image(&mut images, "NEW", far, 10), ("image:NEW".to_string(), 1));
        assert_eq!(images.len(), MAX_CLUSTERS);
        assert_eq!(images[0].size, 2, "the cluster of two stays");
        assert!(!images.iter().any(|c| c.label == "image:N1"), "the oldest single one made room");
        // With no single-NCR cluster left, an NCR joins the nearest rather than growing the list.
        for c in &mut images {
            c.size = 2;
        }
        assert_eq!(image(&mut images, "LAST", far ^ 1, 0).0, "image:NEW");
        let mut texts = Vec::new();
        let mut text = |ncr: &str, t: &str| {
            join_cluster(&mut texts, ncr, t, Feature::Text(crate::text::hashed(t)), 0.3).label.clone()
        };
        text("T0", "seat gap left");
        assert_eq!(text("T1", "seat gap left side"), "text:T0");
        assert_eq!(text("T2", "paint run roof"), "text:T2");
    }
}
