//! The ROADEF 2005 car-sequencing problem, as Renault posed it with real production days: the
//! cars of day D after the fixed tail of day D-1, ratio rules of high and low priority, a paint
//! shop that wants few colour changes and never more than a limit of one colour in a row, and
//! the three objectives in an order the plant chooses (weights 1,000,000, 1,000 and 1).
//!
//! - [`parse`]: the challenge's four files (`vehicles.txt`, `ratios.txt`,
//!   `paint_batch_limit.txt`, `optimization_objectives.txt`), every error naming the file, line
//!   and field.
//! - [`score`]: the objective recomputed from its definition (the checker).
//! - [`solve`]: a greedy start that holds the paint limit, or the plant's own order when that is
//!   better, then a local search of swaps, reversals and insertions that never takes a worse move
//!   and never breaks the paint limit. It can only end at or below the plant's order, and it
//!   stops early only at a proved optimum (no ratio violated, the fewest colour changes).
//!
//! Readings of the subject this module uses (the report says so beside every figure):
//! - Ratio windows: every window of `P` consecutive cars that holds a car of day D counts,
//!   including the windows that begin in the tail of D-1 and the last windows of day D, shorter
//!   than `P`, with the same `N` (the subject's rule for the end of the day).
//! - Paint changes: between consecutive cars of day D, plus one when the first car of D differs
//!   from the last of D-1.
//! - Paint limit: runs of one colour inside day D; a run that continues the tail's colour is
//!   counted from the first car of D. [`Score::longest_run_with_tail`] shows the other reading.

use super::{Evaluator, MAX_SEGMENT, ParseError, Problem, RatioRule, Rng, err};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// One of the three objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Colour changes (`paint_color_batches`).
    Paint,
    /// Violations of the high-priority ratio rules.
    High,
    /// Violations of the low-priority ratio rules.
    Low,
}

/// The weights of the objectives by rank.
pub const WEIGHTS: [u64; 3] = [1_000_000, 1_000, 1];

/// Most cars in a day (tail included): bounds memory and the time of one pass.
pub const MAX_CARS: usize = 20_000;

/// A car: its identifier, its rank in the plant's own order, its colour and its options (bit
/// `r` ↔ rule `r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    pub ident: String,
    pub rank: u64,
    pub colour: u32,
    pub options: u64,
}

/// "At most `n` cars with the option in any `p` consecutive".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub n: u32,
    pub p: u32,
    pub high: bool,
}

/// One production day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The objectives in rank order (two when the day has no low-priority rule).
    pub objectives: Vec<Objective>,
    pub rules: Vec<Rule>,
    pub paint_limit: u32,
    /// The fixed tail of day D-1, in build order.
    pub tail: Vec<Car>,
    /// The cars of day D in the plant's own order.
    pub day: Vec<Car>,
}

/// The text of the four files of an instance.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub vehicles: &'a str,
    pub ratios: &'a str,
    pub paint_batch_limit: &'a str,
    pub objectives: &'a str,
}

/// Why an instance cannot be read: the file, then the line and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoadefError {
    pub file: &'static str,
    pub error: ParseError,
}

impl fmt::Display for RoadefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.file, self.error)
    }
}

impl std::error::Error for RoadefError {}

/// The fields of one line of a `;`-separated file: `\r`, spaces and a trailing `;` dropped.
fn fields(line: &str) -> Vec<&str> {
    let l = line.trim_end_matches('\r').trim();
    l.strip_suffix(';').unwrap_or(l).split(';').map(str::trim).collect()
}

/// The lines of a `;`-separated file after its header: (line number, fields), blank lines
/// skipped.
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, fields(l)))
}

fn header(text: &str) -> Vec<&str> {
    fields(text.lines().next().unwrap_or(""))
}

fn number<T: std::str::FromStr>(line: usize, field: &str, v: &str) -> Result<T, ParseError> {
    v.parse().map_err(|_| err(line, field, format!("`{v}` is not a whole number")))
}

