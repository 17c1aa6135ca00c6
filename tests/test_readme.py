# Copyright (c) mmelastic contributors. All rights reserved.
"""The README's config snippets load and build what they promise."""
import os.path as osp
import re

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def readme_snippets():
    text = open(osp.join(ROOT, 'README.md')).read()
    return [
        s for s in re.findall(r'```python\n(.*?)```', text, re.S)
        if s.startswith('_base_')
    ]


def load(snippet, tmp_path):
    snippet = snippet.replace('/path/to/mmelastic', ROOT)
    path = tmp_path / 'snippet.py'
    path.write_text(snippet)
    cfg = Config.fromfile(str(path))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    return cfg, model


def test_custom_imports_deeplab_snippet(tmp_path):
    snippets = readme_snippets()
    deeplab = next(s for s in snippets if 'mmseg::deeplabv3' in s)
    # The snippet itself must not need our tools: custom_imports does it.
    assert "custom_imports = dict(imports=['mmelastic']" in deeplab
    cfg, model = load(deeplab, tmp_path)
    assert cfg.default_scope == 'mmseg'
    assert type(model).__name__ == 'EncoderDecoder'
    assert type(model.backbone).__name__ == 'ElasticResNeXt'
    # At output stride 8 the first block of stage 3 has stride 1, so it is
    # elastic too: 17 + 1.
    assert len(model.backbone.elastic_blocks()) == 18
    assert model.backbone.layer3[0].elastic
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64), mode='tensor')
    assert out.shape == (1, 21, 8, 8)  # output stride 8


def test_inherit_coco_snippet(tmp_path):
    snippet = next(s for s in readme_snippets() if 'configs/coco' in s)
    cfg, model = load(snippet, tmp_path)
    assert cfg.train_dataloader.dataset.type == 'COCOMultiLabel'
    assert cfg.train_dataloader.dataset.data_root == 'data/my_dataset'
    assert model.head.num_classes == 20
    assert model.backbone.stage_blocks == (6, 8, 5, 3)
