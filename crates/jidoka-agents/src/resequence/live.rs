//! Live re-sequencing: when a part will run short, units go on quality hold, option-specific
//! equipment goes down or a rush order comes in, a proposal for the build queue within a
//! deadline, moving as few cars as it can.
//!
//! - [`Queue`]: the cars already built (they count in the windows they share with the queue),
//!   the queue in its planned order (slot 0 enters the line next), what each car needs of the
//!   resources that can fail (parts, option-specific equipment), and the frozen part at its
//!   head that can no longer move (bodies already in the paint shop's sequence).
//! - [`Disruption`]: a resource unavailable for a span of slots, units on hold, a rush car due
//!   within some slots.
//! - [`propose`]: first every movable car that would reach the line while a resource it needs is
//!   unavailable (it would stop the line) is taken out and put back where it costs least, and a
//!   rush car put where it costs least inside its due slots; then a few more cars move where each
//!   removes more than a move's cost of rule violations. An insertion is priced by the windows,
//!   colour boundaries and paint runs around the two places it touches, so a car's best place in
//!   a 1,300-car queue is one pass.
//! - [`push_back`]: the rule a supervisor applies by hand (the affected cars to the end of the
//!   queue, the rush car to the front), and [`no_action`]: both scored the same way.
//!
//! The cost is lexicographic by weights: cars that would stop the line, then slots a rush car is
//! late, then cars over the paint limit, then the plant's objectives in their order (the
//! [`roadef`](super::roadef) reading: colour changes, high- and low-priority ratio violations);
//! each car moved beyond those that must move costs [`Params::move_cost`]. The line stops are counted by walking the queue through time: a car that needs
//! an unavailable resource holds the line until it is back; a held unit left in the queue is an
//! empty slot.
//!
//! Not an agent: it reads the clock for its deadline.

use super::MAX_WINDOW;
use super::roadef::{Car, Instance, MAX_CARS, Objective, Score, score_cars};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

/// A build queue under the plant's sequencing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The rules, their priorities and the paint limit; `tail` the last cars built, `day` the queue
    /// in its planned order.
    pub inst: Instance,
    /// What each car of the queue needs (bit `k` ↔ `resources[k]`).
    pub needs: Vec<u64>,
    /// The parts and equipment that can fail, by name.
    pub resources: Vec<String>,
    /// The first `frozen` cars of the queue cannot move.
    pub frozen: usize,
}

/// Something that happened to the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disruption {
    /// Resource `resource` is not available for slots `from..until` (counted from now): a part
    /// out of stock until the next delivery, equipment down until repaired.
    Unavailable { resource: usize, from: usize, until: usize },
    /// Units put on hold: they leave the queue.
    Hold { idents: Vec<String> },
    /// A car to add, due to enter the line within `within` slots.
    Rush { car: Car, needs: u64, within: usize },
}

/// Why a queue or a disruption cannot be read: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for LiveError {}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> LiveError {
    LiveError { field: field.into(), reason: reason.into() }
}

/// How a queue fares: its objectives, and what the disruptions cost on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The plant's objectives over the cars that will be built, in this order.
    pub score: Score,
    /// Cars over the paint limit, summed over the runs that break it.
    pub paint_excess: u64,
    /// Cars that stop the line: they reach it while a resource they need is unavailable.
    pub stopping_cars: u64,
    /// Takts lost: the line waiting for a resource, and the empty slots of held units.
    pub lost_takts: u64,
    /// Slots the rush car enters after it is due.
    pub rush_late: u64,
}

/// One car moved by a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub ident: String,
    /// Its slot in the planned queue (none for a rush car).
    pub from: Option<usize>,
    pub to: usize,
    pub why: String,
}

/// A proposed queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The cars of the new queue in build order.
    pub idents: Vec<String>,
    pub moves: Vec<Move>,
    /// Held units taken out of the queue.
    pub removed: Vec<String>,
    /// The queue if nothing is done.
    pub before: Outcome,
    pub after: Outcome,
    /// What re-sequencing cannot fix (a frozen car needs a missing part, a held unit is frozen).
    pub notes: Vec<String>,
    /// When the cars that had to move were placed (the first usable proposal).
    pub first: Duration,
    /// When the repair around them ended (the deadline, or nothing more worth a move).
    pub elapsed: Duration,
}

/// A move's gain in the plant's words: the objectives it changes, most important first ("one
/// fewer high-priority rule violation, 2 more colour changes"). The gain is a sum of the
/// objectives' weights (1,000,000, 1,000 and 1 by rank), read back digit by digit.
fn gain_in_words(q: &Queue, gain: i128) -> String {
    if gain >= STOP_WEIGHT {
        return "fewer cars that stop the line".into();
    }
    if gain >= LATE_WEIGHT {
        return "the rush car less late".into();
    }
    if gain >= PAINT_LIMIT_WEIGHT {
        return "fewer cars over the paint limit".into();
    }
    let name = |o: Objective| match o {
        Objective::High => ("high-priority rule violation", "high-priority rule violations"),
        Objective::Paint => ("colour change", "colour changes"),
        Objective::Low => ("low-priority rule violation", "low-priority rule violations"),
    };
    let mut rest = gain;
    let mut parts = Vec::new();
    for (k, o) in q.inst.objectives.iter().enumerate() {
        let w = i128::from(super::roadef::WEIGHTS[k]);
        // The nearest whole number of this objective: what is left is the ranks below.
        let d = if k + 1 == q.inst.objectives.len() { rest / w } else { (rest + rest.signum() * w / 2) / w };
        rest -= d * w;
        if d != 0 {
            let (one, many) = name(*o);
            let more = if d > 0 { "fewer" } else { "more" };
            parts.push(match d.unsigned_abs() {
                1 => format!("one {more} {one}"),
                n => format!("{n} {more} {many}"),
            });
        }
    }
    if parts.is_empty() { "a better place under the plant's rules".into() } else { parts.join(", ") }
}