/// Read an instance from the text of its four files.
pub fn parse(files: &Files<'_>) -> Result<Instance, RoadefError> {
    let at = |file: &'static str| move |error: ParseError| RoadefError { file, error };

    // Ratio rules.
    let mut rules = Vec::new();
    for (n, row) in rows(files.ratios) {
        let (Some(ratio), Some(prio), Some(name)) = (row.first(), row.get(1), row.get(2)) else {
            return Err(at("ratios.txt")(err(n, "Ratio;Prio;Ident", "fewer than 3 fields")));
        };
        let (num, den) =
            ratio.split_once('/').ok_or_else(|| at("ratios.txt")(err(n, "Ratio", format!("`{ratio}` is not N/P"))))?;
        let num: u32 = number(n, "Ratio", num.trim()).map_err(at("ratios.txt"))?;
        let den: u32 = number(n, "Ratio", den.trim()).map_err(at("ratios.txt"))?;
        if den == 0 || u64::from(den) > super::MAX_WINDOW || num > den {
            return Err(at("ratios.txt")(err(
                n,
                "Ratio",
                format!("{num}/{den}: P must be 1 to {} and N at most P", super::MAX_WINDOW),
            )));
        }
        let high = match *prio {
            "1" => true,
            "0" => false,
            other => return Err(at("ratios.txt")(err(n, "Prio", format!("`{other}`: must be 0 or 1")))),
        };
        if rules.iter().any(|r: &Rule| r.name == *name) {
            return Err(at("ratios.txt")(err(n, "Ident", format!("{name} appears twice"))));
        }
        rules.push(Rule { name: name.to_string(), n: num, p: den, high });
    }
    if rules.len() > super::MAX_RULES {
        return Err(at("ratios.txt")(err(0, "rules", format!("{}: at most {}", rules.len(), super::MAX_RULES))));
    }

    // Paint limit.
    let (n, limit) = rows(files.paint_batch_limit)
        .next()
        .ok_or_else(|| at("paint_batch_limit.txt")(err(2, "limitation", "missing")))?;
    let paint_limit: u32 =
        number(n, "limitation", limit.first().copied().unwrap_or("")).map_err(at("paint_batch_limit.txt"))?;
    if paint_limit == 0 {
        return Err(at("paint_batch_limit.txt")(err(n, "limitation", "0: no car could be painted")));
    }

    // Objectives in rank order.
    let mut ranked: Vec<(u32, Objective, usize)> = Vec::new();
    for (n, row) in rows(files.objectives) {
        let (Some(rank), Some(name)) = (row.first(), row.get(1)) else {
            return Err(at("optimization_objectives.txt")(err(n, "rank;objective name", "fewer than 2 fields")));
        };
        let rank: u32 = number(n, "rank", rank).map_err(at("optimization_objectives.txt"))?;
        let o = match *name {
            "paint_color_batches" => Objective::Paint,
            "high_priority_level_and_easy_to_satisfy_ratio_constraints"
            | "high_priority_level_and_difficult_to_satisfy_ratio_constraints" => Objective::High,
            "low_priority_level_ratio_constraints" => Objective::Low,
            other => {
                return Err(at("optimization_objectives.txt")(err(
                    n,
                    "objective name",
                    format!("`{other}` is unknown"),
                )));
            }
        };
        if ranked.iter().any(|&(r, x, _)| r == rank || x == o) {
            return Err(at("optimization_objectives.txt")(err(
                n,
                "rank",
                format!("{rank} ({name}) repeats a rank or an objective"),
            )));
        }
        ranked.push((rank, o, n));
    }
    ranked.sort_by_key(|&(r, _, _)| r);
    let objectives: Vec<Objective> = ranked.iter().map(|&(_, o, _)| o).collect();
    for (o, what) in [(Objective::High, true), (Objective::Low, false)] {
        if !objectives.contains(&o) && rules.iter().any(|r| r.high == what) {
            return Err(at("optimization_objectives.txt")(err(
                0,
                "objective name",
                format!(
                    "the day has {} ratio rules but no objective ranks them",
                    if what { "high-priority" } else { "low-priority" }
                ),
            )));
        }
    }
    if !objectives.contains(&Objective::Paint) {
        return Err(at("optimization_objectives.txt")(err(0, "objective name", "paint_color_batches is not ranked")));
    }

    // Vehicles: `Date;SeqRank;Ident;Paint Color;<one column per rule>`.
    let head = header(files.vehicles);
    if head.len() < 4 {
        return Err(at("vehicles.txt")(err(1, "header", "fewer than 4 columns (Date;SeqRank;Ident;Paint Color)")));
    }
    let mut column = Vec::with_capacity(rules.len());
    for r in &rules {
        let k = head.iter().skip(4).position(|h| *h == r.name).ok_or_else(|| {
            at("vehicles.txt")(err(1, "header", format!("no column for the ratio rule {} of ratios.txt", r.name)))
        })?;
        column.push(4 + k);
    }
    let mut by_date: BTreeMap<(u32, u32, u32), Vec<Car>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = Vec::new();
    let mut count = 0usize;
    for (n, row) in rows(files.vehicles) {
        if row.len() != head.len() {
            return Err(at("vehicles.txt")(err(
                n,
                "row",
                format!("{} fields, the header has {}", row.len(), head.len()),
            )));
        }
        count += 1;
        if count > MAX_CARS {
            return Err(at("vehicles.txt")(err(n, "row", format!("more than {MAX_CARS} cars"))));
        }
        let date: Vec<&str> = row[0].split_whitespace().collect();
        let date = match date[..] {
            [y, w, d] => (number(n, "Date", y), number(n, "Date", w), number(n, "Date", d)),
            _ => return Err(at("vehicles.txt")(err(n, "Date", format!("`{}` is not `year week day`", row[0])))),
        };
        let date = (
            date.0.map_err(at("vehicles.txt"))?,
            date.1.map_err(at("vehicles.txt"))?,
            date.2.map_err(at("vehicles.txt"))?,
        );
        let rank: u64 = number(n, "SeqRank", row[1]).map_err(at("vehicles.txt"))?;
        let ident = row[2].to_string();
        if ident.is_empty() {
            return Err(at("vehicles.txt")(err(n, "Ident", "empty")));
        }
        if !seen.insert((date, ident.clone())) {
            // Real tails repeat an identifier now and then; day D's must be unique (the
            // written order names its cars by them), checked once the day is known.
            twice.push((date, n, ident.clone()));
        }
        let colour: u32 = number(n, "Paint Color", row[3]).map_err(at("vehicles.txt"))?;
        let mut options = 0u64;
        for (r, &k) in column.iter().enumerate() {
            match row[k] {
                "0" => {}
                "1" => options |= 1 << r,
                other => {
                    return Err(at("vehicles.txt")(err(n, head[k], format!("`{other}`: must be 0 or 1"))));
                }
            }
        }
        by_date.entry(date).or_default().push(Car { ident, rank, colour, options });
    }
    if let Some((_, n, ident)) = twice.iter().find(|(d, _, _)| by_date.keys().next_back() == Some(d)) {
        return Err(at("vehicles.txt")(err(*n, "Ident", format!("{ident} appears twice in day D"))));
    }
    let mut days: Vec<Vec<Car>> = by_date.into_values().collect();
    for d in &mut days {
        d.sort_by_key(|c| c.rank);
    }
    let (tail, day) = match days.len() {
        0 => return Err(at("vehicles.txt")(err(0, "row", "no cars: nothing to sequence"))),
        1 => (Vec::new(), days.remove(0)),
        2 => {
            let day = days.remove(1);
            (days.remove(0), day)
        }
        k => return Err(at("vehicles.txt")(err(0, "Date", format!("{k} dates: expected day D-1 and day D")))),
    };
    Ok(Instance { objectives, rules, paint_limit, tail, day })
}

