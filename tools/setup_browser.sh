#!/usr/bin/env bash
# Copyright (c) mmelastic contributors. All rights reserved.
#
# Install what the HTML tests (tests/test_scale_policy_html.py) drive: the
# Debian packages `chromium` and `chromium-driver`, and the Python package
# `selenium` in the project's venv. Anything already there is left alone, so
# a second run takes a moment. Needs root for apt-get (run `apt-get update`
# once, then the install); prints the command to run by hand otherwise.
#
#     bash tools/setup_browser.sh            # venv: $MMELASTIC_PYTHON or .venv
#
# Environment: MMELASTIC_PYTHON (the python whose site-packages get
# selenium; default .venv/bin/python, else python3).
# Exit status: 0 when chromium, chromedriver and selenium are usable.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[mmelastic browser setup] $*" >&2; }

PY="${MMELASTIC_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi

have_browser() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

if have_browser; then
    log "chromium and chromedriver present ($(command -v chromium), $(command -v chromedriver))"
else
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "ERROR: chromium/chromedriver missing and apt-get cannot run here (need root on Debian)."
        log "Run as root: apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
        exit 1
    fi
    log "installing chromium chromium-driver (apt-get update, then install)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || { log "ERROR: apt-get update failed"; exit 1; }
    apt-get install -y -q --no-install-recommends chromium chromium-driver >&2 || {
        log "ERROR: apt-get install chromium chromium-driver failed"
        exit 1
    }
    have_browser || { log "ERROR: chromium/chromedriver still not on PATH"; exit 1; }
fi

if "$PY" -c 'import selenium' 2>/dev/null; then
    log "selenium present ($("$PY" -c 'import selenium; print(selenium.__version__)'))"
else
    log "installing selenium into $PY"
    constraints=()
    [ -f "$ROOT/requirements/constraints.txt" ] && constraints=(-c "$ROOT/requirements/constraints.txt")
    "$PY" -m pip install -q "${constraints[@]}" selenium >&2 || {
        log "ERROR: pip install selenium failed; run: $PY -m pip install selenium"
        exit 1
    }
fi
exit 0
