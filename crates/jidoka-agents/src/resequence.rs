//! Car sequencing under ratio rules: the order in which the units of a build queue go down the
//! line so that no station gets more option-heavy units than it can work ("at most 1 sunroof in
//! 3": `p / q`, at most `p` units with the option in any `q` consecutive).
//!
//! - [`Problem`]: classes of identical units (their options as a bit set), the ratio rules with a
//!   weight each, and a fixed prefix (units already on the line, or the previous day's tail) that
//!   counts in the windows it shares with the queue but never moves.
//! - [`parse_csplib`]: the CSPLib prob001 format, every error naming its line and field.
//! - [`Evaluator`]: the cost of an order (sum over rules and windows of the units over `p`,
//!   times the rule's weight) with moves evaluated and applied incrementally: a swap of two
//!   positions, or a short span reversed or rotated, touches only the windows that hold them.
//! - [`solve`]: a greedy start, then a local search of swaps (most of a unit in a window over
//!   capacity), reversals and rotations, accepting every move that is not worse (the plateau is
//!   where these problems are solved), going back to the best order with a few random swaps when
//!   it stalls. Not an agent: it reads the clock for its deadline; with a move budget instead
//!   ([`Params::max_moves`]) the seed decides everything. It stops at cost 0 (nothing is better).
//! - [`plain_swaps`]: the baseline a practitioner writes first.
//!
//! The windows are the full windows of the sequence (`q` consecutive positions) that hold at
//! least one movable position; a sequence shorter than `q` is one window. With
//! [`Problem::end_windows`] the windows that run past the end count too (the ROADEF rule). That is the usual
//! CSPLib count ("sum of excess over sliding windows"); [`Evaluator::violated_windows`] gives the
//! other count some papers use (windows over capacity, each once).

use std::fmt;
use std::time::{Duration, Instant};

pub mod live;
pub mod plant;
pub mod roadef;

/// At most `p` units with the option in any `q` consecutive; a window over it costs `weight`
/// per unit too many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatioRule {
    pub p: u32,
    pub q: u32,
    pub weight: u64,
}

/// A sequencing problem: `counts[c]` units of class `c`, whose options are the bits of
/// `class_options[c]` (bit `r` ↔ `rules[r]`), after the fixed `prefix` (class ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub rules: Vec<RatioRule>,
    pub class_names: Vec<String>,
    pub class_options: Vec<u64>,
    pub counts: Vec<u32>,
    pub prefix: Vec<u32>,
    /// Whether the windows that run past the end (shorter than `q`, starting in the last
    /// `q - 1` positions) count too, with the same `p`: the rule of the ROADEF 2005 subject, where
    /// the day's last units are followed by the next day's. CSPLib counts full windows only.
    pub end_windows: bool,
}

/// Most ratio rules (one bit each).
pub const MAX_RULES: usize = 64;

/// Most units in a problem: bounds memory and the time of one pass.
pub const MAX_UNITS: usize = 100_000;

/// Longest window of a ratio rule.
pub const MAX_WINDOW: u64 = 10_000;

/// Why a problem file cannot be read: the line (1-based), the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn err(line: usize, field: impl Into<String>, reason: impl Into<String>) -> ParseError {
    ParseError { line, field: field.into(), reason: reason.into() }
}