impl Instance {
    /// The weight of an objective (0 when it is not ranked, which [`parse`] allows only when it
    /// has nothing to count).
    pub fn weight(&self, o: Objective) -> u64 {
        self.objectives.iter().position(|&x| x == o).map_or(0, |k| WEIGHTS[k])
    }

    /// The plant's own order: day D as the file ranks it.
    pub fn plant_order(&self) -> Vec<usize> {
        (0..self.day.len()).collect()
    }

    /// The cars of day D per colour.
    fn colour_counts(&self) -> BTreeMap<u32, u64> {
        let mut by_colour = BTreeMap::new();
        for c in &self.day {
            *by_colour.entry(c.colour).or_default() += 1;
        }
        by_colour
    }

    /// The fewest colour changes any order can have: each colour needs its cars over runs of at
    /// most the limit, and the first run costs a change unless it continues the tail's colour.
    pub fn paint_lower_bound(&self) -> u64 {
        let by_colour = self.colour_counts();
        let runs: u64 = by_colour.values().map(|n| n.div_ceil(u64::from(self.paint_limit))).sum();
        match self.tail.last() {
            Some(t) if !by_colour.contains_key(&t.colour) => runs,
            _ => runs.saturating_sub(1),
        }
    }

    /// Why no order of day D can hold the paint limit, when a count shows it: the most common
    /// colour needs more cars of other colours between its runs than the day has.
    pub fn paint_infeasible(&self) -> Option<String> {
        let by_colour = self.colour_counts();
        let (&colour, &most) = by_colour.iter().max_by_key(|&(&c, &n)| (n, std::cmp::Reverse(c)))?;
        let runs = most.div_ceil(u64::from(self.paint_limit));
        let others = self.day.len() as u64 - most;
        (others + 1 < runs).then(|| {
            format!(
                "no sequence meets the paint limit: {most} cars of colour {colour} need {runs} runs of at most {} \
                 and {} cars of other colours between them; the day has {others}",
                self.paint_limit,
                runs - 1
            )
        })
    }
}

/// The objective values of an order of day D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Score {
    /// Colour changes.
    pub paint: u64,
    /// Violations of the high-priority rules.
    pub high: u64,
    /// Violations of the low-priority rules.
    pub low: u64,
    /// The weighted sum.
    pub total: u64,
    /// The longest run of one colour inside day D (the limit's reading here).
    pub longest_run: u32,
    /// The longest run counting the cars of the tail it continues (the other reading).
    pub longest_run_with_tail: u32,
}

