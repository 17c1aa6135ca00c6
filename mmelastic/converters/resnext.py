# Copyright (c) mmelastic contributors. All rights reserved.
"""Map ResNeXt state dicts onto :class:`~mmelastic.models.ElasticResNeXt`.

Two sources:

* the official ELASTIC code (allenai/elastic ``models/resnext.py``), whose
  blocks already have two branches: ``conv1_d/bn1_d/...`` (low) and
  ``conv1/bn1/...`` (high), merged by ``bn3``; a pure renaming;
* single-branch ResNeXt 32x4d weights (torchvision, or mmpretrain's
  ``ResNeXt`` with the ``backbone.`` prefix): a channel split. The first half
  of conv1/bn1, of the grouped conv2 (its first ``groups/2`` groups) and of
  bn2 go to the ``high`` branch and the second half to ``low``; conv3 is split
  along its *input* channels. In a non-elastic block the two branches sum to
  exactly the original block, so the baselines compute what the source
  computes.

Keys are returned in the layout of an mmpretrain ``ImageClassifier``:
``backbone.*`` and ``head.fc.*``.
"""
import re
from collections import OrderedDict

_BLOCK = re.compile(r'^layer(\d+)\.(\d+)\.(.+)$')

# Official block-internal names -> ours.
_OFFICIAL_BLOCK = {
    'conv1_d': 'low.conv1', 'bn1_d': 'low.norm1', 'conv2_d': 'low.conv2',
    'bn2_d': 'low.norm2', 'conv3_d': 'low.conv3', 'conv1': 'high.conv1',
    'bn1': 'high.norm1', 'conv2': 'high.conv2', 'bn2': 'high.norm2',
    'conv3': 'high.conv3', 'bn3': 'norm3', 'selayer.conv1': 'se.conv1.conv',
    'selayer.conv2': 'se.conv2.conv', 'downsample.0': 'downsample.0',
    'downsample.1': 'downsample.1'
}


def strip_prefix(state_dict, prefix):
    """Drop ``prefix`` from every key that has it (e.g. ``'module.'``)."""
    return OrderedDict(
        (k[len(prefix):] if k.startswith(prefix) else k, v)
        for k, v in state_dict.items())


def _rename_block(rest, table):
    for src, dst in sorted(table.items(), key=lambda kv: -len(kv[0])):
        if rest.startswith(src + '.'):
            return dst + rest[len(src):]
    return None


def convert_official_resnext(state_dict):
    """Rename an official ELASTIC ResNeXt classifier's state dict.

    Args:
        state_dict (dict): The official ``state_dict`` (with or without the
            ``module.`` prefix of DataParallel).

    Returns:
        tuple(OrderedDict, list[str]): The converted state dict and the source
        keys that were not recognised (empty when all were used).
    """
    state_dict = strip_prefix(state_dict, 'module.')
    out, unused = OrderedDict(), []
    for key, value in state_dict.items():
        m = _BLOCK.match(key)
        if m:
            new = _rename_block(m.group(3), _OFFICIAL_BLOCK)
            if new is None:
                unused.append(key)
                continue
            out[f'backbone.layer{m.group(1)}.{m.group(2)}.{new}'] = value
        elif key.split('.')[0] in ('conv1', 'bn1'):
            out['backbone.' + key] = value
        elif key.startswith('fc.'):
            out['head.' + key] = value
        else:
            unused.append(key)
    return out, unused


