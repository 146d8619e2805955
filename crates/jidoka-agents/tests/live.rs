//! Live re-sequencing: the frozen part never moves, a single-car disruption moves few cars, a
//! shortage with room around it costs no line stop, and bad input gets an answer naming the
//! field.

use jidoka_agents::resequence::live::{self, Disruption, Params, Queue};
use jidoka_agents::resequence::roadef::{Car, Instance, Objective, Rule};
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn car(k: usize, colour: u32, options: u64) -> Car {
    Car { ident: format!("U{k:04}"), rank: k as u64, colour, options }
}

/// A queue with a sunroof rule 1/3 (high), a V6 rule 2/5 (low), paint limit 4, colours in
/// blocks; resource 0 is the roof glass (every sunroof car), resource 1 a battery lift.
fn queue(n: usize, frozen: usize, sunroof_every: usize) -> Queue {
    let day: Vec<Car> = (0..n)
        .map(|k| {
            let sunroof = u64::from(k % sunroof_every == 0);
            let v6 = u64::from(k % 5 == 1) << 1;
            car(k, (k / 4 % 3) as u32, sunroof | v6)
        })
        .collect();
    let needs = day.iter().enumerate().map(|(k, c)| (c.options & 1) | (u64::from(k % 7 == 3) << 1)).collect();
    Queue {
        inst: Instance {
            objectives: vec![Objective::High, Objective::Paint, Objective::Low],
            rules: vec![
                Rule { name: "sunroof".into(), n: 1, p: 3, high: true },
                Rule { name: "v6".into(), n: 2, p: 5, high: false },
            ],
            paint_limit: 4,
            tail: vec![car(9000, 2, 0), car(9001, 2, 1)],
            day,
        },
        needs,
        resources: vec!["ROOF-GLASS".into(), "BATTERY-LIFT".into()],
        frozen,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(300)
}

/// A part short in slots 20..40 of a 200-car queue: the glass cars in that span move out of it,
/// the line does not stop, while doing nothing stops it.
#[test]
fn a_shortage_with_room_around_it_costs_no_line_stop() {
    let q = queue(200, 10, 4);
    let ds = [Disruption::Unavailable { resource: 0, from: 20, until: 40 }];
    let p = live::propose(&q, &ds, soon(), &Params::default()).expect("proposal");
    assert!(p.before.lost_takts > 0, "doing nothing stops the line: {:?}", p.before);
    assert_eq!(p.after.lost_takts, 0, "{:?}", p.after);
    assert_eq!(p.after.stopping_cars, 0);
    assert_eq!(p.after.paint_excess, 0, "the paint limit holds");
    // Every glass car planned in the window moved, and each move says why.
    let in_window: Vec<&str> =
        (20..40).filter(|&k| q.needs[k] & 1 == 1).map(|k| q.inst.day[k].ident.as_str()).collect();
    assert!(!in_window.is_empty());
    for id in &in_window {
        let m = p.moves.iter().find(|m| m.ident == *id).unwrap_or_else(|| panic!("{id} not moved"));
        assert!(m.why.contains("ROOF-GLASS"), "{}", m.why);
        assert!(!(20..40).contains(&m.to));
    }
    // The supervisor's rule (to the end of the queue) shortens the stop but keeps one: the
    // cars behind close up, and the glass cars among them slide into the window.
    let pushed = live::push_back(&q, &ds).expect("push back");
    assert!(pushed.after.lost_takts < p.before.lost_takts);
    assert!(pushed.after.lost_takts > p.after.lost_takts, "{:?}", pushed.after);
    assert!(p.after.score.total <= pushed.after.score.total, "{:?} vs {:?}", p.after.score, pushed.after.score);
}

/// The cars right behind the outage need the missing part too: a car that needs nothing
/// missing is pulled forward into the gap instead.
#[test]
fn cars_without_the_part_are_pulled_into_the_gap_when_the_glass_cars_cannot_leave_it() {
    let mut q = queue(40, 10, 1000);
    for k in 10..13 {
        q.needs[k] = 1;
    }
    for k in 13..40 {
        q.needs[k] = 0;
    }
    let ds = [Disruption::Unavailable { resource: 0, from: 10, until: 12 }];
    let p = live::propose(&q, &ds, soon(), &Params::default()).expect("proposal");
    assert!(p.before.lost_takts > 0);
    assert_eq!(p.after.lost_takts, 0, "{:?} {:?}", p.moves, p.notes);
    assert!(p.moves.iter().any(|m| m.why.contains("pulled forward")), "{:?}", p.moves);
}

/// A deadline already past: an answer at once, saying what it did not get to.
#[test]
fn a_proposal_past_its_deadline_says_what_it_did_not_move() {
    let q = queue(200, 10, 4);
    let ds = [Disruption::Unavailable { resource: 0, from: 20, until: 40 }];
    let p = live::propose(&q, &ds, Instant::now(), &Params::default()).expect("proposal");
    assert!(p.moves.is_empty(), "{:?}", p.moves);
    assert!(p.notes.iter().any(|n| n.contains("deadline came first: 5 cars")), "{:?}", p.notes);
    assert_eq!(p.after, p.before);
}

/// More glass cars than the slots after the window can take without them: the unavoidable ones
/// go to the end of the window, so the stop is as short as their number.
#[test]
fn an_unavoidable_shortage_is_pushed_to_the_end_of_the_window() {
    let q = queue(60, 5, 2);
    let ds = [Disruption::Unavailable { resource: 0, from: 10, until: 58 }];
    let p = live::propose(&q, &ds, soon(), &Params::default()).expect("proposal");
    assert!(p.after.lost_takts < p.before.lost_takts, "{:?} vs {:?}", p.after, p.before);
    let glass_in_window = p.idents[10..58.min(p.idents.len())]
        .iter()
        .filter(|id| q.inst.day.iter().position(|c| &c.ident == *id).is_some_and(|k| q.needs[k] & 1 == 1))
        .count() as u64;
    assert_eq!(p.after.lost_takts, glass_in_window, "one takt per glass car left in the window");
}

#[test]
fn a_frozen_car_that_needs_the_missing_part_is_named_and_still_stops_the_line() {
    let q = queue(50, 20, 4);
    let ds = [Disruption::Unavailable { resource: 0, from: 8, until: 30 }];
    let p = live::propose(&q, &ds, soon(), &Params::default()).expect("proposal");
    assert!(p.notes.iter().any(|n| n.contains("U0008") && n.contains("frozen")), "{:?}", p.notes);
    assert!(p.after.lost_takts > 0);
    // The line waits for U0008 until slot 30: the glass cars at slots 20, 24 and 28 come after
    // that, so nothing is gained by moving them.
    assert!(p.moves.is_empty(), "{:?}", p.moves);
    assert_eq!(p.after.lost_takts, p.before.lost_takts);
    assert_eq!(&p.idents[..20], &q.inst.day[..20].iter().map(|c| c.ident.clone()).collect::<Vec<_>>()[..]);
}

#[test]
fn a_unit_on_hold_leaves_the_queue_and_moves_at_most_five_others() {
    let q = queue(300, 30, 4);
    for k in [30, 31, 100, 299] {
        let id = q.inst.day[k].ident.clone();
        let p = live::propose(&q, &[Disruption::Hold { idents: vec![id.clone()] }], soon(), &Params::default())
            .expect("proposal");
        assert_eq!(p.removed, vec![id.clone()]);
        assert!(!p.idents.contains(&id));
        assert_eq!(p.idents.len(), 299);
        assert!(p.moves.len() <= 5, "hold of slot {k} moved {}", p.moves.len());
        assert_eq!(p.before.lost_takts, 1, "left in the queue it is an empty slot");
        assert_eq!(p.after.lost_takts, 0);
    }
}

#[test]
fn a_rush_car_enters_by_its_due_slot_and_moves_at_most_five_others() {
    let q = queue(300, 30, 4);
    let rush = car(5000, 1, 1);
    let ds = [Disruption::Rush { car: rush, needs: 1, within: 40 }];
    let p = live::propose(&q, &ds, soon(), &Params::default()).expect("proposal");
    let at = p.idents.iter().position(|id| id == "U5000").expect("rush car in the queue");
    assert!((30..=40).contains(&at), "slot {at}");
    assert_eq!(p.after.rush_late, 0);
    assert!(p.before.rush_late > 0, "left at the end it is late");
    assert!(p.moves.len() <= 5, "{:?}", p.moves);
    assert_eq!(p.idents.len(), 301);
}

#[test]
fn bad_input_gets_an_answer_naming_the_field() {
    let q = queue(40, 5, 4);
    let field = |q: &Queue, ds: &[Disruption]| {
        live::propose(q, ds, soon(), &Params::default()).map(|_| ()).map_err(|e| e.field)
    };
    let mut empty = q.clone();
    empty.inst.day.clear();
    empty.needs.clear();
    assert_eq!(field(&empty, &[]), Err("queue".into()));
    let mut long = q.clone();
    long.frozen = 41;
    let e = live::propose(&long, &[], soon(), &Params::default()).expect_err("frozen too long");
    assert_eq!(e.field, "frozen");
    assert!(e.reason.contains("longer than the queue"), "{e}");
    assert_eq!(
        field(&q, &[Disruption::Unavailable { resource: 2, from: 1, until: 3 }]),
        Err("disruptions[0].resource".into())
    );
    assert_eq!(
        field(&q, &[Disruption::Unavailable { resource: 0, from: 3, until: 3 }]),
        Err("disruptions[0].until".into())
    );
    assert_eq!(field(&q, &[Disruption::Hold { idents: vec!["NOPE".into()] }]), Err("disruptions[0].idents".into()));
    assert_eq!(field(&q, &[Disruption::Hold { idents: vec![] }]), Err("disruptions[0].idents".into()));
    let dup = Disruption::Rush { car: q.inst.day[7].clone(), needs: 0, within: 3 };
    assert_eq!(field(&q, &[dup]), Err("disruptions[0].car.ident".into()));
    let odd = Disruption::Rush { car: car(777, 0, 1 << 5), needs: 0, within: 3 };
    assert_eq!(field(&q, &[odd]), Err("disruptions[0].car.options".into()));
    let mut twice = q.clone();
    twice.inst.day[3].ident = twice.inst.day[2].ident.clone();
    assert_eq!(field(&twice, &[]), Err("queue".into()));
    let mut zero = q.clone();
    zero.inst.rules[1].p = 0;
    assert_eq!(field(&zero, &[]), Err("rules[1].p".into()));
    let mut unpainted = q.clone();
    unpainted.inst.paint_limit = 0;
    assert_eq!(field(&unpainted, &[]), Err("paint_limit".into()));
    // An outage with no known end, and a rush car due in a billion slots: an answer, no
    // overflow.
    let far = [
        Disruption::Unavailable { resource: 0, from: 12, until: usize::MAX },
        Disruption::Rush { car: car(4242, 0, 1), needs: 1, within: usize::MAX },
    ];
    let p = live::propose(&q, &far, soon(), &Params::default()).expect("proposal");
    assert!(p.after.lost_takts <= p.before.lost_takts, "{:?} {:?}", p.after, p.before);
    assert!(p.before.lost_takts <= 41, "until the end of the queue at most: {:?}", p.before);
    // Nothing disrupted: nothing moves.
    let p = live::propose(&q, &[], soon(), &Params::default()).expect("proposal");
    assert!(p.moves.is_empty());
    assert_eq!(p.idents, q.inst.day.iter().map(|c| c.ident.clone()).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever happens, the frozen part stays as it was, every car that is not taken out stays
    /// once, the rush car is in, and the proposal comes by its deadline's pass.
    #[test]
    fn the_frozen_part_never_changes(
        n in 1usize..120,
        frozen_share in 0usize..=100,
        every in 2usize..6,
        from in 0usize..130,
        span in 1usize..80,
        holds in proptest::collection::vec(0usize..120, 0..4),
        rush in proptest::option::of(0usize..130),
        resource in 0usize..2,
    ) {
        let q = queue(n, n * frozen_share / 100, every);
        let mut ds = vec![Disruption::Unavailable { resource, from, until: from + span }];
        let held: Vec<String> = holds.iter().filter(|&&k| k < n).map(|&k| q.inst.day[k].ident.clone()).collect();
        if !held.is_empty() {
            ds.push(Disruption::Hold { idents: held.clone() });
        }
        if let Some(within) = rush {
            ds.push(Disruption::Rush { car: car(8000, 1, 1), needs: 1, within });
        }
        let p = live::propose(&q, &ds, soon(), &Params::default()).expect("proposal");
        let planned: Vec<String> = q.inst.day.iter().map(|c| c.ident.clone()).collect();
        prop_assert_eq!(&p.idents[..q.frozen], &planned[..q.frozen]);
        let held: HashSet<String> = held.into_iter().collect();
        let mut expected: Vec<String> =
            planned.iter().enumerate().filter(|(k, id)| *k < q.frozen || !held.contains(*id)).map(|(_, id)| id.clone()).collect();
        if rush.is_some() {
            expected.push("U8000".into());
        }
        let mut got = p.idents.clone();
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected);
        prop_assert!(p.after.lost_takts <= p.before.lost_takts + u64::from(rush.is_some()) * span as u64,
            "after {:?} before {:?}", p.after, p.before);
        let pushed = live::push_back(&q, &ds).expect("push back");
        prop_assert_eq!(&pushed.idents[..q.frozen], &planned[..q.frozen]);
    }
}