/// Read a CSPLib prob001 instance: `cars options classes`, then the `p` of each option, the
/// `q` of each option, then one line per class: `id count` and a 0/1 per option. Blank lines
/// and `#` comments are skipped.
pub fn parse_csplib(text: &str) -> Result<Problem, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty());
    let mut numbers = |what: &str, want: usize| -> Result<(usize, Vec<u64>), ParseError> {
        let (n, line) = lines.next().ok_or_else(|| err(0, what, "missing: the file ends before it"))?;
        let values = line
            .split_whitespace()
            .enumerate()
            .map(|(k, v)| {
                v.parse::<u64>().map_err(|_| err(n, format!("{what}[{k}]"), format!("`{v}` is not a whole number")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if values.len() != want {
            return Err(err(n, what, format!("{} values, expected {want}", values.len())));
        }
        Ok((n, values))
    };
    let (n1, head) = numbers("header (cars options classes)", 3)?;
    let (cars, options, classes) = (head[0] as usize, head[1] as usize, head[2] as usize);
    if options == 0 || options > MAX_RULES {
        return Err(err(n1, "options", format!("{options}: must be 1 to {MAX_RULES}")));
    }
    if cars == 0 || cars > MAX_UNITS {
        return Err(err(n1, "cars", format!("{cars}: must be 1 to {MAX_UNITS}")));
    }
    if classes == 0 || classes > cars {
        return Err(err(n1, "classes", format!("{classes}: must be 1 to the number of cars ({cars})")));
    }
    let (np, p) = numbers("p (most units with the option per window)", options)?;
    let (nq, q) = numbers("q (window length)", options)?;
    let mut rules = Vec::with_capacity(options);
    for k in 0..options {
        if q[k] == 0 || q[k] > MAX_WINDOW {
            return Err(err(nq, format!("q[{k}]"), format!("{}: must be 1 to {MAX_WINDOW}", q[k])));
        }
        if p[k] > q[k] {
            return Err(err(np, format!("p[{k}]"), format!("{} is more than its window q = {}", p[k], q[k])));
        }
        rules.push(RatioRule { p: p[k] as u32, q: q[k] as u32, weight: 1 });
    }
    let mut pb = Problem {
        rules,
        class_names: Vec::new(),
        class_options: Vec::new(),
        counts: Vec::new(),
        prefix: Vec::new(),
        end_windows: false,
    };
    let mut total = 0usize;
    for c in 0..classes {
        let (n, row) = numbers(&format!("class {c} (id count options...)"), options + 2)?;
        let name = row[0].to_string();
        if pb.class_names.contains(&name) {
            return Err(err(n, "class id", format!("{name} appears twice")));
        }
        let mut mask = 0u64;
        for (k, &v) in row[2..].iter().enumerate() {
            match v {
                0 => {}
                1 => mask |= 1 << k,
                _ => return Err(err(n, format!("option[{k}]"), format!("{v}: must be 0 or 1"))),
            }
        }
        total = total.saturating_add(row[1] as usize);
        if total > cars {
            return Err(err(n, "count", format!("the class counts add up to more than the {cars} cars")));
        }
        pb.class_names.push(name);
        pb.class_options.push(mask);
        pb.counts.push(row[1] as u32);
    }
    if total != cars {
        return Err(err(n1, "cars", format!("{cars}, but the class counts add up to {total}")));
    }
    if let Some((n, _)) = lines.next() {
        return Err(err(n, "end", format!("more lines than the {classes} classes declared")));
    }
    Ok(pb)
}

impl Problem {
    /// Units to sequence.
    pub fn units(&self) -> usize {
        self.counts.iter().map(|&c| c as usize).sum()
    }

    /// The queue in class order (every unit of class 0, then of class 1, ...): the order a
    /// file lists them in, the baseline of "no sequencing".
    pub fn class_order(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.units());
        for (c, &n) in self.counts.iter().enumerate() {
            out.extend(std::iter::repeat_n(c as u32, n as usize));
        }
        out
    }

    /// Whether `order` holds every unit of the queue exactly once (by class); why not if not.
    pub fn check_order(&self, order: &[u32]) -> Result<(), String> {
        let mut left = self.counts.clone();
        for (i, &c) in order.iter().enumerate() {
            let Some(n) = left.get_mut(c as usize) else {
                return Err(format!("position {i}: class {c} does not exist"));
            };
            if *n == 0 {
                return Err(format!(
                    "position {i}: more units of class {} than the queue has",
                    self.class_names[c as usize]
                ));
            }
            *n -= 1;
        }
        match left.iter().position(|&n| n > 0) {
            Some(c) => Err(format!("{} unit(s) of class {} missing", left[c], self.class_names[c])),
            None => Ok(()),
        }
    }
}

/// Window counts of one order, kept up to date under swaps.
#[derive(Debug, Clone)]
pub struct Evaluator<'a> {
    pb: &'a Problem,
    /// The whole sequence: the fixed prefix, then the queue.
    seq: Vec<u32>,
    first: usize,
    /// Per rule: the count of units with the option in each window (by start position).
    windows: Vec<Vec<u32>>,
    cost: u64,
}

impl<'a> Evaluator<'a> {
    /// `order` holds class ids (checked with [`Problem::check_order`] by the caller).
    pub fn new(pb: &'a Problem, order: &[u32]) -> Evaluator<'a> {
        let mut seq = pb.prefix.clone();
        seq.extend_from_slice(order);
        let mut e = Evaluator { pb, seq, first: pb.prefix.len(), windows: Vec::new(), cost: 0 };
        e.recount();
        e
    }

    fn window_count(&self, rule: usize) -> usize {
        if self.pb.end_windows {
            return self.seq.len();
        }
        let q = self.pb.rules[rule].q as usize;
        self.seq.len().saturating_sub(q) + 1
    }

    /// The first window start that holds a movable position.
    fn first_counted(&self, rule: usize) -> usize {
        (self.first + 1).saturating_sub(self.pb.rules[rule].q as usize)
    }

    fn has(&self, pos: usize, rule: usize) -> bool {
        self.pb.class_options[self.seq[pos] as usize] >> rule & 1 == 1
    }

    fn recount(&mut self) {
        self.windows.clear();
        self.cost = 0;
        for r in 0..self.pb.rules.len() {
            let q = self.pb.rules[r].q as usize;
            let nw = self.window_count(r);
            // Units with the option before each position; a window is a difference of two.
            let mut before = Vec::with_capacity(self.seq.len() + 1);
            before.push(0u32);
            for i in 0..self.seq.len() {
                before.push(before[i] + u32::from(self.has(i, r)));
            }
            let counts: Vec<u32> = (0..nw).map(|s| before[(s + q).min(self.seq.len())] - before[s]).collect();
            let rule = self.pb.rules[r];
            for &c in &counts[self.first_counted(r).min(nw)..] {
                self.cost += u64::from(c.saturating_sub(rule.p)) * rule.weight;
            }
            self.windows.push(counts);
        }
    }

    /// The cost: units over capacity, summed over rules and windows, each times its weight.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// The queue's order (class ids), without the prefix.
    pub fn order(&self) -> &[u32] {
        &self.seq[self.first..]
    }

    /// Per rule, the windows over capacity (each once, whatever the excess).
    pub fn violated_windows(&self) -> Vec<u64> {
        (0..self.pb.rules.len())
            .map(|r| {
                let p = self.pb.rules[r].p;
                self.windows[r][self.first_counted(r).min(self.windows[r].len())..].iter().filter(|&&c| c > p).count()
                    as u64
            })
            .collect()
    }

    /// Windows (start range, inclusive) holding position `pos` of the sequence, among those
    /// counted.
    fn windows_of(&self, rule: usize, pos: usize) -> (usize, usize) {
        let q = self.pb.rules[rule].q as usize;
        let nw = self.window_count(rule);
        let lo = (pos + 1).saturating_sub(q).max(self.first_counted(rule));
        (lo, pos.min(nw - 1))
    }

    /// Cost change of swapping queue positions `a` and `b` (indices into the queue).
    pub fn swap_delta(&self, a: usize, b: usize) -> i64 {
        let (i, j) = (self.first + a.min(b), self.first + a.max(b));
        let (ci, cj) = (self.seq[i], self.seq[j]);
        let diff = self.pb.class_options[ci as usize] ^ self.pb.class_options[cj as usize];
        if i == j || diff == 0 {
            return 0;
        }
        let mut delta = 0i64;
        let mut bits = diff;
        while bits != 0 {
            let r = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let rule = self.pb.rules[r];
            let w = &self.windows[r];
            // The option moves from i to j (or from j to i): windows with i only lose (gain) one,
            // windows with j only gain (lose) one; windows with both keep their count.
            let from_i = self.pb.class_options[ci as usize] >> r & 1 == 1;
            let (lo_i, hi_i) = self.windows_of(r, i);
            let (lo_j, hi_j) = self.windows_of(r, j);
            let only_i = lo_i..(hi_i + 1).min(lo_j);
            let only_j = lo_j.max(hi_i + 1)..hi_j + 1;
            let (minus, plus) = if from_i { (only_i, only_j) } else { (only_j, only_i) };
            let lost = w[minus].iter().filter(|&&c| c > rule.p).count() as i64;
            let gained = w[plus].iter().filter(|&&c| c >= rule.p).count() as i64;
            let d = gained - lost;
            delta += d * rule.weight as i64;
        }
        delta
    }

    /// Swap queue positions `a` and `b`, keeping the window counts and the cost.
    pub fn swap(&mut self, a: usize, b: usize) {
        let delta = self.swap_delta(a, b);
        let (i, j) = (self.first + a.min(b), self.first + a.max(b));
        let diff = self.pb.class_options[self.seq[i] as usize] ^ self.pb.class_options[self.seq[j] as usize];
        let mut bits = diff;
        while bits != 0 {
            let r = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let from_i = self.has(i, r);
            let (lo_i, hi_i) = self.windows_of(r, i);
            let (lo_j, hi_j) = self.windows_of(r, j);
            // Unlike the delta, the counts of the uncounted windows (before the prefix ends)
            // never change: a swap is inside the queue.
            for s in lo_i..=hi_i {
                if s < lo_j || s > hi_j {
                    if from_i {
                        self.windows[r][s] -= 1;
                    } else {
                        self.windows[r][s] += 1;
                    }
                }
            }
            for s in lo_j..=hi_j {
                if s < lo_i || s > hi_i {
                    if from_i {
                        self.windows[r][s] += 1;
                    } else {
                        self.windows[r][s] -= 1;
                    }
                }
            }
        }
        self.seq.swap(i, j);
        self.cost = (self.cost as i64 + delta) as u64;
    }

    /// A queue position inside a window over capacity, if any: the windows of one rule are
    /// scanned from a random start, and a position holding the option is drawn in the first
    /// window found over capacity.
    fn violated_position(&self, rng: &mut Rng) -> Option<usize> {
        let rules = self.pb.rules.len();
        let r0 = rng.below(rules);
        for k in 0..rules {
            let r = (r0 + k) % rules;
            let w = &self.windows[r];
            let lo = self.first_counted(r).min(w.len());
            let n = w.len() - lo;
            if n == 0 {
                continue;
            }
            let offset = rng.below(n);
            let p = self.pb.rules[r].p;
            let Some(s) = (0..n).map(|t| lo + (offset + t) % n).find(|&s| w[s] > p) else { continue };
            if let Some(pos) = self.car_in_window(r, s, rng) {
                return Some(pos);
            }
        }
        None
    }

    /// A queue position in the window of rule `r` starting at `start` whose unit has the option,
    /// drawn at random; `None` if the window holds none in the queue.
    fn car_in_window(&self, r: usize, start: usize, rng: &mut Rng) -> Option<usize> {
        let end = (start + self.pb.rules[r].q as usize).min(self.seq.len());
        let from = start.max(self.first);
        let with = (from..end).filter(|&i| self.has(i, r)).count();
        if with == 0 {
            return None;
        }
        let pick = rng.below(with);
        (from..end).filter(|&i| self.has(i, r)).nth(pick).map(|i| i - self.first)
    }

    /// Cost change of putting `seg` (class ids, at most [`MAX_SEGMENT`]) at queue positions
    /// `at..at + seg.len()`, where it is a rearrangement of what is there (a reversal, a unit
    /// moved within the span).
    pub fn rewrite_delta(&self, at: usize, seg: &[u32]) -> i64 {
        let mut delta = 0i64;
        let mut changed = [0i32; MAX_SEGMENT];
        for r in 0..self.pb.rules.len() {
            if !self.changes(r, at, seg, &mut changed) {
                continue;
            }
            let rule = self.pb.rules[r];
            let mut d = 0i64;
            self.each_window(r, at, seg.len(), &changed, |s, change| {
                let c = i64::from(self.windows[r][s]);
                let p = i64::from(rule.p);
                d += (c + i64::from(change) - p).max(0) - (c - p).max(0);
            });
            delta += d * rule.weight as i64;
        }
        delta
    }

    /// Put `seg` at queue positions `at..`, keeping the window counts and the cost.
    pub fn rewrite(&mut self, at: usize, seg: &[u32]) {
        let delta = self.rewrite_delta(at, seg);
        let mut changed = [0i32; MAX_SEGMENT];
        let mut updates = Vec::new();
        for r in 0..self.pb.rules.len() {
            if self.changes(r, at, seg, &mut changed) {
                self.each_window(r, at, seg.len(), &changed, |s, change| updates.push((r, s, change)));
            }
        }
        for (r, s, change) in updates {
            self.windows[r][s] = (i64::from(self.windows[r][s]) + i64::from(change)) as u32;
        }
        self.seq[self.first + at..self.first + at + seg.len()].copy_from_slice(seg);
        self.cost = (self.cost as i64 + delta) as u64;
    }

    /// Per position of the span, how the count of rule `r`'s option changes; whether any does.
    fn changes(&self, r: usize, at: usize, seg: &[u32], changed: &mut [i32; MAX_SEGMENT]) -> bool {
        let bit = |c: u32| i32::from(self.pb.class_options[c as usize] >> r & 1 == 1);
        let mut any = false;
        for (k, &c) in seg.iter().enumerate() {
            changed[k] = bit(c) - bit(self.seq[self.first + at + k]);
            any |= changed[k] != 0;
        }
        any
    }

    /// Each counted window of rule `r` overlapping the span, with its count's change.
    fn each_window(
        &self,
        r: usize,
        at: usize,
        len: usize,
        changed: &[i32; MAX_SEGMENT],
        mut f: impl FnMut(usize, i32),
    ) {
        let (lo, hi) = (self.first + at, self.first + at + len);
        let q = self.pb.rules[r].q as usize;
        let nw = self.window_count(r);
        let (s_lo, s_hi) = ((lo + 1).saturating_sub(q).max(self.first_counted(r)), (hi - 1).min(nw - 1));
        // The changes summed up to each position of the span: a window's change is then a
        // difference, not a sum over its overlap (long windows over long spans).
        let mut upto = [0i32; MAX_SEGMENT + 1];
        for k in 0..len {
            upto[k + 1] = upto[k] + changed[k];
        }
        for s in s_lo..=s_hi {
            let (from, to) = (s.max(lo), (s + q).min(self.seq.len()).min(hi));
            if from < to {
                let change = upto[to - lo] - upto[from - lo];
                if change != 0 {
                    f(s, change);
                }
            }
        }
    }
}

/// Longest span a rewrite move takes.
pub const MAX_SEGMENT: usize = 64;

/// A small, seeded generator (SplitMix64): the search depends on nothing but its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    pub order: Vec<u32>,
    pub cost: u64,
    /// The cost of the greedy start.
    pub start_cost: u64,
    /// When the best order was first found, from the start of the search.
    pub time_to_best: Duration,
    pub moves_tried: u64,
    /// Whether the search ended because nothing better exists (cost 0).
    pub optimal: bool,
}

/// Greedy start: at each position the class with units left that adds the least excess over
/// the windows ending there, ties to the class whose options are most in demand (units left
/// with the option over the capacity left for it), then at random.
pub fn greedy(pb: &Problem, rng: &mut Rng) -> Vec<u32> {
    let n = pb.units();
    let mut left = pb.counts.clone();
    let mut need: Vec<u64> = (0..pb.rules.len())
        .map(|r| left.iter().zip(&pb.class_options).filter(|(_, m)| *m >> r & 1 == 1).map(|(&c, _)| u64::from(c)).sum())
        .collect();
    let mut seq: Vec<u32> = pb.prefix.clone();
    for pos in 0..n {
        let remaining = (n - pos) as f64;
        let mut best: Option<(u64, f64, u64, u32)> = None;
        for (c, &l) in left.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let mask = pb.class_options[c];
            let mut excess = 0u64;
            let mut demand = 0.0;
            for (r, rule) in pb.rules.iter().enumerate() {
                if mask >> r & 1 == 0 {
                    continue;
                }
                let q = rule.q as usize;
                let from = seq.len() + 1 - q.min(seq.len() + 1);
                let used = seq[from..].iter().filter(|&&k| pb.class_options[k as usize] >> r & 1 == 1).count() as u64;
                excess += (used + 1).saturating_sub(u64::from(rule.p)) * rule.weight;
                demand += need[r] as f64 * f64::from(rule.q) / (f64::from(rule.p.max(1)) * remaining);
            }
            let tie = rng.next_u64();
            let key = (excess, -demand, tie, c as u32);
            if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                best = Some(key);
            }
        }
        let Some((_, _, _, c)) = best else { break };
        left[c as usize] -= 1;
        for (r, need) in need.iter_mut().enumerate() {
            if pb.class_options[c as usize] >> r & 1 == 1 {
                *need -= 1;
            }
        }
        seq.push(c);
    }
    seq.split_off(pb.prefix.len())
}

