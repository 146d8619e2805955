#!/usr/bin/env python3
# A peer solver for comparison only: OR-tools CP-SAT on the ROADEF 2005 Renault days, used to
# benchmark the project's own re-sequencing search. It is not part of the product; OR-tools is
# installed by scripts/cpsat-roadef.sh into a venv under target/ (target/cpsat-venv) only.
#
# Usage: cpsat-roadef.py INSTANCE_DIR --seconds S --out FILE [--window W] [--step K]
#                        [--paint-run-from-tail] [--seed N]
#
# Writes the day-D cars in build order (one Ident a line) to FILE and prints one line of JSON:
# the instance, the objective components and score of the plant's own order (SeqRank) and of the
# result, as computed here, and the wall time.
#
# Rules used (the same evaluator scores the plant's order and the result):
# - score = 1e6, 1e3, 1 x the objectives in the order of optimization_objectives.txt;
# - paint_color_batches = colour changes between consecutive cars of D, plus 1 if the first car
#   of D differs in colour from the last car of D-1;
# - ratio N/P: every window of P consecutive cars that holds at least one car of D (windows that
#   start in the D-1 tail count, windows wholly inside D-1 do not) adds max(0, count - N); the
#   END-OF-DAY RULE: the windows that start at the last P-1 positions of the whole sequence and
#   are shorter than P count too, with the same N;
# - paint batch limit (hard): no run of one colour longer than the limit within day D; a run
#   continuing from the D-1 tail counts its tail cars only with --paint-run-from-tail.
#
# Model: a rolling horizon. The cars of D before position p are fixed; a window of W positions
# p..p+W-1 is optimised by CP-SAT (one worker) over all the cars not yet fixed, grouped into
# classes of identical colour + options (booleans x[j][c]: position j holds a car of class c; at
# most the remaining count of class c). The window's objective is the same lexicographic score
# over what the window decides: the paint changes inside it and at its left edge, and every ratio
# window that touches it (the fixed cars before it are constants). Ratio windows that run past
# the window's end get a look-ahead lower bound (the cars of that option still left after the
# window, less what blocks of P of the rest can hold without a violation), and each colour left
# after the window costs one batch; without these the window pushes the hard cars to the end of
# the day. The paint batch limit is a hard constraint, with a check that the cars left after the
# window can still be ordered within it. The first K (step) positions are then fixed and the
# window moves on by K. The time budget is shared among the windows left (model building
# included; if it cannot pay for the builds, K grows up to W, and if that is not enough either,
# the pass stops where the time runs out and the rest of the day keeps the current order).
# The start and each window's hint is the current complete order (at first the plant's). A
# window's answer is put into that order (cars pulled in from later swap places with the cars
# the window lets go), and with --accept no-worse (the default) kept only if the whole day then
# scores no worse. The best complete order seen, the plant's included, is returned: never worse
# than the plant's order.
# Defaults W=20, K=10: on set A, 60/30 and 40/20 improved less within 10 s and 60 s budgets
# (each window gets about a second; the model of a 60-car window with ~300 classes has ~20k
# booleans and CP-SAT's single worker rarely gets past the hint in that time).
# Debugging: CPSAT_ROADEF_DEBUG=1 prints one line per window to stderr, CPSAT_ROADEF_LOG=1 the
# CP-SAT search log.
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from ortools.sat.python import cp_model


def LS(terms):
    return cp_model.LinearExpr.sum(list(terms))


def read_rows(path):
    rows = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\r\n").strip()
            if not line:
                continue
            fields = line.split(";")
            while fields and fields[-1].strip() == "":
                fields.pop()
            if fields:
                rows.append([x.strip() for x in fields])
    return rows


