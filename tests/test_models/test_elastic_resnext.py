# Copyright (c) mmelastic contributors. All rights reserved.
import math
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models import ImageClassifier
from torch.nn.modules.batchnorm import _BatchNorm

from mmelastic.models import (ElasticBottleneck, ElasticResNeXt, Resample2x,
                              split_channels)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _model_helpers import (assert_same_training_step, flops,  # noqa: E402
                            num_params, randomize_bn)

# The official models' figures (issue #3; measured on allenai/elastic with
# mmengine's counter at 224x224, 1000-class classifier included).
OFFICIAL = {
    'resnext50': (25_028_904, 4.259e9),
    'resnext50_elastic': (25_246_504, 4.248e9),
    'se_resnext50_elastic': (27_803_976, 4.260e9),
    'resnext101': (44_177_704, 8.013e9),
    'resnext101_elastic': (44_265_256, 8.035e9),
}


def classifier(**backbone):
    backbone.setdefault('type', 'ElasticResNeXt')
    channels = 4 * backbone.get('base_channels', 64) * 8
    return ImageClassifier(
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=1000, in_channels=channels))


def tiny(**kwargs):
    """Full-depth layouts at 1/8 width: the size logic, cheaply."""
    kwargs.setdefault('base_channels', 8)
    kwargs.setdefault('stem_channels', 8)
    kwargs.setdefault('groups', 4)
    kwargs.setdefault('width_per_group', 2)
    return ElasticResNeXt(**kwargs)


@pytest.mark.parametrize('arch', sorted(OFFICIAL))
def test_exact_params(arch):
    assert num_params(classifier(arch=arch)) == OFFICIAL[arch][0]


@pytest.mark.parametrize('arch', ['resnext50', 'resnext50_elastic'])
def test_flops_within_2_percent(arch):
    assert flops(classifier(arch=arch)) == pytest.approx(
        OFFICIAL[arch][1], rel=0.02)


def test_selastic_and_x2_complexity():
    # sElastic-50 (Appendix A): same params as ResNeXt-50, ~3.35 GMACs
    # (paper: 3.4B). ResNeXt50x2+Elastic: paper 45.6M params, 7.9B FLOPs.
    selastic = classifier(arch='resnext50_selastic')
    assert num_params(selastic) == OFFICIAL['resnext50'][0]
    assert flops(selastic) == pytest.approx(3.4e9, rel=0.02)
    x2 = classifier(arch='resnext50x2_elastic')
    assert num_params(x2) == pytest.approx(45.6e6, rel=0.01)
    assert flops(x2) == pytest.approx(7.9e9, rel=0.01)


def test_stage_shapes_and_channels():
    model = ElasticResNeXt(arch='resnext50_elastic', out_indices=(0, 1, 2, 3))
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 56, 56),
                                            (1, 512, 28, 28),
                                            (1, 1024, 14, 14),
                                            (1, 2048, 7, 7)]
    block = model.layer1[0]
    assert block.high.conv2.groups == block.low.conv2.groups == 16
    assert block.high.conv2.weight.shape == (64, 4, 3, 3)
    assert model.layer4[0].high.conv2.weight.shape == (512, 32, 3, 3)
    assert model.feat_dim == 2048


@pytest.mark.parametrize('arch,per_stage', [
    ('resnext50_elastic', (6, 7, 4, 0)),
    ('resnext50_selastic', (3, 3, 5, 0)),
    ('resnext101_elastic', (12, 13, 19, 0)),
    ('resnext50', (0, 0, 0, 0)),
])
def test_elastic_block_placement(arch, per_stage):
    model = tiny(arch=arch)
    counted = tuple(
        sum(1 for b in getattr(model, f'layer{i + 1}') if b.elastic)
        for i in range(4))
    assert counted == per_stage
    for i in range(4):
        for j, block in enumerate(getattr(model, f'layer{i + 1}')):
            # Stride-2 first blocks and the whole last stage stay full-res.
            if block.stride != 1 or i == 3:
                assert not block.elastic
                assert block.low.resample is None
    # Paper Figure 6: 17 elastic blocks in ResNeXt50+Elastic.
    assert len(tiny(arch='resnext50_elastic').elastic_blocks()) == 17


def expected_size(n, times=5):
    for _ in range(times):
        n = math.ceil(n / 2)
    return n


SIZES = [(32, 32), (33, 33), (97, 97), (225, 225), (257, 193), (240, 240)]


