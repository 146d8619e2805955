//! Tool drift: a two-sided CUSUM on one standardised quantity (a tool's final torque as a
//! fraction of target, or its gradient as a fraction of the joint's golden gradient), with an
//! EWMA for the size of the shift and the Western Electric rules as supporting evidence.
//!
//! The in-control mean and standard deviation are learned from the first `baseline` values,
//! leaving out those more than 5 MADs from their median, so one wild value among them cannot
//! blind the chart.
//! The CUSUM alarms when either side exceeds `h` standard deviations with allowance `k`; with the
//! defaults (k = 1, h = 8, a baseline of 100) the in-control run length is in the millions of samples for normal
//! noise, and a shift of 2.5 σ (5 % of target on a tool of 2 % precision) is caught in about six
//! samples. The Western Electric rules alone would alarm every few hundred in-control samples,
//! so they only describe an episode, never open one.
//!
//! One alarm opens an episode; it closes when the EWMA has stayed within one standard deviation
//! of the baseline for `rearm` samples, and only then can the next alarm be raised. A
//! calibration or corrective maintenance record for the tool starts its charts afresh.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Values learned before the chart is armed.
    #[serde(default = "baseline")]
    pub baseline: usize,
    /// CUSUM allowance, in standard deviations.
    #[serde(default = "k")]
    pub k: f64,
    /// CUSUM decision interval, in standard deviations.
    #[serde(default = "h")]
    pub h: f64,
    /// Least standard deviation, as a fraction of the mean (a perfect baseline is not a licence
    /// to alarm on the fourth decimal).
    #[serde(default = "min_sigma")]
    pub min_sigma: f64,
    /// In-control samples (EWMA within one σ) that close an episode.
    #[serde(default = "rearm")]
    pub rearm: usize,
}

fn yes() -> bool {
    true
}
fn baseline() -> usize {
    100
}
fn k() -> f64 {
    1.0
}
fn h() -> f64 {
    8.0
}
fn min_sigma() -> f64 {
    0.004
}
fn rearm() -> usize {
    50
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig { enabled: true, baseline: baseline(), k: k(), h: h(), min_sigma: min_sigma(), rearm: rearm() }
    }
}

impl DriftConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.baseline < 10 {
            errors.push((format!("{path}.baseline"), "must be at least 10 samples".into()));
        }
        if !(self.k.is_finite() && self.k >= 0.0) {
            errors.push((format!("{path}.k"), "must be a non-negative number".into()));
        }
        if !(self.h.is_finite() && self.h > 0.0) {
            errors.push((format!("{path}.h"), "must be a positive number".into()));
        }
        if !(self.min_sigma.is_finite() && self.min_sigma > 0.0) {
            errors.push((format!("{path}.min_sigma"), "must be a positive number".into()));
        }
    }
}

/// What a chart reports when it alarms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    /// Shift estimated by the EWMA, as a fraction of the baseline mean.
    pub shift: f64,
    pub cusum: f64,
    pub baseline_mean: f64,
    pub baseline_sigma: f64,
    /// Samples since the CUSUM last stood at zero: where the drift began.
    pub samples_since_onset: u64,
    /// Western Electric rules broken within the last 20 samples.
    pub rules: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    learning: Vec<f64>,
    mean: f64,
    sigma: f64,
    up: f64,
    down: f64,
    ewma: f64,
    since_zero: u64,
    in_episode: bool,
    calm: usize,
    recent: VecDeque<f64>,
    pub samples: u64,
}

impl Chart {
    pub fn new() -> Chart {
        Chart {
            learning: Vec::new(),
            mean: 0.0,
            sigma: 0.0,
            up: 0.0,
            down: 0.0,
            ewma: 0.0,
            since_zero: 0,
            in_episode: false,
            calm: 0,
            recent: VecDeque::with_capacity(20),
            samples: 0,
        }
    }

    pub fn armed(&self) -> bool {
        self.sigma > 0.0
    }

    pub fn in_episode(&self) -> bool {
        self.in_episode
    }

    /// The baseline mean and standard deviation, once learned.
    pub fn baseline(&self) -> Option<(f64, f64)> {
        self.armed().then_some((self.mean, self.sigma))
    }

