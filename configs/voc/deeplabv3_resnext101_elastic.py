# DeepLabV3 OS16 with resnext101_elastic on PASCAL VOC 2012 aug (paper Table 5).
# Recipe: see ./deeplabv3_resnext50.py.
_base_ = './deeplabv3_resnext50.py'

model = dict(
    backbone=dict(
        arch='resnext101_elastic',
        init_cfg=dict(
            checkpoint='checkpoints/imagenet/resnext101_elastic.pth')))
