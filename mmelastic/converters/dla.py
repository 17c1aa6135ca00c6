# Copyright (c) mmelastic contributors. All rights reserved.
"""Map official ELASTIC DLA state dicts onto :class:`~mmelastic.models.
ElasticDLA` (and :class:`~mmelastic.models.decode_heads.DLAUpHead`).

Official layout (allenai/elastic ``models/dla.py``, ``models/dla_up.py``):

* ``base_layer.{0,1}``, ``level0.{0,1}``, ``level1.{0,1}``: conv/BN stem and
  conv levels -- the same keys here;
* ``levelN(.treeK)*.treeK.<block>``: a bottleneck. Block-internal names are
  those of the official ResNeXt blocks (``conv1/bn1/.../bn3`` and, for the
  Elastic blocks, ``conv1_d/bn1_d/...``) and map the same way:
  ``high.*``/``low.*``/``norm3``;
* ``levelN(.treeK)*.root.{conv,bn}``: the aggregation node -> ``root.conv``
  and ``root.norm``;
* ``levelN(.treeK)*.project.{0,1}``: the pooled shortcut's projection. It is
  used only in a leaf tree (whose ``tree1`` is a block); the one of a deeper
  tree is computed by the official code and discarded. Those *dead*
  projections are dropped (:func:`dead_projection_keys`);
* ``fc.{weight,bias}``: the classifier, a 1x1 conv -> ``head.fc`` (linear);
* DLA-seg (``DLASeg``): ``base.*`` (the backbone, with an unused ImageNet
  ``base.fc`` that is dropped), ``dla_up.ida_I.{proj_J,up_J,node_J}``,
  ``fc.0`` (the classifier) and ``up.weight`` (a frozen bilinear transposed
  conv; mmseg's resize replaces it, so it is dropped after checking that it
  is still bilinear).

Every function returns ``(state_dict, unused_source_keys)`` like the ResNeXt
converters; dropped dead tensors are not "unused".
"""
import re
from collections import OrderedDict

import torch

from .resnext import _OFFICIAL_BLOCK, _rename_block, strip_prefix

_TREE = re.compile(r'^(level[2-5](?:\.tree[12])*)\.(.+)$')


def _is_leaf_tree(tree, keys):
    """Whether official tree ``tree`` holds blocks (not subtrees)."""
    return not any(
        k.startswith((f'{tree}.tree1.tree1.', f'{tree}.tree1.root.'))
        for k in keys)


def dead_projection_keys(state_dict):
    """The official keys of projections that the official forward discards.

    A tree deeper than one level builds a ``project`` when its channels
    change, but only its first leaf's own ``project`` is used. Dropping
    these makes dla60x 297,472 parameters (3 projections) smaller than the
    official 17,649,816.

    Args:
        state_dict (dict): An official DLA state dict (``module.`` or
            ``base.`` prefixes are stripped).

    Returns:
        list[str]: The dead keys, without prefixes.
    """
    state_dict = strip_prefix(strip_prefix(state_dict, 'module.'), 'base.')
    keys = list(state_dict)
    dead = []
    for key in keys:
        m = _TREE.match(key)
        if m and m.group(2).startswith('project.') and \
                not _is_leaf_tree(m.group(1), keys):
            dead.append(key)
    return dead


def _convert_backbone(state_dict, out, unused):
    dead = set(dead_projection_keys(state_dict))
    for key, value in state_dict.items():
        if key in dead:
            continue
        if key.split('.')[0] in ('base_layer', 'level0', 'level1'):
            out['backbone.' + key] = value
            continue
        m = _TREE.match(key)
        if m is None:
            unused.append(key)
            continue
        tree, rest = m.groups()
        if rest.startswith('root.conv.'):
            new = f'{tree}.root.conv.' + rest[len('root.conv.'):]
        elif rest.startswith('root.bn.'):
            new = f'{tree}.root.norm.' + rest[len('root.bn.'):]
        elif rest.startswith('project.'):
            new = f'{tree}.{rest}'
        else:
            # ``tree`` ends in the block itself (tree1/tree2 of a leaf).
            block = _rename_block(rest, _OFFICIAL_BLOCK)
            if block is None or '.' not in tree:
                unused.append(key)
                continue
            new = f'{tree}.{block}'
        out['backbone.' + new] = value


def convert_official_dla(state_dict):
    """Rename an official ELASTIC DLA classifier's state dict.

    Args:
        state_dict (dict): The official ``state_dict`` (with or without the
            ``module.`` prefix of DataParallel).

    Returns:
        tuple(OrderedDict, list[str]): The converted state dict (an
        mmpretrain ``ImageClassifier``'s keys: ``backbone.*``, ``head.fc.*``)
        and the source keys that were not recognised.
    """
    state_dict = strip_prefix(state_dict, 'module.')
    out, unused = OrderedDict(), []
    backbone = OrderedDict()
    for key, value in state_dict.items():
        if key == 'fc.weight':
            # The official classifier is a 1x1 conv: (classes, C, 1, 1).
            out['head.fc.weight'] = value.reshape(value.shape[0], -1)
        elif key == 'fc.bias':
            out['head.fc.bias'] = value
        else:
            backbone[key] = value
    _convert_backbone(backbone, out, unused)
    # Backbone first, as in the model.
    out = OrderedDict(
        sorted(out.items(), key=lambda kv: kv[0].startswith('head.')))
    return out, unused


