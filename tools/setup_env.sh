# Copyright (c) mmelastic contributors. All rights reserved.
# shellcheck shell=bash
#
# Create or reuse the project's virtual environment and install whatever is
# missing. Meant to be sourced (tools/demo.sh and tools/run_tests.sh do):
#
#     source tools/setup_env.sh
#
# Afterwards MMELASTIC_PYTHON is the venv's python. Steps, first run only:
#   1. python -m venv .venv (or $MMELASTIC_VENV)
#   2. torch and torchvision as pinned in requirements/pinned.txt
#   3. mmcv with compiled ops: tools/install_mmcv.py, using the wheelhouse
#      $MMCV_WHEELHOUSE or ../shared/wheels when present, else a source build
#      (10-20 minutes on 2 cores)
#   4. the rest of requirements/pinned.txt, then pip install -e .
#   5. the Debian package dataset-fashion-mnist (demo data), where we are
#      root and apt-get exists; failure only warns (the demo has a fallback)
# Every pip call gets -c requirements/constraints.txt (setuptools<82).
# A stamp in the venv records a hash of the files that decide the
# installation; when it matches and a quick import check passes, nothing is
# installed and this takes a few seconds.
#
# Environment: MMELASTIC_VENV (venv path), MMELASTIC_BASE_PYTHON (python used
# to create the venv, default python3), MMCV_WHEELHOUSE, plus FORCE_CUDA,
# TORCH_CUDA_ARCH_LIST and MAX_JOBS for an mmcv source build.

_mme_log() { echo "[mmelastic setup] $*" >&2; }

_mme_setup() {
    local root venv py stamp hash base wheelhouse constraints
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    venv="${MMELASTIC_VENV:-$root/.venv}"
    py="$venv/bin/python"
    stamp="$venv/.mmelastic-setup-stamp"
    constraints="$root/requirements/constraints.txt"

    # What decides the installation: requirement files, packaging, the mmcv
    # installer and this script.
    hash="$(cat "$root"/requirements/*.txt "$root/setup.py" \
        "$root/tools/install_mmcv.py" "$root/tools/setup_env.sh" \
        | sha256sum | cut -d' ' -f1)" || return 1

    # Fast path: stamp matches and the environment imports. The import check
    # loads mmcv's compiled ops (they break when torch changes) and makes
    # sure the editable mmelastic is this checkout.
    # (Run from / so that the checkout itself is not on sys.path.)
    if [ -x "$py" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] &&
        (cd / && "$py" - "$root") <<'EOF' 2>/dev/null
import importlib.util, os, sys
import mmcv.ops, mmengine, mmpretrain  # noqa: F401
assert importlib.util.find_spec('mmseg') is not None
spec = importlib.util.find_spec('mmelastic')
root = os.path.realpath(sys.argv[1])
assert os.path.realpath(spec.origin).startswith(root + os.sep), spec.origin
EOF
    then
        _mme_log "environment up to date ($venv)"
        _mme_fashion_mnist "$venv"
        export MMELASTIC_PYTHON="$py"
        return 0
    fi

    if [ ! -x "$py" ]; then
        base="${MMELASTIC_BASE_PYTHON:-python3}"
        if ! command -v "$base" >/dev/null 2>&1; then
            _mme_log "ERROR: $base not found; install Python 3.11 (or set MMELASTIC_BASE_PYTHON)"
            return 1
        fi
        _mme_log "creating virtual environment $venv with $("$base" --version 2>&1)"
        "$base" -m venv "$venv" || {
            _mme_log "ERROR: '$base -m venv' failed (Debian: apt-get install python3-venv)"
            return 1
        }
    fi
    rm -f "$stamp"

    _mme_log "installing torch and torchvision (requirements/pinned.txt)"
    # shellcheck disable=SC2046
    "$py" -m pip install -q -c "$constraints" \
        $(grep -E '^(torch|torchvision)==' "$root/requirements/pinned.txt") \
        'setuptools<82' wheel || {
        _mme_log "ERROR: installing torch failed"
        return 1
    }

    wheelhouse="${MMCV_WHEELHOUSE:-}"
    if [ -z "$wheelhouse" ] && [ -d "$root/../shared/wheels" ]; then
        wheelhouse="$(cd "$root/../shared/wheels" && pwd)"
    fi
    _mme_log "installing mmcv with compiled ops (wheelhouse: ${wheelhouse:-none})"
    if [ -n "$wheelhouse" ]; then
        "$py" "$root/tools/install_mmcv.py" --wheelhouse "$wheelhouse"
    else
        "$py" "$root/tools/install_mmcv.py"
    fi || {
        _mme_log "ERROR: tools/install_mmcv.py failed (see above)"
        return 1
    }

    _mme_log "installing the pinned stack (requirements/pinned.txt)"
    "$py" -m pip install -q -c "$constraints" \
        -r "$root/requirements/pinned.txt" || {
        _mme_log "ERROR: installing requirements/pinned.txt failed"
        return 1
    }

    _mme_log "installing mmelastic (pip install -e .)"
    # No build isolation: the venv's setuptools (<82) builds it, offline.
    "$py" -m pip install -q -c "$constraints" --no-build-isolation \
        -e "$root" || {
        _mme_log "ERROR: pip install -e . failed"
        return 1
    }

    "$py" -c 'import mmcv.ops, mmseg, mmpretrain, mmelastic' || {
        _mme_log "ERROR: the installed stack does not import (see above)"
        return 1
    }
    echo "$hash" >"$stamp"
    _mme_log "environment ready ($venv)"
    _mme_fashion_mnist "$venv"
    export MMELASTIC_PYTHON="$py"
}

# The demo's data set, from Debian. Tried once per venv when it fails, so
# later runs stay fast (remove $venv/.apt-failed to retry).
_mme_fashion_mnist() {
    local venv="$1" pkg=dataset-fashion-mnist
    if dpkg -s "$pkg" >/dev/null 2>&1; then
        return 0
    fi
    if [ -f "$venv/.apt-failed" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        _mme_log "WARNING: $pkg is not installed and apt-get is not usable" \
            "here (needs root); the demo falls back to generated data"
        touch "$venv/.apt-failed"
        return 0
    fi
    _mme_log "installing Debian package $pkg (apt-get update first)"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2; then
        return 0
    fi
    _mme_log "WARNING: apt-get could not install $pkg; the demo falls back" \
        "to generated data"
    touch "$venv/.apt-failed"
    return 0
}

_mme_setup
