# Copyright (c) mmelastic contributors. All rights reserved.
"""Convert the official ELASTIC checkpoints into mmelastic checkpoints.

The authors of ELASTIC released ImageNet, COCO and VOC models
(``<name>.pth.tar`` / ``.pth`` from allenai/elastic). This module detects
which model a file holds, maps every tensor onto the matching config in
``configs/``, checks the result *strictly* against that config's model (every
source tensor used, every target tensor filled with the right shape) and
writes an mmengine checkpoint.
"""
import hashlib
import os.path as osp
import re
from collections import OrderedDict

import torch

from .densenet import convert_official_densenet, official_densenet_arch
from .dla import convert_official_dla, convert_official_dla_seg, \
    official_dla_arch
from .resnext import (convert_official_deeplab_resnext,
                      convert_official_resnext, convert_single_branch_resnext,
                      strip_prefix)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: ResNeXt stage layouts -> our arch names (the official ResNeXt baseline
#: and Elastic models differ only in their layouts; SE adds ``selayer``).
_RESNEXT_LAYOUTS = {
    (3, 4, 6, 3): 'resnext50',
    (6, 8, 5, 3): 'resnext50_elastic',
    (3, 4, 23, 3): 'resnext101',
    (12, 14, 20, 3): 'resnext101_elastic',
}

#: Every released model: name -> (task, arch, config, converter).
OFFICIAL_RELEASES = OrderedDict()
for _arch in ('resnext50', 'resnext50_elastic', 'resnext101',
              'resnext101_elastic', 'se_resnext50_elastic'):
    OFFICIAL_RELEASES[_arch] = ('imagenet', _arch,
                                f'configs/imagenet/{_arch}.py',
                                convert_official_resnext)
for _arch in ('resnext50', 'resnext50_elastic', 'resnext101',
              'resnext101_elastic'):
    OFFICIAL_RELEASES[f'coco_{_arch}'] = ('coco', _arch,
                                          f'configs/coco/{_arch}.py',
                                          convert_official_resnext)
    OFFICIAL_RELEASES[f'deeplab_{_arch}_pascal_v3_original_epoch50'] = (
        'voc', _arch, f'configs/voc/deeplabv3_{_arch}.py',
        convert_official_deeplab_resnext)

for _arch in ('dla60x', 'dla60x_elastic', 'dla102x', 'densenet201',
              'densenet201_elastic'):
    _family = 'dla' if _arch.startswith('dla') else 'densenet'
    _convert = convert_official_dla if _family == 'dla' else \
        convert_official_densenet
    OFFICIAL_RELEASES[_arch] = ('imagenet', _arch,
                                f'configs/imagenet/{_arch}.py', _convert)
    if _arch != 'dla102x':
        OFFICIAL_RELEASES[f'coco_{_arch}'] = ('coco', _arch,
                                              f'configs/coco/{_arch}.py',
                                              _convert)
for _arch in ('dla60x', 'dla60x_elastic'):
    OFFICIAL_RELEASES[f'deeplab_{_arch}_pascal_v3_original_epoch50'] = (
        'voc', _arch, f'configs/voc/dlaup_{_arch}.py',
        convert_official_dla_seg)

_TASK_CONVERTERS = {
    ('resnext', 'imagenet'): convert_official_resnext,
    ('resnext', 'coco'): convert_official_resnext,
    ('resnext', 'voc'): convert_official_deeplab_resnext,
    ('dla', 'imagenet'): convert_official_dla,
    ('dla', 'coco'): convert_official_dla,
    ('dla', 'voc'): convert_official_dla_seg,
    ('densenet', 'imagenet'): convert_official_densenet,
    ('densenet', 'coco'): convert_official_densenet,
}


class ConversionError(RuntimeError):
    """A checkpoint cannot be converted; the message says why and how."""


def _resnext_layout(keys):
    blocks = {}
    for key in keys:
        m = re.match(r'^layer(\d)\.(\d+)\.', key)
        if m:
            stage, idx = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), idx + 1)
    return tuple(blocks.get(i, 0) for i in range(1, 5))


