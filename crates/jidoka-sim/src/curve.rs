//! A physical model of one tightening, sampled in time like a real controller (the CS351 in
//! `shared/data/screw_driving_hicss2023` samples every 1.2 ms).
//!
//! A good tightening: rundown at high speed against the prevailing torque (thread friction,
//! locking elements) with a small per-revolution ripple; the head seats (a smooth toe); the
//! joint then stiffens linearly with its stiffness (N·m per degree) at the slow final speed
//! until the controller's shut-off torque; after shut-off the tool releases over a few samples.
//! The controller reports the peak torque and the angle from the threshold torque to the peak.
//!
//! Faults, each with its physical signature:
//! - cross-thread: the thread binds part-way through the rundown; torque rises early, with a
//!   low and irregular gradient, and the shut-off torque is reached with little rundown done;
//! - soft joint / cushioning: a fraction of the stiffness (a gasket, a missing washer, a
//!   compressible part); the final torque is reached with a long angle;
//! - stripped thread: the thread yields below the target, the gradient falls, and the torque
//!   collapses while the tool turns on until its angle limit;
//! - re-hit: the bolt is already tight: no rundown, the torque jumps at once (static friction)
//!   and the tool stops within a few degrees;
//! - missing / loose fastener: the spindle turns freely and the torque never builds;
//! - drift: the tool's shut-off moves away from its target (a drifting transducer or clutch).

use crate::rng::Rng;
use jidoka_model::Curve;
use serde::{Deserialize, Serialize};

/// What physically happens in one tightening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TighteningMode {
    Good,
    CrossThread,
    SoftJoint,
    Stripped,
    Rehit,
    Missing,
}

impl TighteningMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TighteningMode::Good => "good",
            TighteningMode::CrossThread => "cross_thread",
            TighteningMode::SoftJoint => "soft_joint",
            TighteningMode::Stripped => "stripped",
            TighteningMode::Rehit => "rehit",
            TighteningMode::Missing => "missing",
        }
    }
}

/// A joint's physics and the controller's program for it.
#[derive(Debug, Clone, PartialEq)]
pub struct JointPhysics {
    pub target_nm: f64,
    /// Torque from which the controller counts the final angle.
    pub threshold_nm: f64,
    pub stiffness_nm_per_deg: f64,
    pub prevailing_nm: f64,
    pub rundown_deg: f64,
    /// Angle over which the head seats (the toe before the linear elastic rise).
    pub seating_deg: f64,
    pub rundown_speed_dps: f64,
    pub final_speed_dps: f64,
    pub sample_ms: f64,
    /// Standard deviation of the shut-off torque, as a fraction of the target.
    pub precision: f64,
    /// The controller stops turning after this angle from the threshold (or the start).
    pub angle_limit_deg: f64,
}

/// One simulated tightening.
#[derive(Debug, Clone, PartialEq)]
pub struct Tightening {
    pub curve: Curve,
    /// Peak torque, as controllers report it.
    pub final_torque_nm: f64,
    /// Angle from the threshold torque to the peak (0 when the threshold was never reached).
    pub final_angle_deg: f64,
}

struct Trace {
    t: f64,
    angle: f64,
    time: Vec<f64>,
    angle_deg: Vec<f64>,
    torque: Vec<f64>,
}

impl Trace {
    fn push(&mut self, torque: f64) {
        self.time.push(round(self.t, 4));
        self.angle_deg.push(round(self.angle, 2));
        self.torque.push(round(torque.max(0.0), 3));
    }

