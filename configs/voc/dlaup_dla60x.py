# DLA-X60 with DLA's own iterative deep aggregation decoder (DLA-seg, down
# ratio 2) on PASCAL VOC 2012 aug (paper Table 5: "Our DLA models use the
# original iterative deep aggregation as a decoder"), trained like the
# DeepLabV3 models (./deeplabv3_resnext50.py: crop 513, batch 16, 50 epochs,
# SGD lr 0.007 poly 0.9, momentum 0.9) but with weight decay 1e-4, as the
# official DLA runs.
#
#   tools/dist_train.sh configs/voc/dlaup_dla60x.py 8
#
# The backbone starts from an ImageNet checkpoint: train
# configs/imagenet/dla60x.py, or convert the official release.
_base_ = './deeplabv3_resnext50.py'

# The official DLA-seg keeps PyTorch's default BN momentum (0.1).
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ElasticDLA',
        arch='dla60x',
        # Levels 1-5 (strides 2-32) feed the decoder (down ratio 2).
        out_indices=(1, 2, 3, 4, 5),
        norm_cfg=norm_cfg,
        norm_eval=False,
        with_cp=True,  # the official model checkpoints every level
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/imagenet/dla60x.pth',
            prefix='backbone.')),
    decode_head=dict(
        _delete_=True,
        type='DLAUpHead',
        in_channels=[32, 128, 256, 512, 1024],
        in_index=[0, 1, 2, 3, 4],
        num_classes=21,
        dropout_ratio=0,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))

optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
