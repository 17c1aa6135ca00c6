# SE-ResNeXt-50 in the official two-branch layout (paper Table 2,
# "SE-ResNeXt50*").
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='se_resnext50'))