/// The knobs of [`propose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// What moving one more car costs, in the objective's units (default: one high-priority
    /// violation when the plant has such rules).
    pub move_cost: u64,
    /// Cars the second phase may move on top of those that had to move (at least this, and at
    /// most as many as had to move when that is more).
    pub extra_moves: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params { move_cost: 1_000, extra_moves: 4 }
    }
}

/// Per car in an unavailable window, per slot it is before the window's end: the line stops at
/// the first such car until the resource is back, so the fewer and the later they are, the
/// shorter the stop (packed at the window's end, `k` unavoidable cars cost `k` takts).
/// The weights keep the order whatever the input `check` accepts: one insertion changes the
/// ratio cost by at most 64 rules × 10,000 windows × 1,000,000, below one car over the paint limit.
const STOP_WEIGHT: Cost = 1_000_000_000_000_000;
const LATE_WEIGHT: Cost = 100_000_000_000_000;
const PAINT_LIMIT_WEIGHT: Cost = 10_000_000_000_000;

/// Costs are summed wide: a stop's weight times the slots left, over a 20,000-car queue, passes
/// what 64 bits hold.
type Cost = i128;

/// How far the second phase moves a car: it repairs around the disruption, it does not re-plan.
const REPAIR_SPAN: usize = 60;

/// A car in the working queue.
#[derive(Debug, Clone)]
struct Item {
    car: Car,
    needs: u64,
    /// Its slot in the planned queue; none for a rush car.
    planned: Option<usize>,
}

/// A queue without one car, ready to price that car at every slot ([`Pricer::prepare`]).
struct Prepared<'s> {
    seq: &'s [Item],
    x: &'s Item,
    tail: usize,
    /// Per rule: its window, the prefix sums over starts of the counted windows' excess, and of
    /// the excess of the windows one shorter with `x` added.
    rules: Vec<(usize, Vec<i64>, Vec<i64>)>,
    /// Tail then queue.
    colour: Vec<u32>,
    /// Where the colour run holding each position of the day starts and ends.
    run_start: Vec<usize>,
    run_end: Vec<usize>,
    stops: Vec<Vec<(i64, i64)>>,
    rush_at: Option<usize>,
}

/// The checked disruptions: what is unavailable when, who is held, which car is added.
struct Plan {
    windows: Vec<(usize, usize, usize)>,
    /// Takts the frozen head loses to the outages (its cars cannot move): the movable part
    /// reaches the line that much later than its slots say.
    delay: usize,
    /// The frozen cars that will stop the line.
    frozen_stops: Vec<String>,
    held: HashSet<String>,
    rush: Option<(Item, usize)>,
}

