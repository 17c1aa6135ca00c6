# Multi-label MS-COCO 2014 with the ResNeXt-50 baseline (paper Section 4.2,
# Tables 3 and 4): fine-tuned from an ImageNet checkpoint with binary cross
# entropy, 4 GPUs x 24 images, SGD lr 0.001, momentum 0.9, wd 5e-4, 36 epochs,
# lr x0.1 at epochs 24 and 30; train RandomResizedCrop 224 + flip, test
# resize to 224x224 (no crop). Metrics: CF1/OF1 with CP/CR/OP/OR, and the
# Table-4 image subsets by object size.
#
#   tools/dist_train.sh configs/coco/resnext50.py 4
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ElasticResNeXt',
        arch='resnext50',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/imagenet/resnext50.pth',
            prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='MultiLabelLinearClsHead',
        num_classes=80,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', use_sigmoid=True),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)))

dataset_type = 'COCOMultiLabel'
data_root = 'data/coco'
data_preprocessor = dict(
    num_classes=80,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    to_onehot=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), backend='pillow'),
    # The object-size information the size-stratified metric needs.
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction', 'img_id',
                   'gt_size_label', 'size_subset')),
]
train_dataloader = dict(
    batch_size=24,
    num_workers=5,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=24,
    num_workers=5,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        test_mode=True,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='ElasticMultiLabelMetric'),
    dict(type='ScaleStratifiedMultiLabelMetric'),
]
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[24, 30], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=36, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=96)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=3,
        save_best='multi-label/OF1'))
