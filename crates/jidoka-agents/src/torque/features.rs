//! Features of one torque–angle curve, robust to noise, uneven sampling, unloosening segments,
//! loosening (negative torque) exports and curves of any length.
//!
//! The curve is read in its working direction: if the torque is mostly negative (an unfastening
//! export) it is mirrored. Angles are read as *progress*, the running maximum of the angle turned
//! since the first sample, so a tool that backs off and re-engages does not count the same
//! degrees twice and a non-monotonic angle never breaks a feature.
//!
//! With `peak` the highest torque and `prevailing` the median torque over the rundown (10 % to
//! 50 % of the progress to the peak), `rise = peak − prevailing`:
//! - snug point: the last sample before the peak still below `prevailing + 0.15·rise`; from there
//!   the joint is tightening;
//! - elastic gradient: least-squares slope of torque on angle over the samples between 30 % and
//!   80 % of the rise (before the peak), the secant when there are fewer than three;
//! - yield ratio: the slope over the last 20 % of the rise over the elastic gradient (1 for a
//!   linear joint, near 0 or negative when the joint yields before shut-off);
//! - roughness: RMS of the residuals of that fit, over the rise (cross-thread and galling are
//!   rough, a clean joint is not);
//! - after the peak: the angle still turned and how far the torque fell meanwhile (a thread
//!   that strips collapses while the tool turns on; a normal shut-off releases in place);
//! - profile: torque / peak at 16 evenly spaced fractions of the progress to the peak.

use jidoka_model::Curve;
use serde::Serialize;

/// Points of the normalised profile.
pub const PROFILE_POINTS: usize = 16;

/// A curve the features cannot be computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for CurveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Features {
    pub samples: usize,
    /// +1 tightening, −1 loosening (the torque was mirrored).
    pub direction: f64,
    pub duration_s: f64,
    pub peak_torque_nm: f64,
    /// Torque at the last sample, as a fraction of the peak.
    pub end_torque_ratio: f64,
    pub prevailing_nm: f64,
    /// Progress angle at the peak.
    pub angle_to_peak_deg: f64,
    /// Progress angle at the snug point.
    pub snug_angle_deg: f64,
    /// Angle from snug to peak.
    pub rise_angle_deg: f64,
    pub gradient_nm_per_deg: f64,
    pub yield_ratio: f64,
    pub roughness: f64,
    /// Angle turned after the peak.
    pub after_peak_deg: f64,
    /// Largest fall of the torque below the peak while the tool still turned forward, as a
    /// fraction of the peak.
    pub collapse: f64,
    /// Samples where the angle went backwards by more than a tenth of a degree.
    pub reversals: usize,
    pub profile: [f64; PROFILE_POINTS],
}

/// Names of the scalar features compared with a golden batch, in [`Features::vector`] order.
pub const SCALAR_NAMES: [&str; 11] = [
    "peak torque",
    "prevailing torque",
    "angle to peak",
    "snug angle",
    "rise angle",
    "gradient",
    "yield ratio",
    "roughness",
    "angle after peak",
    "collapse",
    "end torque",
];

/// Length of [`Features::vector`].
pub const VECTOR_LEN: usize = SCALAR_NAMES.len() + PROFILE_POINTS;

impl Features {
    /// The scalar features then the profile, as compared with a golden batch.
    pub fn vector(&self) -> [f64; VECTOR_LEN] {
        let mut v = [0.0; VECTOR_LEN];
        let scalars = [
            self.peak_torque_nm,
            self.prevailing_nm,
            self.angle_to_peak_deg,
            self.snug_angle_deg,
            self.rise_angle_deg,
            self.gradient_nm_per_deg,
            self.yield_ratio,
            self.roughness,
            self.after_peak_deg,
            self.collapse,
            self.end_torque_ratio,
        ];
        v[..scalars.len()].copy_from_slice(&scalars);
        v[scalars.len()..].copy_from_slice(&self.profile);
        v
    }
}

fn bad(field: &str, reason: impl Into<String>) -> CurveError {
    CurveError { field: field.to_string(), reason: reason.into() }
}

