# Copyright (c) mmelastic contributors. All rights reserved.
import math
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmelastic.models import ElasticBottleneck, ElasticDLA

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _model_helpers import (assert_same_training_step, flops,  # noqa: E402
                            num_params, randomize_bn)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The official models (allenai/elastic models/dla.py), measured with
# mmengine's counter at 224x224, 1000-class classifier included (issue spec).
OFFICIAL = {
    'dla60x': (17_649_816, 3.544e9),
    'dla60x_elastic': (17_649_816, 3.065e9),
    'dla102x': (26_772_120, 5.887e9),
    'dla102x_elastic': (24_917_144, 5.892e9),
}
# Table 9 of the paper: tree depths of level2-level5.
TREES = {
    'dla60x': (1, 2, 3, 1),
    'dla60x_elastic': (1, 2, 3, 1),
    'dla60x_selastic': (1, 2, 3, 1),
    'dla102x': (1, 3, 4, 1),
    'dla102x_selastic': (1, 3, 4, 1),
    'dla102x_elastic': (3, 3, 3, 1),
}
CHANNELS = (16, 32, 128, 256, 512, 1024)


def official_dead_params(arch):
    """Parameters of the projections the official trees build but never
    use: one 1x1 conv + BN (in -> out) in every tree deeper than one level
    whose channels change, i.e. depth - 1 of them per level."""
    total = 0
    for depth, c_in, c_out in zip(TREES[arch], CHANNELS[1:5], CHANNELS[2:]):
        total += (depth - 1) * (c_in * c_out + 2 * c_out)
    return total


def classifier(**backbone):
    backbone.setdefault('type', 'ElasticDLA')
    return ImageClassifier(
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=1024))


# Full depth at reduced width: every level keeps its channel change (so its
# projection) and every bottleneck has whole groups in both branches.
TINY_CHANNELS = (8, 16, 32, 64, 96, 128)


def tiny(**kwargs):
    kwargs.setdefault('channels', TINY_CHANNELS)
    kwargs.setdefault('cardinality', 4)
    return ElasticDLA(**kwargs)


# --- size -------------------------------------------------------------------


@pytest.mark.parametrize('arch', sorted(OFFICIAL))
def test_params_are_official_minus_dead_projections(arch):
    assert num_params(classifier(arch=arch)) == \
        OFFICIAL[arch][0] - official_dead_params(arch)


def test_dead_projection_count_of_dla60x():
    # Three dead projections: level3 (128->256), level4 and level4.tree1
    # (256->512); the documented 297,472 parameters.
    assert official_dead_params('dla60x') == 297_472


def test_selastic_params_equal_baselines():
    # sElastic replaces bottlenecks only: same parameters (paper Table 8).
    for base, selastic in (('dla60x', 'dla60x_selastic'),
                           ('dla102x', 'dla102x_selastic')):
        assert num_params(ElasticDLA(arch=selastic)) == num_params(
            ElasticDLA(arch=base))


@pytest.mark.parametrize('arch', ['dla60x_elastic', 'dla102x'])
def test_flops_within_2_percent(arch):
    assert flops(classifier(arch=arch)) == pytest.approx(
        OFFICIAL[arch][1], rel=0.02)


def test_cardinality_is_per_model_not_global():
    # The official dla102x_elastic() sets BottleneckX.cardinality = 50 for
    # every later model; here each model keeps its own.
    elastic = ElasticDLA(arch='dla102x_elastic')
    baseline = classifier(arch='dla60x')
    assert num_params(baseline) == \
        OFFICIAL['dla60x'][0] - official_dead_params('dla60x')
    block = baseline.backbone.level2.tree1
    assert block.high.conv2.groups == 32
    assert block.high.conv2.weight.shape == (128, 4, 3, 3)
    # Split50: 50 groups, two branches of 25 (official conv2_d shapes).
    first = elastic.level2.tree1.tree1.tree1
    assert first.high.conv2.weight.shape == (100, 4, 3, 3)
    assert first.low.conv2.groups == 25
    assert elastic.level5.tree1.high.conv2.weight.shape == (800, 32, 3, 3)


