# DLA-X60 (paper Table 2, "DLA-X60*"): single-branch ResNeXt bottlenecks
# with 32 groups in the DLA-60 trees. Recipe: see ./resnext50.py (the paper
# trains every ImageNet model alike, "following DLA": 120 epochs, lr 0.1
# divided by 10 at epochs 30, 60 and 90).
_base_ = './resnext50.py'

model = dict(
    backbone=dict(_delete_=True, type='ElasticDLA', arch='dla60x'),
    # The official classifier is a 1x1 conv with DLA's conv init:
    # N(0, sqrt(2 / (1 * 1 * 1000))); bias 0.
    head=dict(
        in_channels=1024,
        init_cfg=dict(type='Normal', layer='Linear', std=0.0447, bias=0)))
