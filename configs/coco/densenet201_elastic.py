# Multi-label COCO with DenseNet201+Elastic (paper Tables 3 and 4).
# Recipe: see ./resnext50.py.
_base_ = './densenet201.py'

model = dict(
    backbone=dict(
        arch='densenet201_elastic',
        init_cfg=dict(
            checkpoint='checkpoints/imagenet/densenet201_elastic.pth')),
    head=dict(in_channels=1808))
