# ResNeXt-101 32x4d in the official two-branch layout ("ResNeXt101*").
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='resnext101'))
