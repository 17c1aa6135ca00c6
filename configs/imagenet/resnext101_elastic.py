# ResNeXt-101+Elastic (paper Table 2): blocks [12, 14, 20, 3].
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='resnext101_elastic'))
