# ResNeXt50x2+Elastic (paper Table 2): cardinality 64 (64x4d) on the
# ResNeXt-50+Elastic layout; see docs/resnext50x2.md for the derivation.
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='resnext50x2_elastic'))