def test_level_shapes():
    model = ElasticDLA(arch='dla60x_elastic')
    model.eval()
    with torch.no_grad():
        out, = model(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, 1024, 7, 7)  # default out_indices: level5
    model = tiny(arch='dla60x_elastic', out_indices=(0, 1, 2, 3, 4, 5))
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 224, 224))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (c, 224 // 2**i, 224 // 2**i) for i, c in enumerate(TINY_CHANNELS)
    ]


# --- structure -------------------------------------------------------------


def level_blocks(level):
    return [m for m in level.modules() if isinstance(m, ElasticBottleneck)]


@pytest.mark.parametrize('arch,per_level', [
    ('dla60x_elastic', ((1, 2), (3, 4), (7, 8), (0, 2))),
    ('dla60x_selastic', ((1, 2), (3, 4), (7, 8), (0, 2))),
    ('dla102x_elastic', ((7, 8), (7, 8), (7, 8), (0, 2))),
    ('dla102x_selastic', ((1, 2), (7, 8), (15, 16), (0, 2))),
    ('dla60x', ((0, 2), (0, 4), (0, 8), (0, 2))),
    ('dla102x', ((0, 2), (0, 8), (0, 16), (0, 2))),
])
def test_elastic_block_placement(arch, per_level):
    model = tiny(arch=arch)
    counted = []
    for i in range(2, 6):
        blocks = level_blocks(getattr(model, f'level{i}'))
        counted.append((sum(b.elastic for b in blocks), len(blocks)))
        for block in blocks:
            # Stride-2 blocks and level5 stay at full resolution.
            if block.stride != 1 or i == 5:
                assert not block.elastic
            if 'elastic' in arch:
                assert block.low is not None  # two branches everywhere
            else:
                assert block.low is None  # single-branch baseline
    assert tuple(counted) == per_level


def test_selastic_is_an_alias_of_elastic():
    a = tiny(arch='dla60x_selastic').state_dict()
    b = tiny(arch='dla60x_elastic').state_dict()
    assert [(k, v.shape) for k, v in a.items()] == \
        [(k, v.shape) for k, v in b.items()]


def test_residual_root_only_in_dla102x_family():
    for arch in TREES:
        roots = [
            m.residual for n, m in tiny(arch=arch).named_modules()
            if n.endswith('root')
        ]
        assert roots and all(r == ('102' in arch) for r in roots), arch


def ceil_div(n, k):
    return -(-n // k)


SIZES = [(32, 32), (33, 33), (97, 97), (225, 225), (240, 240), (256, 256),
         (257, 193)]


@pytest.mark.parametrize('arch', sorted(TREES))
def test_input_size_sweep(arch):
    model = tiny(arch=arch, out_indices=(0, 1, 2, 3, 4, 5))
    model.eval()
    sizes = SIZES + [(513, 513)] if arch in ('dla60x_elastic',
                                             'dla102x_elastic') else SIZES
    for h, w in sizes:
        with torch.no_grad():
            outs = model(torch.rand(1, 3, h, w))
        assert [tuple(o.shape[-2:]) for o in outs] == [
            (ceil_div(h, 2**i), ceil_div(w, 2**i)) for i in range(6)
        ], (h, w)


# --- numerics against an independent reference -----------------------------


def ref_conv(x, conv, stride=1, padding=0, groups=1):
    return F.conv2d(x, conv.weight, None, stride, padding, 1, groups)


def ref_bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        False, 0., bn.eps)


def ref_branch(x, branch, stride, groups):
    out = F.relu(ref_bn(ref_conv(x, branch.conv1), branch.norm1))
    out = F.relu(
        ref_bn(ref_conv(out, branch.conv2, stride, 1, groups), branch.norm2))
    return ref_conv(out, branch.conv3)