    fn step(&mut self, speed_dps: f64, dt: f64, rng: &mut Rng) {
        self.t += dt;
        self.angle += speed_dps * dt * (1.0 + 0.01 * rng.normal());
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Simulate one tightening of `joint` in `mode`; `drift` shifts the shut-off torque by that
/// fraction of the target.
pub fn tighten(joint: &JointPhysics, mode: TighteningMode, drift: f64, rng: &mut Rng) -> Tightening {
    let dt = joint.sample_ms / 1000.0;
    let target = joint.target_nm;
    let noise = 0.004 * target;
    let prevailing = (joint.prevailing_nm * (1.0 + 0.15 * rng.normal())).max(0.0);
    let mut stiffness = joint.stiffness_nm_per_deg * (1.0 + 0.06 * rng.normal()).max(0.5);
    if mode == TighteningMode::SoftJoint {
        stiffness *= rng.range(0.3, 0.6);
    }
    let rundown = joint.rundown_deg * (1.0 + 0.02 * rng.normal());
    let seating = joint.seating_deg * rng.range(0.8, 1.2);
    let shutoff = target * (1.0 + drift + joint.precision * rng.normal());
    let mut tr = Trace { t: 0.0, angle: 0.0, time: Vec::new(), angle_deg: Vec::new(), torque: Vec::new() };
    let ripple_phase = rng.range(0.0, std::f64::consts::TAU);
    let rundown_torque = |angle: f64, rng: &mut Rng| {
        prevailing * (1.0 + 0.08 * (angle.to_radians() + ripple_phase).sin()) + noise * rng.normal()
    };

    match mode {
        TighteningMode::Missing => {
            // Free spin: the tool turns to its limit against nothing but bearing drag.
            let limit = rundown + joint.angle_limit_deg;
            while tr.angle < limit {
                tr.push(0.01 * target * rng.uniform() + noise * rng.normal().abs());
                tr.step(joint.rundown_speed_dps, dt, rng);
            }
        }
        TighteningMode::Rehit => {
            // Already tight: the clamp load is there, so after the socket's play the torque
            // climbs at the stiffness of the tool and socket wind-up to the breakaway torque
            // (static friction, a little above the target) within a few degrees.
            let play = rng.range(0.5, 2.0);
            let breakaway = shutoff * rng.range(1.0, 1.06);
            let windup_deg = rng.range(1.5, 5.0);
            let mut torque: f64 = 0.0;
            while torque < breakaway {
                torque = if tr.angle < play {
                    noise * rng.normal().abs()
                } else {
                    (breakaway * (tr.angle - play) / windup_deg).min(breakaway)
                };
                tr.push(torque + noise * rng.normal());
                tr.step(joint.final_speed_dps, dt, rng);
            }
        }
        TighteningMode::CrossThread => {
            // The thread binds part-way through the rundown and the torque climbs irregularly.
            let bind_at = rundown * rng.range(0.15, 0.6);
            let gradient = stiffness * rng.range(0.25, 0.7);
            let mut speed = joint.rundown_speed_dps;
            loop {
                let base = rundown_torque(tr.angle, rng);
                let bound = (tr.angle - bind_at).max(0.0);
                let irregular = if bound > 0.0 { 0.05 * target * rng.normal().abs() } else { 0.0 };
                let torque = base + gradient * bound + irregular;
                tr.push(torque);
                if torque >= shutoff || tr.angle > rundown + joint.angle_limit_deg {
                    break;
                }
                if torque > 0.3 * target {
                    speed = joint.final_speed_dps;
                }
                tr.step(speed, dt, rng);
            }
        }
        TighteningMode::Good | TighteningMode::SoftJoint | TighteningMode::Stripped => {
            while tr.angle < rundown {
                tr.push(rundown_torque(tr.angle, rng));
                tr.step(joint.rundown_speed_dps, dt, rng);
            }
            let strip_at = target * rng.range(0.5, 0.85);
            let mut collapsing: Option<(f64, f64)> = None; // (angle, torque) where the thread let go
            loop {
                let x = tr.angle - rundown;
                // Smooth seating toe, then linear elastic rise.
                let elastic =
                    if x < seating { stiffness * x * x / (2.0 * seating) } else { stiffness * (x - seating / 2.0) };
                let mut torque = prevailing + elastic;
                if mode == TighteningMode::Stripped {
                    if collapsing.is_none() && torque >= strip_at {
                        collapsing = Some((tr.angle, torque));
                    }
                    if let Some((a0, t0)) = collapsing {
                        // Plastic flow, then the thread shears: an exponential collapse.
                        let beyond = tr.angle - a0;
                        torque = t0 * (1.0 + 0.02 * beyond.min(5.0)) * (-(beyond / 12.0)).exp() + prevailing * 0.5;
                    }
                }
                torque += noise * rng.normal();
                tr.push(torque);
                if torque >= shutoff || x > joint.angle_limit_deg + seating {
                    break;
                }
                tr.step(joint.final_speed_dps, dt, rng);
            }
        }
    }
    // The tool releases: torque falls over a few samples while the angle holds.
    if let Some(&last) = tr.torque.last() {
        for k in 1..=4 {
            tr.t += dt;
            tr.push(last * (1.0 - 0.24 * k as f64) + noise * rng.normal());
        }
    }
    let peak_idx = tr.torque.iter().enumerate().fold(0, |best, (i, t)| if *t > tr.torque[best] { i } else { best });
    let final_torque_nm = tr.torque[peak_idx];
    let threshold_idx = tr.torque.iter().position(|t| *t >= joint.threshold_nm);
    let final_angle_deg = match threshold_idx {
        Some(i) if i <= peak_idx => round(tr.angle_deg[peak_idx] - tr.angle_deg[i], 2),
        _ => 0.0,
    };
    Tightening {
        curve: Curve { angle_deg: tr.angle_deg, torque_nm: tr.torque, time_s: tr.time },
        final_torque_nm,
        final_angle_deg,
    }
}
