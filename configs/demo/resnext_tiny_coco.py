# The demo's baseline: a small ResNeXt (blocks [1, 2, 2, 1], 16 base
# channels, cardinality 8) trained from scratch on the demo multi-label COCO
# set (tools/data/make_demo_data.py: Fashion-MNIST objects at small, medium and
# large sizes on 224 px canvases, resized to 128 px). Sized for 2 CPU cores;
# ./resnext_tiny_elastic_coco.py is its Elastic twin with matched FLOPs.
#
#   python tools/train.py configs/demo/resnext_tiny_coco.py
_base_ = ['../coco/resnext50.py']

input_size = 128
model = dict(
    backbone=dict(
        _delete_=True,
        type='ElasticResNeXt',
        arch=dict(stage_blocks=(1, 2, 2, 1), elastic=False),
        base_channels=16,
        stem_channels=16,
        groups=8,
        width_per_group=4),
    head=dict(num_classes=10, in_channels=512))
data_preprocessor = dict(num_classes=10)

data_root = 'data/demo/coco'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), backend='pillow'),
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction', 'img_id',
                   'gt_size_label', 'size_subset')),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Threshold-free mAP too: early in training few scores pass 0.5, so F1
# alone can hide what a model has learned.
val_evaluator = [
    dict(type='ElasticMultiLabelMetric'),
    dict(type='ScaleStratifiedMultiLabelMetric'),
    dict(type='AveragePrecision'),
]
test_evaluator = val_evaluator

# From scratch: a common short recipe, the same for both models.
max_epochs = 8
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True,
         begin=1, end=max_epochs)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = None
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(
        type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1,
        save_best=None))
randomness = dict(seed=0, deterministic=False)
