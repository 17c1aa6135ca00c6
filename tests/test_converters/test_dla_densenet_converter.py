# Copyright (c) mmelastic contributors. All rights reserved.
"""Converted official DLA / DenseNet / DLA-seg weights compute what the
official models compute (independent forwards written from the
specification in docs/dla_densenet.md and research notes)."""
import math
import os.path as osp
import re
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmengine.registry import DefaultScope
from mmpretrain.models import ImageClassifier
from mmseg.registry import MODELS as MMSEG_MODELS

import mmelastic  # noqa: F401
from mmelastic.converters import (convert_official_densenet,
                                  convert_official_dla,
                                  convert_official_dla_seg,
                                  dead_projection_keys, official_densenet_arch,
                                  official_dla_arch)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _official_state import bn, randomize  # noqa: E402


# Official models (issue spec): parameters, 1000-class classifier included.
OFFICIAL_PARAMS = {
    'dla60x': 17_649_816,
    'dla60x_elastic': 17_649_816,
    'dla102x': 26_772_120,
    'dla102x_elastic': 24_917_144,
    'densenet201': 20_013_928,
    'densenet201_elastic': 19_482_824,
}
# models/dla.py: tree depths of level2-level5, cardinality, residual root.
DLA = {
    'dla60x': ((1, 2, 3, 1), 32, False),
    'dla60x_elastic': ((1, 2, 3, 1), 32, False),
    'dla102x': ((1, 3, 4, 1), 32, True),
    'dla102x_elastic': ((3, 3, 3, 1), 50, True),
}
CHANNELS = (16, 32, 128, 256, 512, 1024)
DENSENET_FEATURES = {'densenet201': 1920, 'densenet201_elastic': 1808}


def num_params(state_dict):
    return sum(v.numel() for k, v in state_dict.items()
               if not k.endswith(('running_mean', 'running_var',
                                  'num_batches_tracked')))


def classifier(backbone, in_channels, num_classes=1000):
    return ImageClassifier(
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=num_classes,
            in_channels=in_channels)).eval()


def bn_params(prefix, channels):
    return {
        f'{prefix}.weight': torch.ones(channels),
        f'{prefix}.bias': torch.zeros(channels),
        f'{prefix}.running_mean': torch.zeros(channels),
        f'{prefix}.running_var': torch.ones(channels),
        f'{prefix}.num_batches_tracked': torch.tensor(0),
    }


# --- DLA: the official layout and forward ----------------------------------

_BLOCK_BACK = [('.high.conv1.', '.conv1.'), ('.high.norm1.', '.bn1.'),
               ('.high.conv2.', '.conv2.'), ('.high.norm2.', '.bn2.'),
               ('.high.conv3.', '.conv3.'), ('.low.conv1.', '.conv1_d.'),
               ('.low.norm1.', '.bn1_d.'), ('.low.conv2.', '.conv2_d.'),
               ('.low.norm2.', '.bn2_d.'), ('.low.conv3.', '.conv3_d.'),
               ('.norm3.', '.bn3.'), ('.root.norm.', '.root.bn.')]


def official_dla_keys(arch, num_classes=1000):
    """The official DLA state dict layout: block names of models/dla.py, a
    1x1-conv ``fc``, and a ``project`` in every tree (not only the leaves)
    whose channels change."""
    ours = classifier(dict(type='ElasticDLA', arch=arch), 1024, num_classes)
    sd = {}
    for k, v in ours.state_dict().items():
        if k.startswith('head.fc.'):
            k = k[len('head.'):]
            if k == 'fc.weight':
                v = v[:, :, None, None]
        else:
            k = k[len('backbone.'):]
            for a, b in _BLOCK_BACK:
                k = k.replace(a, b)
        sd[k] = v
    trees = DLA[arch][0]
    for i, depth in enumerate(trees):
        c_in, c_out = CHANNELS[i + 1], CHANNELS[i + 2]
        for k in range(depth - 1):  # the non-leaf trees on the tree1 path
            prefix = f'level{i + 2}' + '.tree1' * k + '.project'
            sd[f'{prefix}.0.weight'] = torch.zeros(c_out, c_in, 1, 1)
            sd.update(bn_params(f'{prefix}.1', c_out))
    return sd