/// Local search from the greedy start until `deadline` or cost 0. Moves: a swap (most often of
/// a unit in a window over capacity with one nearby), the reversal of a short span, a unit moved
/// within a short span. A move that is not worse is taken (the plateau is where these problems
/// are solved); a worse one only with a temperature set ([`Params`], off by default); after a
/// long stall the search goes back to the best order with a few random swaps.
pub fn solve(pb: &Problem, seed: u64, deadline: Instant) -> Solution {
    solve_with(pb, seed, deadline, &Params::default())
}

/// Settings of the search (the defaults were chosen on the public CSPLib instances, the same
/// for all of them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Temperature for worse moves, in units of the lightest rule's weight (0: never).
    pub temperature: f64,
    /// Moves without a new best, per unit, before going back to the best order.
    pub stall_per_unit: u64,
    /// Stop after this many moves tried (with a far deadline: a run that does not depend on
    /// the machine's speed).
    pub max_moves: Option<u64>,
}

/// A move of the search: a swap of two queue positions, or the span `at..at + len` rewritten
/// (reversed or rotated by one).
#[derive(Debug, Clone, Copy)]
enum Move {
    Swap(usize, usize),
    Rewrite(usize, usize),
}

impl Default for Params {
    fn default() -> Params {
        Params { temperature: 0.0, stall_per_unit: 10_000, max_moves: None }
    }
}