def ref_block(x, block, residual, stride, elastic, split, cardinality):
    """DLA BottleneckX / BottleneckXElastic, from the specification."""
    if not split:
        out = ref_branch(x, block.high, stride, cardinality)
    else:
        h, w = x.shape[-2:]
        x_d = x
        if elastic:
            if h % 2 or w % 2:
                x_d = F.pad(x_d, (0, w % 2, 0, h % 2), mode='replicate')
            x_d = F.avg_pool2d(x_d, 2, 2)
        out_d = ref_branch(x_d, block.low, stride, cardinality // 2)
        if elastic:
            out_d = F.interpolate(
                out_d, scale_factor=2, mode='bilinear',
                align_corners=False)[:, :, :h, :w]
        out = ref_branch(x, block.high, stride, cardinality // 2) + out_d
    return F.relu(ref_bn(out, block.norm3) + residual)


def ref_tree(x,
             tree,
             spec,
             levels,
             c_in,
             c_out,
             stride,
             level_root,
             children=None):
    """DLA Tree + Root, from the specification: ``spec`` gives elastic (of
    this level), split, cardinality and residual_root."""
    children = [] if children is None else children
    bottom = F.max_pool2d(x, stride, stride, ceil_mode=True) \
        if stride > 1 else x
    if level_root:
        children.append(bottom)
    if levels == 1:
        residual = bottom
        if c_in != c_out:
            residual = ref_bn(
                ref_conv(bottom, tree.project[0]), tree.project[1])
        block = dict(split=spec['split'], cardinality=spec['cardinality'])
        x1 = ref_block(x, tree.tree1, residual, stride, spec['elastic']
                       and stride == 1, **block)
        x2 = ref_block(x1, tree.tree2, x1, 1, spec['elastic'], **block)
        out = ref_bn(
            ref_conv(torch.cat([x2, x1, *children], 1), tree.root.conv),
            tree.root.norm)
        if spec['residual_root']:
            out = out + x2
        return F.relu(out)
    x1 = ref_tree(x, tree.tree1, spec, levels - 1, c_in, c_out, stride, False)
    children.append(x1)
    return ref_tree(x1, tree.tree2, spec, levels - 1, c_out, c_out, 1, False,
                    children)


def ref_backbone(x, model, arch, channels, cardinality):
    """Every level of a DLA, from the specification (Table 9 layouts)."""

    def conv_bn_relu(t, seq, stride=1):
        pad = seq[0].weight.shape[-1] // 2
        return F.relu(ref_bn(ref_conv(t, seq[0], stride, pad), seq[1]))

    outs = []
    x = conv_bn_relu(x, model.base_layer)
    x = conv_bn_relu(x, model.level0)
    outs.append(x)
    x = conv_bn_relu(x, model.level1, 2)
    outs.append(x)
    elastic_model = 'elastic' in arch
    for i, depth in enumerate(TREES[arch]):
        spec = dict(
            elastic=elastic_model and i < 3,  # never in level5
            split=elastic_model,
            cardinality=cardinality,
            residual_root='102' in arch)
        x = ref_tree(x, getattr(model, f'level{i + 2}'), spec, depth,
                     channels[i + 1], channels[i + 2], 2, i > 0)
        outs.append(x)
    return outs


@pytest.mark.parametrize('arch', sorted(TREES))
@pytest.mark.parametrize('size', [(45, 37), (64, 64)])
def test_backbone_matches_reference(arch, size):
    torch.manual_seed(0)
    model = tiny(arch=arch, out_indices=(0, 1, 2, 3, 4, 5))
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        outs = model(x)
        refs = ref_backbone(x, model, arch, TINY_CHANNELS, 4)
    for i, (out, ref) in enumerate(zip(outs, refs)):
        assert out.shape == ref.shape, i
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4), i


def test_elastic_tree_matches_reference_with_cardinality_50():
    # One Split50+Elastic tree at full width: level2 of dla102x_elastic
    # (depth 3, residual roots), on an odd-sized input.
    torch.manual_seed(0)
    model = ElasticDLA(arch='dla102x_elastic')
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 32, 19, 15)
    spec = dict(elastic=True, split=True, cardinality=50, residual_root=True)
    with torch.no_grad():
        out = model.level2(x)
        ref = ref_tree(x, model.level2, spec, 3, 32, 128, 2, False)
    assert out.shape == (1, 128, 10, 8)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