class Instance:
    def __init__(self, d):
        self.name = os.path.basename(os.path.normpath(d))
        vrows = read_rows(os.path.join(d, "vehicles.txt"))
        header, body = vrows[0], vrows[1:]
        ratio_rows = read_rows(os.path.join(d, "ratios.txt"))[1:]
        self.ratios = []  # (ident, N, P, prio)
        for r in ratio_rows:
            n, p = r[0].split("/")
            self.ratios.append((r[2], int(n), int(p), int(r[1])))
        col_of = {name: i for i, name in enumerate(header)}
        ratio_cols = [col_of[r[0]] for r in self.ratios]
        lim_rows = read_rows(os.path.join(d, "paint_batch_limit.txt"))
        self.limit = int(lim_rows[1][0])
        obj_rows = read_rows(os.path.join(d, "optimization_objectives.txt"))[1:]
        obj_rows.sort(key=lambda r: int(r[0]))
        self.objectives = []
        for r in obj_rows:
            name = r[1]
            if "paint" in name:
                self.objectives.append("paint")
            elif name.startswith("high_priority"):
                self.objectives.append("high")
            elif name.startswith("low_priority"):
                self.objectives.append("low")
            else:
                raise ValueError("unknown objective " + name)
        self.objective_names = [r[1] for r in obj_rows]
        self.weight = {k: w for k, w in zip(self.objectives, (1_000_000, 1_000, 1))}
        for k in ("paint", "high", "low"):
            self.weight.setdefault(k, 0)

        def date_key(s):
            return tuple(int(x) for x in s.split())

        dates = sorted({r[0] for r in body}, key=date_key)
        day = dates[-1]
        cars = []
        for r in body:
            cars.append(
                dict(
                    day=(r[0] == day),
                    rank=int(r[1]),
                    ident=r[2],
                    colour=r[3],
                    opts=tuple(int(r[c]) for c in ratio_cols),
                )
            )
        tail = sorted([c for c in cars if not c["day"]], key=lambda c: c["rank"])
        dcars = sorted([c for c in cars if c["day"]], key=lambda c: c["rank"])
        self.cars = tail + dcars  # index: 0..t-1 tail, t.. day D in plant order
        self.t = len(tail)
        self.n = len(dcars)
        colours = sorted({c["colour"] for c in self.cars})
        self.colour_id = {c: i for i, c in enumerate(colours)}
        self.ncol = len(colours)
        self.col = np.array([self.colour_id[c["colour"]] for c in self.cars], dtype=np.int64)
        self.opt = np.array([c["opts"] for c in self.cars], dtype=np.int64).reshape(
            len(self.cars), len(self.ratios)
        )
        # classes of identical colour + options among the cars of D
        key_to_class = {}
        self.cls = np.zeros(len(self.cars), dtype=np.int64) - 1
        self.class_colour = []
        self.class_opts = []
        for i in range(self.t, self.t + self.n):
            key = (self.col[i], tuple(self.opt[i]))
            if key not in key_to_class:
                key_to_class[key] = len(self.class_colour)
                self.class_colour.append(int(self.col[i]))
                self.class_opts.append(tuple(int(x) for x in self.opt[i]))
            self.cls[i] = key_to_class[key]
        self.ncls = len(self.class_colour)

    def evaluate(self, order, run_from_tail=False):
        """order: the day-D car indices in build order. Returns the components and score."""
        seq = np.concatenate([np.arange(self.t, dtype=np.int64), np.asarray(order, dtype=np.int64)])
        t, L = self.t, len(seq)
        col = self.col[seq]
        start = max(t, 1)
        paint = int(np.count_nonzero(col[start:] != col[start - 1 : L - 1])) if L > start else 0
        high = low = 0
        opt = self.opt[seq]
        for k, (_, n, p, prio) in enumerate(self.ratios):
            cs = np.concatenate([[0], np.cumsum(opt[:, k])])
            s = np.arange(max(0, t - p + 1), L)
            e = np.minimum(s + p, L)
            v = int(np.maximum(0, cs[e] - cs[s] - n).sum())
            if prio == 1:
                high += v
            else:
                low += v
        # longest run of one colour within D (or continuing from the tail if asked)
        max_run = 0
        run = 0
        for i in range(t, L):
            if i > t and col[i] == col[i - 1]:
                run += 1
            elif i == t and run_from_tail and t > 0 and col[i] == col[i - 1]:
                run = 1
                j = i - 1
                while j >= 0 and col[j] == col[i]:
                    run += 1
                    j -= 1
            else:
                run = 1
            max_run = max(max_run, run)
        comp = dict(paint=paint, high=high, low=low)
        score = sum(self.weight[k] * comp[k] for k in comp)
        return dict(
            paint_color_batches=paint,
            high_priority_violations=high,
            low_priority_violations=low,
            score=score,
            max_run=max_run,
            valid=max_run <= self.limit,
        )


