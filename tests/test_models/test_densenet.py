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

from mmelastic.models import ElasticDenseLayer, ElasticDenseNet

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _model_helpers import flops, num_params, randomize_bn  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The official models (allenai/elastic models/densenet.py), 1000-class
# classifier included (issue spec).
OFFICIAL_PARAMS = {
    'densenet201': 20_013_928,
    'densenet201_elastic': 19_482_824,
}
# Paper Table 11 (and the official code): layers per dense block; blocks
# 1-3 of the Elastic model are elastic, block 4 is not.
DEPTHS = {
    'densenet201': (6, 12, 48, 32),
    'densenet201_elastic': (10, 20, 40, 30),
}


def final_channels(depths, init=64, growth=32):
    channels = init
    for i, depth in enumerate(depths):
        channels += depth * growth
        if i < len(depths) - 1:
            channels //= 2
    return channels


def classifier(arch):
    return ImageClassifier(
        backbone=dict(type='ElasticDenseNet', arch=arch),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=1000,
            in_channels=final_channels(DEPTHS[arch])))


def tiny(arch='densenet201_elastic', **kwargs):
    """Full depth, growth rate 8 and 16 initial features."""
    setting = dict(ElasticDenseNet.arch_settings[arch])
    setting.update(growth_rate=8, init_channels=16)
    return ElasticDenseNet(arch=setting, **kwargs)


@pytest.mark.parametrize('arch', sorted(OFFICIAL_PARAMS))
def test_exact_params(arch):
    assert num_params(classifier(arch)) == OFFICIAL_PARAMS[arch]


def test_elastic_flops_within_2_percent():
    # The official densenet201_elastic: 4.337G with mmengine's counter at
    # 224x224 (issue spec; upsampling counted, pooling not).
    assert flops(classifier('densenet201_elastic')) == pytest.approx(
        4.337e9, rel=0.02)


def test_stage_shapes():
    model = ElasticDenseNet(
        arch='densenet201_elastic', out_indices=(0, 1, 2, 3))
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 224, 224))
    # mmpretrain's DenseNet layout: outputs after each transition.
    c1 = (64 + 10 * 32) // 2
    c2 = (c1 + 20 * 32) // 2
    c3 = (c2 + 40 * 32) // 2
    assert [tuple(o.shape) for o in outs] == [(1, c1, 28, 28), (1, c2, 14, 14),
                                              (1, c3, 7, 7),
                                              (1, c3 + 30 * 32, 7, 7)]
    assert model.out_channels == 1808
    assert ElasticDenseNet(arch='densenet201').out_channels == 1920


@pytest.mark.parametrize('arch', sorted(DEPTHS))
def test_elastic_layer_placement(arch):
    model = tiny(arch)
    for i, (stage, depth) in enumerate(zip(model.stages, DEPTHS[arch])):
        layers = list(stage.block)
        assert len(layers) == depth
        elastic = 'elastic' in arch and i < 3
        for layer in layers:
            assert layer.elastic == elastic
            if 'elastic' in arch:
                # Two 64-channel (here 16) bottleneck halves everywhere.
                assert layer.high.conv1.out_channels == \
                    layer.low.conv1.out_channels == 2 * 8
                assert (layer.low.resample is not None) == elastic
            else:
                assert layer.low is None
                assert layer.high.conv1.out_channels == 4 * 8


def expected_sizes(n):
    # conv 7x7/2 and max-pool 3/2 round up; the transitions' 2x2 pools down.
    s = math.ceil(math.ceil(n / 2) / 2)
    return [s // 2, s // 4, s // 8, s // 8]


SIZES = [(32, 32), (33, 33), (97, 97), (225, 225), (240, 240), (256, 256),
         (257, 193), (513, 513)]


@pytest.mark.parametrize('arch', sorted(DEPTHS))
def test_input_size_sweep(arch):
    model = tiny(arch, out_indices=(0, 1, 2, 3))
    model.eval()
    for h, w in SIZES:
        with torch.no_grad():
            outs = model(torch.rand(1, 3, h, w))
        assert [tuple(o.shape[-2:]) for o in outs
                ] == list(zip(expected_sizes(h), expected_sizes(w))), (h, w)


# --- numerics against an independent reference -----------------------------


def ref_conv(x, conv, stride=1, padding=0):
    return F.conv2d(x, conv.weight, None, stride, padding)


def ref_bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        False, 0., bn.eps)