def official_dla_state_dict(arch, seed=0):
    return {
        'module.' + k: v
        for k, v in randomize(official_dla_keys(arch), seed).items()
    }


def official_dla_levels(sd, x, arch):
    """The official DLA forward (models/dla.py) from its specification, with
    the segmentation mode's ceil-mode pooling (the classifier's floor mode
    is the same at even sizes and fails at odd ones)."""
    trees, card, residual_root = DLA[arch]
    elastic_model = 'elastic' in arch

    def conv(t, name, stride=1, groups=1):
        w = sd[f'{name}.weight']
        return F.conv2d(t, w, None, stride, w.shape[-1] // 2, 1, groups)

    def branch(t, p, s, stride, groups):
        t = F.relu(bn(sd, f'{p}.bn1{s}', conv(t, f'{p}.conv1{s}')))
        t = F.relu(
            bn(sd, f'{p}.bn2{s}', conv(t, f'{p}.conv2{s}', stride, groups)))
        return conv(t, f'{p}.conv3{s}')

    def block(p, t, residual, stride, planes):
        if f'{p}.conv1_d.weight' not in sd:  # BottleneckX
            out = branch(t, p, '', stride, card)
        else:  # BottleneckXElastic
            elastic = stride == 1 and planes < 1024
            h, w = t.shape[-2:]
            t_d = t
            if elastic:
                if h % 2 or w % 2:
                    t_d = F.pad(t_d, (0, w % 2, 0, h % 2), mode='replicate')
                t_d = F.avg_pool2d(t_d, 2, 2)
            out_d = branch(t_d, p, '_d', stride, card // 2)
            if elastic:
                out_d = F.interpolate(
                    out_d,
                    scale_factor=2,
                    mode='bilinear',
                    align_corners=False)[:, :, :h, :w]
            out = branch(t, p, '', stride, card // 2) + out_d
        return F.relu(bn(sd, f'{p}.bn3', out) + residual)

    def tree(p, t, levels, planes, stride, level_root, children=None):
        children = [] if children is None else children
        bottom = F.max_pool2d(t, stride, stride, ceil_mode=True) \
            if stride > 1 else t
        residual = bottom
        if f'{p}.project.0.weight' in sd:  # computed even where unused
            residual = bn(sd, f'{p}.project.1', conv(bottom, f'{p}.project.0'))
        if level_root:
            children.append(bottom)
        if levels == 1:
            x1 = block(f'{p}.tree1', t, residual, stride, planes)
            x2 = block(f'{p}.tree2', x1, x1, 1, planes)
            out = bn(sd, f'{p}.root.bn',
                     conv(torch.cat([x2, x1, *children], 1), f'{p}.root.conv'))
            return F.relu(out + x2 if residual_root else out)
        x1 = tree(f'{p}.tree1', t, levels - 1, planes, stride, False)
        children.append(x1)
        return tree(f'{p}.tree2', x1, levels - 1, planes, 1, False, children)

    assert elastic_model == any('conv1_d' in k for k in sd)
    x = F.relu(bn(sd, 'base_layer.1', conv(x, 'base_layer.0')))
    x = F.relu(bn(sd, 'level0.1', conv(x, 'level0.0')))
    levels = [x]
    x = F.relu(bn(sd, 'level1.1', conv(x, 'level1.0', 2)))
    levels.append(x)
    for i, depth in enumerate(trees):
        x = tree(f'level{i + 2}', x, depth, CHANNELS[i + 2], 2, i > 0)
        levels.append(x)
    return levels


def official_dla_logits(sd, x, arch):
    feat = official_dla_levels(sd, x, arch)[-1].mean((2, 3), keepdim=True)
    return F.conv2d(feat, sd['fc.weight'], sd['fc.bias']).flatten(1)


def test_generated_dla_layout_is_the_official_one():
    # Documented: 606 keys for dla60x_elastic, and the official sizes.
    assert len(official_dla_keys('dla60x_elastic')) == 606
    for arch in DLA:
        assert num_params(official_dla_keys(arch)) == OFFICIAL_PARAMS[arch]


@pytest.mark.parametrize('arch', ['dla60x', 'dla60x_elastic', 'dla102x'])
@pytest.mark.parametrize('size', [(224, 224), (97, 81)])
def test_official_dla_logits(arch, size):
    official = official_dla_state_dict(arch)
    assert official_dla_arch(official) == arch
    converted, unused = convert_official_dla(official)
    assert unused == []
    model = classifier(dict(type='ElasticDLA', arch=arch), 1024)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, *size)
    plain = {k[len('module.'):]: v for k, v in official.items()}
    with torch.no_grad():
        ours = model(x, mode='tensor')
        ref = official_dla_logits(plain, x, arch)
        # Logits average a lot away (one swapped branch deep in the net
        # moves them by < 1e-4), so every level is compared too.
        model.backbone.out_indices = tuple(range(6))
        levels = model.backbone(x)
        ref_levels = official_dla_levels(plain, x, arch)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
    for i, (a, b) in enumerate(zip(levels, ref_levels)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), i


def test_dead_projections_are_the_non_leaf_ones():
    sd = official_dla_keys('dla60x')
    assert sorted({k.rpartition('.project.')[0]
                   for k in dead_projection_keys(sd)}) == \
        ['level3', 'level4', 'level4.tree1']
    converted, unused = convert_official_dla(sd)
    assert unused == []
    assert not any(
        k.startswith(('backbone.level3.project', 'backbone.level4.project',
                      'backbone.level4.tree1.project')) for k in converted)
    # The leaf ones are live and kept.
    assert 'backbone.level4.tree1.tree1.project.0.weight' in converted


def test_dla_arch_detection_and_unknown_keys():
    assert official_dla_arch(official_dla_keys('dla102x_elastic')) == \
        'dla102x_elastic'
    sd = official_dla_state_dict('dla60x')
    sd['module.level2.tree1.mystery.weight'] = torch.zeros(1)
    sd['module.aux.weight'] = torch.zeros(1)
    _, unused = convert_official_dla(sd)
    assert sorted(unused) == ['aux.weight', 'level2.tree1.mystery.weight']
    with pytest.raises(ValueError, match='unknown DLA layout'):
        official_dla_arch({
            k: v
            for k, v in official_dla_keys('dla60x').items()
            if not k.startswith('level5.')
        })


# --- DenseNet --------------------------------------------------------------


def official_densenet_keys(arch):
    """The official layout: torchvision's DenseNet names (features.conv0,
    denseblockB.denselayerL.{norm1,conv1,norm2,conv2}, transitionT) with
    ``norm_final`` and, in elastic layers, ``conv1_d/norm2_d/conv2_d``."""
    ours = classifier(
        dict(type='ElasticDenseNet', arch=arch), DENSENET_FEATURES[arch])
    names = {
        'high.conv1': 'conv1',
        'high.norm2': 'norm2',
        'high.conv2': 'conv2',
        'low.conv1': 'conv1_d',
        'low.norm2': 'norm2_d',
        'low.conv2': 'conv2_d',
        'norm1': 'norm1'
    }
    sd = {}
    for k, v in ours.state_dict().items():
        m = re.match(
            r'backbone\.stages\.(\d)\.block\.(\d+)\.(\w+\.\w+|norm1)'
            r'\.(\w+)$', k)
        if m:
            b, i, name, param = m.groups()
            k = (f'features.denseblock{int(b) + 1}.denselayer{int(i) + 1}.'
                 f'{names[name]}.{param}')
        elif k.startswith('backbone.stem.0.'):
            k = 'features.conv0.' + k.rpartition('.')[2]
        elif k.startswith('backbone.stem.1.'):
            k = 'features.norm0.' + k.rpartition('.')[2]
        elif k.startswith('backbone.transitions.3.0.'):
            k = 'features.norm_final.' + k.rpartition('.')[2]
        elif k.startswith('backbone.transitions.'):
            t, rest = re.match(r'backbone\.transitions\.(\d)\.(.+)$',
                               k).groups()
            k = f'features.transition{int(t) + 1}.{rest}'
        else:
            k = k.replace('head.fc.', 'classifier.')
        sd[k] = v
    return sd


def official_densenet_logits(sd, x):
    """The official DenseNet forward (models/densenet.py), from its
    specification; returns the final features and the logits. Blocks 1-3 of
    the elastic model resample their low branch (replicate pad / crop at odd
    sizes), block 4 does not."""

    def conv(t, name, padding=0, stride=1):
        return F.conv2d(t, sd[f'{name}.weight'], None, stride, padding)

    x = F.relu(bn(sd, 'features.norm0', conv(x, 'features.conv0', 3, 2)))
    x = F.max_pool2d(x, 3, 2, 1)
    b = 1
    while f'features.denseblock{b}.denselayer1.norm1.weight' in sd:
        features = [x]
        i = 1
        while True:
            p = f'features.denseblock{b}.denselayer{i}'
            if f'{p}.norm1.weight' not in sd:
                break
            t = F.relu(bn(sd, f'{p}.norm1', torch.cat(features, 1)))
            new = conv(
                F.relu(bn(sd, f'{p}.norm2', conv(t, f'{p}.conv1'))),
                f'{p}.conv2', 1)
            if f'{p}.conv1_d.weight' in sd:
                elastic = f'features.transition{b}.conv.weight' in sd
                h, w = t.shape[-2:]
                t_d = t
                if elastic:
                    t_d = F.pad(t_d, (0, w % 2, 0, h % 2), mode='replicate')
                    t_d = F.avg_pool2d(t_d, 2, 2)
                new_d = conv(
                    F.relu(bn(sd, f'{p}.norm2_d', conv(t_d, f'{p}.conv1_d'))),
                    f'{p}.conv2_d', 1)
                if elastic:
                    new_d = F.interpolate(
                        new_d,
                        scale_factor=2,
                        mode='bilinear',
                        align_corners=False)[:, :, :h, :w]
                new = new + new_d
            features.append(new)
            i += 1
        x = torch.cat(features, 1)
        p = f'features.transition{b}'
        if f'{p}.conv.weight' in sd:
            x = F.avg_pool2d(
                conv(F.relu(bn(sd, f'{p}.norm', x)), f'{p}.conv'), 2, 2)
        b += 1
    x = F.relu(bn(sd, 'features.norm_final', x))
    logits = F.linear(
        x.mean((2, 3)), sd['classifier.weight'], sd['classifier.bias'])
    return x, logits


def test_generated_densenet_layout_is_the_official_one():
    elastic = official_densenet_keys('densenet201_elastic')
    assert len(elastic) == 1931  # documented key count
    assert 'features.denseblock4.denselayer30.conv2_d.weight' in elastic
    for arch in DENSENET_FEATURES:
        assert num_params(official_densenet_keys(arch)) == \
            OFFICIAL_PARAMS[arch]


@pytest.mark.parametrize('arch', sorted(DENSENET_FEATURES))
@pytest.mark.parametrize('size', [(224, 224), (97, 81)])
def test_official_densenet_logits(arch, size):
    official = {
        'module.' + k: v
        for k, v in randomize(official_densenet_keys(arch)).items()
    }
    assert official_densenet_arch(official) == arch
    converted, unused = convert_official_densenet(official)
    assert unused == []
    model = classifier(
        dict(type='ElasticDenseNet', arch=arch), DENSENET_FEATURES[arch])
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, *size)
    plain = {k[len('module.'):]: v for k, v in official.items()}
    with torch.no_grad():
        ours = model(x, mode='tensor')
        features, = model.backbone(x)
        ref_features, ref = official_densenet_logits(plain, x)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(features, ref_features, atol=1e-4, rtol=1e-4)


def test_torchvision_densenet201_into_baseline():
    source = torchvision.models.densenet201()
    source.load_state_dict(randomize(source.state_dict(), seed=1))
    source.eval()
    converted, unused = convert_official_densenet(source.state_dict())
    assert unused == []
    model = classifier(dict(type='ElasticDenseNet', arch='densenet201'), 1920)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 99, 130)
    with torch.no_grad():
        assert torch.allclose(
            model(x, mode='tensor'), source(x), atol=1e-4, rtol=1e-4)


