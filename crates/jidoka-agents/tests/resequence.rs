//! The sequencing search on real CSPLib instances: the orders it returns hold every unit once,
//! their cost is the one the definition gives, and it reaches the known optimum. Runs are
//! bounded by moves, not time, so they conclude the same on any machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_agents::resequence::{Params, Problem, parse_csplib, plain_swaps, solve_with};
use std::time::{Duration, Instant};

fn instance(name: &str) -> Problem {
    let path = format!("{}/tests/fixtures/csplib/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_csplib(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The cost as the problem states it, computed apart from the incremental evaluator: for each
/// option and each q consecutive cars, the cars with the option beyond p.
fn excess(pb: &Problem, order: &[u32]) -> u64 {
    let mut total = 0;
    for (r, rule) in pb.rules.iter().enumerate() {
        let q = rule.q as usize;
        for window in order.windows(q) {
            let with = window.iter().filter(|&&c| pb.class_options[c as usize] & (1 << r) != 0).count() as u64;
            total += with.saturating_sub(u64::from(rule.p));
        }
    }
    total
}

fn run(pb: &Problem, seed: u64, moves: u64) -> jidoka_agents::resequence::Solution {
    let params = Params { max_moves: Some(moves), ..Params::default() };
    solve_with(pb, seed, Instant::now() + Duration::from_secs(3600), &params)
}

#[test]
fn a_satisfiable_classic_instance_is_solved_and_the_order_holds_every_car_once() {
    let pb = instance("classic_41_66.txt");
    for seed in 1..=3 {
        let s = run(&pb, seed, 30_000_000);
        pb.check_order(&s.order).expect("every car once");
        assert_eq!(excess(&pb, &s.order), s.cost);
        assert_eq!(s.cost, 0, "seed {seed}: 41/66 has a sequence meeting every rule");
        assert!(s.optimal);
    }
}

#[test]
fn an_instance_with_no_perfect_sequence_reaches_its_lower_bound_and_claims_no_optimum() {
    let pb = instance("classic_19_71.txt");
    let s = run(&pb, 1, 3_000_000);
    assert_eq!(excess(&pb, &s.order), s.cost);
    assert_eq!(s.cost, 2, "the lower bound (Gent 1998) is 2");
    assert!(!s.optimal, "a search cannot prove 2 optimal; only 0 is claimed");
    assert_eq!(s.moves_tried, 3_000_000, "it searched on to the end of its budget");
}

#[test]
fn a_generated_200_car_instance_is_solved_where_plain_swaps_from_the_file_order_are_not() {
    let pb = instance("gen200_60-01.txt");
    let s = run(&pb, 1, 2_000_000);
    assert_eq!(s.cost, 0);
    assert!(s.start_cost < excess(&pb, &pb.class_order()), "the greedy start is better than the file's order");
    // The baseline: improving swaps only, from the file's order; its cost is the true one.
    let plain = plain_swaps(&pb, 1, Instant::now() + Duration::from_millis(20));
    assert_eq!(excess(&pb, &plain.order), plain.cost);
    pb.check_order(&plain.order).expect("every car once");
}
