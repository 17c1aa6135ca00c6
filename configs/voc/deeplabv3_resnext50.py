# DeepLabV3 with the ResNeXt-50 baseline on PASCAL VOC 2012 aug, the paper's
# Section 4.3 recipe "without bells and whistles": output stride 16 with
# multi-grid (1, 2, 4) on a dilation-2 last stage (3x3 rates 2, 4, 8), ASPP
# rates 6/12/18 + image pooling with 256 channels, no auxiliary head, SyncBN,
# batch 16 (8 GPUs x 2), crop 513, random scale 0.5-2.0 + flip, SGD lr 0.007
# with poly decay (power 0.9), momentum 0.9, wd 5e-4, 50 epochs of train_aug.
#
#   tools/dist_train.sh configs/voc/deeplabv3_resnext50.py 8
#
# The backbone starts from an ImageNet checkpoint (see README, "Pretrained
# backbones"): train configs/imagenet/resnext50.py, or convert the official
# release with tools/model_converters/elastic_to_mmelastic.py.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)

crop_size = (513, 513)
# The official code uses BN momentum 0.05 in the backbone and 0.0003 in ASPP.
backbone_norm_cfg = dict(type='SyncBN', requires_grad=True, momentum=0.05)
head_norm_cfg = dict(type='SyncBN', requires_grad=True, momentum=0.0003)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ElasticResNeXt',
        arch='resnext50',
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        multi_grid=(1, 2, 4),
        out_indices=(3, ),
        norm_cfg=backbone_norm_cfg,
        norm_eval=False,
        with_cp=True,  # as the official model: every block checkpointed
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/imagenet/resnext50.pth',
            prefix='backbone.')),
    decode_head=dict(
        type='ElasticASPPHead',
        in_channels=2048,
        in_index=0,
        channels=256,
        dilations=(1, 6, 12, 18),
        dropout_ratio=0,
        num_classes=21,
        norm_cfg=head_norm_cfg,
        # The official model upsamples its logits with align_corners=True.
        align_corners=True),
    auxiliary_head=None)

# Official augmentation: random scale of the original image (VOC's long side
# is <= 500 px) in [0.5, 2.0], flip, pad and random crop to 513.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(500, 500),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=crop_size),
    dict(type='PackSegInputs')
]
# Single scale, no flip, at the original image size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(datasets=[
        dict(pipeline=train_pipeline),
        dict(pipeline=train_pipeline)
    ]))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# 50 epochs of train_aug (10,582 images) at batch 16 = 33,070 iterations.
max_iters = 33070
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.007, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=3307)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3307))
