# Multi-label COCO with resnext101_elastic (paper Tables 3 and 4).
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(
    backbone=dict(
        arch='resnext101_elastic',
        init_cfg=dict(
            checkpoint='checkpoints/imagenet/resnext101_elastic.pth')))