fn check(q: &Queue, ds: &[Disruption]) -> Result<Plan, LiveError> {
    if q.inst.day.is_empty() {
        return Err(bad("queue", "the queue is empty: nothing to re-sequence"));
    }
    if q.needs.len() != q.inst.day.len() {
        return Err(bad("needs", format!("{} entries for {} cars", q.needs.len(), q.inst.day.len())));
    }
    if q.frozen > q.inst.day.len() {
        return Err(bad(
            "frozen",
            format!("the frozen part ({} cars) is longer than the queue ({} cars)", q.frozen, q.inst.day.len()),
        ));
    }
    if q.inst.day.len() > MAX_CARS {
        return Err(bad("queue", format!("{} cars: at most {MAX_CARS}", q.inst.day.len())));
    }
    if q.inst.rules.len() > 64 {
        return Err(bad("rules", format!("{}: at most 64", q.inst.rules.len())));
    }
    if let Some((i, r)) = q.inst.rules.iter().enumerate().find(|(_, r)| r.p == 0 || u64::from(r.p) > MAX_WINDOW) {
        return Err(bad(format!("rules[{i}].p"), format!("{}: must be 1 to {MAX_WINDOW}", r.p)));
    }
    if q.inst.paint_limit == 0 {
        return Err(bad("paint_limit", "must be at least 1"));
    }
    if q.resources.len() > 64 {
        return Err(bad("resources", format!("{}: at most 64", q.resources.len())));
    }
    let known: HashSet<&str> = q.inst.day.iter().map(|c| c.ident.as_str()).collect();
    if known.len() != q.inst.day.len() {
        return Err(bad("queue", "a car identifier appears twice"));
    }
    let rule_bits = if q.inst.rules.len() >= 64 { u64::MAX } else { (1u64 << q.inst.rules.len()) - 1 };
    let resource_bits = if q.resources.len() >= 64 { u64::MAX } else { (1u64 << q.resources.len()) - 1 };
    if q.inst.tail.len() > MAX_CARS {
        return Err(bad("tail", format!("{} cars: at most {MAX_CARS}", q.inst.tail.len())));
    }
    if ds.len() > MAX_DISRUPTIONS {
        return Err(bad("disruptions", format!("{}: at most {MAX_DISRUPTIONS} at once", ds.len())));
    }
    let mut plan = Plan { windows: Vec::new(), delay: 0, frozen_stops: Vec::new(), held: HashSet::new(), rush: None };
    for (i, d) in ds.iter().enumerate() {
        let at = format!("disruptions[{i}]");
        match d {
            Disruption::Unavailable { resource, from, until } => {
                if *resource >= q.resources.len() {
                    return Err(bad(
                        format!("{at}.resource"),
                        format!("{resource}: the queue has {}", q.resources.len()),
                    ));
                }
                if from >= until {
                    return Err(bad(format!("{at}.until"), format!("{until}: must be after from ({from})")));
                }
                // Beyond the queue nothing is known: unavailable past its end reads as until
                // its end.
                let end = q.inst.day.len() + 1;
                plan.windows.push((*resource, (*from).min(end), (*until).min(end)));
            }
            Disruption::Hold { idents } => {
                if idents.is_empty() {
                    return Err(bad(format!("{at}.idents"), "no unit named"));
                }
                for id in idents {
                    if !known.contains(id.as_str()) {
                        return Err(bad(format!("{at}.idents"), format!("unit `{id}` is not in the queue")));
                    }
                    plan.held.insert(id.clone());
                }
            }
            Disruption::Rush { car, needs, within } => {
                if plan.rush.is_some() {
                    return Err(bad(at, "one rush car per proposal"));
                }
                if known.contains(car.ident.as_str()) || q.inst.tail.iter().any(|c| c.ident == car.ident) {
                    return Err(bad(format!("{at}.car.ident"), format!("`{}` is already in the queue", car.ident)));
                }
                if car.options & !rule_bits != 0 {
                    return Err(bad(format!("{at}.car.options"), "an option no rule of the queue knows"));
                }
                if needs & !resource_bits != 0 {
                    return Err(bad(format!("{at}.needs"), "a resource the queue does not have"));
                }
                plan.rush = Some((Item { car: car.clone(), needs: *needs, planned: None }, *within));
            }
        }
    }
    // The frozen head walked through time: where it stops the line, the cars behind it come later.
    let mut t = 0usize;
    for (k, c) in q.inst.day.iter().enumerate().take(q.frozen) {
        if !plan.held.contains(&c.ident) {
            let waited = wait(&plan.windows, q.needs[k], t);
            t += waited;
            if waited > 0 {
                plan.frozen_stops.push(format!(
                    "frozen car {} at slot {k} needs what is unavailable then: the line will stop",
                    c.ident
                ));
            }
        }
        t += 1;
    }
    plan.delay = t - q.frozen;
    Ok(plan)
}

/// Most disruptions in one proposal.
pub const MAX_DISRUPTIONS: usize = 256;

/// Prices a queue and the insertion of one car into it.
struct Pricer<'a> {
    inst: &'a Instance,
    /// The outages in slots of the queue: shifted by the frozen head's delay.
    windows: Vec<(usize, usize, usize)>,
    /// The rush car and its due slot.
    rush: Option<(&'a str, usize)>,
    weights: Vec<Cost>,
    paint_weight: Cost,
    /// The longest window of a rule (at least 1).
    reach: usize,
}

