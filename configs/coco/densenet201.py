# Multi-label COCO with DenseNet201 (paper Table 3).
# Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ElasticDenseNet',
        arch='densenet201',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/imagenet/densenet201.pth',
            prefix='backbone.')),
    head=dict(in_channels=1920))
