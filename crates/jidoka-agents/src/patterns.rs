//! Defect patterns: which context values (station, shift, tool, fixture, operator, supplier
//! lot, ...) are over-represented among the defects of one code.
//!
//! For a code with `n` defects out of `N` in the window, and a context value carried by `K` of
//! the `N`, the number `k` of the code's defects carrying it is hypergeometric under "no
//! association"; the p-value is the upper tail `P(X >= k)`. Every (code, field, value) tested
//! is corrected together with Benjamini-Hochberg, so a claim "over-represented at q < 0.01"
//! holds for the whole table, not for the one row a reader looks at.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One defect with its context: `context` holds (field, value) pairs, e.g. `("shift", "B")`.
#[derive(Debug, Clone, PartialEq)]
pub struct Defect {
    pub code: String,
    pub context: Vec<(&'static str, String)>,
    /// The event it came from, cited by every claim it supports.
    pub event_id: String,
}

/// A Pareto bar: a code and how many defects carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParetoBar {
    pub code: String,
    pub count: u64,
    pub share: f64,
    pub cumulative_share: f64,
}

/// An over-represented context value among one code's defects.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Association {
    pub code: String,
    pub field: &'static str,
    pub value: String,
    /// Defects of this code with this value / defects of this code.
    pub hits: u64,
    pub code_total: u64,
    /// Defects of any code with this value / all defects.
    pub value_total: u64,
    pub total: u64,
    /// Observed share over expected share.
    pub lift: f64,
    /// Hypergeometric upper tail.
    pub p_value: f64,
    /// Benjamini-Hochberg adjusted p-value over every test in the table.
    pub q_value: f64,
    /// Up to 20 defects behind the claim.
    pub evidence: Vec<String>,
}

/// What to test: a code needs `min_code` defects, a value `min_hits` of them, before it is tested
/// (smaller cells cannot reach significance and only dilute the correction).
#[derive(Debug, Clone, Copy)]
pub struct PatternConfig {
    pub min_code: u64,
    pub min_hits: u64,
    /// Report associations with q below this.
    pub alpha: f64,
}

impl Default for PatternConfig {
    fn default() -> Self {
        PatternConfig { min_code: 5, min_hits: 3, alpha: 0.01 }
    }
}

/// The Pareto of codes, most frequent first (ties by code).
pub fn pareto(defects: &[Defect]) -> Vec<ParetoBar> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for d in defects {
        *counts.entry(d.code.as_str()).or_default() += 1;
    }
    let total = defects.len().max(1) as f64;
    let mut bars: Vec<(&str, u64)> = counts.into_iter().collect();
    bars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut cumulative = 0;
    bars.into_iter()
        .map(|(code, count)| {
            cumulative += count;
            ParetoBar {
                code: code.to_string(),
                count,
                share: count as f64 / total,
                cumulative_share: cumulative as f64 / total,
            }
        })
        .collect()
}

/// Over-represented context values, strongest evidence first, with q < `config.alpha`.
pub fn associations(defects: &[Defect], config: &PatternConfig) -> Vec<Association> {
    let total = defects.len() as u64;
    let mut code_totals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut value_totals: HashMap<(&str, &str), u64> = HashMap::new();
    let mut cells: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for d in defects {
        *code_totals.entry(d.code.as_str()).or_default() += 1;
        for (field, value) in &d.context {
            *value_totals.entry((field, value.as_str())).or_default() += 1;
            cells.entry((d.code.as_str(), field, value.as_str())).or_default().push(d.event_id.as_str());
        }
    }
    let mut tests: Vec<Association> = Vec::new();
    for ((code, field, value), events) in &cells {
        let n = code_totals[code];
        let k = events.len() as u64;
        let big_k = value_totals[&(*field, *value)];
        if n < config.min_code || k < config.min_hits || big_k == total {
            continue;
        }
        let expected = n as f64 * big_k as f64 / total as f64;
        tests.push(Association {
            code: code.to_string(),
            field,
            value: value.to_string(),
            hits: k,
            code_total: n,
            value_total: big_k,
            total,
            lift: k as f64 / expected.max(f64::MIN_POSITIVE),
            p_value: hypergeometric_upper_tail(total, big_k, n, k),
            q_value: 1.0,
            evidence: events.iter().rev().take(20).map(|e| e.to_string()).collect(),
        });
    }
    benjamini_hochberg(&mut tests);
    tests.retain(|t| t.q_value < config.alpha && t.lift > 1.0);
    tests.sort_by(|a, b| a.p_value.total_cmp(&b.p_value).then(b.lift.total_cmp(&a.lift)));
    tests
}

/// Adjust every test's p-value (in place) for the false discovery rate.
fn benjamini_hochberg(tests: &mut [Association]) {
    let p: Vec<f64> = tests.iter().map(|t| t.p_value).collect();
    for (t, q) in tests.iter_mut().zip(bh_adjust(&p)) {
        t.q_value = q;
    }
}

