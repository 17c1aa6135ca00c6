# The demo's Elastic model: the baseline of ./resnext_tiny_coco.py with
# elastic blocks and one more block at the highest resolution (blocks
# [2, 2, 2, 1]), which matches its parameters and FLOPs (README, "Demo").
_base_ = ['./resnext_tiny_coco.py']

model = dict(
    backbone=dict(arch=dict(stage_blocks=(2, 2, 2, 1), elastic=True)))
