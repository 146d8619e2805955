//! A joint's golden batch: the feature vectors of its last N good tightenings, with a robust
//! centre (median) and a scale on each side of it for each feature: the distance from the
//! median to the 10th (90th) percentile over 1.2816, floored. Real features are skewed (a
//! rundown's roughness has a long upper tail and a hard floor), so one symmetric scale would
//! either miss low outliers or flag good curves on the long side. A batch that may hold bad
//! curves (learned from an unlabelled export) uses the quartiles instead, which still hold
//! when up to a quarter of it is bad.
//!
//! A tightening is compared with the batch feature by feature (`z = (x − median) / scale` with
//! the scale of the side it lies on); the
//! anomaly score is the root mean square of its three largest |z|, so one wild feature or a few
//! moderately wrong ones both count, while the noise of the remaining features does not dilute
//! them. Medians and percentiles tolerate the odd bad curve that slips into the batch at cold start.

use super::features::{Features, PROFILE_POINTS, SCALAR_NAMES, VECTOR_LEN};
use serde::Serialize;
use std::collections::VecDeque;

/// Largest |z| reported; beyond this the number says nothing more.
pub const Z_CAP: f64 = 1000.0;

#[derive(Debug, Clone)]
pub struct GoldenBatch {
    capacity: usize,
    members: VecDeque<[f64; VECTOR_LEN]>,
    centre: [f64; VECTOR_LEN],
    low: [f64; VECTOR_LEN],
    high: [f64; VECTOR_LEN],
    stale: bool,
    pushed_since_refresh: usize,
    contaminated: bool,
}

/// Once a batch is full, its statistics are refreshed every this many new members: a batch of
/// 50 moves little with each, and sorting 27 columns per curve would cost more than all the
/// rest of the audit.
const REFRESH_EVERY: usize = 10;

/// How one tightening compares with its golden batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub anomaly_score: f64,
    /// `(feature name, value, golden median, z)` of the largest deviations, largest first.
    pub top: Vec<(&'static str, f64, f64, f64)>,
    #[serde(skip)]
    pub z: [f64; VECTOR_LEN],
}

const PROFILE_NAMES: [&str; PROFILE_POINTS] = [
    "profile at 3% of the angle",
    "profile at 9% of the angle",
    "profile at 16% of the angle",
    "profile at 22% of the angle",
    "profile at 28% of the angle",
    "profile at 34% of the angle",
    "profile at 41% of the angle",
    "profile at 47% of the angle",
    "profile at 53% of the angle",
    "profile at 59% of the angle",
    "profile at 66% of the angle",
    "profile at 72% of the angle",
    "profile at 78% of the angle",
    "profile at 84% of the angle",
    "profile at 91% of the angle",
    "profile at 97% of the angle",
];

/// Name of element `j` of a feature vector.
pub fn feature_name(j: usize) -> &'static str {
    SCALAR_NAMES.get(j).or_else(|| PROFILE_NAMES.get(j - SCALAR_NAMES.len())).copied().unwrap_or("feature")
}

impl GoldenBatch {
    pub fn new(capacity: usize) -> GoldenBatch {
        GoldenBatch {
            capacity: capacity.max(1),
            members: VecDeque::with_capacity(capacity.clamp(1, 64)),
            centre: [0.0; VECTOR_LEN],
            low: [1.0; VECTOR_LEN],
            high: [1.0; VECTOR_LEN],
            stale: true,
            pushed_since_refresh: 0,
            contaminated: false,
        }
    }

