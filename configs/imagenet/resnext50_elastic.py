# ResNeXt-50+Elastic (paper Table 2): blocks [6, 8, 5, 3], 17 elastic blocks.
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='resnext50_elastic'))
