# SE-ResNeXt-50+Elastic (paper Table 2).
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='se_resnext50_elastic'))
