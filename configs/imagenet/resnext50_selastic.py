# ResNeXt-50+sElastic (paper Appendix A, Table 8): the original [3, 4, 6, 3]
# layout with elastic blocks; same params, fewer FLOPs.
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(backbone=dict(arch='resnext50_selastic'))