def ref_branch(x, branch):
    out = F.relu(ref_bn(ref_conv(x, branch.conv1), branch.norm2))
    return ref_conv(out, branch.conv2, padding=1)


def ref_dense_layer(features, layer, elastic):
    """The official (_DenseLayer / _DenseLayerElastic) forward, from the
    specification, with the replicate pad / crop of odd sizes."""
    x = F.relu(ref_bn(torch.cat(features, 1), layer.norm1))
    out = ref_branch(x, layer.high)
    if layer.low is None:
        return out
    h, w = x.shape[-2:]
    x_d = x
    if elastic:
        if h % 2 or w % 2:
            x_d = F.pad(x_d, (0, w % 2, 0, h % 2), mode='replicate')
        x_d = F.avg_pool2d(x_d, 2, 2)
    out_d = ref_branch(x_d, layer.low)
    if elastic:
        out_d = F.interpolate(
            out_d, scale_factor=2, mode='bilinear',
            align_corners=False)[:, :, :h, :w]
    return out + out_d


def ref_densenet(x, model, arch):
    x = F.relu(ref_bn(ref_conv(x, model.stem[0], 2, 3), model.stem[1]))
    x = F.max_pool2d(x, 3, 2, 1)
    for i, stage in enumerate(model.stages):
        features = [x]
        for layer in stage.block:
            features.append(
                ref_dense_layer(features, layer, 'elastic' in arch and i < 3))
        x = torch.cat(features, 1)
        if i < 3:
            t = model.transitions[i]
            x = F.avg_pool2d(ref_conv(F.relu(ref_bn(x, t.norm)), t.conv), 2)
    return F.relu(ref_bn(x, model.transitions[3][0]))


@pytest.mark.parametrize('size', [(14, 14), (15, 15), (15, 12), (9, 16)])
def test_elastic_dense_layer_matches_reference(size):
    torch.manual_seed(0)
    layer = ElasticDenseLayer(48, growth_rate=32)
    randomize_bn(layer)
    layer.eval()
    features = [torch.randn(2, 32, *size), torch.randn(2, 16, *size)]
    with torch.no_grad():
        out = layer(features)
        assert out.shape == (2, 32, *size)
        assert torch.allclose(
            out, ref_dense_layer(features, layer, True), atol=1e-5)


def test_non_elastic_layer_equals_one_plain_layer():
    # Two full-resolution branches = one layer with the 1x1s concatenated
    # and the 3x3s concatenated along their inputs (summed outputs).
    torch.manual_seed(0)
    layer = ElasticDenseLayer(40, growth_rate=8, elastic=False)
    randomize_bn(layer)
    layer.eval()
    x = torch.randn(1, 40, 11, 9)
    hi, lo = layer.high, layer.low
    pre = F.relu(ref_bn(x, layer.norm1))
    w1 = torch.cat([hi.conv1.weight, lo.conv1.weight])
    norm2 = [
        torch.cat([getattr(hi.norm2, k),
                   getattr(lo.norm2, k)])
        for k in ('running_mean', 'running_var', 'weight', 'bias')
    ]
    mid = F.relu(F.batch_norm(F.conv2d(pre, w1), *norm2))
    w2 = torch.cat([hi.conv2.weight, lo.conv2.weight], dim=1)
    with torch.no_grad():
        assert torch.allclose(
            layer([x]), F.conv2d(mid, w2, padding=1), atol=1e-5)


@pytest.mark.parametrize('arch,size', [('densenet201_elastic', (75, 61)),
                                       ('densenet201_elastic', (256, 256)),
                                       ('densenet201', (75, 61))])
def test_backbone_matches_reference(arch, size):
    # At 256 px block 4 is 8x8: the official size test (!= 7) would make it
    # elastic there; here it stays full resolution at every size.
    torch.manual_seed(0)
    model = tiny(arch)
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        out, = model(x)
        ref = ref_densenet(x, model, arch)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_scale_policy_taps_are_the_two_3x3_convs():
    layer = ElasticDenseLayer(24, growth_rate=8)
    high, low = layer.scale_policy_modules()
    assert high is layer.high.conv2 and low is layer.low.conv2
    seen = []
    handles = [
        m.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        for m in (high, low)
    ]
    layer.eval()
    with torch.no_grad():
        layer([torch.rand(1, 24, 15, 10)])
    for h in handles:
        h.remove()
    assert seen == [(1, 8, 15, 10), (1, 8, 8, 5)]  # low before upsampling
    assert ElasticDenseLayer(24, 8, elastic=False).scale_policy_modules() \
        is None


