#!/usr/bin/env bash
# Benchmarks: build the release binary, make sure wrk and the Python peers' packages are there,
# then run every scenario and print a markdown table. `bench/run.sh --quick` runs smaller sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null || echo "wrk could not be installed; its comparison is skipped" >&2
    else
        echo "wrk is not installed; its comparison is skipped" >&2
    fi
fi

venv=bench/.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check aiohttp requests

BENCH_PYTHON="$venv/bin/python" python3 bench/bench.py "$@"
