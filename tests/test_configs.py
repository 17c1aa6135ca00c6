# Copyright (c) mmelastic contributors. All rights reserved.
"""Every config loads and builds its model; the VOC configs keep OS16."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmelastic.converters.official import build_target_model

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py')))


def test_config_families_present():
    families = {osp.basename(osp.dirname(c)) for c in CONFIGS}
    assert families == {'imagenet', 'coco', 'voc', 'demo'}
    assert len(CONFIGS) >= 30


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    family = osp.basename(osp.dirname(config))
    segmentation = family == 'voc' or config.endswith('_voc.py')
    assert cfg.default_scope == ('mmseg' if segmentation else 'mmpretrain')
    model = build_target_model(config)
    name = type(model).__name__
    assert name == ('EncoderDecoder' if segmentation else 'ImageClassifier')
    if family in ('imagenet', 'coco'):
        classes = {'imagenet': 1000, 'coco': 80}[family]
        assert model.head.num_classes == classes
        # Fine-tuning configs start from an ImageNet checkpoint.
        if family == 'coco':
            init = cfg.model.backbone.init_cfg
            assert init.type == 'Pretrained' and init.prefix == 'backbone.'


VOC_DEEPLAB = [c for c in CONFIGS if 'voc/deeplabv3_' in c]


@pytest.mark.parametrize('config', VOC_DEEPLAB)
def test_voc_deeplab_output_stride_16(config):
    model = build_target_model(config).eval()
    rates = [(b.high.conv2.dilation[0], b.low.conv2.dilation[0])
             for b in model.backbone.layer4]
    assert rates == [(2, 2), (4, 4), (8, 8)]
    assert not model.with_auxiliary_head  # "without bells and whistles"
    if config.endswith('deeplabv3_resnext50_elastic.py'):
        with torch.no_grad():
            feats = model.extract_feat(torch.rand(1, 3, 512, 512))
        assert feats[-1].shape[-2:] == (32, 32)


LOWMEM = [c for c in CONFIGS if c.endswith('_lowmem.py')]


@pytest.mark.parametrize('config', LOWMEM)
def test_lowmem_config_is_its_model_with_stage1_recomputed(config):
    """A ``_lowmem`` config is the model of the config without the suffix
    (same parameters, so the same checkpoints load), with only the blocks
    of its first stage checkpointed (memory-efficient in DenseNet)."""
    assert len(LOWMEM) == 3
    model = build_target_model(config)
    base = build_target_model(config.replace('_lowmem.py', '.py'))
    assert [(n, p.shape) for n, p in model.named_parameters()] == \
        [(n, p.shape) for n, p in base.named_parameters()]
    backbone = model.backbone
    if hasattr(backbone, 'res_layers'):
        stages = [getattr(backbone, name) for name in backbone.res_layers]
        flags = [[block.with_cp for block in stage] for stage in stages]
    else:
        stages = backbone.stages
        flags = [[layer.memory_efficient for layer in stage.modules()
                  if hasattr(layer, 'memory_efficient')] for stage in stages]
    assert all(flags[0]) and flags[0]
    assert not any(f for stage in flags[1:] for f in stage)