# --- training behaviour -----------------------------------------------------


@pytest.mark.parametrize('memory_efficient',
                         [True, (True, False, False, False)])
def test_memory_efficient_equals_plain(memory_efficient):
    torch.manual_seed(0)
    plain = tiny(drop_rate=0.)
    efficient = tiny(memory_efficient=memory_efficient)
    flags = (memory_efficient, ) * 4 if memory_efficient is True else \
        memory_efficient
    for stage, flag in zip(efficient.stages, flags):
        layers = [m for m in stage.modules()
                  if isinstance(m, ElasticDenseLayer)]
        assert layers and all(m.memory_efficient is flag for m in layers)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 41, 35)
    results = []
    for model in (plain, efficient):
        model.train()
        inp = x.clone().requires_grad_()
        out, = model(inp)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() \
            .backward()
        results.append((out.detach(), inp.grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-5)
    for (n, a), (_, b) in zip(plain.named_parameters(),
                              efficient.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), n
    # The recomputation in backward does not count the batch twice.
    for (n, a), (_, b) in zip(plain.named_buffers(),
                              efficient.named_buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), n


def test_init_follows_official_code():
    model = ElasticDenseNet(arch='densenet201_elastic')
    model.init_weights()
    conv = model.stages[2].block[5].low.conv2
    k_k_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx(
        math.sqrt(2 / k_k_out), rel=0.05)
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0)
        for m in model.modules() if isinstance(m, _BatchNorm))


def test_frozen_stages_and_norm_eval():
    model = tiny(frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [
        model.stem, model.stages[0], model.transitions[0], model.stages[1],
        model.transitions[1]
    ]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))
    model = tiny(frozen_stages=1)
    model.train()
    assert not model.stages[0].training and model.stages[1].training


def test_bad_arguments_name_the_fix():
    with pytest.raises(KeyError, match='densenet201_elastic'):
        ElasticDenseNet(arch='densenet121')
    with pytest.raises(KeyError, match="'depths'"):
        ElasticDenseNet(arch=dict(growth_rate=32))
    with pytest.raises(ValueError, match='one flag per dense block'):
        tiny(elastic=(True, False))
    with pytest.raises(ValueError, match='memory_efficient needs one flag '
                       'per dense block'):
        tiny(memory_efficient=(True, False))
    with pytest.raises(ValueError, match='out_indices'):
        tiny(out_indices=(4, ))
    with pytest.raises(ValueError, match='whole channels'):
        ElasticDenseLayer(16, growth_rate=8, bn_size=4, high_ratio=0.3)


@pytest.mark.parametrize(
    'mode', ['nearest', 'trained', 'trained_dilated', 'trained_dilated_ap'])
def test_resample_ablations_keep_sizes(mode):
    layer = ElasticDenseLayer(24, growth_rate=8, resample=mode)
    layer.init_weights()
    layer.eval()
    with torch.no_grad():
        out = layer([torch.rand(1, 24, 15, 10)])
    assert out.shape == (1, 8, 15, 10)
    expected = 2 if mode.startswith('trained_dilated') else 1
    assert layer.low.conv2.dilation == (expected, expected)
    assert layer.high.conv2.dilation == (1, 1)


def test_branch_ratio_keeps_parameters():
    sizes = {
        ratio:
        sum(p.numel() for p in ElasticDenseLayer(
            64, growth_rate=32, high_ratio=ratio).parameters())
        for ratio in (0.25, 0.5, 1.0)
    }
    assert len(set(sizes.values())) == 1
    layer = ElasticDenseLayer(64, growth_rate=32, high_ratio=0.25)
    assert (layer.high.conv1.out_channels, layer.low.conv1.out_channels) == \
        (32, 96)


@pytest.mark.parametrize('task,arch', [('imagenet', 'densenet201'),
                                       ('imagenet', 'densenet201_elastic'),
                                       ('coco', 'densenet201'),
                                       ('coco', 'densenet201_elastic')])
def test_configs_build_their_arch(task, arch):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', task, f'{arch}.py'))
    cfg.model.backbone.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).eval()
    assert model.backbone.depths == DEPTHS[arch]
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 33, 33), mode='tensor')
    assert logits.shape == (1, 1000 if task == 'imagenet' else 80)
