# DLA-X102+Elastic (paper Tables 2 and 9, "Split50+Elastic"): trees
# [3, 3, 3, 1] with residual roots and 50 groups. Recipe: see ./resnext50.py.
_base_ = './dla60x.py'

model = dict(backbone=dict(arch='dla102x_elastic'))