@pytest.mark.parametrize('arch', sorted(ElasticResNeXt.arch_settings))
def test_input_size_sweep(arch):
    model = tiny(arch=arch, out_indices=(0, 3))
    model.eval()
    sizes = SIZES
    if arch == 'resnext50_elastic':
        sizes = SIZES + [(513, 513), (896, 640), (640, 896)]
    for h, w in sizes:
        with torch.no_grad():
            low, high = model(torch.rand(1, 3, h, w))
        assert low.shape[-2:] == (expected_size(h, 2), expected_size(w, 2))
        assert high.shape[-2:] == (expected_size(h), expected_size(w))


def test_full_width_large_odd_input():
    model = ElasticResNeXt(arch='resnext50_elastic')
    model.eval()
    with torch.no_grad():
        out, = model(torch.rand(1, 3, 449, 311))
    assert out.shape == (1, 2048, 15, 10)


# --- numerics against an independent reference of the official block -----


def ref_conv(x, conv):
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding,
                    conv.dilation, conv.groups)


def ref_bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                        bn.bias, False, 0., bn.eps)


def ref_branch(x, branch):
    out = F.relu(ref_bn(ref_conv(x, branch.conv1), branch.norm1))
    out = F.relu(ref_bn(ref_conv(out, branch.conv2), branch.norm2))
    return ref_conv(out, branch.conv3)


def ref_official_block(x, block):
    """The official BottleneckX forward, written from its specification."""
    h, w = x.shape[-2:]
    x_d = x
    if block.elastic:
        if h % 2 or w % 2:
            x_d = F.pad(x_d, (0, w % 2, 0, h % 2), mode='replicate')
        x_d = F.avg_pool2d(x_d, 2, stride=2)
    out_d = ref_branch(x_d, block.low)
    if block.elastic:
        out_d = F.interpolate(
            out_d, scale_factor=2, mode='bilinear', align_corners=False)
        out_d = out_d[:, :, :h, :w]
    out = ref_bn(ref_branch(x, block.high) + out_d, block.norm3)
    if block.se is not None:
        s = out.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, block.se.conv1.conv.weight,
                            block.se.conv1.conv.bias))
        s = torch.sigmoid(
            F.conv2d(s, block.se.conv2.conv.weight, block.se.conv2.conv.bias))
        out = out * s
    residual = x
    if block.downsample is not None:
        residual = ref_bn(ref_conv(x, block.downsample[0]),
                          block.downsample[1])
    return F.relu(out + residual)


@pytest.mark.parametrize('with_se', [False, True])
@pytest.mark.parametrize('size', [(14, 14), (15, 15), (15, 12), (9, 16)])
def test_block_matches_official_reference(size, with_se):
    torch.manual_seed(0)
    model = tiny(arch='resnext50_elastic', with_se=with_se)
    randomize_bn(model)
    model.eval()
    for block in (model.layer1[0], model.layer2[1], model.layer2[0]):
        x = torch.randn(2, block.in_channels, *size)
        with torch.no_grad():
            assert torch.allclose(
                block(x), ref_official_block(x, block), atol=1e-5)


def test_backbone_matches_reference_at_odd_size():
    torch.manual_seed(0)
    model = tiny(arch='resnext50_elastic')
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 97, 75)
    with torch.no_grad():
        out = model(x)[0]
        ref = F.max_pool2d(
            F.relu(ref_bn(ref_conv(x, model.conv1), model.norm1)), 3, 2, 1)
        for i in range(4):
            for block in getattr(model, f'layer{i + 1}'):
                ref = ref_official_block(ref, block)
    assert torch.allclose(out, ref, atol=1e-5)


def test_non_elastic_block_equals_single_grouped_block():
    # Both full-res branches together are one ResNeXt block of twice the
    # width: concatenated 1x1s, stacked grouped 3x3, concatenated conv3.
    torch.manual_seed(0)
    block = ElasticBottleneck(64, 64, mid_channels=32, groups=8,
                              elastic=False)
    randomize_bn(block)
    block.eval()
    x = torch.randn(1, 64, 9, 9)
    hi, lo = block.high, block.low

    def cat_bn(a, b):
        return [torch.cat([getattr(a, k), getattr(b, k)])
                for k in ('running_mean', 'running_var', 'weight', 'bias')]

    w1 = torch.cat([hi.conv1.weight, lo.conv1.weight])
    w2 = torch.cat([hi.conv2.weight, lo.conv2.weight])
    w3 = torch.cat([hi.conv3.weight, lo.conv3.weight], dim=1)
    out = F.relu(F.batch_norm(F.conv2d(x, w1), *cat_bn(hi.norm1, lo.norm1)))
    out = F.relu(F.batch_norm(F.conv2d(out, w2, padding=1, groups=8),
                              *cat_bn(hi.norm2, lo.norm2)))
    out = F.relu(ref_bn(F.conv2d(out, w3), block.norm3) + x)
    with torch.no_grad():
        assert torch.allclose(block(x), out, atol=1e-5)


