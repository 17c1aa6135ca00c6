#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Starts NUM_PROCS processes (one per GPU; on a machine without CUDA they
# train on the CPU with the gloo backend) through torchrun. Env: PORT
# (default 29500), NNODES, NODE_RANK, MASTER_ADDR, PYTHON (default: python).
set -e
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG NUM_PROCS [tools/train.py options]" >&2
    exit 2
fi
TOOLS="$(cd "$(dirname "$0")" && pwd)"
exec bash "$TOOLS/dist_launch.sh" "$2" "$TOOLS/train.py" "$1" \
    --launcher pytorch "${@:3}"