def _is_bilinear_upsampler(weight):
    from mmelastic.models.decode_heads.dla_up_head import bilinear_kernel
    kernel = bilinear_kernel(weight.shape[-1]).to(weight.dtype)
    return weight.dim() == 4 and weight.shape[1] == 1 and torch.allclose(
        weight, kernel.expand_as(weight), atol=1e-6)


_IDA = re.compile(r'^dla_up\.ida_(\d+)\.(proj|up|node)_(\d+)\.(.+)$')


def convert_official_dla_seg(state_dict):
    """Rename an official ELASTIC DLA-seg (``DLASeg``, VOC) state dict.

    Returns:
        tuple(OrderedDict, list[str]): The converted state dict (an mmseg
        ``EncoderDecoder``'s keys: ``backbone.*`` for
        :class:`~mmelastic.models.ElasticDLA` and ``decode_head.*`` for
        :class:`~mmelastic.models.decode_heads.DLAUpHead`) and the
        unrecognised source keys.
    """
    state_dict = strip_prefix(state_dict, 'module.')
    out, unused = OrderedDict(), []
    base = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('base.'):
            # The ImageNet classifier DLA builds even in DLASeg, never used.
            if not key.startswith('base.fc.'):
                base[key[len('base.'):]] = value
            continue
        m = _IDA.match(key)
        if m:
            ida, kind, idx, rest = m.groups()
            prefix = f'decode_head.dla_up.idas.{ida}.'
            layer = {'0': 'conv', '1': 'bn'}
            part, _, param = rest.partition('.')
            if kind == 'up' and rest == 'weight':
                out[f'{prefix}ups.{idx}.weight'] = value
            elif kind == 'proj' and part in layer:
                out[f'{prefix}projs.{idx}.{layer[part]}.{param}'] = value
            elif kind == 'node' and part in layer and int(idx) > 0:
                # Official nodes are numbered from 1.
                out[f'{prefix}nodes.{int(idx) - 1}.{layer[part]}.{param}'] = \
                    value
            else:
                unused.append(key)
        elif key in ('fc.0.weight', 'fc.0.bias'):
            out['decode_head.conv_seg.' + key[len('fc.0.'):]] = value
        elif key == 'up.weight' and _is_bilinear_upsampler(value):
            continue  # fixed bilinear upsampling; mmseg resizes instead
        else:
            unused.append(key)
    backbone = OrderedDict()
    _convert_backbone(base, backbone, unused)
    backbone.update(out)
    return backbone, unused


def official_dla_arch(state_dict):
    """Our arch name for an official DLA state dict, read from its keys.

    The tree depths, the block type (``conv1_d`` present: elastic) and the
    cardinality (from the first bottleneck's widths) identify the model.

    Returns:
        str: e.g. ``'dla102x_elastic'``.

    Raises:
        ValueError: The layout is none of :class:`~mmelastic.models.
            ElasticDLA`'s archs.
    """
    from mmelastic.models import ElasticDLA
    sd = strip_prefix(strip_prefix(state_dict, 'module.'), 'base.')
    levels = []
    for i in range(6):
        if i < 2:
            convs = {
                int(k.split('.')[1]) // 3
                for k in sd if k.startswith(f'level{i}.')
            }
            levels.append(len(convs))
        else:
            depths = [
                len(re.findall(r'\.tree[12]', m.group(1)))
                for m in map(_TREE.match, sd)
                if m and m.group(1).startswith(f'level{i}')
            ]
            levels.append(max(depths, default=0))
    elastic = any('.conv1_d.' in k for k in sd)
    block = 'level2' + '.tree1' * levels[2]
    if f'{block}.conv1.weight' not in sd or f'{block}.conv3.weight' not in sd:
        raise ValueError('not an official DLA state dict: no first '
                         f'bottleneck {block}.conv1.weight')
    mid = sd[f'{block}.conv1.weight'].shape[0] * (2 if elastic else 1)
    planes = sd[f'{block}.conv3.weight'].shape[0]
    cardinality = 32 * mid // planes
    for name, setting in ElasticDLA.arch_settings.items():
        if name == 'dla60x_selastic':  # alias of dla60x_elastic
            continue
        if (tuple(setting['levels']) == tuple(levels)
                and setting['cardinality'] == cardinality
                and setting['elastic'] == elastic):
            return name
    raise ValueError(
        f'unknown DLA layout: levels {tuple(levels)}, cardinality '
        f'{cardinality}, elastic={elastic}; known archs: '
        f'{sorted(ElasticDLA.arch_settings)}')
