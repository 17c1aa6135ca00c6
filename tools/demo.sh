#!/usr/bin/env bash
# Copyright (c) mmelastic contributors. All rights reserved.
# The project's demo: sets up .venv (tools/setup_env.sh), then runs
# tools/demo.py with the given arguments.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
# shellcheck source=tools/setup_env.sh
source tools/setup_env.sh || {
    echo "[mmelastic demo] environment setup failed" >&2
    exit 1
}
exec "${MMELASTIC_PYTHON:-.venv/bin/python}" tools/demo.py "$@"