# --- DLA-seg (DLASeg, VOC) -------------------------------------------------


def official_dla_seg_state_dict(arch, num_classes=21, seed=0):
    """models/dla_up.py layout: ``base.`` + a DLA (with its unused ImageNet
    fc), ``dla_up.ida_I.{proj_J.{0,1},up_J,node_J.{0,1}}`` (nodes from 1),
    ``fc.0`` and the frozen bilinear ``up``."""
    sd = {'base.' + k: v for k, v in official_dla_keys(arch).items()}
    channels = list(CHANNELS[1:])
    in_channels = list(channels)
    for i in range(len(channels) - 1):
        j = -i - 2
        out_dim = channels[j]
        inputs = in_channels[j:]
        for n, c in enumerate(inputs):
            p = f'dla_up.ida_{i}'
            if c != out_dim:
                sd[f'{p}.proj_{n}.0.weight'] = torch.zeros(out_dim, c, 1, 1)
                sd.update(bn_params(f'{p}.proj_{n}.1', out_dim))
            if n > 0:
                sd[f'{p}.up_{n}.weight'] = torch.zeros(out_dim, 1, 4, 4)
                sd[f'{p}.node_{n}.0.weight'] = torch.zeros(
                    out_dim, 2 * out_dim, 3, 3)
                sd.update(bn_params(f'{p}.node_{n}.1', out_dim))
        in_channels[j + 1:] = [out_dim] * (-j - 1)
    sd['fc.0.weight'] = torch.zeros(num_classes, channels[0], 1, 1)
    sd['fc.0.bias'] = torch.zeros(num_classes)
    sd = randomize(sd, seed)
    # Trained upsamplers start bilinear; the final one stays bilinear.
    bilinear = torch.tensor([0.25, 0.75, 0.75, 0.25])
    sd['up.weight'] = (bilinear[:, None] * bilinear[None]).expand(
        num_classes, 1, 4, 4).clone()
    return {'module.' + k: v for k, v in sd.items()}


