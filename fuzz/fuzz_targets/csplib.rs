//! Arbitrary CSPLib car-sequencing files through the parser and, when one parses, a short
//! search: no panic, every refusal names a field, and the order found holds every car once.

#![no_main]

use jidoka_agents::resequence::{Params, parse_csplib, solve_with};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_csplib(text) {
        Ok(pb) => {
            if pb.units() <= 2_000 {
                let params = Params { max_moves: Some(2_000), ..Params::default() };
                let s = solve_with(&pb, 1, Instant::now() + Duration::from_secs(5), &params);
                assert!(pb.check_order(&s.order).is_ok());
            }
        }
        Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty()),
    }
});