def detect_release(checkpoint, arch=None, task=None):
    """Work out which official model a checkpoint holds.

    Args:
        checkpoint (dict): The loaded file (``{'state_dict': ..., 'arch':
            ...}``) or a bare state dict.
        arch (str, optional): Force the architecture (our arch name, e.g.
            ``'resnext50_elastic'``).
        task (str, optional): Force the task: ``'imagenet'``, ``'coco'`` or
            ``'voc'``.

    Returns:
        tuple[str, str, str]: ``(family, arch, task)``, e.g.
        ``('resnext', 'resnext50_elastic', 'coco')``; the family
        ``'resnext-single-branch'`` marks torchvision/mmpretrain ResNeXt
        weights.
    """
    state_dict = checkpoint.get('state_dict', checkpoint)
    keys = list(strip_prefix(state_dict, 'module.'))
    keyset = set(keys)
    if task is None:
        if any(k.startswith(('aspp.', 'dla_up.')) for k in keys):
            task = 'voc'
        else:
            fc = next((state_dict[k] for k in state_dict
                       if k.endswith(('fc.weight', 'classifier.weight'))),
                      None)
            if fc is None:
                raise ConversionError(
                    'cannot tell the task: no classifier (fc/classifier) and '
                    'no segmentation head (aspp/dla_up) in the checkpoint; '
                    'pass --task imagenet|coco|voc')
            task = {1000: 'imagenet', 80: 'coco'}.get(fc.shape[0])
            if task is None:
                raise ConversionError(
                    f'the classifier has {fc.shape[0]} classes, neither '
                    'ImageNet (1000) nor COCO (80); pass --task')
    if any(k.startswith(('base_layer.', 'base.base_layer.')) for k in keys):
        try:
            return 'dla', arch or official_dla_arch(state_dict), task
        except ValueError as err:
            raise ConversionError(str(err)) from err
    if any(k.startswith('features.denseblock') for k in keys):
        if task == 'voc':
            raise ConversionError('no DenseNet segmentation model exists')
        try:
            return 'densenet', arch or official_densenet_arch(
                state_dict), task
        except ValueError as err:
            raise ConversionError(str(err)) from err
    is_resnext = 'layer1.0.conv1.weight' in keyset or \
        'backbone.layer1.0.conv1.weight' in keyset
    if not is_resnext:
        raise ConversionError(
            'unrecognised architecture: neither ResNeXt (layer1.0.conv1), '
            'DLA (base_layer) nor DenseNet (features.denseblock1) keys; '
            f'first keys: {keys[:5]}')
    if 'layer1.0.conv1_d.weight' not in keyset:
        return 'resnext-single-branch', arch or 'resnext50', task
    if arch is None:
        arch = checkpoint.get('arch') if isinstance(checkpoint, dict) \
            else None
        layout = _resnext_layout(keys)
        if arch is None:
            if layout not in _RESNEXT_LAYOUTS:
                raise ConversionError(
                    f'unknown ResNeXt layout {layout}; known layouts: '
                    f'{_RESNEXT_LAYOUTS}; pass --arch')
            arch = _RESNEXT_LAYOUTS[layout]
            if any('.selayer.' in k for k in keys):
                arch = 'se_' + arch
    return 'resnext', arch, task


def config_for(arch, task):
    """Path of the config a converted checkpoint belongs to."""
    if task == 'voc':
        # DLA segments with its IDA-up decoder, ResNeXt with DeepLabV3.
        prefix = 'dlaup' if arch.startswith('dla') else 'deeplabv3'
        return f'configs/voc/{prefix}_{arch}.py'
    return f'configs/{task}/{arch}.py'


def convert_official_state_dict(checkpoint, arch=None, task=None):
    """Map an official checkpoint's tensors onto our keys (not checked).

    Returns:
        tuple: ``(state_dict, unused_source_keys, arch, task)``.
    """
    family, arch, task = detect_release(checkpoint, arch, task)
    state_dict = checkpoint.get('state_dict', checkpoint)
    if family == 'resnext-single-branch':
        if task == 'voc':
            raise ConversionError('single-branch ResNeXt weights are '
                                  'classification weights; use --task '
                                  'imagenet')
        converted, unused = convert_single_branch_resnext(state_dict)
    else:
        converted, unused = _TASK_CONVERTERS[(family, task)](state_dict)
    return converted, unused, arch, task