/// [`solve`] with explicit settings.
pub fn solve_with(pb: &Problem, seed: u64, deadline: Instant, params: &Params) -> Solution {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let start = greedy(pb, &mut rng);
    let mut e = Evaluator::new(pb, &start);
    let start_cost = e.cost();
    let mut best = (e.cost(), e.order().to_vec(), Duration::ZERO);
    let n = e.order().len();
    let mut tried = 0u64;
    let max_q = pb.rules.iter().map(|r| r.q as usize).max().unwrap_or(1);
    let span_max = (2 * max_q).clamp(2, MAX_SEGMENT).min(n);
    let unit = pb.rules.iter().map(|r| r.weight).filter(|&w| w > 0).min().unwrap_or(1) as f64;
    let temperature = params.temperature * unit;
    let mut since_best = 0u64;
    let stall = (n as u64 * params.stall_per_unit).max(10_000);
    let mut seg = [0u32; MAX_SEGMENT];
    while e.cost() > 0 && n > 1 {
        if tried.is_multiple_of(1024) && Instant::now() >= deadline || params.max_moves.is_some_and(|m| tried >= m) {
            break;
        }
        tried += 1;
        let kind = rng.below(4);
        let a = if rng.below(4) != 0 {
            e.violated_position(&mut rng).unwrap_or_else(|| rng.below(n))
        } else {
            rng.below(n)
        };
        let (d, mv) = if kind < 2 {
            let b = if kind == 0 {
                rng.below(n)
            } else {
                // Within two windows either side.
                (a + rng.below(4 * max_q + 1)).saturating_sub(2 * max_q).min(n - 1)
            };
            if a == b || e.order()[a] == e.order()[b] {
                continue;
            }
            (e.swap_delta(a, b), Move::Swap(a, b))
        } else {
            let len = 2 + rng.below(span_max - 1);
            let at = a.saturating_sub(rng.below(len)).min(n - len);
            let span = &e.order()[at..at + len];
            seg[..len].copy_from_slice(span);
            if kind == 2 {
                seg[..len].reverse();
            } else if rng.below(2) == 0 {
                seg[..len].rotate_left(1);
            } else {
                seg[..len].rotate_right(1);
            }
            if seg[..len] == *span {
                continue;
            }
            (e.rewrite_delta(at, &seg[..len]), Move::Rewrite(at, len))
        };
        let take = d <= 0
            || (temperature > 0.0
                && (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= (-(d as f64) / temperature).exp());
        if take {
            match mv {
                Move::Swap(a, b) => e.swap(a, b),
                Move::Rewrite(at, len) => e.rewrite(at, &seg[..len]),
            }
            if e.cost() < best.0 {
                best = (e.cost(), e.order().to_vec(), started.elapsed());
                since_best = 0;
                continue;
            }
        }
        since_best += 1;
        if since_best >= stall {
            e = Evaluator::new(pb, &best.1);
            for _ in 0..(n / 50).max(3) {
                let (a, b) = (rng.below(n), rng.below(n));
                e.swap(a, b);
            }
            since_best = 0;
        }
    }
    Solution { order: best.1, cost: best.0, start_cost, time_to_best: best.2, moves_tried: tried, optimal: best.0 == 0 }
}

/// The baseline a practitioner writes first: random swaps, kept only when they lower the cost,
/// from the queue in class order, until `deadline` or cost 0.
pub fn plain_swaps(pb: &Problem, seed: u64, deadline: Instant) -> Solution {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let start = pb.class_order();
    let mut e = Evaluator::new(pb, &start);
    let start_cost = e.cost();
    let n = start.len();
    let (mut tried, mut time_to_best) = (0u64, Duration::ZERO);
    while e.cost() > 0 && n > 1 {
        if tried.is_multiple_of(1024) && Instant::now() >= deadline {
            break;
        }
        tried += 1;
        let (a, b) = (rng.below(n), rng.below(n));
        if e.swap_delta(a, b) < 0 {
            e.swap(a, b);
            time_to_best = started.elapsed();
        }
    }
    Solution {
        order: e.order().to_vec(),
        cost: e.cost(),
        start_cost,
        time_to_best,
        moves_tried: tried,
        optimal: e.cost() == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        // Two options: 1/2 and 2/3; classes: none, A, B, AB.
        parse_csplib("10 2 4\n1 2\n2 3\n0 3 0 0\n1 3 1 0\n2 2 0 1\n3 2 1 1\n").expect("valid")
    }

    /// The cost recomputed from nothing, the way the definition reads.
    fn cost_by_definition(pb: &Problem, order: &[u32]) -> u64 {
        let mut seq = pb.prefix.clone();
        seq.extend_from_slice(order);
        let mut cost = 0;
        for (r, rule) in pb.rules.iter().enumerate() {
            let q = rule.q as usize;
            let windows = if pb.end_windows { seq.len() } else { seq.len().saturating_sub(q) + 1 };
            for s in 0..windows {
                let end = (s + q).min(seq.len());
                if end <= pb.prefix.len() {
                    continue;
                }
                let c = seq[s..end].iter().filter(|&&k| pb.class_options[k as usize] >> r & 1 == 1).count() as u64;
                cost += c.saturating_sub(u64::from(rule.p)) * rule.weight;
            }
        }
        cost
    }

    #[test]
    fn swaps_keep_the_cost_the_definition_gives() {
        for (prefix, end_windows) in [
            (vec![], false),
            (vec![3, 1], false),
            (vec![3, 3, 3, 3, 3, 3, 3], false),
            (vec![3, 1], true),
            (vec![], true),
        ] {
            let mut pb = problem();
            pb.prefix = prefix;
            pb.end_windows = end_windows;
            pb.rules[1].weight = 3;
            let mut rng = Rng::new(7);
            let mut order = pb.class_order();
            let mut e = Evaluator::new(&pb, &order);
            assert_eq!(e.cost(), cost_by_definition(&pb, &order));
            for _ in 0..2_000 {
                let (a, b) = (rng.below(order.len()), rng.below(order.len()));
                let before = e.cost();
                let d = e.swap_delta(a, b);
                e.swap(a, b);
                order.swap(a, b);
                assert_eq!(e.cost(), cost_by_definition(&pb, &order), "after swapping {a} and {b}");
                assert_eq!(e.cost() as i64 - before as i64, d);
                assert_eq!(e.order(), &order[..]);
                // A reversal or a rotation of a short span.
                let len = 2 + rng.below(6);
                let at = rng.below(order.len() - len + 1);
                let mut seg = order[at..at + len].to_vec();
                match rng.below(3) {
                    0 => seg.reverse(),
                    1 => seg.rotate_left(1),
                    _ => seg.rotate_right(1),
                }
                let before = e.cost();
                let d = e.rewrite_delta(at, &seg);
                e.rewrite(at, &seg);
                order[at..at + len].copy_from_slice(&seg);
                assert_eq!(e.cost(), cost_by_definition(&pb, &order), "after rewriting {len} at {at}");
                assert_eq!(e.cost() as i64 - before as i64, d);
            }
        }
    }

    #[test]
    fn a_short_queue_is_one_window() {
        let pb = parse_csplib("2 1 1\n1\n5\n0 2 1\n").expect("valid");
        assert_eq!(Evaluator::new(&pb, &[0, 0]).cost(), 1, "two in a queue of two, at most one in five");
    }

    #[test]
    fn bad_files_name_the_line_and_field() {
        let cases = [
            ("", "header (cars options classes)"),
            ("10 2 4\n1 2\n2 3\n0 3 0 0\n1 3 1 0\n2 2 0 1\n3 1 1 1\n", "cars"),
            ("10 2 4\n1 2\n2 3\n0 3 0 0\n1 3 1 0\n2 2 0 2\n3 2 1 1\n", "option[1]"),
            ("10 2 4\n3 2\n2 3\n", "p[0]"),
            ("10 2 4\n1 2\n0 3\n", "q[0]"),
            ("10 2 4\n1 2\n2 x\n", "q (window length)[1]"),
            ("10 2 4\n1 2\n2 3\n0 3 0 0\n0 3 1 0\n", "class id"),
            ("10 0 4\n", "options"),
            ("10 2 4\n1 2\n2 3\n0 3 0 0\n1 3 1 0\n2 2 0 1\n3 2 1 1\n9 9 9 9\n", "end"),
        ];
        for (text, field) in cases {
            let e = parse_csplib(text).expect_err(text);
            assert_eq!(e.field, field, "{text:?}: {e}");
        }
    }

    #[test]
    fn the_search_finds_a_sequence_that_meets_every_rule_when_one_exists() {
        let pb = problem();
        let s = solve(&pb, 1, Instant::now() + Duration::from_secs(5));
        assert_eq!(s.cost, 0);
        assert!(s.optimal);
        pb.check_order(&s.order).expect("every unit once");
        assert_eq!(cost_by_definition(&pb, &s.order), 0);
    }
}