# --- training behaviour -----------------------------------------------------


def test_init_follows_official_code():
    model = ElasticDLA(arch='dla60x_elastic')
    model.init_weights()
    conv = model.level4.tree1.tree1.tree2.high.conv1
    k_k_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx(
        math.sqrt(2 / k_k_out), rel=0.05)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_frozen_stages_and_norm_eval():
    model = tiny(arch='dla60x_elastic', frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [model.base_layer, model.level0, model.level1, model.level2]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.level3.parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))
    model = tiny(arch='dla60x_elastic', frozen_stages=0)
    model.train()
    assert not model.level0.training and model.level1.training
    assert model.level3.tree1.tree1.high.norm1.training


def test_with_cp_same_result_and_gradients():
    torch.manual_seed(0)
    plain = tiny(arch='dla60x_elastic')
    ckpt = tiny(arch='dla60x_elastic', with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    assert_same_training_step(plain, ckpt, torch.randn(2, 3, 41, 37))


def test_with_cp_per_tree():
    torch.manual_seed(0)
    plain = tiny(arch='dla60x_elastic')
    first = tiny(arch='dla60x_elastic', with_cp=(True, False, False, True))
    for i, flag in zip(range(2, 6), (True, False, False, True)):
        blocks = [m for m in getattr(first, f'level{i}').modules()
                  if isinstance(m, ElasticBottleneck)]
        assert blocks and all(b.with_cp is flag for b in blocks)
    first.load_state_dict(plain.state_dict())
    assert_same_training_step(plain, first, torch.randn(2, 3, 41, 37))
    with pytest.raises(ValueError,
                       match='with_cp needs one flag per tree of levels 2-5'):
        tiny(arch='dla60x', with_cp=(True, False))


def test_bad_arguments_name_the_fix():
    with pytest.raises(KeyError, match='dla60x_elastic'):
        ElasticDLA(arch='dla34')
    with pytest.raises(KeyError, match="'levels'"):
        ElasticDLA(arch=dict(cardinality=32))
    with pytest.raises(ValueError, match='one flag per tree'):
        tiny(arch='dla60x', elastic=(True, False))
    with pytest.raises(ValueError, match='out_indices'):
        tiny(arch='dla60x', out_indices=(6, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny(arch='dla60x', frozen_stages=6)
    with pytest.raises(ValueError, match='cardinality'):
        ElasticDLA(
            arch='dla60x', channels=(8, 16, 36, 64, 96, 128), cardinality=4)
    with pytest.raises(ValueError, match='6 levels'):
        ElasticDLA(arch=dict(levels=(1, 1, 1, 2, 3)))


@pytest.mark.parametrize('resample,high_ratio', [('trained', 0.5),
                                                 ('nearest', 0.25)])
def test_ablation_options_reach_every_block(resample, high_ratio):
    model = tiny(
        arch='dla60x_elastic',
        resample=resample,
        high_ratio=high_ratio,
        cardinality=8)
    model.init_weights()
    model.eval()
    blocks = [m for m in model.modules() if isinstance(m, ElasticBottleneck)]
    assert all(b.high.conv2.groups == 8 * high_ratio for b in blocks)
    assert all(b.low.resample.mode == resample for b in blocks if b.elastic)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 37))[0].shape[-2:] == (2, 2)


@pytest.mark.parametrize('task,name', [('imagenet', 'dla60x'),
                                       ('imagenet', 'dla60x_elastic'),
                                       ('imagenet', 'dla102x'),
                                       ('imagenet', 'dla102x_selastic'),
                                       ('imagenet', 'dla102x_elastic'),
                                       ('coco', 'dla60x'),
                                       ('coco', 'dla60x_elastic')])
def test_configs_build_their_arch(task, name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', task, f'{name}.py'))
    cfg.model.backbone.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).eval()
    assert model.backbone.levels == ElasticDLA.arch_settings[name]['levels']
    assert model.backbone.cardinality == \
        ElasticDLA.arch_settings[name]['cardinality']
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 33, 33), mode='tensor')
    assert logits.shape == (1, 1000 if task == 'imagenet' else 80)
