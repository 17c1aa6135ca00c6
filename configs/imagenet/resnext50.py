# ResNeXt-50 32x4d in the official two-branch layout (paper Table 2,
# "ResNeXt50*"), trained with the paper's ImageNet recipe: 8 GPUs x 32
# images, SGD lr 0.1, momentum 0.9, wd 1e-4, 120 epochs, lr x0.1 at 30/60/90,
# RandomResizedCrop 224 + flip, val resize 256 + center crop 224.
_base_ = [
    'mmpretrain::_base_/models/resnext50_32x4d.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, type='ElasticResNeXt', arch='resnext50'),
    # Official init: fc ~ N(0, 0.01), bias 0.
    head=dict(init_cfg=dict(type='Normal', layer='Linear', std=0.01)))

train_cfg = dict(max_epochs=120)
