# ResNeXt-50+Elastic with gradient checkpointing in its first stage (6
# blocks at 56x56; ResNeXt-50: 3): the same model and weights, less training
# memory for a longer step (docs/performance.md, "Activation memory in
# training").
_base_ = './resnext50_elastic.py'

model = dict(backbone=dict(with_cp=(True, False, False, False)))