/// Compute the features of `curve`. Errors name the field and the reason; nothing here panics
/// on any input.
pub fn extract(curve: &Curve) -> Result<Features, CurveError> {
    let n = curve.torque_nm.len();
    if n < 2 {
        return Err(bad("curve.torque_nm", format!("needs at least 2 samples, has {n}")));
    }
    if curve.angle_deg.len() != n {
        return Err(bad("curve.angle_deg", format!("has {} samples but torque_nm has {n}", curve.angle_deg.len())));
    }
    if !curve.time_s.is_empty() && curve.time_s.len() != n {
        return Err(bad("curve.time_s", format!("has {} samples but torque_nm has {n}", curve.time_s.len())));
    }
    for (field, values) in [("curve.torque_nm", &curve.torque_nm), ("curve.angle_deg", &curve.angle_deg)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(&format!("{field}[{i}]"), "not a finite number"));
        }
    }
    if let Some(i) = curve.time_s.iter().position(|v| !v.is_finite()) {
        return Err(bad(&format!("curve.time_s[{i}]"), "not a finite number"));
    }

    // Working direction: mirror a loosening export.
    let (max_t, min_t) = curve.torque_nm.iter().fold((f64::MIN, f64::MAX), |(hi, lo), &t| (hi.max(t), lo.min(t)));
    let direction = if -min_t > max_t { -1.0 } else { 1.0 };
    let torque: Vec<f64> = curve.torque_nm.iter().map(|t| t * direction).collect();
    // Angle sign: the angle runs forward whichever way the export counts it.
    let a0 = curve.angle_deg[0];
    let a_sign = if curve.angle_deg[n - 1] < a0 { -1.0 } else { 1.0 };
    let mut reversals = 0;
    let mut progress = Vec::with_capacity(n);
    let mut best = 0.0f64;
    let mut prev_raw = 0.0f64;
    for &a in &curve.angle_deg {
        let raw = (a - a0) * a_sign;
        if raw < prev_raw - 0.1 {
            reversals += 1;
        }
        prev_raw = raw;
        best = best.max(raw);
        progress.push(best);
    }

    let peak_idx = torque.iter().enumerate().fold(0, |b, (i, &t)| if t > torque[b] { i } else { b });
    let peak = torque[peak_idx];
    let angle_to_peak = progress[peak_idx];
    let duration_s = match (curve.time_s.first(), curve.time_s.last()) {
        (Some(a), Some(b)) => (b - a).abs(),
        _ => 0.0,
    };

    // Prevailing torque: median over the rundown (10–50 % of the progress to the peak).
    let mut rundown: Vec<f64> = (0..=peak_idx)
        .filter(|&i| progress[i] >= 0.1 * angle_to_peak && progress[i] <= 0.5 * angle_to_peak)
        .map(|i| torque[i])
        .collect();
    let prevailing = if rundown.is_empty() { torque[0].min(peak) } else { median(&mut rundown) };
    let rise = (peak - prevailing).max(0.0);

    // Snug: the last sample before the peak still below 15 % of the rise.
    let snug_level = prevailing + 0.15 * rise;
    let snug_idx = (0..peak_idx).rev().find(|&i| torque[i] < snug_level).unwrap_or(0);
    let snug_angle = progress[snug_idx];
    let rise_angle = (angle_to_peak - snug_angle).max(0.0);

    // Elastic gradient over 30–80 % of the rise; yield over the last 20 %.
    let (lo, hi) = (prevailing + 0.3 * rise, prevailing + 0.8 * rise);
    let elastic = fit((snug_idx..=peak_idx).filter(|&i| torque[i] >= lo && torque[i] <= hi), &progress, &torque);
    let secant = if rise_angle > 1e-9 { rise / rise_angle } else { 0.0 };
    let (gradient, roughness) = match elastic {
        Some((slope, rms)) if slope.is_finite() => (slope, if rise > 1e-12 { rms / rise } else { 0.0 }),
        _ => (secant, 0.0),
    };
    let late = fit((snug_idx..=peak_idx).filter(|&i| torque[i] > hi), &progress, &torque);
    let yield_ratio = match late {
        Some((slope, _)) if gradient.abs() > 1e-12 && slope.is_finite() => (slope / gradient).clamp(-5.0, 5.0),
        _ => 1.0,
    };

    // After the peak: the angle still turned and how far the torque fell while turning.
    let after_peak = (progress[n - 1] - angle_to_peak).max(0.0);
    let mut collapse = 0.0f64;
    if peak > 1e-12 {
        for i in peak_idx + 1..n {
            // Only samples where the tool still advanced count: a release happens in place.
            if progress[i] > angle_to_peak + 0.5 && progress[i] > progress[i - 1] {
                collapse = collapse.max((peak - torque[i]) / peak);
            }
        }
    }
    let end_torque_ratio = if peak.abs() > 1e-12 { torque[n - 1] / peak } else { 0.0 };

    let mut profile = [0.0; PROFILE_POINTS];
    if angle_to_peak > 1e-9 && peak.abs() > 1e-12 {
        let mut j = 0;
        for (k, slot) in profile.iter_mut().enumerate() {
            let at = angle_to_peak * (k as f64 + 0.5) / PROFILE_POINTS as f64;
            while j + 1 < peak_idx && progress[j + 1] < at {
                j += 1;
            }
            let (a1, a2) = (progress[j], progress[(j + 1).min(peak_idx)]);
            let (t1, t2) = (torque[j], torque[(j + 1).min(peak_idx)]);
            let t = if a2 - a1 > 1e-12 { t1 + (t2 - t1) * ((at - a1) / (a2 - a1)).clamp(0.0, 1.0) } else { t2 };
            *slot = t / peak;
        }
    } else {
        profile = [1.0; PROFILE_POINTS];
    }

    let features = Features {
        samples: n,
        direction,
        duration_s,
        peak_torque_nm: peak,
        end_torque_ratio,
        prevailing_nm: prevailing,
        angle_to_peak_deg: angle_to_peak,
        snug_angle_deg: snug_angle,
        rise_angle_deg: rise_angle,
        gradient_nm_per_deg: gradient,
        yield_ratio,
        roughness,
        after_peak_deg: after_peak,
        collapse,
        reversals,
        profile,
    };
    // Finite but extreme values (1e308) can still overflow in differences and ratios.
    if let Some(j) = features.vector().iter().position(|v| !v.is_finite()) {
        return Err(bad("curve", format!("values out of range: {} is not finite", super::golden::feature_name(j))));
    }
    Ok(features)
}