# --- training behaviour ---------------------------------------------------


def test_init_follows_official_code():
    model = ElasticResNeXt(arch='resnext50_elastic')
    model.init_weights()
    for name, m in model.named_modules():
        if isinstance(m, ElasticBottleneck):
            assert torch.all(m.norm3.weight == 0), name
            assert torch.all(m.high.norm1.weight == 1), name
    conv = model.layer3[2].high.conv1
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(
        math.sqrt(2 / fan_in), rel=0.05)


def test_frozen_stages_and_norm_eval():
    model = tiny(arch='resnext50_elastic', frozen_stages=2, norm_eval=True)
    model.train()
    for p in list(model.conv1.parameters()) + list(
            model.layer1.parameters()) + list(model.layer2.parameters()):
        assert not p.requires_grad
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))
    model = tiny(arch='resnext50_elastic', frozen_stages=1)
    model.train()
    assert not model.layer1.training and model.layer2.training
    assert model.layer2[0].high.norm1.training


def test_train_and_eval_return_the_backbone():
    # As nn.Module's do (mmpretrain's ResNet.train returns None), so that
    # ``backbone = build(...).eval()`` keeps the backbone.
    model = tiny(arch='resnext50_elastic', frozen_stages=1)
    assert model.eval() is model and not model.training
    assert model.train() is model and model.training
    assert not model.layer1.training  # still frozen


def test_with_cp_same_result_and_gradients():
    torch.manual_seed(0)
    plain = tiny(arch='resnext50_elastic')
    ckpt = tiny(arch='resnext50_elastic', with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    assert_same_training_step(plain, ckpt, torch.randn(2, 3, 64, 64))


def test_with_cp_per_stage():
    from mmelastic.analysis import feature_map_traffic
    torch.manual_seed(0)
    plain = tiny(arch='resnext50_elastic')
    first = tiny(arch='resnext50_elastic', with_cp=(True, False, False, False))
    assert [[b.with_cp for b in getattr(first, layer)]
            for layer in first.res_layers] == [[True] * 6, [False] * 8,
                                               [False] * 5, [False] * 3]
    first.load_state_dict(plain.state_dict())
    assert_same_training_step(plain, first, torch.randn(2, 3, 64, 64))
    # Checkpointing the first stage keeps less than no checkpointing and
    # more than checkpointing every stage.
    saved = []
    for with_cp in (False, (True, False, False, False), True):
        model = classifier(
            arch='resnext50_elastic', with_cp=with_cp, base_channels=8,
            stem_channels=8, groups=4, width_per_group=2)
        saved.append(feature_map_traffic(model, (64, 64))['saved_bytes'])
    assert saved[0] > saved[1] > saved[2]
    with pytest.raises(ValueError, match='with_cp needs one flag per stage'):
        tiny(arch='resnext50_elastic', with_cp=(True, False))


def test_custom_arch_dict_and_bad_arch():
    model = ElasticResNeXt(
        arch=dict(stage_blocks=(1, 1, 1, 1), elastic=True), base_channels=8,
        stem_channels=8, groups=4, width_per_group=2)
    assert len(model.elastic_blocks()) == 1  # layer1.0 only
    with pytest.raises(KeyError, match='resnext50_elastic'):
        ElasticResNeXt(arch='resnext51')
    with pytest.raises(KeyError, match='stage_blocks'):
        ElasticResNeXt(arch=dict(elastic=True))
    with pytest.raises(ValueError, match='one flag per stage'):
        tiny(arch='resnext50', elastic=(True, False))


# --- segmentation: dilation and output stride ------------------------------


def conv2_dilations(layer):
    return [(b.high.conv2.dilation[0], b.low.conv2.dilation[0])
            for b in layer]


def test_os16_multi_grid_rates():
    model = tiny(
        arch='resnext50_elastic',
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        multi_grid=(1, 2, 4),
        out_indices=(0, 1, 2, 3))
    # Paper/DeepLabV3 semantics: 2 x (1, 2, 4) in both branches.
    assert conv2_dilations(model.layer4) == [(2, 2), (4, 4), (8, 8)]
    assert all(d == (1, 1) for d in conv2_dilations(model.layer3))
    assert model.layer4[0].downsample[0].stride == (1, 1)
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 512, 512))
    assert outs[3].shape[-2:] == (32, 32)
    assert outs[2].shape[-2:] == (32, 32)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 513, 513))[3].shape[-2:] == (33, 33)
    with pytest.raises(ValueError, match='one factor per block'):
        tiny(arch='resnext50_elastic', strides=(1, 2, 2, 1),
             dilations=(1, 1, 1, 2), multi_grid=(1, 2))


