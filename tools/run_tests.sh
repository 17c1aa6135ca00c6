#!/usr/bin/env bash
# Copyright (c) mmelastic contributors. All rights reserved.
# Run the whole test suite (extra arguments go to pytest):
#
#     bash tools/run_tests.sh [-k expr] [-x] ...
#
# Sets up .venv first (tools/setup_env.sh; seconds when it is up to date).
# MMELASTIC_SKIP_SETUP=1 skips that and uses $MMELASTIC_PYTHON as is.
# Exit status: pytest's, except that "no tests ran" (pytest's 5) is reported
# as the failure it is.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

if [ "${MMELASTIC_SKIP_SETUP:-0}" != 1 ]; then
    # shellcheck source=tools/setup_env.sh
    source "$ROOT/tools/setup_env.sh" || {
        echo "[mmelastic tests] environment setup failed" >&2
        exit 1
    }
fi
PY="${MMELASTIC_PYTHON:-$ROOT/.venv/bin/python}"
if [ "${MMELASTIC_SKIP_SETUP:-0}" != 1 ]; then
    # The HTML demo is tested in a real headless browser (Debian chromium).
    MMELASTIC_PYTHON="$PY" bash "$ROOT/tools/setup_browser.sh" || {
        echo "[mmelastic tests] browser setup failed (tools/setup_browser.sh)" >&2
        exit 1
    }
fi

echo "[mmelastic tests] $PY -m pytest tests $*" >&2
start=$(date +%s)
"$PY" -m pytest tests "$@"
status=$?
echo "[mmelastic tests] pytest exit status $status after $(($(date +%s) - start)) s" >&2
if [ "$status" -eq 5 ]; then
    echo "[mmelastic tests] FAILED: no tests ran (pytest exit status 5)" >&2
fi
exit "$status"