def solve_window(inst, seq_fixed, p, w, remaining, hint_classes, time_limit, run_from_tail, seed,
                 presolve="light"):
    """seq_fixed: the full sequence (tail + fixed D cars) before the window, as car indices.
    remaining: dict class -> count of cars not yet fixed. hint_classes: class of each window
    position in the current order. Returns the list of classes for the window, or None."""
    t_build = time.monotonic()
    m = cp_model.CpModel()
    t = inst.t
    g0 = len(seq_fixed)  # global index of the window's first position
    classes = [c for c, k in remaining.items() if k > 0]
    R_total = sum(remaining.values())
    R_after = R_total - w
    x = [{c: m.new_bool_var("") for c in classes} for _ in range(w)]
    for j in range(w):
        m.add_exactly_one(x[j].values())
    for c in classes:
        if remaining[c] < w:
            m.add(LS(x[j][c] for j in range(w)) <= remaining[c])
    colours = sorted({inst.class_colour[c] for c in classes})
    by_colour = {k: [c for c in classes if inst.class_colour[c] == k] for k in colours}
    col = [{k: m.new_bool_var("") for k in colours} for _ in range(w)]
    for j in range(w):
        for k in colours:
            m.add(col[j][k] == LS(x[j][c] for c in by_colour[k]))
    # hint values (the current order), written straight into the model's proto: add_hint is
    # slow for tens of thousands of variables
    hint_var, hint_val = [], []
    hcol = [inst.class_colour[c] for c in hint_classes]
    for j in range(w):
        for c in classes:
            hint_var.append(x[j][c].index)
            hint_val.append(1 if hint_classes[j] == c else 0)
        for k in colours:
            hint_var.append(col[j][k].index)
            hint_val.append(1 if hcol[j] == k else 0)

    obj = []
    # paint changes
    prev = int(inst.col[seq_fixed[-1]]) if g0 > 0 else None
    for j in range(w):
        if j == 0 and prev is None:
            continue
        ch = m.new_bool_var("")
        if j == 0:
            if prev in col[0]:
                m.add(ch >= 1 - col[0][prev])
            else:
                m.add(ch == 1)
            m.add_hint(ch, 1 if hcol[0] != prev else 0)
        else:
            for k in colours:
                m.add(ch >= col[j][k] - col[j - 1][k])
            m.add_hint(ch, 1 if hcol[j] != hcol[j - 1] else 0)
        obj.append(inst.weight["paint"] * ch)

    # look-ahead for paint: each colour with cars left after the window starts a batch there
    if R_after > 0 and inst.weight["paint"]:
        for k in colours:
            rk = sum(remaining[c] for c in by_colour[k])
            z = m.new_bool_var("")
            m.add(rk - LS(col[j][k] for j in range(w)) <= rk * z)
            m.add_hint(z, 1 if rk - sum(1 for h in hcol if h == k) > 0 else 0)
            obj.append(inst.weight["paint"] * z)

    # ratio windows, through prefix sums of each option over the window
    fixed_opt = inst.opt[np.asarray(seq_fixed, dtype=np.int64)] if g0 > 0 else None
    hopt = np.array([inst.class_opts[c] for c in hint_classes], dtype=np.int64).reshape(w, -1)
    end = g0 + w
    for k, (_, n, p_, prio) in enumerate(inst.ratios):
        wt = inst.weight["high"] if prio == 1 else inst.weight["low"]
        if wt == 0:
            continue
        with_k = [c for c in classes if inst.class_opts[c][k]]
        if not with_k:
            continue
        fcs = np.concatenate([[0], np.cumsum(fixed_opt[:, k])]) if g0 > 0 else np.array([0])
        hcs = np.concatenate([[0], np.cumsum(hopt[:, k])])
        cum = [0]  # cum[i] = cars with option k in window positions < i, made as needed

        def cum_at(i):
            while len(cum) <= i:
                a = len(cum)
                v = m.new_int_var(0, a, "")
                m.add(v == cum[a - 1] + LS(x[a - 1][c] for c in with_k))
                m.add_hint(v, int(hcs[a]))
                cum.append(v)
            return cum[i]

        # Windows that run past the window's end (while cars are left after it) get a
        # look-ahead: for the window starting at s, reaching o = s + P - end positions into the
        # rest, the rest after those o positions splits into blocks of P (the last one cut by
        # the end of the day), counted windows that hold at most N each without a violation.
        # So that window and those blocks have at least (its cars before the end) + (cars of
        # option k left after this window) - N - (the blocks' capacity) violations, whatever the
        # order of the rest; and at least (its cars before the end) - N. Without this the window
        # would push the hard cars to the end of the day.
        rem_k = sum(remaining[c] for c in with_k)

        def capacity(r):  # cars of option k that r positions of blocks can hold
            if r <= 0:
                return 0
            q, rr = divmod(r, p_)
            return q * n + min(n, rr)

        terms = {}
        for s in range(max(0, t - p_ + 1), end):
            e = min(s + p_, end)
            if e <= g0:
                continue  # wholly fixed: a constant
            const = int(fcs[g0] - fcs[s]) if s < g0 else 0
            b = max(s, g0) - g0
            ee = e - g0
            cap = None
            if R_after > 0 and s + p_ > end:
                cap = capacity(R_after - (s + p_ - end))
                if const + rem_k - n - cap <= 0:
                    cap = None  # the look-ahead can never bind
            if const + (ee - b) - n <= 0 and cap is None:
                continue  # cannot be violated
            key = (b, ee, const, cap)
            terms[key] = terms.get(key, 0) + 1
        for (b, ee, const, cap), mult in terms.items():
            v = m.new_int_var(0, const + (ee - b) + (rem_k if cap is not None else 0), "")
            m.add(v >= const + cum_at(ee) - cum_at(b) - n)
            hv = max(0, const + int(hcs[ee] - hcs[b]) - n)
            if cap is not None:  # here ee == w: the window's cars up to its end, then the rest
                m.add(v >= const - cum_at(b) + rem_k - n - cap)
                hv = max(hv, const - int(hcs[b]) + rem_k - n - cap)
            m.add_hint(v, hv)
            obj.append(wt * mult * v)
        # the blocks of P that start right after the window
        if R_after > 0 and rem_k > capacity(R_after):
            cap = capacity(R_after)
            u = m.new_int_var(0, rem_k - cap, "")
            m.add(u >= rem_k - cum_at(w) - cap)
            m.add_hint(u, max(0, rem_k - int(hcs[w]) - cap))
            obj.append(wt * u)

    # paint batch limit (hard)
    lim = inst.limit
    if prev is not None and prev in col[0]:
        r0 = 0  # the run of colour prev that ends the fixed part
        i = g0 - 1
        lo = 0 if run_from_tail else t
        while i >= lo and inst.col[seq_fixed[i]] == prev:
            r0 += 1
            i -= 1
        first = max(1, lim - r0 + 1)  # these first positions must not all be prev
        if r0 > 0 and first <= w:
            m.add(LS(col[j][prev] for j in range(first)) <= first - 1)
    if lim + 1 <= w:
        for a in range(0, w - lim):
            for k in colours:
                m.add(LS(col[j][k] for j in range(a, a + lim + 1)) <= lim)
    # the cars left after the window can still be ordered within the limit
    if R_after > 0:
        rem_col = {}
        for c in classes:
            rem_col[inst.class_colour[c]] = rem_col.get(inst.class_colour[c], 0) + remaining[c]
        for k in colours:
            need = rem_col[k] - (lim * R_after) // (lim + 1)
            if need > 0:
                m.add(LS(col[j][k] for j in range(w)) >= need)

    m.minimize(LS(obj))
    m.proto.solution_hint.vars.extend(hint_var)
    m.proto.solution_hint.values.extend(hint_val)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    build_s = time.monotonic() - t_build
    solver.parameters.max_time_in_seconds = max(0.05, time_limit - build_s)
    solver.parameters.random_seed = seed
    if os.environ.get("CPSAT_ROADEF_LOG"):
        solver.parameters.log_search_progress = True
    if presolve == "light":  # reach the hint (the current order) early in a short time slice
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.symmetry_level = 0
    elif presolve == "min":
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.symmetry_level = 0
        solver.parameters.max_presolve_iterations = 1
        solver.parameters.find_big_linear_overlap = False
        solver.parameters.presolve_inclusion_work_limit = 0
    elif presolve == "off":
        solver.parameters.cp_model_presolve = False
    st = solver.solve(m)
    st_name = solver.status_name(st)
    if os.environ.get("CPSAT_ROADEF_DEBUG"):
        print(f"window p={p} w={w} classes={len(classes)} vars={len(m.proto.variables)} "
              f"cons={len(m.proto.constraints)} status={st_name} "
              f"obj={solver.objective_value if st_name in ('OPTIMAL', 'FEASIBLE') else None} "
              f"bound={solver.best_objective_bound} time={solver.wall_time:.2f}/{time_limit:.2f}",
              file=sys.stderr)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, st_name, build_s
    out = []
    for j in range(w):
        for c in classes:
            if solver.boolean_value(x[j][c]):
                out.append(c)
                break
    return out, st_name, build_s


