#!/usr/bin/env bash
# Usage: bash tools/dist_launch.sh NUM_PROCS SCRIPT [script args...]
# What tools/dist_train.sh and tools/dist_test.sh share: starts NUM_PROCS
# processes of SCRIPT (one per GPU; on a machine without CUDA they run on
# the CPU with the gloo backend) through torchrun. Env: PORT (default
# 29500), NNODES, NODE_RANK, MASTER_ADDR, PYTHON (default: python).
set -e
if [ $# -lt 2 ]; then
    echo "usage: bash $0 NUM_PROCS SCRIPT [script args...]" >&2
    exit 2
fi
NPROCS=$1
SCRIPT=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# The repo root on PYTHONPATH makes `mmelastic` importable from a checkout
# that is not pip-installed (as OpenMMLab's dist_train.sh does).
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROCS" \
    --master_port="${PORT:-29500}" \
    "$SCRIPT" "${@:3}"