def _halves(tensor, dim=0):
    n = tensor.shape[dim]
    if n % 2:
        raise ValueError(f'cannot split {n} channels into two branches')
    return tensor.narrow(dim, 0, n // 2), tensor.narrow(dim, n // 2, n // 2)


def convert_single_branch_resnext(state_dict):
    """Split a single-branch ResNeXt (torchvision or mmpretrain layout).

    Args:
        state_dict (dict): torchvision ``resnext50_32x4d``-style keys
            (``layer1.0.conv1.weight`` ... ``fc.weight``), or mmpretrain
            ``ResNeXt`` classifier keys (``backbone.layer1.0.conv1.weight``
            ... ``head.fc.weight``).

    Returns:
        tuple(OrderedDict, list[str]): The two-branch state dict and the
        source keys that were not recognised.
    """
    state_dict = strip_prefix(strip_prefix(state_dict, 'module.'),
                              'backbone.')
    out, unused = OrderedDict(), []
    for key, value in state_dict.items():
        m = _BLOCK.match(key)
        if not m:
            if key.split('.')[0] in ('conv1', 'bn1', 'stem'):
                out['backbone.' + key] = value
            elif key.startswith('fc.'):
                out['head.' + key] = value
            elif key.startswith('head.fc.'):
                out[key] = value
            else:
                unused.append(key)
            continue
        prefix = f'backbone.layer{m.group(1)}.{m.group(2)}.'
        layer, _, param = m.group(3).rpartition('.')
        if layer in ('conv1', 'bn1', 'conv2', 'bn2'):
            name = {'conv1': 'conv1', 'bn1': 'norm1', 'conv2': 'conv2',
                    'bn2': 'norm2'}[layer]
            if param == 'num_batches_tracked':
                high = low = value
            else:
                high, low = _halves(value, 0)
            out[f'{prefix}high.{name}.{param}'] = high.clone()
            out[f'{prefix}low.{name}.{param}'] = low.clone()
        elif layer == 'conv3':
            high, low = _halves(value, 1)
            out[f'{prefix}high.conv3.{param}'] = high.clone()
            out[f'{prefix}low.conv3.{param}'] = low.clone()
        elif layer == 'bn3':
            out[f'{prefix}norm3.{param}'] = value
        elif layer.startswith('downsample.'):
            out[f'{prefix}{layer}.{param}'] = value
        else:
            unused.append(key)
    return out, unused


# Official ASPP (models/resnext.py, seg=True) -> ElasticASPPHead.
_OFFICIAL_ASPP = {
    'aspp1': 'aspp_modules.0.conv', 'aspp1_bn': 'aspp_modules.0.bn',
    'aspp2': 'aspp_modules.1.conv', 'aspp2_bn': 'aspp_modules.1.bn',
    'aspp3': 'aspp_modules.2.conv', 'aspp3_bn': 'aspp_modules.2.bn',
    'aspp4': 'aspp_modules.3.conv', 'aspp4_bn': 'aspp_modules.3.bn',
    'aspp5': 'image_pool.1.conv', 'aspp5_bn': 'image_pool.1.bn',
    'conv2': 'bottleneck.conv', 'bn2': 'bottleneck.bn', 'conv3': 'conv_seg'
}


def convert_official_deeplab_resnext(state_dict):
    """Rename an official ELASTIC DeepLabV3 (ResNeXt, VOC) state dict.

    The backbone keys become ``backbone.*`` as for classification and the
    ``aspp.*`` keys become ``decode_head.*`` of
    :class:`~mmelastic.models.decode_heads.ElasticASPPHead`.

    Returns:
        tuple(OrderedDict, list[str]): The converted state dict (an mmseg
        ``EncoderDecoder``'s keys) and the unrecognised source keys.
    """
    state_dict = strip_prefix(state_dict, 'module.')
    backbone = OrderedDict(
        (k, v) for k, v in state_dict.items() if not k.startswith('aspp.'))
    out, unused = convert_official_resnext(backbone)
    # A segmentation model has no classifier: an fc here is foreign.
    for key in [k for k in out if k.startswith('head.')]:
        unused.append(key[len('head.'):])
        del out[key]
    for key, value in state_dict.items():
        if not key.startswith('aspp.'):
            continue
        layer, _, param = key[len('aspp.'):].rpartition('.')
        if layer in _OFFICIAL_ASPP:
            out[f'decode_head.{_OFFICIAL_ASPP[layer]}.{param}'] = value
        else:
            unused.append(key)
    return out, unused