def main():
    ap = argparse.ArgumentParser(description="CP-SAT rolling-horizon peer for ROADEF 2005 days")
    ap.add_argument("instance_dir")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--window", type=int, default=20, help="positions optimised at once")
    ap.add_argument("--step", type=int, default=10, help="positions fixed after each window")
    ap.add_argument("--paint-run-from-tail", action="store_true",
                    help="a colour run continuing from the D-1 tail counts against the limit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--accept", choices=("no-worse", "always"), default="no-worse",
                    help="take a window's answer only if the whole day then scores no worse "
                    "(no-worse), or always (plain rolling horizon; the best complete order seen "
                    "is still what is returned)")
    ap.add_argument("--presolve", choices=("full", "light", "min", "off"), default="min",
                    help="CP-SAT presolve per window: full (CP-SAT's default), light (no probing, "
                    "no symmetry), min (light, one pass, no overlap/inclusion detection: reaches "
                    "the hint early in short slices), off")
    a = ap.parse_args()
    t0 = time.monotonic()
    deadline = t0 + a.seconds
    inst = Instance(a.instance_dir)
    rft = a.paint_run_from_tail
    t = inst.t
    plant = list(range(t, t + inst.n))
    plant_eval = inst.evaluate(plant, rft)

    def key(ev):
        return (0 if ev["valid"] else 1, ev["score"])

    best, best_eval, best_from = plant, plant_eval, "plant"
    order = list(plant)  # current complete order of D (car indices)
    W, K = max(1, a.window), max(1, min(a.step, a.window))
    n = inst.n
    p = 0
    windows = solved = fallback = accepted = retries = 0
    cur_eval = plant_eval
    statuses = {}
    builds = []  # seconds spent building each window's model (Python)
    step_used = K

    def windows_left(k):
        return 1 + max(0, math.ceil((n - p - min(W, n - p)) / k))

    while p < n:
        w = min(W, n - p)
        time_left = deadline - time.monotonic()
        est_build = max(builds[-3:]) if builds else 0.0  # measured from the first window on
        # If the budget cannot pay for the model builds, fix more positions per window (up to
        # W) so that the pass still reaches the end of the day.
        k = K
        while k < W and time_left / windows_left(k) < 2 * est_build + 0.1:
            k += 1
        step_used = max(step_used, k)
        # Too short a budget for the whole pass: the windows still get a usable slice each
        # while the time lasts, and the rest of the day keeps the current order.
        budget = max(time_left / windows_left(k), est_build + 0.1)
        if time_left < budget:
            break  # out of time: the rest stays in the current order
        fixed = list(range(t)) + order[:p]
        rest = order[p:]
        remaining = {}
        for i in rest:
            c = int(inst.cls[i])
            remaining[c] = remaining.get(c, 0) + 1
        hint = [int(inst.cls[i]) for i in rest[:w]]
        sol, st, build_s = solve_window(inst, fixed, p, w, remaining, hint, budget, rft, a.seed,
                                        a.presolve)
        builds.append(build_s)
        if sol is None and st == "UNKNOWN":
            # no answer at all in the slice (typically the hint breaks the paint batch limit,
            # so CP-SAT has to repair it, which takes it some tenths of a second): one retry
            # with 4 slices, at least 1.5 s
            retry = min(max(4 * budget, 1.5), deadline - time.monotonic())
            if retry > budget:
                sol, st, build_s = solve_window(inst, fixed, p, w, remaining, hint, retry, rft,
                                                a.seed, a.presolve)
                builds.append(build_s)
                retries += 1
        windows += 1
        statuses[st] = statuses.get(st, 0) + 1
        if sol is not None:
            solved += 1
            # Cars for the window's classes: first the window's own cars of that class, then
            # the nearest ones after the window; each car the window no longer holds takes the
            # place of a car pulled in from after it, so the rest keeps its current shape (the
            # next window's hint) instead of closing up around the pulled cars.
            cur, beyond = order[p : p + w], order[p + w :]
            own = {}
            for i in cur:
                own.setdefault(int(inst.cls[i]), []).append(i)
            win_cars = [None] * w
            wanted = []
            for j, c in enumerate(sol):
                if own.get(c):
                    win_cars[j] = own[c].pop(0)
                else:
                    wanted.append(j)
            used = set(i for i in win_cars if i is not None)
            freed = [i for i in cur if i not in used]
            slots = {}
            for idx, i in enumerate(beyond):
                slots.setdefault(int(inst.cls[i]), []).append(idx)
            for j, car in zip(wanted, freed):
                idx = slots[sol[j]].pop(0)
                win_cars[j] = beyond[idx]
                beyond[idx] = car
            cand = order[:p] + win_cars + beyond
            ev = inst.evaluate(cand, rft)
            # keep the better complete order: the window's answer is taken only if the whole
            # day scores no worse with it (the window's objective only bounds the rest)
            if a.accept == "always" or key(ev) <= key(cur_eval):
                order, cur_eval = cand, ev
                accepted += 1
            if key(ev) < key(best_eval):
                best, best_eval, best_from = list(order), ev, "cpsat"
        else:
            fallback += 1  # no solution in time: the window keeps the current order
        p += k if p + w < n else w
    if os.environ.get("CPSAT_ROADEF_DEBUG"):
        with open(a.out + ".final", "w") as f:
            f.write("".join(inst.cars[i]["ident"] + "\n" for i in order))
    # the order at the end of the rolling pass is the last candidate
    ev = inst.evaluate(order, rft)
    if key(ev) < key(best_eval):
        best, best_eval, best_from = list(order), ev, "cpsat"
    with open(a.out, "w") as f:
        for i in best:
            f.write(inst.cars[i]["ident"] + "\n")
    assert sorted(best) == plant
    res = dict(
        instance=inst.name,
        cars_day=n,
        cars_tail=t,
        ratios=len(inst.ratios),
        classes=inst.ncls,
        paint_batch_limit=inst.limit,
        objectives=inst.objective_names,
        rules=dict(
            end_of_day_partial_windows="counted (windows starting at the last P-1 positions, same N)",
            paint_run_from_tail=rft,
        ),
        plant=plant_eval,
        cpsat=best_eval,
        cpsat_final_pass=ev,
        result_from=best_from,
        window=W,
        step=K,
        step_used_max=step_used,
        model_build_s=round(sum(builds), 3),
        windows=windows,
        windows_solved=solved,
        windows_fallback=fallback,
        windows_accepted=accepted,
        windows_retried=retries,
        window_statuses=statuses,
        completed=p >= n,
        presolve=a.presolve,
        accept=a.accept,
        seconds=a.seconds,
        wall_s=round(time.monotonic() - t0, 3),
    )
    print(json.dumps(res, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


if __name__ == "__main__":
    main()