def official_dla_up(sd, levels):
    """DLAUp / IDAUp (models/dla_up.py), from the specification."""

    def conv_bn_relu(t, p, padding=0):
        t = F.conv2d(t, sd[f'{p}.0.weight'], None, 1, padding)
        return F.relu(bn(sd, f'{p}.1', t))

    layers = list(levels)
    for i in range(len(layers) - 1):
        p = f'dla_up.ida_{i}'
        inputs = layers[-i - 2:]
        ups = []
        for n, t in enumerate(inputs):
            if f'{p}.proj_{n}.0.weight' in sd:
                t = conv_bn_relu(t, f'{p}.proj_{n}')
            if f'{p}.up_{n}.weight' in sd:
                w = sd[f'{p}.up_{n}.weight']
                t = F.conv_transpose2d(t, w, None, 2, 1, groups=w.shape[0])
            ups.append(t)
        x = ups[0]
        h, w = x.shape[-2:]
        aggregates = []
        for n in range(1, len(ups)):
            x = conv_bn_relu(
                torch.cat([x, ups[n][:, :, :h, :w]], 1), f'{p}.node_{n}', 1)
            aggregates.append(x)
        layers[-i - 1:] = aggregates
    return F.conv2d(x, sd['fc.0.weight'], sd['fc.0.bias'])


