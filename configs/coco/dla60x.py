# Multi-label COCO with DLA-X60 (paper Table 3). Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ElasticDLA',
        arch='dla60x',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/imagenet/dla60x.pth',
            prefix='backbone.')),
    head=dict(in_channels=1024))