impl<'a> Pricer<'a> {
    fn new(q: &'a Queue, plan: &'a Plan) -> Pricer<'a> {
        let inst = &q.inst;
        let weights = inst
            .rules
            .iter()
            .map(|r| Cost::from(inst.weight(if r.high { Objective::High } else { Objective::Low })))
            .collect();
        Pricer {
            inst,
            windows: plan
                .windows
                .iter()
                .map(|&(r, from, until)| (r, from.saturating_sub(plan.delay), until.saturating_sub(plan.delay)))
                .filter(|&(_, from, until)| from < until)
                .collect(),
            rush: plan.rush.as_ref().map(|(it, w)| (it.car.ident.as_str(), w.saturating_sub(plan.delay))),
            weights,
            paint_weight: Cost::from(inst.weight(Objective::Paint)),
            reach: inst.rules.iter().map(|r| r.p as usize).max().unwrap_or(1).max(1),
        }
    }

    fn tail(&self) -> usize {
        self.inst.tail.len()
    }

    /// The rule windows starting in `lo..=hi`, the colour boundaries before positions in
    /// `lo..=hi` and the paint runs reaching into `lo..=hi`, of the sequence `car(0..len)` (tail
    /// then queue): the cost from its definition, which the prepared pricing is tested against.
    #[cfg(test)]
    fn local<'c>(&self, car: &impl Fn(usize) -> &'c Car, len: usize, lo: usize, hi: usize) -> Cost {
        let first = self.tail();
        let hi = hi.min(len.saturating_sub(1));
        if lo > hi {
            return 0;
        }
        let mut cost: Cost = 0;
        for (r, rule) in self.inst.rules.iter().enumerate() {
            for s in lo..=hi {
                let end = (s + rule.p as usize).min(len);
                if end <= first {
                    continue;
                }
                let with = (s..end).filter(|&k| car(k).options >> r & 1 == 1).count() as Cost;
                cost += (with - Cost::from(rule.n)).max(0) * self.weights[r];
            }
        }
        for k in lo.max(first).max(1)..=hi {
            if car(k - 1).colour != car(k).colour {
                cost += self.paint_weight;
            }
        }
        let limit = Cost::from(self.inst.paint_limit);
        let mut a = lo.max(first);
        if a <= hi {
            while a > first && car(a - 1).colour == car(a).colour {
                a -= 1;
            }
            while a <= hi {
                let mut b = a + 1;
                while b < len && car(b).colour == car(a).colour {
                    b += 1;
                }
                cost += ((b - a) as Cost - limit).max(0) * PAINT_LIMIT_WEIGHT;
                a = b;
            }
        }
        cost
    }

    /// Cars at a slot where a resource they need is unavailable (per window, by the slots left
    /// to the window's end), and slots the rush car is late.
    #[cfg(test)]
    fn blocked(&self, slot: usize, it: &Item) -> Cost {
        let mut cost = 0;
        for &(r, from, until) in &self.windows {
            if it.needs >> r & 1 == 1 && (from..until).contains(&slot) {
                cost += (until - slot) as Cost * STOP_WEIGHT;
            }
        }
        if let Some((id, due)) = self.rush
            && it.car.ident == id
        {
            cost += slot.saturating_sub(due) as Cost * LATE_WEIGHT;
        }
        cost
    }

    #[cfg(test)]
    fn cost(&self, seq: &[Item]) -> Cost {
        let tail = &self.inst.tail;
        let car = |k: usize| if k < tail.len() { &tail[k] } else { &seq[k - tail.len()].car };
        let len = tail.len() + seq.len();
        self.local(&car, len, 0, len) + seq.iter().enumerate().map(|(s, it)| self.blocked(s, it)).sum::<Cost>()
    }

    /// Everything pricing `x` at every slot of `seq` (which does not hold it) needs: per rule,
    /// prefix sums over window starts of the excess of the windows of `seq` and of the windows
    /// one shorter with `x` added; the colour runs; the cars needing each unavailable resource.
    fn prepare<'s>(&self, seq: &'s [Item], x: &'s Item) -> Prepared<'s> {
        let t = self.tail();
        let len = t + seq.len();
        let tail = &self.inst.tail;
        let car = |k: usize| if k < t { &tail[k] } else { &seq[k - t].car };
        let rules = self
            .inst
            .rules
            .iter()
            .enumerate()
            .map(|(r, rule)| {
                let p = rule.p as usize;
                let n = i64::from(rule.n);
                let mut with = vec![0i64; len + 1];
                for k in 0..len {
                    with[k + 1] = with[k] + i64::from(car(k).options >> r & 1 == 1);
                }
                let mine = i64::from(x.car.options >> r & 1 == 1);
                let mut gone = vec![0i64; len + 1];
                let mut added = vec![0i64; len + 2];
                for st in 0..=len {
                    if st < len {
                        let end = (st + p).min(len);
                        let counted = end > t;
                        gone[st + 1] = gone[st] + if counted { (with[end] - with[st] - n).max(0) } else { 0 };
                    }
                    let end = (st + p - 1).min(len);
                    added[st + 1] = added[st] + (with[end] - with[st] + mine - n).max(0);
                }
                (p, gone, added)
            })
            .collect();
        let colour: Vec<u32> = (0..len).map(|k| car(k).colour).collect();
        let mut run_start = vec![0usize; len];
        for k in t..len {
            run_start[k] = if k > t && colour[k - 1] == colour[k] { run_start[k - 1] } else { k };
        }
        let mut run_end = vec![len; len];
        for k in (t..len).rev() {
            run_end[k] = if k + 1 < len && colour[k + 1] == colour[k] { run_end[k + 1] } else { k + 1 };
        }
        Prepared {
            seq,
            x,
            tail: t,
            rules,
            colour,
            run_start,
            run_end,
            stops: self.stops(seq),
            rush_at: self.rush.and_then(|(id, _)| seq.iter().position(|it| it.car.ident == id)),
        }
    }

    /// The change of cost when `x` enters the prepared queue at slot `j`: the ratio windows that
    /// hold it against those that held the two cars it comes between, the colour changes and
    /// paint runs at that place, the cars that stop the line (the cars after it one slot
    /// later), the rush car's lateness.
    fn insert_delta(&self, pr: &Prepared<'_>, j: usize) -> Cost {
        let (t, x) = (pr.tail, pr.x);
        let at = t + j;
        let len = pr.colour.len();
        let mut delta: Cost = 0;
        for (r, (p, gone, added)) in pr.rules.iter().enumerate() {
            let lo = (at + 1).saturating_sub(*p);
            delta += Cost::from((added[at + 1] - added[lo]) - (gone[at] - gone[lo])) * self.weights[r];
        }
        // Colour changes and paint runs inside the day.
        let c = x.car.colour;
        let a = (at > 0).then(|| pr.colour[at - 1]);
        let b = (at < len).then(|| pr.colour[at]);
        if at >= t.max(1) {
            delta += Cost::from(a != Some(c)) * self.paint_weight;
            if at < len {
                delta -= Cost::from(a != b) * self.paint_weight;
            }
        }
        if b.is_some() {
            delta += Cost::from(b != Some(c)) * self.paint_weight;
        }
        let limit = Cost::from(self.inst.paint_limit);
        let over = |n: usize| (n as Cost - limit).max(0) * PAINT_LIMIT_WEIGHT;
        let left = if at > t { at - pr.run_start[at - 1] } else { 0 };
        let right = if at < len { pr.run_end[at] - at } else { 0 };
        let (a, b) = (if at > t { a } else { None }, b);
        delta += match (a == Some(c), b == Some(c)) {
            (true, true) => over(left + right + 1) - over(left + right),
            (true, false) => over(left + 1) - over(left),
            (false, true) => over(right + 1) - over(right),
            (false, false) if a.is_some() && a == b => over(left) + over(1) + over(right) - over(left + right),
            (false, false) => over(1),
        };
        // Cars that stop the line: `x` at `j`, the cars after it one slot later.
        let m = pr.seq.len();
        for (w, &(r, from, until)) in self.windows.iter().enumerate() {
            let pre = &pr.stops[w];
            // The cars of `seq[a..b]` needing the resource, at their index plus `shift`:
            // the sum of the slots they leave to the window's end.
            let slots_left = |a: usize, b: usize, shift: Cost| -> Cost {
                let (a, b) = (a.min(m), b.min(m));
                if b <= a {
                    return 0;
                }
                let (n, sum) = (pre[b].0 - pre[a].0, pre[b].1 - pre[a].1);
                (until as Cost - shift) * Cost::from(n) - Cost::from(sum)
            };
            let was = slots_left(from, until, 0);
            let now =
                slots_left(from.min(j), until.min(j), 0) + slots_left(from.saturating_sub(1).max(j), until - 1, 1);
            let mine = if x.needs >> r & 1 == 1 && (from..until).contains(&j) { (until - j) as Cost } else { 0 };
            delta += (now - was + mine) * STOP_WEIGHT;
        }
        if let Some((id, due)) = self.rush {
            if x.car.ident == id {
                delta += j.saturating_sub(due) as Cost * LATE_WEIGHT;
            } else if let Some(r) = pr.rush_at
                && r >= j
                && r >= due
            {
                delta += LATE_WEIGHT;
            }
        }
        delta
    }

    /// Per unavailable window, the cars of `seq` needing its resource before each slot, and the
    /// sum of their slots.
    fn stops(&self, seq: &[Item]) -> Vec<Vec<(i64, i64)>> {
        self.windows
            .iter()
            .map(|&(r, _, _)| {
                let mut pre = vec![(0i64, 0i64); seq.len() + 1];
                for (k, it) in seq.iter().enumerate() {
                    let needs = i64::from(it.needs >> r & 1 == 1);
                    pre[k + 1] = (pre[k].0 + needs, pre[k].1 + needs * k as i64);
                }
                pre
            })
            .collect()
    }

    /// The best slot for `x` in `seq` (which does not hold it) among `slots`, the change of cost
    /// it brings, and the change at `near` when `slots` holds it; ties go to the slot nearest
    /// `near`.
    fn best_slot(
        &self,
        seq: &[Item],
        x: &Item,
        slots: std::ops::RangeInclusive<usize>,
        near: usize,
    ) -> Option<(usize, Cost, Option<Cost>)> {
        let pr = self.prepare(seq, x);
        let mut at_near = None;
        let best = slots
            .map(|j| {
                let d = self.insert_delta(&pr, j);
                if j == near {
                    at_near = Some(d);
                }
                (j, d)
            })
            .min_by_key(|&(j, d)| (d, j.abs_diff(near)))?;
        Some((best.0, best.1, at_near))
    }

    /// Whether the car at `slot` would stop the line there.
    fn stops_line(&self, slot: usize, it: &Item) -> bool {
        self.windows.iter().any(|&(r, from, until)| it.needs >> r & 1 == 1 && (from..until).contains(&slot))
    }
}

