# Copyright (c) mmelastic contributors. All rights reserved.
"""Map official ELASTIC DenseNet state dicts onto :class:`~mmelastic.models.
ElasticDenseNet`.

Official layout (allenai/elastic ``models/densenet.py``):

* ``features.conv0`` / ``features.norm0`` -> ``stem.0`` / ``stem.1``;
* ``features.denseblockB.denselayerL.<name>`` (both numbered from 1) ->
  ``stages.{B-1}.block.{L-1}.<ours>``: the shared ``norm1`` keeps its name;
  ``conv1``/``norm2``/``conv2`` (the high-resolution branch, or the whole
  bottleneck of a plain layer) -> ``high.*``; ``conv1_d``/``norm2_d``/
  ``conv2_d`` (the low-resolution branch) -> ``low.*``;
* ``features.transitionT.{norm,conv}`` -> ``transitions.{T-1}.{norm,conv}``;
* ``features.norm_final`` (torchvision: ``features.norm5``) -> the last
  ``transitions`` entry's norm, ``transitions.{B-1}.0``;
* ``classifier`` -> ``head.fc``.

The baseline's keys are torchvision's DenseNet keys (but ``norm_final``), so
torchvision ``densenet201`` weights convert too.
"""
import re
from collections import OrderedDict

from .resnext import strip_prefix

_LAYER = re.compile(r'^features\.denseblock(\d+)\.denselayer(\d+)\.'
                    r'(\w+)\.(.+)$')
_TRANSITION = re.compile(r'^features\.transition(\d+)\.(norm|conv)\.(.+)$')

# Official layer-internal names -> ours.
_OFFICIAL_LAYER = {
    'norm1': 'norm1',
    'conv1': 'high.conv1',
    'norm2': 'high.norm2',
    'conv2': 'high.conv2',
    'conv1_d': 'low.conv1',
    'norm2_d': 'low.norm2',
    'conv2_d': 'low.conv2',
}


def convert_official_densenet(state_dict):
    """Rename an official ELASTIC (or torchvision) DenseNet state dict.

    Args:
        state_dict (dict): The official ``state_dict`` (with or without the
            ``module.`` prefix of DataParallel).

    Returns:
        tuple(OrderedDict, list[str]): The converted state dict (an
        mmpretrain ``ImageClassifier``'s keys: ``backbone.*``, ``head.fc.*``)
        and the source keys that were not recognised.
    """
    state_dict = strip_prefix(state_dict, 'module.')
    blocks = {int(m.group(1)) for m in map(_LAYER.match, state_dict) if m}
    out, unused = OrderedDict(), []
    for key, value in state_dict.items():
        layer = _LAYER.match(key)
        transition = _TRANSITION.match(key)
        first, _, rest = key.partition('.')
        if layer:
            block, idx, name, param = layer.groups()
            if name not in _OFFICIAL_LAYER:
                unused.append(key)
                continue
            out[f'backbone.stages.{int(block) - 1}.block.{int(idx) - 1}.'
                f'{_OFFICIAL_LAYER[name]}.{param}'] = value
        elif transition:
            idx, name, param = transition.groups()
            out[f'backbone.transitions.{int(idx) - 1}.{name}.{param}'] = value
        elif key.startswith('features.conv0.'):
            out['backbone.stem.0.' + key[len('features.conv0.'):]] = value
        elif key.startswith('features.norm0.'):
            out['backbone.stem.1.' + key[len('features.norm0.'):]] = value
        elif key.startswith(('features.norm_final.', 'features.norm5.')) \
                and blocks:
            param = key.rpartition('.')[2]
            out[f'backbone.transitions.{max(blocks) - 1}.0.{param}'] = value
        elif first == 'classifier' and rest in ('weight', 'bias'):
            out['head.fc.' + rest] = value
        else:
            unused.append(key)
    return out, unused


def official_densenet_arch(state_dict):
    """Our arch name for an official DenseNet state dict, from its keys.

    Returns:
        str: ``'densenet201'`` or ``'densenet201_elastic'``.

    Raises:
        ValueError: The layout is neither.
    """
    from mmelastic.models import ElasticDenseNet
    sd = strip_prefix(state_dict, 'module.')
    depths = {}
    for m in map(_LAYER.match, sd):
        if m:
            block = int(m.group(1))
            depths[block] = max(depths.get(block, 0), int(m.group(2)))
    depths = tuple(depths[b] for b in sorted(depths))
    elastic = any('.conv1_d.' in k for k in sd)
    for name, setting in ElasticDenseNet.arch_settings.items():
        if tuple(setting['depths']) == depths and \
                setting['elastic'] == elastic:
            return name
    raise ValueError(f'unknown DenseNet layout: depths {depths}, '
                     f'elastic={elastic}; known archs: '
                     f'{sorted(ElasticDenseNet.arch_settings)}')