def dla_segmentor(arch):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MMSEG_MODELS.build(
            dict(
                type='EncoderDecoder',
                backbone=dict(
                    type='ElasticDLA', arch=arch, out_indices=(1, 2, 3, 4, 5)),
                decode_head=dict(
                    type='DLAUpHead',
                    in_channels=list(CHANNELS[1:]),
                    num_classes=21,
                    dropout_ratio=0,
                    loss_decode=dict(type='CrossEntropyLoss')))).eval()


@pytest.mark.parametrize('arch', ['dla60x', 'dla60x_elastic'])
def test_official_dla_seg_logits(arch):
    official = official_dla_seg_state_dict(arch)
    assert 'module.base.fc.weight' in official
    converted, unused = convert_official_dla_seg(official)
    assert unused == []
    model = dla_segmentor(arch)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 51, 45)
    plain = {k[len('module.'):]: v for k, v in official.items()}
    base = {
        k[len('base.'):]: v
        for k, v in plain.items() if k.startswith('base.')
    }
    with torch.no_grad():
        ours = model.decode_head(model.backbone(x))
        ref = official_dla_up(plain, official_dla_levels(base, x, arch)[1:])
    assert ours.shape == (1, 21, 26, 23)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_dla_seg_trained_final_upsampler_is_reported():
    official = official_dla_seg_state_dict('dla60x')
    official['module.up.weight'] = official['module.up.weight'] * 1.5
    _, unused = convert_official_dla_seg(official)
    assert unused == ['up.weight']


