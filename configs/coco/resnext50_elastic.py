# Multi-label COCO with resnext50_elastic (paper Tables 3 and 4).
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(
    backbone=dict(
        arch='resnext50_elastic',
        init_cfg=dict(
            checkpoint='checkpoints/imagenet/resnext50_elastic.pth')))