/// How long a car needing `needs` that reaches the line at `t` waits: until every resource it
/// needs is back (waiting for one can land in another's outage).
fn wait(windows: &[(usize, usize, usize)], needs: u64, t: usize) -> usize {
    let mut at = t;
    while let Some(&(_, _, until)) =
        windows.iter().find(|&&(r, from, until)| needs >> r & 1 == 1 && (from..until).contains(&at))
    {
        at = until;
    }
    at - t
}

/// The queue walked through time: each car enters at the first slot it can; a car needing an
/// unavailable resource holds the line until the resource is back; `None` is an empty slot.
fn walk(windows: &[(usize, usize, usize)], rush: Option<(&str, usize)>, queue: &[Option<&Item>]) -> (u64, u64, u64) {
    let (mut t, mut lost, mut stopping, mut late) = (0usize, 0u64, 0u64, 0u64);
    for entry in queue {
        match entry {
            None => {
                lost += 1;
            }
            Some(it) => {
                let waited = wait(windows, it.needs, t);
                lost += waited as u64;
                t += waited;
                stopping += u64::from(waited > 0);
                if let Some((id, due)) = rush
                    && it.car.ident == id
                {
                    late = t.saturating_sub(due) as u64;
                }
            }
        }
        t += 1;
    }
    (lost, stopping, late)
}