impl Score {
    /// Whether the paint limit holds (the reading of this module).
    pub fn valid(&self, inst: &Instance) -> bool {
        self.longest_run <= inst.paint_limit
    }
}

/// Whether `order` holds every car of day D once; why not if not.
pub fn check_order(inst: &Instance, order: &[usize]) -> Result<(), String> {
    let mut seen = vec![false; inst.day.len()];
    for (i, &c) in order.iter().enumerate() {
        match seen.get_mut(c) {
            None => return Err(format!("position {i}: car {c} does not exist")),
            Some(true) => return Err(format!("position {i}: car {} twice", inst.day[c].ident)),
            Some(s) => *s = true,
        }
    }
    match seen.iter().position(|s| !s) {
        Some(c) => Err(format!("car {} missing", inst.day[c].ident)),
        None => Ok(()),
    }
}

/// The objective of an order of day D (indices into [`Instance::day`]), from its definition.
pub fn score(inst: &Instance, order: &[usize]) -> Score {
    let day: Vec<&Car> = order.iter().map(|&i| &inst.day[i]).collect();
    score_cars(inst, &day)
}

/// The objective of `day`, cars in build order after the instance's tail, under the instance's
/// rules and priorities: [`score`] for a queue whose cars are held elsewhere (a live queue, with
/// cars taken out and added).
pub fn score_cars(inst: &Instance, day: &[&Car]) -> Score {
    let cars: Vec<&Car> = inst.tail.iter().chain(day.iter().copied()).collect();
    let first = inst.tail.len();
    let mut s = Score::default();
    let mut run = 0u32;
    let mut run_with_tail = 0u32;
    for i in 0..cars.len() {
        let same = i > 0 && cars[i - 1].colour == cars[i].colour;
        run_with_tail = if same { run_with_tail + 1 } else { 1 };
        if i < first {
            continue;
        }
        run = if same && i > first { run + 1 } else { 1 };
        if i > 0 && !same {
            s.paint += 1;
        }
        s.longest_run = s.longest_run.max(run);
        s.longest_run_with_tail = s.longest_run_with_tail.max(run_with_tail);
    }
    for (r, rule) in inst.rules.iter().enumerate() {
        // Cars with the option before each position; a window's count is a difference of two.
        let mut before = vec![0u64; cars.len() + 1];
        for (i, c) in cars.iter().enumerate() {
            before[i + 1] = before[i] + (c.options >> r & 1);
        }
        for start in 0..cars.len() {
            let end = (start + rule.p as usize).min(cars.len());
            if end <= first {
                continue;
            }
            let with = before[end] - before[start];
            let v = with.saturating_sub(u64::from(rule.n));
            if rule.high {
                s.high += v;
            } else {
                s.low += v;
            }
        }
    }
    s.total = s.paint * inst.weight(Objective::Paint)
        + s.high * inst.weight(Objective::High)
        + s.low * inst.weight(Objective::Low);
    s
}

/// The day as classes of interchangeable cars (one colour, one set of options) for the search.
struct Model {
    pb: Problem,
    colour: Vec<u32>,
    /// The cars of each class of day D, in the plant's order.
    cars: Vec<Vec<usize>>,
    class_of: Vec<u32>,
    paint_weight: u64,
    tail_colour: Option<u32>,
    limit: usize,
}

impl Model {
    fn new(inst: &Instance) -> Model {
        let mut index: BTreeMap<(u32, u64), u32> = BTreeMap::new();
        let mut colour = Vec::new();
        let mut options = Vec::new();
        let mut class = |c: &Car| {
            *index.entry((c.colour, c.options)).or_insert_with(|| {
                colour.push(c.colour);
                options.push(c.options);
                colour.len() as u32 - 1
            })
        };
        let prefix: Vec<u32> = inst.tail.iter().map(&mut class).collect();
        let class_of: Vec<u32> = inst.day.iter().map(&mut class).collect();
        let mut cars = vec![Vec::new(); colour.len()];
        for (i, &k) in class_of.iter().enumerate() {
            cars[k as usize].push(i);
        }
        let rules = inst
            .rules
            .iter()
            .map(|r| RatioRule {
                p: r.n,
                q: r.p,
                weight: inst.weight(if r.high { Objective::High } else { Objective::Low }),
            })
            .collect();
        let pb = Problem {
            rules,
            class_names: (0..colour.len()).map(|k| format!("{k}")).collect(),
            class_options: options,
            counts: cars.iter().map(|v| v.len() as u32).collect(),
            prefix,
            end_windows: true,
        };
        Model {
            pb,
            colour,
            cars,
            class_of,
            paint_weight: inst.weight(Objective::Paint),
            tail_colour: inst.tail.last().map(|c| c.colour),
            limit: inst.paint_limit as usize,
        }
    }