def test_os8_dilations():
    model = tiny(
        arch='resnext50_elastic',
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        out_indices=(3, ))
    # Stage 3 is stride 1 with dilation 2: its elastic low branch runs at
    # half resolution with half the dilation (same receptive field).
    assert set(conv2_dilations(model.layer3)) == {(2, 1)}
    assert conv2_dilations(model.layer4) == [(4, 4)] * 3
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 512, 512))[0].shape[-2:] == (64, 64)


# --- ablations ---------------------------------------------------------------


@pytest.mark.parametrize('mode', ['nearest', 'trained', 'trained_dilated',
                                  'trained_dilated_ap'])
def test_resample_modes_run_and_keep_size(mode):
    model = tiny(arch='resnext50_elastic', resample=mode)
    model.init_weights()
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 97, 65))[0].shape[-2:] == (4, 3)
    block = model.layer1[1]
    assert block.low.resample.mode == mode
    expected = 2 if mode.startswith('trained_dilated') else 1
    assert block.low.conv2.dilation[0] == expected


def tiny_classifier(**kwargs):
    return classifier(
        base_channels=8, stem_channels=8, groups=4, width_per_group=2,
        **kwargs)


def test_resample_mode_flops_follow_table_6():
    # Half-resolution methods save FLOPs; the dilated ones do not (Table 6:
    # 3.2B vs 3.6B for the original model).
    base = flops(tiny_classifier(arch='resnext50_selastic', elastic=False),
                 64)
    bilinear = flops(tiny_classifier(arch='resnext50_selastic'), 64)
    trained = flops(
        tiny_classifier(arch='resnext50_selastic', resample='trained'), 64)
    dilated = flops(
        tiny_classifier(arch='resnext50_selastic',
                        resample='trained_dilated'), 64)
    assert bilinear < 0.9 * base
    assert trained == pytest.approx(bilinear, rel=0.02)
    assert dilated == pytest.approx(base, rel=0.01)


def test_trained_resample_starts_as_pool_and_bilinear():
    resample = Resample2x('trained', 4, 4)
    x = torch.randn(1, 4, 10, 10)
    assert torch.allclose(resample.down(x), F.avg_pool2d(x, 2), atol=1e-6)
    y = torch.randn(1, 4, 5, 5)
    up = resample.up(y, (10, 10))
    ref = F.interpolate(y, scale_factor=2, mode='bilinear',
                        align_corners=False)
    # Equal away from the border (the transposed conv zero-pads).
    assert torch.allclose(up[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1],
                          atol=1e-6)


@pytest.mark.parametrize('ratio,groups', [(1.0, (32, 0)), (0.75, (24, 8)),
                                          (0.5, (16, 16)), (0.25, (8, 24))])
def test_branch_ratio_split(ratio, groups):
    (hc, hg), (lc, lg) = split_channels(128, 32, ratio)
    assert (hg, lg) == groups
    assert (hc, lc) == (groups[0] * 4, groups[1] * 4)
    model = ElasticResNeXt(arch='resnext50_selastic', high_ratio=ratio)
    assert num_params(model) == num_params(
        ElasticResNeXt(arch='resnext50_selastic'))
    if ratio == 1.0:
        assert model.layer1[0].low is None and not model.elastic_blocks()


def test_branch_ratio_flops_order():
    f = [flops(tiny_classifier(arch='resnext50_selastic', high_ratio=r), 64)
         for r in (0.25, 0.5, 0.75, 1.0)]
    assert f == sorted(f) and len(set(f)) == 4


def test_bad_ablation_arguments():
    with pytest.raises(ValueError, match='resample mode'):
        ElasticResNeXt(arch='resnext50_elastic', resample='bicubic')
    with pytest.raises(ValueError, match='whole groups'):
        ElasticResNeXt(arch='resnext50_elastic', high_ratio=0.3)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        ElasticResNeXt(arch='resnext50_elastic', high_ratio=0)
    with pytest.raises(ValueError, match='stride 1'):
        ElasticBottleneck(64, 64, 32, 8, stride=2, elastic=True)
