#!/usr/bin/env bash
# Fuzzes the Open Protocol parser (framer, header, field layouts, traces) for a bounded time,
# seeded with the public test telegrams, then the MQTT message decoder (JSON mapping, event
# envelopes, Sparkplug B) for half that time, then the image decoders behind the perceptual hash
# (PNG, JPEG, PGM; seeded with the test pictures) for a quarter, and the CSPLib car-sequencing
# parser with a short search behind it (seeded with the test instances) for a quarter, and the
# ROADEF 2005 parser with its search for a quarter. Installs cargo-fuzz when missing; runs on the stable
# toolchain without a sanitizer (libFuzzer's coverage guidance still applies).
# Usage: scripts/fuzz.sh [SECONDS]   (default 60; JIDOKA_FUZZ_SECONDS also sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${JIDOKA_FUZZ_SECONDS:-60}}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
corpus=target/fuzz-corpus/op_telegram
mkdir -p "$corpus"
python3 - "$corpus" <<'PY'
import hashlib, json, sys
for line in open("crates/jidoka-connectors/tests/fixtures/open_protocol/telegrams.jsonl"):
    t = json.loads(line)["telegram"].encode()
    open(f"{sys.argv[1]}/{hashlib.sha1(t).hexdigest()[:16]}", "wb").write(t)
PY
mqtt_corpus=target/fuzz-corpus/mqtt_message
mkdir -p "$mqtt_corpus"
printf '\x00{"id": 1, "t": 10, "a": 90, "tool": "NR", "ts": 1764000000000, "c": {"a": [0, 1], "t": [0, 2]}}' > "$mqtt_corpus/json"
printf '\x01{"source_txn_id": "x", "occurred_at": "2026-11-24T08:00:00Z", "kind": "andon_raised", "data": {"andon_id": "A", "station": "S", "fault_code": "E"}}' > "$mqtt_corpus/event"
# Inputs that once crashed a target run first, every time (fuzz/regressions/<target>/).
for dir in fuzz/regressions/*/; do
    mkdir -p "target/fuzz-corpus/$(basename "$dir")"
    cp "$dir"* "target/fuzz-corpus/$(basename "$dir")/"
done
image_corpus=target/fuzz-corpus/image_hash
mkdir -p "$image_corpus"
cp crates/jidoka-connectors/tests/fixtures/images/scratch-* "$image_corpus/"
csplib_corpus=target/fuzz-corpus/csplib
mkdir -p "$csplib_corpus"
cp crates/jidoka-agents/tests/fixtures/csplib/*.txt "$csplib_corpus/"
# ROADEF: a small day written here, and a real one when the shared data is beside the repository
# (read from there, not copied into the repository: its licence is for testing and research).
roadef_corpus=target/fuzz-corpus/roadef
mkdir -p "$roadef_corpus"
printf 'Date;SeqRank;Ident;Paint Color;H1;L1\n2004 1 1;1;T1;3;1;0\n2004 1 2;2;A;3;1;1\n2004 1 2;3;B;4;0;0\n2004 1 2;4;C;3;1;0\n\0Ratio;Prio;Ident;\n1/2;1;H1;\n1/3;0;L1;\n\0limitation;\n2;\n\0rank;objective name;\n1;paint_color_batches;\n2;high_priority_level_and_easy_to_satisfy_ratio_constraints;\n3;low_priority_level_ratio_constraints;\n' > "$roadef_corpus/small"
real_day=../shared/data/roadef2005_renault/set_B/028_ch2_RAF_EP_ENP_S23_J3
if [ -d "$real_day" ]; then
    for f in vehicles ratios paint_batch_limit optimization_objectives; do
        cat "$real_day/$f.txt"
        [ "$f" = optimization_objectives ] || printf '\0'
    done > "$roadef_corpus/real"
fi
cd fuzz
cargo fuzz run op_telegram --sanitizer none "../$corpus" -- -max_total_time="$seconds" -print_final_stats=1
cargo fuzz run mqtt_message --sanitizer none "../$mqtt_corpus" -- -max_total_time="$((seconds / 2))" -print_final_stats=1
cargo fuzz run image_hash --sanitizer none "../$image_corpus" -- -max_total_time="$((seconds / 4))" -print_final_stats=1
cargo fuzz run csplib --sanitizer none "../$csplib_corpus" -- -max_total_time="$((seconds / 4))" -print_final_stats=1
cargo fuzz run roadef --sanitizer none "../$roadef_corpus" -- -max_total_time="$((seconds / 4))" -print_final_stats=1