    /// Feed one value; an alarm when a new episode opens.
    pub fn push(&mut self, x: f64, config: &DriftConfig) -> Option<Alarm> {
        if !x.is_finite() {
            return None;
        }
        self.samples += 1;
        if !self.armed() {
            self.learning.push(x);
            if self.learning.len() >= config.baseline.max(2) {
                // Mean and standard deviation of the values within 5 MADs of the median: as
                // efficient as the plain ones on clean data, and one wild value among the
                // baseline cannot blind the chart.
                let mut v = std::mem::take(&mut self.learning);
                v.sort_unstable_by(f64::total_cmp);
                let median = v[v.len() / 2];
                let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
                dev.sort_unstable_by(f64::total_cmp);
                let reach = 5.0 * (1.4826 * dev[dev.len() / 2]).max(config.min_sigma * median.abs()).max(1e-12);
                let kept: Vec<f64> = v.into_iter().filter(|x| (x - median).abs() <= reach).collect();
                let n = kept.len().max(2) as f64;
                let mean = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
                let sigma = (kept.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                self.mean = mean;
                self.sigma = sigma.max(config.min_sigma * mean.abs()).max(1e-12);
            }
            return None;
        }
        let z = (x - self.mean) / self.sigma;
        if !z.is_finite() {
            return None;
        }
        if self.recent.len() == 20 {
            self.recent.pop_front();
        }
        self.recent.push_back(z);
        self.ewma = 0.2 * z + 0.8 * self.ewma;
        self.up = (self.up + z - config.k).max(0.0);
        self.down = (self.down - z - config.k).max(0.0);
        if self.up == 0.0 && self.down == 0.0 {
            self.since_zero = 0;
        } else {
            self.since_zero += 1;
        }
        if self.in_episode {
            if self.ewma.abs() <= 1.0 {
                self.calm += 1;
                if self.calm >= config.rearm {
                    self.in_episode = false;
                    self.up = 0.0;
                    self.down = 0.0;
                }
            } else {
                self.calm = 0;
            }
            return None;
        }
        let cusum = self.up.max(self.down);
        if cusum <= config.h {
            return None;
        }
        self.in_episode = true;
        self.calm = 0;
        let alarm = Alarm {
            shift: self.ewma * self.sigma / self.mean.abs().max(1e-12),
            cusum: (cusum * 100.0).round() / 100.0,
            baseline_mean: self.mean,
            baseline_sigma: self.sigma,
            samples_since_onset: self.since_zero,
            rules: western_electric(&self.recent),
        };
        self.up = 0.0;
        self.down = 0.0;
        Some(alarm)
    }
}

impl Default for Chart {
    fn default() -> Self {
        Chart::new()
    }
}

/// Which Western Electric rules the standardised values `z` (oldest first) break at their end.
pub fn western_electric(z: &VecDeque<f64>) -> Vec<&'static str> {
    let mut broken = Vec::new();
    let last = |n: usize| z.iter().rev().take(n).copied().collect::<Vec<f64>>();
    if last(1).iter().any(|v| v.abs() > 3.0) {
        broken.push("1: a point beyond 3σ");
    }
    let side = |vals: &[f64], limit: f64, need: usize| {
        vals.iter().filter(|v| **v > limit).count() >= need || vals.iter().filter(|v| **v < -limit).count() >= need
    };
    if z.len() >= 3 && side(&last(3), 2.0, 2) {
        broken.push("2: two of three beyond 2σ on one side");
    }
    if z.len() >= 5 && side(&last(5), 1.0, 4) {
        broken.push("3: four of five beyond 1σ on one side");
    }
    if z.len() >= 8 && side(&last(8), 0.0, 8) {
        broken.push("4: eight in a row on one side");
    }
    broken
}

/// Process capability of `values` against `[lo, hi]`: `(Cp, Cpk)`.
pub fn capability(values: impl Iterator<Item = f64>, lo: f64, hi: f64) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.len() < 10 || hi <= lo {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    if sd <= 0.0 {
        return None;
    }
    let cp = (hi - lo) / (6.0 * sd);
    let cpk = (hi - mean).min(mean - lo) / (3.0 * sd);
    Some(((cp * 100.0).round() / 100.0, (cpk * 100.0).round() / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic normal-ish sequence (sum of 12 uniforms from an LCG).
    fn noise(state: &mut u64) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s += (*state >> 11) as f64 / (1u64 << 53) as f64;
        }
        s - 6.0
    }

    #[test]
    fn in_control_is_quiet_and_a_step_is_caught_fast() {
        let config = DriftConfig::default();
        let mut alarms = 0;
        // Ten tools, each with its own baseline error, 50,000 in-control samples each.
        for seed in 0..10 {
            let mut chart = Chart::new();
            let mut state = seed;
            for _ in 0..50_000 {
                if chart.push(1.0 + 0.02 * noise(&mut state), &config).is_some() {
                    alarms += 1;
                }
            }
        }
        assert!(alarms <= 5, "{alarms} false alarms in 500,000 in-control samples");
        let mut chart = Chart::new();
        let mut state = 7;
        for _ in 0..1000 {
            chart.push(1.0 + 0.02 * noise(&mut state), &config);
        }
        let mut delay = None;
        for i in 1..=200 {
            if let Some(alarm) = chart.push(1.05 + 0.02 * noise(&mut state), &config) {
                assert!(alarm.shift > 0.02, "{alarm:?}");
                delay = Some(i);
                break;
            }
        }
        let delay = delay.expect("a 5 % step was never caught");
        assert!(delay <= 30, "caught after {delay} samples");
        // One episode, one alarm.
        for _ in 0..500 {
            assert!(chart.push(1.05 + 0.02 * noise(&mut state), &config).is_none());
        }
    }

    #[test]
    fn one_wild_value_in_the_baseline_does_not_blind_the_chart() {
        let config = DriftConfig::default();
        let mut chart = Chart::new();
        let mut state = 3;
        chart.push(1e7, &config);
        for _ in 0..999 {
            assert!(chart.push(1.0 + 0.02 * noise(&mut state), &config).is_none());
        }
        let caught = (1..=30).find(|_| chart.push(1.05 + 0.02 * noise(&mut state), &config).is_some());
        assert!(caught.is_some(), "a 5 % step after a wild baseline value was not caught");
        // Non-finite input is ignored, never poisons the chart.
        assert!(chart.push(f64::INFINITY, &config).is_none());
    }

    #[test]
    fn capability_of_a_centred_process() {
        let values = (0..100).map(|i| if i % 2 == 0 { 9.0 } else { 11.0 });
        let (cp, cpk) = capability(values, 4.0, 16.0).unwrap();
        assert!((cp - 1.99).abs() < 0.02, "{cp}");
        assert_eq!(cp, cpk);
    }
}