    fn classes(&self, order: &[usize]) -> Vec<u32> {
        order.iter().map(|&i| self.class_of[i]).collect()
    }

    /// An order of cars for an order of classes: each class's cars in the plant's order.
    fn cars_of(&self, classes: &[u32]) -> Vec<usize> {
        let mut next = vec![0usize; self.cars.len()];
        classes
            .iter()
            .map(|&k| {
                let k = k as usize;
                next[k] += 1;
                self.cars[k][next[k] - 1]
            })
            .collect()
    }
}

/// An order under search: the ratio windows kept by the [`Evaluator`], the colour changes here.
struct State<'a> {
    m: &'a Model,
    e: Evaluator<'a>,
    changes: u64,
}

impl<'a> State<'a> {
    fn new(m: &'a Model, classes: &[u32]) -> State<'a> {
        let e = Evaluator::new(&m.pb, classes);
        let mut s = State { m, e, changes: 0 };
        s.changes = (0..classes.len()).filter(|&k| s.changes_at(k, &|i| s.colour(i))).count() as u64;
        s
    }

    fn colour(&self, i: usize) -> u32 {
        self.m.colour[self.e.order()[i] as usize]
    }

    fn total(&self) -> u64 {
        self.e.cost() + self.changes * self.m.paint_weight
    }

    /// Whether the colour changes between `k - 1` and `k` (the tail's last car before 0).
    fn changes_at(&self, k: usize, colour: &impl Fn(usize) -> u32) -> bool {
        let before = if k == 0 { self.m.tail_colour } else { Some(colour(k - 1)) };
        before.is_some_and(|b| b != colour(k))
    }

    /// The change in colour changes if the colours at `changed` (sorted) became `after`'s, or
    /// `None` when a run would pass the paint limit.
    fn paint_delta(&self, changed: &[usize], after: &impl Fn(usize) -> u32) -> Option<i64> {
        let n = self.e.order().len();
        if changed.iter().all(|&i| after(i) == self.colour(i)) {
            return Some(0);
        }
        let mut delta = 0i64;
        let mut last = usize::MAX;
        for &p in changed {
            for k in [p, p + 1] {
                if k < n && (last == usize::MAX || k > last) {
                    delta += i64::from(self.changes_at(k, after)) - i64::from(self.changes_at(k, &|i| self.colour(i)));
                    last = k;
                }
            }
        }
        if self.m.limit < n {
            let mut checked_to = 0usize;
            for &p in changed {
                if p < checked_to {
                    continue;
                }
                let c = after(p);
                let (mut lo, mut hi) = (p, p);
                while lo > 0 && after(lo - 1) == c && hi - lo < self.m.limit {
                    lo -= 1;
                }
                while hi + 1 < n && after(hi + 1) == c && hi - lo < self.m.limit {
                    hi += 1;
                }
                if hi - lo >= self.m.limit {
                    return None;
                }
                checked_to = hi + 1;
            }
        }
        Some(delta)
    }

    /// The order with the run of one colour holding `a` moved to the start of another run,
    /// if that keeps every run within the paint limit.
    fn block_moved(&self, a: usize, rng: &mut Rng) -> Option<Vec<u32>> {
        let n = self.e.order().len();
        let c = self.colour(a);
        let (mut lo, mut hi) = (a, a + 1);
        while lo > 0 && self.colour(lo - 1) == c {
            lo -= 1;
        }
        while hi < n && self.colour(hi) == c {
            hi += 1;
        }
        if hi - lo == n {
            return None;
        }
        // The start of a run outside this one (`n` is the end of the day).
        let mut t = rng.below(n - (hi - lo) + 1);
        if t >= lo {
            t += hi - lo;
        }
        while t > 0 && t < n && self.colour(t - 1) == self.colour(t) {
            t -= 1;
        }
        if t == lo || t == hi {
            return None;
        }
        let order = self.e.order();
        let mut out = Vec::with_capacity(n);
        let run = &order[lo..hi];
        for (i, &k) in order.iter().enumerate() {
            if i == t {
                out.extend_from_slice(run);
            }
            if i < lo || i >= hi {
                out.push(k);
            }
        }
        if t == n {
            out.extend_from_slice(run);
        }
        self.within_limit(&out).then_some(out)
    }

    fn within_limit(&self, order: &[u32]) -> bool {
        let mut len = 0usize;
        for i in 0..order.len() {
            let same = i > 0 && self.m.colour[order[i] as usize] == self.m.colour[order[i - 1] as usize];
            len = if same { len + 1 } else { 1 };
            if len > self.m.limit {
                return false;
            }
        }
        true
    }

    /// The windows over capacity (rule, start), listed now and then: a scan for them at every
    /// move would cost more than the move when they are few among many.
    fn hot_windows(&self, hot: &mut Vec<(usize, usize)>) {
        hot.clear();
        for (r, rule) in self.m.pb.rules.iter().enumerate() {
            let w = &self.e.windows[r];
            let lo = self.e.first_counted(r).min(w.len());
            hot.extend((lo..w.len()).filter(|&s| w[s] > rule.p).map(|s| (r, s)));
        }
    }

    /// A car with the option inside a listed window that is still over capacity, if the one
    /// drawn is.
    fn in_hot_window(&self, hot: &[(usize, usize)], rng: &mut Rng) -> Option<usize> {
        if hot.is_empty() {
            return None;
        }
        let (r, start) = hot[rng.below(hot.len())];
        if self.e.windows[r][start] <= self.m.pb.rules[r].p {
            return None;
        }
        self.e.car_in_window(r, start, rng)
    }

    /// The change in colour changes of swapping `a` and `b`, `None` if it breaks the limit.
    fn swap_paint(&self, a: usize, b: usize) -> Option<i64> {
        let (lo, hi) = (a.min(b), a.max(b));
        let (clo, chi) = (self.colour(lo), self.colour(hi));
        let after = |i: usize| {
            if i == lo {
                chi
            } else if i == hi {
                clo
            } else {
                self.colour(i)
            }
        };
        self.paint_delta(&[lo, hi], &after)
    }

    /// The change of the weighted objective and of the colour changes.
    fn swap_delta(&self, a: usize, b: usize) -> Option<(i64, i64)> {
        let paint = self.swap_paint(a, b)?;
        Some((self.e.swap_delta(a, b) + paint * self.m.paint_weight as i64, paint))
    }

    fn swap(&mut self, a: usize, b: usize, paint: i64) {
        self.e.swap(a, b);
        self.changes = (self.changes as i64 + paint) as u64;
    }

    fn rewrite_delta(&self, at: usize, seg: &[u32], changed: &mut Vec<usize>) -> Option<(i64, i64)> {
        let after = |i: usize| {
            if i >= at && i < at + seg.len() { self.m.colour[seg[i - at] as usize] } else { self.colour(i) }
        };
        changed.clear();
        changed.extend(at..at + seg.len());
        let paint = self.paint_delta(changed, &after)?;
        Some((self.e.rewrite_delta(at, seg) + paint * self.m.paint_weight as i64, paint))
    }
}

/// What [`solve`] found.
#[derive(Debug, Clone)]
pub struct Solution {
    /// Day D in build order (indices into [`Instance::day`]).
    pub order: Vec<usize>,
    pub score: Score,
    /// The start of the search and where it came from (`greedy` or `plant order`).
    pub start: Score,
    pub start_from: &'static str,
    /// The greedy construction alone, and how long it took.
    pub greedy: Score,
    pub greedy_time: Duration,
    pub time_to_best: Duration,
    pub moves_tried: u64,
    /// Whether the search stopped because nothing better exists (no ratio violated and the
    /// fewest colour changes possible).
    pub optimal: bool,
}

/// Greedy start: at each position the class that adds the least weighted cost (ratio windows
/// ending there, a colour change) without passing the paint limit; ties to the class whose
/// options are most in demand, then to staying with the colour that has the most cars left.
fn greedy(m: &Model, rng: &mut Rng) -> Vec<u32> {
    let pb = &m.pb;
    let n = pb.units();
    let mut left = pb.counts.clone();
    let mut colour_left: BTreeMap<u32, u64> = BTreeMap::new();
    for (k, &l) in left.iter().enumerate() {
        *colour_left.entry(m.colour[k]).or_default() += u64::from(l);
    }
    let mut need: Vec<u64> = (0..pb.rules.len())
        .map(|r| left.iter().zip(&pb.class_options).filter(|(_, o)| *o >> r & 1 == 1).map(|(&c, _)| u64::from(c)).sum())
        .collect();
    let mut seq: Vec<u32> = pb.prefix.clone();
    // Per rule, the cars with the option among the last `q - 1` of the sequence.
    let mut recent: Vec<u64> = pb
        .rules
        .iter()
        .enumerate()
        .map(|(r, rule)| {
            let from = seq.len().saturating_sub(rule.q as usize - 1);
            seq[from..].iter().filter(|&&k| pb.class_options[k as usize] >> r & 1 == 1).count() as u64
        })
        .collect();
    let mut prev = m.tail_colour;
    let mut run = 0usize;
    for pos in 0..n {
        let remaining = (n - pos) as f64;
        // The two colours with the most cars left: whether a choice leaves the most common one
        // too few cars of other colours to break its runs (a dead end for the paint limit).
        let mut top = [(0u64, u32::MAX); 2];
        for (&c, &l) in &colour_left {
            if l > top[0].0 {
                top = [(l, c), top[0]];
            } else if l > top[1].0 {
                top[1] = (l, c);
            }
        }
        let left_after = (n - pos - 1) as u64;
        let dead_end = |colour: u32, run_after: usize| {
            let (most, c) = if colour == top[0].1 && top[0].0 - 1 < top[1].0 {
                top[1]
            } else if colour == top[0].1 {
                (top[0].0 - 1, colour)
            } else {
                top[0]
            };
            let others = left_after - most;
            let room = if c == colour { (m.limit - run_after.min(m.limit)) as u64 } else { 0 };
            let runs = most.saturating_sub(room).div_ceil(m.limit as u64);
            let separators = if c == colour { runs } else { runs.saturating_sub(1) };
            separators > others
        };
        let mut best: Option<(bool, bool, u64, f64, i64, u64, u32)> = None;
        for (k, &l) in left.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let colour = m.colour[k];
            let same = prev == Some(colour);
            let over = same && run >= m.limit;
            let stuck = dead_end(colour, if same { run + 1 } else { 1 });
            let mut cost = if prev.is_some() && !same { m.paint_weight } else { 0 };
            let mut demand = 0.0;
            for (r, rule) in pb.rules.iter().enumerate() {
                if pb.class_options[k] >> r & 1 == 0 {
                    continue;
                }
                cost += (recent[r] + 1).saturating_sub(u64::from(rule.p)) * rule.weight;
                demand +=
                    need[r] as f64 * f64::from(rule.q) / (f64::from(rule.p.max(1)) * remaining) * rule.weight as f64;
            }
            let stay = if same { i64::MAX } else { colour_left.get(&colour).copied().unwrap_or(0) as i64 };
            let key = (over, stuck, cost, -demand, -stay, rng.next_u64(), k as u32);
            if best.as_ref().is_none_or(|b| (key.0, key.1, key.2, key.3, key.4, key.5) < (b.0, b.1, b.2, b.3, b.4, b.5))
            {
                best = Some(key);
            }
        }
        let Some((_, _, _, _, _, _, k)) = best else { break };
        let ku = k as usize;
        left[ku] -= 1;
        if let Some(l) = colour_left.get_mut(&m.colour[ku]) {
            *l -= 1;
        }
        run = if prev == Some(m.colour[ku]) { run + 1 } else { 1 };
        prev = Some(m.colour[ku]);
        seq.push(k);
        for (r, rule) in pb.rules.iter().enumerate() {
            let has = |c: u32| pb.class_options[c as usize] >> r & 1 == 1;
            if has(k) {
                need[r] -= 1;
            }
            // Keep the last q - 1: add the new car, drop the one now q - 1 back.
            let q = rule.q as usize;
            if q > 1 {
                recent[r] += u64::from(has(k));
                if seq.len() >= q {
                    recent[r] -= u64::from(has(seq[seq.len() - q]));
                }
            }
        }
    }
    seq.split_off(pb.prefix.len())
}

