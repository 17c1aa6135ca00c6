# DLA-X60+Elastic with the DLA-seg decoder on PASCAL VOC 2012 aug (paper
# Table 5). Recipe: see ./dlaup_dla60x.py.
_base_ = './dlaup_dla60x.py'

model = dict(
    backbone=dict(
        arch='dla60x_elastic',
        init_cfg=dict(checkpoint='checkpoints/imagenet/dla60x_elastic.pth')))
