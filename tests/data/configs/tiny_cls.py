# A CPU-sized image classification config for the tool tests: a one-block-
# per-stage ElasticResNeXt on 32x32 images. No custom_imports on purpose:
# tools/train.py and tools/test.py import mmelastic themselves. The data
# root is a placeholder; tests pass the generated folder with
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...
_base_ = ['mmpretrain::_base_/default_runtime.py']

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(
        type='ElasticResNeXt',
        arch='resnext50_elastic',
        stage_blocks=(1, 1, 1, 1),
        base_channels=8,
        stem_channels=8,
        groups=4,
        width_per_group=2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=256,  # base_channels * 2**3 * expansion 4
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

data_root = 'data/tiny_cls'
# No random transforms: the resume test compares weights bit for bit.
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.5)
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1))
randomness = dict(seed=0, deterministic=True)