fn outcome(q: &Queue, plan: &Plan, queue: &[Option<&Item>]) -> Outcome {
    let rush = plan.rush.as_ref().map(|(it, w)| (it.car.ident.as_str(), *w));
    let (lost_takts, stopping_cars, rush_late) = walk(&plan.windows, rush, queue);
    let built: Vec<&Car> = queue.iter().flatten().map(|it| &it.car).collect();
    let score = score_cars(&q.inst, &built);
    let mut paint_excess = 0u64;
    let mut run = 0u64;
    for (k, c) in built.iter().enumerate() {
        run = if k > 0 && built[k - 1].colour == c.colour { run + 1 } else { 1 };
        if run > u64::from(q.inst.paint_limit) {
            paint_excess += 1;
        }
    }
    Outcome { score, paint_excess, stopping_cars, lost_takts, rush_late }
}

fn items(q: &Queue) -> Vec<Item> {
    q.inst
        .day
        .iter()
        .zip(&q.needs)
        .enumerate()
        .map(|(k, (c, &n))| Item { car: c.clone(), needs: n, planned: Some(k) })
        .collect()
}

/// The queue if nothing is done: held units leave empty slots, the rush car goes last.
pub fn no_action(q: &Queue, ds: &[Disruption]) -> Result<Outcome, LiveError> {
    let plan = check(q, ds)?;
    Ok(unchanged(q, &plan))
}

fn unchanged(q: &Queue, plan: &Plan) -> Outcome {
    let all = items(q);
    let mut queue: Vec<Option<&Item>> =
        all.iter().map(|it| (!plan.held.contains(&it.car.ident)).then_some(it)).collect();
    if let Some((it, _)) = &plan.rush {
        queue.push(Some(it));
    }
    outcome(q, plan, &queue)
}

/// Held units out, the movable cars that would stop the line to the end of the queue (in their
/// order), the rush car at the head of the movable part: what a supervisor does by hand.
pub fn push_back(q: &Queue, ds: &[Disruption]) -> Result<Proposal, LiveError> {
    let started = Instant::now();
    let plan = check(q, ds)?;
    let pricer = Pricer::new(q, &plan);
    let (mut seq, removed, notes) = start(q, &plan);
    let mut why = HashMap::new();
    if let Some((it, due)) = &plan.rush {
        seq.insert(q.frozen.min(seq.len()), it.clone());
        why.insert(it.car.ident.clone(), format!("rush order due within {due} slots: to the head of the movable part"));
    }
    let stays: Vec<bool> = seq
        .iter()
        .enumerate()
        .map(|(s, it)| s < q.frozen || it.planned.is_none() || !pricer.stops_line(s, it))
        .collect();
    let (mut keep, mut back) = (Vec::new(), Vec::new());
    for (it, stay) in seq.into_iter().zip(stays) {
        if stay { keep.push(it) } else { back.push(it) }
    }
    for it in &back {
        why.insert(it.car.ident.clone(), "would stop the line: to the end of the queue".to_string());
    }
    let seq: Vec<Item> = keep.into_iter().chain(back).collect();
    finish(q, &plan, seq, removed, notes, &why, started)
}

/// The working queue with held units taken out (the movable ones; a frozen unit cannot leave),
/// and the notes on what cannot be fixed.
fn start(q: &Queue, plan: &Plan) -> (Vec<Item>, Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut notes = Vec::new();
    let mut seq = Vec::new();
    for (k, it) in items(q).into_iter().enumerate() {
        if plan.held.contains(&it.car.ident) {
            if k < q.frozen {
                notes.push(format!(
                    "unit {} is on hold but frozen at slot {k}: it stays; pull it at the line or build it and keep it",
                    it.car.ident
                ));
            } else {
                removed.push(it.car.ident.clone());
                continue;
            }
        }
        seq.push(it);
    }
    (seq, removed, notes)
}

fn finish(
    q: &Queue,
    plan: &Plan,
    seq: Vec<Item>,
    removed: Vec<String>,
    mut notes: Vec<String>,
    why: &HashMap<String, String>,
    started: Instant,
) -> Result<Proposal, LiveError> {
    let before = unchanged(q, plan);
    // A held frozen unit still stands in its slot: an empty one when pulled at the line.
    let after_queue: Vec<Option<&Item>> =
        seq.iter().map(|it| (!plan.held.contains(&it.car.ident)).then_some(it)).collect();
    let after = outcome(q, plan, &after_queue);
    notes.extend(plan.frozen_stops.iter().cloned());
    let moves = seq
        .iter()
        .enumerate()
        .filter_map(|(s, it)| {
            why.get(&it.car.ident).map(|w| Move {
                ident: it.car.ident.clone(),
                from: it.planned,
                to: s,
                why: w.clone(),
            })
        })
        .collect();
    Ok(Proposal {
        idents: seq.iter().map(|it| it.car.ident.clone()).collect(),
        moves,
        removed,
        before,
        after,
        notes,
        first: started.elapsed(),
        elapsed: started.elapsed(),
    })
}

