# Copyright (c) mmelastic contributors. All rights reserved.
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.structures import SegDataSample

import mmelastic  # noqa: F401
from mmelastic.models.decode_heads import DLAUpHead

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _model_helpers import randomize_bn  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CHANNELS = (8, 16, 32, 64, 96, 128)


def segmentor(arch='dla60x_elastic', num_classes=5):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MMSEG_MODELS.build(
            dict(
                type='EncoderDecoder',
                backbone=dict(
                    type='ElasticDLA',
                    arch=arch,
                    channels=TINY_CHANNELS,
                    cardinality=4,
                    out_indices=(1, 2, 3, 4, 5)),
                decode_head=dict(
                    type='DLAUpHead',
                    in_channels=list(TINY_CHANNELS[1:]),
                    num_classes=num_classes,
                    dropout_ratio=0,
                    norm_cfg=dict(type='BN'),
                    loss_decode=dict(type='CrossEntropyLoss'))))


# --- an independent reference of DLA-seg's DLAUp / IDAUp --------------------


def conv_bn_relu(x, module, padding=0):
    conv, bn = module.conv, module.bn
    x = F.conv2d(x, conv.weight, None, 1, padding)
    return F.relu(
        F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                     False, 0., bn.eps))


def ref_ida(layers, ida, channels, out_dim, factors):
    """IDAUp from the specification: project where channels differ,
    upsample with a depthwise transposed conv (kernel 2f, stride f,
    padding f/2), crop to the first input, 3x3 nodes on concatenations."""
    ups = []
    for i, (x, c, f) in enumerate(zip(layers, channels, factors)):
        if c != out_dim:
            x = conv_bn_relu(x, ida.projs[i])
        if f > 1:
            x = F.conv_transpose2d(
                x, ida.ups[i].weight, None, f, f // 2, groups=out_dim)
        ups.append(x)
    x = ups[0]
    h, w = x.shape[-2:]
    aggregates = []
    for i in range(1, len(ups)):
        x = conv_bn_relu(
            torch.cat([x, ups[i][:, :, :h, :w]], 1), ida.nodes[i - 1], 1)
        aggregates.append(x)
    return x, aggregates


def ref_dla_up(layers, dla_up, channels):
    """DLAUp from the specification (scales 1, 2, 4, ...)."""
    layers = list(layers)
    in_channels = list(channels)
    scales = [2**i for i in range(len(channels))]
    for i in range(len(layers) - 1):
        j = -i - 2
        x, aggregates = ref_ida(layers[j:], dla_up.idas[i], in_channels[j:],
                                channels[j],
                                [s // scales[j] for s in scales[j:]])
        layers[j + 1:] = aggregates
        in_channels[j + 1:] = [channels[j]] * len(aggregates)
        scales[j + 1:] = [scales[j]] * len(aggregates)
    return x


@pytest.mark.parametrize('size', [(65, 49), (64, 64)])
def test_head_matches_reference(size):
    torch.manual_seed(0)
    model = segmentor()
    model.init_weights()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        feats = model.backbone(x)
        out = model.decode_head(feats)
        ref = ref_dla_up(feats, model.decode_head.dla_up, TINY_CHANNELS[1:])
        conv = model.decode_head.conv_seg
        ref = F.conv2d(ref, conv.weight, conv.bias)
    # Logits at the first level (stride 2, rounded up).
    assert out.shape == (2, 5, -(-size[0] // 2), -(-size[1] // 2))
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('size', [(513, 513), (97, 75), (33, 33)])
def test_output_matches_odd_input_size(size):
    model = segmentor()
    model.eval()
    meta = [dict(img_shape=size, ori_shape=size)]
    with torch.no_grad():
        logits = model.encode_decode(torch.rand(1, 3, *size), meta)
    assert logits.shape == (1, 5, *size)


def test_loss_on_odd_crop_trains_the_upsamplers():
    torch.manual_seed(0)
    model = segmentor()
    model.init_weights()
    model.train()
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(45, 37)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 45, 37)))
        samples.append(sample)
    losses = model.loss(torch.randn(2, 3, 45, 37), samples)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    up = model.decode_head.dla_up.idas[0].ups[1]
    assert up.weight.grad is not None and up.weight.grad.abs().sum() > 0


def test_upsamplers_start_bilinear_after_init():
    head = DLAUpHead(in_channels=(8, 16, 32), num_classes=3)
    head.init_weights()
    up = head.dla_up.idas[1].ups[2]
    assert isinstance(up, torch.nn.ConvTranspose2d) and up.stride == (2, 2)
    y = torch.randn(1, 8, 6, 7)
    out = F.conv_transpose2d(y, up.weight, None, 2, 1, groups=8)
    ref = F.interpolate(
        y, scale_factor=2, mode='bilinear', align_corners=False)
    # Bilinear x2 away from the border (the transposed conv zero-pads).
    assert torch.allclose(
        out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)


def test_layout_and_channels():
    head = DLAUpHead(in_channels=(32, 128, 256, 512, 1024), num_classes=21)
    idas = head.dla_up.idas
    # Official DLA-seg: ida_0 merges the deepest pair at 512 channels, ...,
    # ida_3 ends at level1's 32 channels; every IDA upsamples by 2.
    assert [len(ida.projs) for ida in idas] == [2, 3, 4, 5]
    assert [ida.nodes[0].conv.out_channels for ida in idas] == \
        [512, 256, 128, 32]
    assert isinstance(idas[0].projs[0], torch.nn.Identity)
    assert idas[0].projs[1].conv.weight.shape == (512, 1024, 1, 1)
    assert isinstance(idas[3].ups[0], torch.nn.Identity)
    assert all(up.stride == (2, 2) for ida in idas for up in ida.ups[1:])
    assert head.conv_seg.weight.shape == (21, 32, 1, 1)
    assert head.conv_seg.bias is not None


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match='in_channels'):
        DLAUpHead(in_channels=32, num_classes=3)
    with pytest.raises(ValueError, match='leave channels unset'):
        DLAUpHead(in_channels=(32, 64), channels=64, num_classes=3)


@pytest.mark.parametrize('config',
                         ['dlaup_dla60x.py', 'dlaup_dla60x_elastic.py'])
def test_voc_configs_build_and_run_at_odd_size(config):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/voc', config))
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    cfg.model.backbone.pop('init_cfg')
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = revert_sync_batchnorm(MMSEG_MODELS.build(cfg.model))
    model.eval()
    with torch.no_grad():
        logits = model.encode_decode(
            torch.rand(1, 3, 65, 49), [dict(img_shape=(65, 49))])
    assert logits.shape == (1, 21, 65, 49)
    assert ('elastic' in config) == bool(model.backbone.elastic_blocks())
