# DLA-X102 (paper Table 2): trees [1, 3, 4, 1] with residual roots, 32
# groups. Recipe: see ./resnext50.py.
_base_ = './dla60x.py'

model = dict(backbone=dict(arch='dla102x'))
