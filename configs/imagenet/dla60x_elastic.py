# DLA-X60+Elastic (paper Table 2) = DLA-X60+sElastic (Table 8; arch alias
# 'dla60x_selastic'): the DLA-X60 layout with two-branch elastic blocks in
# level2-level4 (11 of 16 blocks resampled). Recipe: see ./resnext50.py.
_base_ = './dla60x.py'

model = dict(backbone=dict(arch='dla60x_elastic'))
