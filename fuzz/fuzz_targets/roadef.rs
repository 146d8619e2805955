//! Arbitrary ROADEF 2005 instances (the four files, split by NUL bytes) through the parser and,
//! when one parses, a short search: no panic, every refusal names its file and field, and the
//! order found holds day D once, inside the paint limit, never worse than the plant's order.

#![no_main]

use jidoka_agents::resequence::roadef::{self, Files, Params};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(4, '\0');
    let mut next = || parts.next().unwrap_or("");
    let (vehicles, ratios, paint_batch_limit, objectives) = (next(), next(), next(), next());
    match roadef::parse(&Files { vehicles, ratios, paint_batch_limit, objectives }) {
        Ok(inst) => {
            if inst.day.len() + inst.tail.len() <= 2_000 {
                let params = Params { max_moves: Some(2_000), ..Params::default() };
                match roadef::solve(&inst, 1, Instant::now() + Duration::from_secs(5), &params) {
                    Ok(s) => {
                        assert!(roadef::check_order(&inst, &s.order).is_ok());
                        assert!(s.score.valid(&inst));
                        assert!(s.score.total <= roadef::score(&inst, &inst.plant_order()).total
                            || !roadef::score(&inst, &inst.plant_order()).valid(&inst));
                    }
                    Err(why) => assert!(!why.is_empty()),
                }
            }
        }
        Err(e) => assert!(!e.error.field.is_empty() && !e.error.reason.is_empty()),
    }
});