/// Benjamini-Hochberg adjusted p-values (q-values), in the order of `p`.
pub fn bh_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut q = vec![1.0; p.len()];
    let mut running = 1.0f64;
    for (i, &idx) in order.iter().enumerate() {
        let rank = m - i as f64;
        running = running.min(p[idx] * m / rank);
        q[idx] = running.min(1.0);
    }
    q
}

/// `P(X >= k)` for X hypergeometric: `draws` from `population` holding `successes`.
pub fn hypergeometric_upper_tail(population: u64, successes: u64, draws: u64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let hi = successes.min(draws);
    let lo = draws.saturating_sub(population - successes.min(population));
    if k > hi {
        return 0.0;
    }
    let denom = ln_choose(population, draws);
    let mut total = 0.0;
    for x in k.max(lo)..=hi {
        total += (ln_choose(successes, x) + ln_choose(population - successes, draws - x) - denom).exp();
    }
    total.clamp(0.0, 1.0)
}

fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

fn ln_factorial(n: u64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    ln_gamma(n as f64 + 1.0)
}

/// Lanczos approximation (g = 7, nine coefficients): relative error below 1e-13 for x >= 1.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defect(code: &str, shift: &str, lot: &str, i: usize) -> Defect {
        Defect {
            code: code.into(),
            context: vec![("shift", shift.into()), ("supplier_lot", lot.into())],
            event_id: format!("ev-{i}"),
        }
    }

    #[test]
    fn hypergeometric_tail_matches_exact_small_cases() {
        // 10 balls, 4 red, draw 3: P(X >= 2) = (C(4,2)C(6,1) + C(4,3)) / C(10,3) = (36 + 4) / 120.
        assert!((hypergeometric_upper_tail(10, 4, 3, 2) - 40.0 / 120.0).abs() < 1e-12);
        assert!((hypergeometric_upper_tail(10, 4, 3, 1) - (1.0 - 20.0 / 120.0)).abs() < 1e-12);
        assert_eq!(hypergeometric_upper_tail(10, 4, 3, 4), 0.0);
        assert_eq!(hypergeometric_upper_tail(10, 4, 3, 0), 1.0);
        // ln Γ against exact factorials.
        assert!((ln_factorial(20) - 2_432_902_008_176_640_000f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn a_lot_behind_one_code_is_found_and_noise_is_not() {
        let mut defects = Vec::new();
        // 300 background defects spread evenly over codes, shifts and lots.
        for i in 0..300 {
            let code = ["D1", "D2", "D3"][i % 3];
            defects.push(defect(code, ["A", "B", "C"][(i / 3) % 3], &format!("L{}", i % 10), i));
        }
        // 25 D2 defects from lot L7 on any shift.
        for i in 0..25 {
            defects.push(defect("D2", ["A", "B", "C"][i % 3], "L7", 1000 + i));
        }
        let found = associations(&defects, &PatternConfig::default());
        assert_eq!(
            found.first().map(|a| (a.code.as_str(), a.field, a.value.as_str())),
            Some(("D2", "supplier_lot", "L7"))
        );
        assert!(found.iter().all(|a| a.value == "L7"), "{found:?}");
        // Background: 30 defects from L7, 10 of them D2; with the 25 added, 35 of D2's 125
        // against 55 of 325 overall.
        let a = &found[0];
        assert_eq!((a.hits, a.code_total, a.value_total, a.total), (35, 125, 55, 325));
        assert!((a.lift - (35.0 / 125.0) / (55.0 / 325.0)).abs() < 1e-12);
        assert!(a.q_value < 0.01 && a.p_value < a.q_value, "{a:?}");
        assert_eq!(found[0].evidence.len(), 20);
        let bars = pareto(&defects);
        assert_eq!(bars[0].code, "D2");
        assert_eq!(bars[0].count, 125);
        assert!((bars.last().map(|b| b.cumulative_share).unwrap_or(0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn benjamini_hochberg_is_monotone_and_bounded() {
        let mut tests: Vec<Association> = [0.001, 0.04, 0.03, 0.5, 0.0001]
            .iter()
            .map(|&p| Association {
                code: "c".into(),
                field: "f",
                value: "v".into(),
                hits: 1,
                code_total: 1,
                value_total: 1,
                total: 1,
                lift: 1.0,
                p_value: p,
                q_value: 1.0,
                evidence: Vec::new(),
            })
            .collect();
        benjamini_hochberg(&mut tests);
        let q: Vec<f64> = tests.iter().map(|t| t.q_value).collect();
        // Sorted p: 0.0001, 0.001, 0.03, 0.04, 0.5 → q: 0.0005, 0.0025, 0.05, 0.05, 0.5.
        let want = [0.0025, 0.05, 0.05, 0.5, 0.0005];
        for (got, want) in q.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
    }
}