    /// A batch that may contain bad curves: scales from the quartiles.
    pub fn contaminated(capacity: usize) -> GoldenBatch {
        GoldenBatch { contaminated: true, ..GoldenBatch::new(capacity) }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Add a good tightening; the oldest leaves when the batch is full.
    pub fn push(&mut self, features: &Features) {
        if self.members.len() == self.capacity {
            self.members.pop_front();
        }
        self.members.push_back(features.vector());
        self.pushed_since_refresh += 1;
        if self.members.len() < self.capacity || self.pushed_since_refresh >= REFRESH_EVERY {
            self.stale = true;
        }
    }

    fn refresh(&mut self) {
        if !self.stale || self.members.is_empty() {
            return;
        }
        let mut column = Vec::with_capacity(self.members.len());
        for j in 0..VECTOR_LEN {
            column.clear();
            column.extend(self.members.iter().map(|m| m[j]));
            column.sort_unstable_by(f64::total_cmp);
            let centre = quantile(&column, 0.5);
            self.centre[j] = centre;
            let least = floor(j, centre, self.centre[0]);
            let (q, z) = if self.contaminated { (0.25, 0.6745) } else { (0.1, 1.2816) };
            self.low[j] = ((centre - quantile(&column, q)) / z).max(least);
            self.high[j] = ((quantile(&column, 1.0 - q) - centre) / z).max(least);
        }
        self.stale = false;
        self.pushed_since_refresh = 0;
    }

    /// Robust centre of each feature (vector order).
    pub fn centre(&mut self) -> &[f64; VECTOR_LEN] {
        self.refresh();
        &self.centre
    }

    /// Compare `features` with the batch. Meaningless on an empty batch (all z are 0).
    pub fn compare(&mut self, features: &Features) -> Comparison {
        self.refresh();
        let x = features.vector();
        let mut z = [0.0; VECTOR_LEN];
        if !self.members.is_empty() {
            for j in 0..VECTOR_LEN {
                let d = x[j] - self.centre[j];
                let v = d / if d < 0.0 { self.low[j] } else { self.high[j] };
                z[j] = if v.is_finite() {
                    v.clamp(-Z_CAP, Z_CAP)
                } else if d.is_nan() {
                    0.0
                } else {
                    Z_CAP.copysign(d)
                };
            }
        }
        // The three largest |z|, without sorting all of them.
        let mut order = [usize::MAX; 3];
        for j in 0..VECTOR_LEN {
            let mut item = j;
            for slot in order.iter_mut() {
                if *slot == usize::MAX || z[item].abs() > z[*slot].abs() {
                    std::mem::swap(slot, &mut item);
                    if item == usize::MAX {
                        break;
                    }
                }
            }
        }
        let top3: f64 = order.iter().map(|&j| z[j] * z[j]).sum::<f64>() / 3.0;
        let top = order
            .iter()
            .filter(|&&j| z[j].abs() >= 1.0)
            .map(|&j| (feature_name(j), round(x[j]), round(self.centre[j]), round(z[j])))
            .collect();
        Comparison { anomaly_score: round(top3.sqrt()), top, z }
    }

    /// The golden envelope for plotting: `(angle, low, high)` at the profile points, in N·m and
    /// degrees from the start of the rundown, at the batch's median peak and angle.
    pub fn envelope(&mut self, width: f64) -> Vec<(f64, f64, f64)> {
        self.refresh();
        let (peak, angle) = (self.centre[0], self.centre[2]);
        (0..PROFILE_POINTS)
            .map(|k| {
                let j = SCALAR_NAMES.len() + k;
                let at = angle * (k as f64 + 0.5) / PROFILE_POINTS as f64;
                (at, (self.centre[j] - width * self.low[j]) * peak, (self.centre[j] + width * self.high[j]) * peak)
            })
            .collect()
    }
}

/// The least scale a feature may have: a batch of identical curves must not turn every speck
/// of noise into a huge z. Torques floor at 0.5 % of the batch's peak, angles at 0.5°, ratios
/// at 0.01; and every feature at 2 % of its own median.
fn floor(j: usize, centre: f64, peak: f64) -> f64 {
    let absolute = match j {
        0 | 1 => 0.005 * peak.abs(),
        2..=4 | 8 => 0.5,
        5 => 1e-9,
        _ => 0.01,
    };
    (0.02 * centre.abs()).max(absolute).max(1e-9)
}

/// Quantile `q` of sorted, non-empty `v`, interpolated.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    match v.get(i + 1) {
        Some(next) => v[i] + (next - v[i]) * frac,
        None => v[v.len() - 1],
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
