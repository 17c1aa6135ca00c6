# A CPU-sized Elastic ResNeXt on the demo ImageNet-layout set
# (tools/data/make_demo_data.py: 96 px images, 10 Fashion-MNIST classes),
# inheriting the ImageNet recipe of ../imagenet/resnext50_elastic.py.
#
#   python tools/train.py configs/demo/resnext_tiny_elastic_cls.py
#   tools/dist_train.sh configs/demo/resnext_tiny_elastic_cls.py 2
_base_ = ['../imagenet/resnext50_elastic.py']

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, stage_blocks=(2, 2, 2, 1), elastic=True),
        base_channels=16,
        stem_channels=16,
        groups=8,
        width_per_group=4),
    head=dict(num_classes=10, in_channels=512, topk=(1, 5)))
data_preprocessor = dict(num_classes=10)

data_root = 'data/demo/cls'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=96, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        classes=data_root + '/meta/classes.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='val',
        classes=data_root + '/meta/classes.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 8
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True)
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = None
