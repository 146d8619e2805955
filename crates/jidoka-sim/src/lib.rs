//! Jidoka's plant simulator: a mixed-model final-assembly line with physically plausible
//! tightening curves, scans against a BOM with ECO cut-ins, injected faults at configured rates,
//! and a ground-truth log of every injection.
//!
//! - [`plant`]: the plant described in TOML ([`Plant`], [`plant::DEFAULT_PLANT`]).
//! - [`curve`]: the physical tightening model and fault signatures ([`curve::tighten`]).
//! - [`line`]: the paced line ([`Simulation`], [`GroundTruth`]).
//! - [`vin`]: VINs with the ISO 3779 / North American check digit.
//! - [`rng`]: a reproducible random number generator.
//!
//! Invariants: the simulator reads no clock and no file; the same plant and seed give the same
//! events, byte for byte. It is never tuned to flatter an agent: fault signatures follow the
//! physics, and the controller verdict is computed from the windows only, as real controllers do.

pub mod controller;
pub mod curve;
mod floor;
pub mod line;
pub mod plant;
pub mod rng;
pub mod vin;

pub use line::{CurveMode, GroundTruth, PlannedUnit, Simulation, Slot};
pub use plant::Plant;
