#!/usr/bin/env bash
# A peer for comparison only: runs the CP-SAT rolling-horizon solver (scripts/cpsat-roadef.py,
# Google OR-tools) over every ROADEF 2005 Renault instance of a set, to benchmark the project's
# own re-sequencing search against it. Not part of the product: OR-tools is installed from PyPI
# into a venv under target/ (target/cpsat-venv) only, never into the system or the build.
#
# Usage: scripts/cpsat-roadef.sh SET_DIR SECONDS OUTDIR [extra cpsat-roadef.py options...]
#   e.g. scripts/cpsat-roadef.sh /work/shared/data/roadef2005_renault/set_A 60 /work/cpsat-out/A
# Writes OUTDIR/<instance>.txt (the day-D Idents in build order) and OUTDIR/<instance>.json (the
# scores of the plant's order and of the result, as the .py computes them), and prints one line
# per instance. The solver uses one CPU core (CP-SAT num_workers=1).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 SET_DIR SECONDS OUTDIR [cpsat-roadef.py options...]" >&2
    exit 2
fi
set_dir=$1
seconds=$2
out=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/target/cpsat-venv
mkdir -p "$root/target"
(
    flock 9
    if ! "$venv/bin/python" -c 'import ortools.sat.python.cp_model' 2>/dev/null; then
        python3 -m venv "$venv"
        # pip reaches PyPI through the machine's configured registry (pip.conf / PIP_* env)
        "$venv/bin/pip" install --quiet ortools >&2
    fi
) 9> "$root/target/cpsat-venv.lock"
mkdir -p "$out"
printf '%-34s %6s %14s %14s %8s %s\n' instance cars plant cpsat wall_s from
for dir in "$set_dir"/*/; do
    dir=${dir%/}
    [ -f "$dir/vehicles.txt" ] || continue
    name=$(basename "$dir")
    if ! "$venv/bin/python" "$root/scripts/cpsat-roadef.py" "$dir" --seconds "$seconds" \
        --out "$out/$name.txt" "$@" > "$out/$name.json" 2> "$out/$name.err"; then
        echo "$name FAILED (see $out/$name.err)"
        continue
    fi
    [ -s "$out/$name.err" ] || rm -f "$out/$name.err"
    "$venv/bin/python" - "$out/$name.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
flag = lambda e: "" if e["valid"] else "!"
print(f"{d['instance']:<34} {d['cars_day']:>6} {d['plant']['score']:>13}{flag(d['plant']):1} "
      f"{d['cpsat']['score']:>13}{flag(d['cpsat']):1} {d['wall_s']:>8.1f} {d['result_from']}")
EOF
done
