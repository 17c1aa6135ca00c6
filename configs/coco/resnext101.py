# Multi-label COCO with resnext101 (paper Tables 3 and 4).
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(
    backbone=dict(
        arch='resnext101',
        init_cfg=dict(
            checkpoint='checkpoints/imagenet/resnext101.pth')))