def test_bilinear_reference_kernel_is_bilinear():
    # The kernel used above for the frozen ``up`` (fill_up_weights with
    # k=4) is bilinear x2 upsampling away from the border.
    bilinear = torch.tensor([0.25, 0.75, 0.75, 0.25])
    w = (bilinear[:, None] * bilinear[None])[None, None]
    y = torch.randn(1, 1, 5, 6)
    ref = F.interpolate(
        y, scale_factor=2, mode='bilinear', align_corners=False)
    out = F.conv_transpose2d(y, w, None, 2, 1)
    assert torch.allclose(
        out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)
    assert math.isclose(w.sum().item(), 4.0)


# --- the conversion tool routes DLA, DLA-seg and DenseNet files --------------


@pytest.mark.parametrize('name,builder,arch,config', [
    ('dla60x_elastic.pth.tar', 'dla', 'dla60x_elastic',
     'configs/imagenet/dla60x_elastic.py'),
    ('densenet201_elastic.pth.tar', 'densenet', 'densenet201_elastic',
     'configs/imagenet/densenet201_elastic.py'),
    ('deeplab_dla60x_pascal_v3_original_epoch50.pth', 'dla-seg', 'dla60x',
     'configs/voc/dlaup_dla60x.py'),
])
def test_convert_checkpoint_routes_families(tmp_path, name, builder, arch,
                                            config):
    from mmelastic.converters import convert_checkpoint
    if builder == 'dla':
        sd = official_dla_state_dict(arch)
    elif builder == 'densenet':
        sd = {'module.' + k: v
              for k, v in randomize(official_densenet_keys(arch)).items()}
    else:
        sd = official_dla_seg_state_dict(arch)
    src = tmp_path / name
    torch.save(dict(epoch=1, state_dict=sd), src)
    meta = convert_checkpoint(str(src), str(tmp_path / 'out.pth'))
    assert (meta['arch'], meta['config']) == (arch, config)
    state = torch.load(tmp_path / 'out.pth', weights_only=True)['state_dict']
    assert any(k.startswith('backbone.') for k in state)