def build_target_model(config):
    """Build a config's model without loading its pretrained weights."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, DefaultScope

    import mmelastic  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.pop('init_cfg', None)
    # Build in the config's scope without changing the caller's.
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        return revert_sync_batchnorm(MODELS.build(cfg.model))


def check_strict(converted, unused, target_state):
    """Raise :class:`ConversionError` listing every mismatch, if any.

    ``num_batches_tracked`` buffers absent from the source (the official VOC
    evaluation drops them) are filled with 0 -- they only count updates.
    """
    missing = [k for k in target_state if k not in converted]
    for key in [k for k in missing if k.endswith('num_batches_tracked')]:
        converted[key] = torch.zeros_like(target_state[key])
        missing.remove(key)
    unexpected = [k for k in converted if k not in target_state]
    misshaped = [(k, tuple(converted[k].shape), tuple(target_state[k].shape))
                 for k in converted if k in target_state
                 and converted[k].shape != target_state[k].shape]
    if unused or missing or unexpected or misshaped:
        lines = ['the checkpoint does not match the target model:']
        for title, items in (('unused source keys', unused),
                             ('target keys not filled', missing),
                             ('converted keys the target lacks', unexpected),
                             ('shape mismatches (key, source, target)',
                              misshaped)):
            if items:
                lines.append(f'  {title} ({len(items)}):')
                lines += [f'    {item}' for item in items[:20]]
                if len(items) > 20:
                    lines.append(f'    ... {len(items) - 20} more')
        lines.append('Wrong --arch/--task, or not an official ELASTIC file?')
        raise ConversionError('\n'.join(lines))
    return converted


def sha256sum(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def load_source(path, trust_pickle=False):
    """Load a checkpoint, with ``weights_only=True`` unless trusted."""
    if not osp.isfile(path):
        raise ConversionError(f'no such checkpoint file: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # pickle of non-tensor objects
        if not trust_pickle:
            raise ConversionError(
                f'{path} holds Python objects that a weights-only load '
                f'refuses ({type(err).__name__}: {str(err)[:200]}). If you '
                'trust the file, pass --trust-pickle (it may run code).')
    return torch.load(path, map_location='cpu', weights_only=False)


def convert_checkpoint(src, dst, arch=None, task=None, trust_pickle=False):
    """Convert an official ELASTIC checkpoint file into an mmelastic one.

    Args:
        src (str): The official ``.pth.tar`` / ``.pth`` file.
        dst (str): Where to write the mmengine checkpoint.
        arch (str, optional): Force the architecture.
        task (str, optional): Force the task (imagenet, coco, voc).
        trust_pickle (bool): Allow a full (unsafe) unpickle of the source.

    Returns:
        dict: ``meta`` of the written checkpoint (includes ``config``).
    """
    checkpoint = load_source(src, trust_pickle)
    if not isinstance(checkpoint, dict):
        raise ConversionError(f'{src} does not hold a dict')
    converted, unused, arch, task = convert_official_state_dict(
        checkpoint, arch, task)
    config = config_for(arch, task)
    if not osp.exists(osp.join(ROOT, config)):
        raise ConversionError(f'no config {config} for arch {arch!r} and '
                              f'task {task!r}')
    target = build_target_model(config).state_dict()
    converted = check_strict(converted, unused, target)
    meta = dict(
        source=osp.basename(src),
        source_sha256=sha256sum(src),
        converted_from='allenai/elastic',
        arch=arch,
        task=task,
        config=config,
        epoch=checkpoint.get('epoch'))
    import mmelastic
    meta['mmelastic_version'] = mmelastic.__version__
    torch.save(dict(meta=meta, state_dict=converted), dst)
    return meta