/// A proposal for the queue under the disruptions, by `deadline` (give the first phase, one pass
/// over the queue per car that must move, the time it needs: a proposal cut short by the
/// deadline says how many such cars it did not move).
pub fn propose(q: &Queue, ds: &[Disruption], deadline: Instant, params: &Params) -> Result<Proposal, LiveError> {
    let started = Instant::now();
    let plan = check(q, ds)?;
    let pricer = Pricer::new(q, &plan);
    let (mut seq, removed, notes) = start(q, &plan);
    let frozen = q.frozen;
    let mut notes = notes;
    let mut why: HashMap<String, String> = HashMap::new();
    let describe = |it: &Item, s: usize| -> String {
        let missing: Vec<String> = plan
            .windows
            .iter()
            .filter(|&&(r, from, until)| it.needs >> r & 1 == 1 && (from..until).contains(&s))
            .map(|&(r, from, until)| format!("{} is unavailable in slots {from}..{until}", q.resources[r]))
            .collect();
        format!("needs what is missing at slot {s}: {}", missing.join(", "))
    };
    if let Some((it, due)) = &plan.rush {
        let last = seq.len();
        let hi = (*due).clamp(frozen, last);
        if *due < frozen {
            notes
                .push(format!("rush car {} is due within {due} slots but the first {frozen} are frozen", it.car.ident));
        }
        let j = pricer.best_slot(&seq, it, frozen..=hi, frozen).map_or(last, |b| b.0);
        seq.insert(j, it.clone());
        why.insert(it.car.ident.clone(), format!("rush order due within {due} slots"));
    }
    // Phase 1: each movable car that would stop the line goes where it costs least.
    let mut stuck: HashSet<String> = HashSet::new();
    let mut forced = 0usize;
    // A car put just after a window can be shifted back into it by a later move: it is moved
    // again, a bounded number of times.
    let mut passes = 0usize;
    let must_move = |seq: &[Item], stuck: &HashSet<String>, s: usize| {
        seq[s].planned.is_some() && !stuck.contains(&seq[s].car.ident) && pricer.stops_line(s, &seq[s])
    };
    while passes < 4 * seq.len()
        && Instant::now() < deadline
        && let Some(i) = (frozen..seq.len()).find(|&s| must_move(&seq, &stuck, s))
    {
        passes += 1;
        let x = seq.remove(i);
        let reason = describe(&x, i);
        let j = pricer.best_slot(&seq, &x, frozen..=seq.len(), i).map_or(i, |b| b.0);
        let blocked = pricer.stops_line(j, &x);
        if j != i && !why.contains_key(&x.car.ident) {
            forced += 1;
            why.insert(x.car.ident.clone(), reason);
        }
        seq.insert(j, x);
        if !blocked {
            continue;
        }
        // It cannot get out by moving itself (the cars behind it need the same): bring the next
        // car that needs nothing missing in front of it, when that costs less.
        let pulled =
            (j + 1..seq.len()).find(|&k| seq[k].planned.is_some() && !pricer.stops_line(j, &seq[k])).and_then(|k| {
                let y = seq.remove(k);
                let here = pricer.best_slot(&seq, &y, j..=j, j).map(|b| b.1);
                let stay = pricer.best_slot(&seq, &y, k..=k, k).map(|b| b.1);
                seq.insert(k, y);
                (here < stay).then_some(k)
            });
        match pulled {
            Some(k) => {
                let y = seq.remove(k);
                if !why.contains_key(&y.car.ident) {
                    forced += 1;
                    why.insert(
                        y.car.ident.clone(),
                        format!("pulled forward to slot {j}: it needs nothing missing there, the cars behind it do"),
                    );
                }
                seq.insert(j, y);
            }
            None => {
                stuck.insert(seq[j].car.ident.clone());
            }
        }
    }
    let left = (frozen..seq.len()).filter(|&s| must_move(&seq, &stuck, s)).count();
    if left > 0 {
        let why_stopped = if Instant::now() >= deadline { "the deadline came first" } else { "the search gave up" };
        notes.push(format!("{why_stopped}: {left} cars that stop the line were not moved yet"));
    }
    let still = (frozen..seq.len()).filter(|&s| seq[s].planned.is_some() && pricer.stops_line(s, &seq[s])).count();
    if still > left {
        notes.push(format!(
            "{} cars still reach the line while what they need is missing: too few cars without it to fill the gap",
            still - left
        ));
    }
    let first = started.elapsed();
    // Phase 2: a few more cars, each where it removes more than a move's cost, around the places
    // the disruption and the first phase touched; the first such move found is taken.
    let budget = params.extra_moves.max(forced);
    let mut extra = 0usize;
    let mut touched: Vec<usize> = why.keys().filter_map(|id| seq.iter().position(|it| &it.car.ident == id)).collect();
    touched.extend(removed.iter().filter_map(|id| q.inst.day.iter().position(|c| &c.ident == id)));
    touched.extend(stuck.iter().filter_map(|id| seq.iter().position(|it| &it.car.ident == id)));
    let reach = (pricer.reach * 2).min(REPAIR_SPAN / 2);
    let mut improved = true;
    'search: while improved && Instant::now() < deadline {
        improved = false;
        let mut around: Vec<usize> = touched
            .iter()
            .flat_map(|&s| s.saturating_sub(reach)..(s + reach + 1))
            .filter(|&s| s >= frozen && s < seq.len())
            .collect();
        around.sort_unstable();
        around.dedup();
        for &i in &around {
            if Instant::now() >= deadline {
                break 'search;
            }
            let moved = why.contains_key(&seq[i].car.ident);
            if !moved && extra >= budget {
                continue;
            }
            let x = seq.remove(i);
            let lo = i.saturating_sub(REPAIR_SPAN).max(frozen);
            let hi = (i + REPAIR_SPAN).min(seq.len());
            let charge = if moved { 0 } else { Cost::from(params.move_cost) };
            let to = pricer.best_slot(&seq, &x, lo..=hi, i).and_then(|(j, d, stay)| {
                let gain = stay.unwrap_or(0) - d - charge;
                (j != i && gain > 0).then_some((j, gain))
            });
            match to {
                Some((j, gain)) => {
                    if !moved {
                        extra += 1;
                        why.insert(x.car.ident.clone(), format!("to slot {j}: {}", gain_in_words(q, gain + charge)));
                    }
                    seq.insert(j, x);
                    touched.push(j);
                    improved = true;
                }
                None => seq.insert(i, x),
            }
        }
    }
    let mut p = finish(q, &plan, seq, removed, notes, &why, started)?;
    p.first = first;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::Rng;
    use super::super::roadef::Rule;
    use super::*;

    fn car(rng: &mut Rng, k: usize, rules: usize) -> Car {
        Car {
            ident: format!("C{k}"),
            rank: k as u64,
            colour: rng.below(3) as u32,
            options: (0..rules).map(|r| u64::from(rng.below(3) == 0) << r).sum(),
        }
    }

    /// A move's gain is told in the plant's objectives, most important first.
    #[test]
    fn a_gain_is_told_in_the_plants_objectives() {
        let q = |objectives: Vec<Objective>| Queue {
            inst: Instance { objectives, rules: vec![], paint_limit: 5, tail: vec![], day: vec![] },
            needs: vec![],
            resources: vec![],
            frozen: 0,
        };
        let hpl = q(vec![Objective::High, Objective::Paint, Objective::Low]);
        assert_eq!(gain_in_words(&hpl, 1_000_000), "one fewer high-priority rule violation");
        assert_eq!(
            gain_in_words(&hpl, 1_000_000 - 2_000 + 3),
            "one fewer high-priority rule violation, 2 more colour changes, 3 fewer low-priority rule violations"
        );
        assert_eq!(gain_in_words(&hpl, 2_001), "2 fewer colour changes, one fewer low-priority rule violation");
        let ph = q(vec![Objective::Paint, Objective::High]);
        assert_eq!(gain_in_words(&ph, 999_000), "one fewer colour change, one more high-priority rule violation");
        assert_eq!(gain_in_words(&ph, PAINT_LIMIT_WEIGHT), "fewer cars over the paint limit");
        assert_eq!(gain_in_words(&ph, 0), "a better place under the plant's rules");
    }

    /// The change an insertion is priced at is the change of the whole cost, with a tail,
    /// unavailable windows, a rush car, end windows and paint runs over the limit.
    #[test]
    fn an_insertion_is_priced_at_the_change_of_the_whole_cost() {
        let mut rng = Rng::new(7);
        for round in 0..40 {
            let rules = vec![
                Rule { name: "a".into(), n: 1, p: 3, high: true },
                Rule { name: "b".into(), n: 2, p: 5, high: false },
                Rule { name: "c".into(), n: 3, p: 12, high: false },
                Rule { name: "d".into(), n: 1, p: 1, high: true },
            ];
            let n = 5 + rng.below(40);
            let tail: Vec<Car> = (0..rng.below(14)).map(|k| car(&mut rng, 1000 + k, 4)).collect();
            let day: Vec<Car> = (0..n).map(|k| car(&mut rng, k, 4)).collect();
            let inst = Instance {
                objectives: if round % 2 == 0 {
                    vec![Objective::High, Objective::Paint, Objective::Low]
                } else {
                    vec![Objective::Paint, Objective::High, Objective::Low]
                },
                rules,
                paint_limit: 2,
                tail,
                day,
            };
            let needs: Vec<u64> = (0..n).map(|_| rng.below(4) as u64).collect();
            let q = Queue { inst, needs, resources: vec!["P".into(), "E".into()], frozen: 0 };
            let rush = Car { ident: "RUSH".into(), rank: 0, colour: 1, options: 1 };
            let from = rng.below(n);
            let ds = vec![
                Disruption::Unavailable { resource: 0, from, until: from + 1 + rng.below(n) },
                Disruption::Unavailable { resource: 1, from: 0, until: 1 + rng.below(n) },
                Disruption::Rush { car: rush, needs: 1, within: rng.below(n) },
            ];
            let plan = check(&q, &ds).expect("valid");
            let pricer = Pricer::new(&q, &plan);
            let mut seq = items(&q);
            seq.insert(rng.below(n + 1), plan.rush.as_ref().expect("rush").0.clone());
            for _ in 0..20 {
                let i = rng.below(seq.len());
                let x = seq.remove(i);
                let j = rng.below(seq.len() + 1);
                let rest = pricer.cost(&seq);
                let (_, d, _) = pricer.best_slot(&seq, &x, j..=j, j).expect("one slot");
                assert_eq!(d, pricer.insert_delta(&pricer.prepare(&seq, &x), j));
                seq.insert(j, x);
                assert_eq!(pricer.cost(&seq) - rest, d, "round {round}: car {i} to slot {j}");
            }
        }
    }
}
