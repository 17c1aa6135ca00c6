# A CPU-sized DeepLabV3 (output stride 16, multi-grid, ASPP) with an Elastic
# ResNeXt on the demo VOC-format set (tools/data/make_demo_data.py: 96 px
# images, background + 10 Fashion-MNIST classes, 255 on object borders),
# inheriting the paper's VOC recipe of ../voc/deeplabv3_resnext50_elastic.py.
#
#   python tools/train.py configs/demo/deeplabv3_tiny_elastic_voc.py
#   tools/dist_train.sh configs/demo/deeplabv3_tiny_elastic_voc.py 2
_base_ = ['../voc/deeplabv3_resnext50_elastic.py']

crop_size = (96, 96)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, stage_blocks=(2, 2, 2, 3), elastic=True),
        base_channels=16,
        stem_channels=16,
        groups=8,
        width_per_group=4,
        with_cp=False,
        init_cfg=None),
    decode_head=dict(in_channels=512, channels=32, num_classes=11))

data_root = 'data/demo/voc/VOCdevkit/VOC2012'
metainfo = dict(classes=data_root + '/class_names.txt')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(96, 96),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=crop_size),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=False,
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'))
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=train_pipeline,
        **dataset))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline,
        **dataset))
test_dataloader = val_dataloader

max_iters = 1000
param_scheduler = [
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