/// Search settings; the defaults are used for every instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Moves without a new best, per car, before going back to the best order with a few
    /// random swaps.
    pub stall_per_car: u64,
    /// Stop after this many moves whatever the clock says (the seed then decides everything).
    pub max_moves: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params { stall_per_car: 2_000, max_moves: None }
    }
}

/// The best order found by `deadline`, starting from the better of the greedy order and the
/// plant's (when the plant's holds the paint limit), so it is never worse than the plant's.
/// `Err` when no order can hold the paint limit.
pub fn solve(inst: &Instance, seed: u64, deadline: Instant, params: &Params) -> Result<Solution, String> {
    if inst.day.is_empty() {
        return Err("day D has no cars: nothing to sequence".into());
    }
    if let Some(why) = inst.paint_infeasible() {
        return Err(why);
    }
    let started = Instant::now();
    let m = Model::new(inst);
    let mut rng = Rng::new(seed);
    let g = greedy(&m, &mut rng);
    let greedy_time = started.elapsed();
    let greedy_order = m.cars_of(&g);
    let greedy_score = score(inst, &greedy_order);
    let plant = inst.plant_order();
    let plant_score = score(inst, &plant);
    let candidates = [("greedy", g, greedy_score), ("plant order", m.classes(&plant), plant_score)];
    let Some((start_from, start, start_score)) =
        candidates.into_iter().filter(|c| c.2.valid(inst)).min_by_key(|c| c.2.total)
    else {
        return Err(format!(
            "neither the greedy order nor the plant's holds the paint limit of {} (longest runs {} and {})",
            inst.paint_limit, greedy_score.longest_run, plant_score.longest_run
        ));
    };
    let mut s = State::new(&m, &start);
    debug_assert_eq!(s.total(), start_score.total);
    let n = start.len();
    let mut best = (s.total(), s.e.order().to_vec(), started.elapsed());
    let max_q = m.pb.rules.iter().map(|r| r.q as usize).max().unwrap_or(1);
    let span_max = (2 * max_q).clamp(2, MAX_SEGMENT).min(n);
    let stall = (n as u64 * params.stall_per_car).max(10_000);
    let mut since_best = 0u64;
    let mut tried = 0u64;
    let mut seg = [0u32; MAX_SEGMENT];
    let mut changed = Vec::with_capacity(MAX_SEGMENT);
    let mut hot = Vec::new();
    // Block moves cost a full count: often when paint comes first, now and then otherwise.
    let paint_first = inst.objectives.first() == Some(&Objective::Paint);
    let block_every = if paint_first { 32 } else { 1024 };
    let floor = inst.paint_lower_bound() * m.paint_weight;
    while s.total() > floor && n > 1 {
        if tried.is_multiple_of(1024) && Instant::now() >= deadline || params.max_moves.is_some_and(|x| tried >= x) {
            break;
        }
        tried += 1;
        let kind = rng.below(5);
        let a = if s.e.cost() > 0 && rng.below(4) != 0 {
            if tried.is_multiple_of(256) || hot.is_empty() {
                s.hot_windows(&mut hot);
            }
            s.in_hot_window(&hot, &mut rng).unwrap_or_else(|| rng.below(n))
        } else {
            rng.below(n)
        };
        if rng.below(block_every) == 0 {
            // A whole run of one colour moved between two others: the order of the paint
            // batches, which no short move changes without paying for colour changes.
            if let Some(moved) = s.block_moved(a, &mut rng) {
                let t = State::new(&m, &moved);
                if t.total() <= s.total() {
                    s = t;
                    hot.clear();
                    if s.total() < best.0 {
                        best = (s.total(), s.e.order().to_vec(), started.elapsed());
                        since_best = 0;
                    }
                }
            }
            continue;
        }
        let taken = if kind < 3 {
            let b = match kind {
                0 => rng.below(n),
                1 => (a + rng.below(4 * max_q + 1)).saturating_sub(2 * max_q).min(n - 1),
                // A car of the same colour, which leaves the paint as it is.
                _ => {
                    let c = s.colour(a);
                    let mut b = a;
                    for _ in 0..16 {
                        let x = rng.below(n);
                        if s.colour(x) == c {
                            b = x;
                            break;
                        }
                    }
                    b
                }
            };
            if a == b || s.e.order()[a] == s.e.order()[b] {
                continue;
            }
            match s.swap_delta(a, b) {
                Some((d, paint)) if d <= 0 => {
                    s.swap(a, b, paint);
                    true
                }
                _ => false,
            }
        } else {
            let len = 2 + rng.below(span_max - 1);
            let at = a.saturating_sub(rng.below(len)).min(n - len);
            let span = &s.e.order()[at..at + len];
            seg[..len].copy_from_slice(span);
            if kind == 3 {
                seg[..len].reverse();
            } else if rng.below(2) == 0 {
                seg[..len].rotate_left(1);
            } else {
                seg[..len].rotate_right(1);
            }
            if seg[..len] == *span {
                continue;
            }
            match s.rewrite_delta(at, &seg[..len], &mut changed) {
                Some((d, paint)) if d <= 0 => {
                    s.e.rewrite(at, &seg[..len]);
                    s.changes = (s.changes as i64 + paint) as u64;
                    true
                }
                _ => false,
            }
        };
        if taken && s.total() < best.0 {
            best = (s.total(), s.e.order().to_vec(), started.elapsed());
            since_best = 0;
            continue;
        }
        since_best += 1;
        if since_best >= stall {
            s = State::new(&m, &best.1);
            for _ in 0..(n / 50).max(3) {
                let a = rng.below(n);
                let mut b = rng.below(n);
                if paint_first {
                    // Kick within the colours when they come first: a swap across them would
                    // only be undone by the next moves.
                    for _ in 0..16 {
                        if s.colour(b) == s.colour(a) {
                            break;
                        }
                        b = rng.below(n);
                    }
                }
                if let Some(paint) = s.swap_paint(a, b).filter(|_| a != b) {
                    s.swap(a, b, paint);
                }
            }
            since_best = 0;
        }
    }
    let order = m.cars_of(&best.1);
    let found = score(inst, &order);
    debug_assert_eq!(found.total, best.0);
    Ok(Solution {
        order,
        score: found,
        start: start_score,
        start_from,
        greedy: greedy_score,
        greedy_time,
        time_to_best: best.2,
        moves_tried: tried,
        optimal: best.0 <= floor,
    })
}