/// Least-squares slope of torque on progress angle over `idx`, and the RMS residual; `None`
/// with fewer than three points or no spread in angle.
fn fit(idx: impl Iterator<Item = usize>, x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let (mut n, mut sx, mut sy, mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for i in idx {
        let (a, t) = (x[i], y[i]);
        n += 1.0;
        sx += a;
        sy += t;
        sxx += a * a;
        sxy += a * t;
        syy += t * t;
    }
    if n < 3.0 {
        return None;
    }
    let vx = sxx - sx * sx / n;
    if vx <= 1e-12 {
        return None;
    }
    let cxy = sxy - sx * sy / n;
    let slope = cxy / vx;
    let vy = syy - sy * sy / n;
    let rss = (vy - slope * cxy).max(0.0);
    Some((slope, (rss / n).sqrt()))
}

/// Median of a non-empty slice (reorders it).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len().is_multiple_of(2) {
        let lower = v[..mid].iter().copied().fold(f64::MIN, f64::max);
        (lower + m) / 2.0
    } else {
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64)]) -> Curve {
        Curve {
            angle_deg: points.iter().map(|p| p.0).collect(),
            torque_nm: points.iter().map(|p| p.1).collect(),
            time_s: Vec::new(),
        }
    }

    /// Rundown at 2 N·m for 360°, then a linear rise at 1 N·m/° to 50 N·m, then release in place.
    fn ideal() -> Curve {
        let mut p: Vec<(f64, f64)> = (0..360).map(|a| (a as f64, 2.0)).collect();
        p.extend((0..=48).map(|k| (360.0 + k as f64, 2.0 + k as f64)));
        p.extend([(408.0, 30.0), (408.0, 5.0)]);
        curve(&p)
    }

    #[test]
    fn ideal_joint() {
        let f = extract(&ideal()).unwrap();
        assert_eq!(f.peak_torque_nm, 50.0);
        assert_eq!(f.prevailing_nm, 2.0);
        assert!((f.gradient_nm_per_deg - 1.0).abs() < 1e-9, "{}", f.gradient_nm_per_deg);
        assert!((f.yield_ratio - 1.0).abs() < 1e-9);
        assert!(f.roughness < 1e-9);
        assert!((f.snug_angle_deg - 367.0).abs() < 1.0, "{}", f.snug_angle_deg);
        assert_eq!(f.angle_to_peak_deg, 408.0);
        assert_eq!(f.after_peak_deg, 0.0);
        assert_eq!(f.collapse, 0.0, "a release in place is not a collapse");
        assert!((f.end_torque_ratio - 0.1).abs() < 1e-9);
        assert!(f.profile[0] < 0.05 && f.profile[PROFILE_POINTS - 1] > 0.7, "{:?}", f.profile);
        assert!(f.profile.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn loosening_export_is_mirrored_and_uneven_sampling_is_fine() {
        let c = ideal();
        let mirrored = Curve {
            angle_deg: c.angle_deg.iter().map(|a| -a).collect(),
            torque_nm: c.torque_nm.iter().map(|t| -t).collect(),
            time_s: Vec::new(),
        };
        let f = extract(&mirrored).unwrap();
        assert_eq!(f.direction, -1.0);
        assert_eq!(f.peak_torque_nm, 50.0);
        assert!((f.gradient_nm_per_deg - 1.0).abs() < 1e-9);
        // Drop every other rundown sample: the features are angle-based, not index-based.
        let sparse: Vec<(f64, f64)> = c
            .angle_deg
            .iter()
            .zip(&c.torque_nm)
            .enumerate()
            .filter(|(i, (a, _))| **a >= 360.0 || i % 2 == 0)
            .map(|(_, (a, t))| (*a, *t))
            .collect();
        let g = extract(&curve(&sparse)).unwrap();
        assert!((g.gradient_nm_per_deg - 1.0).abs() < 1e-9);
        assert_eq!(g.prevailing_nm, 2.0);
    }

    #[test]
    fn unloosening_segment_does_not_count_twice() {
        let mut p: Vec<(f64, f64)> = (0..200).map(|a| (a as f64, 2.0)).collect();
        p.extend((0..50).map(|k| (200.0 - k as f64, -1.0))); // backs off 50°
        p.extend((0..250).map(|k| (150.0 + k as f64, 2.0)));
        p.extend((0..=20).map(|k| (400.0 + k as f64, 2.0 + 2.0 * k as f64)));
        let f = extract(&curve(&p)).unwrap();
        assert!(f.reversals >= 40);
        assert_eq!(f.angle_to_peak_deg, 420.0);
        assert!((f.gradient_nm_per_deg - 2.0).abs() < 1e-9);
    }

    #[test]
    fn stripped_thread_collapses_while_turning() {
        let mut p: Vec<(f64, f64)> = (0..360).map(|a| (a as f64, 2.0)).collect();
        p.extend((0..=30).map(|k| (360.0 + k as f64, 2.0 + k as f64)));
        p.extend((1..=60).map(|k| (390.0 + k as f64, 32.0 * (-(k as f64) / 12.0).exp() + 1.0)));
        let f = extract(&curve(&p)).unwrap();
        assert!(f.after_peak_deg >= 59.0);
        assert!(f.collapse > 0.9, "{}", f.collapse);
    }

    #[test]
    fn bad_curves_are_errors_naming_the_field() {
        let one = curve(&[(0.0, 1.0)]);
        assert_eq!(extract(&one).unwrap_err().field, "curve.torque_nm");
        let mut nan = ideal();
        nan.torque_nm[3] = f64::NAN;
        assert_eq!(extract(&nan).unwrap_err().field, "curve.torque_nm[3]");
        let mut short = ideal();
        short.angle_deg.pop();
        assert_eq!(extract(&short).unwrap_err().field, "curve.angle_deg");
        let mut time = ideal();
        time.time_s = vec![0.0; 3];
        assert_eq!(extract(&time).unwrap_err().field, "curve.time_s");
    }

    #[test]
    fn extreme_finite_values_are_an_error_not_nonsense() {
        let c = curve(&[(-1e308, 1.0), (0.0, 2.0), (1e308, 3.0)]);
        let e = extract(&c).unwrap_err();
        assert_eq!(e.field, "curve");
        assert!(e.reason.contains("not finite"), "{e}");
    }

    #[test]
    fn flat_and_constant_curves_do_not_break() {
        let flat = curve(&[(0.0, 0.0), (0.0, 0.0), (0.0, 0.0)]);
        let f = extract(&flat).unwrap();
        assert_eq!(f.peak_torque_nm, 0.0);
        assert!(f.vector().iter().all(|v| v.is_finite()));
    }
}
