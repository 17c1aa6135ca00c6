# ResNeXt-101+Elastic with gradient checkpointing in its first stage: the
# same model and weights, less training memory for a longer step. The
# Elastic layout runs 12 blocks at 56x56 (ResNeXt-101: 3), and their
# activations are most of what it keeps for the backward pass; recomputing
# that stage alone brings it near its baseline (docs/performance.md,
# "Activation memory in training").
_base_ = './resnext101_elastic.py'

model = dict(backbone=dict(with_cp=(True, False, False, False)))
