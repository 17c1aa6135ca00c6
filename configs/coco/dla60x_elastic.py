# Multi-label COCO with DLA-X60+Elastic (paper Tables 3 and 4).
# Recipe: see ./resnext50.py.
_base_ = './dla60x.py'

model = dict(
    backbone=dict(
        arch='dla60x_elastic',
        init_cfg=dict(checkpoint='checkpoints/imagenet/dla60x_elastic.pth')))
