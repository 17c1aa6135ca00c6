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
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# The repo root on PYTHONPATH makes `mmelastic` importable from a checkout
# that is not pip-installed (as OpenMMLab's dist_train.sh does).
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
