# DLA-X102+sElastic (paper Tables 8 and 9): the DLA-X102 layout with elastic
# blocks, 32 groups; same parameters, fewer FLOPs. Not in the official code.
# Recipe: see ./resnext50.py.
_base_ = './dla60x.py'

model = dict(backbone=dict(arch='dla102x_selastic'))
