# Copyright (c) mmelastic contributors. All rights reserved.
import os.path as osp
import sys

import torch
import torch.nn.functional as F

import mmelastic  # noqa: F401
from mmelastic.models.decode_heads import ElasticASPPHead

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _model_helpers import randomize_bn  # noqa: E402


def bn_relu(x, bn):
    return F.relu(
        F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                     False, 0., bn.eps))


def test_matches_official_aspp_layout():
    """Reference: the official ASPP forward (branches 1x1, r6, r12, r18,
    image pooling last; 1x1 fusion; 1x1 classifier with bias)."""
    torch.manual_seed(0)
    head = ElasticASPPHead(
        in_channels=32, channels=8, num_classes=5, dropout_ratio=0,
        norm_cfg=dict(type='BN'), align_corners=True)
    randomize_bn(head)
    head.eval()
    x = torch.randn(2, 32, 33, 29)
    branches = []
    for module, rate in zip(head.aspp_modules, (1, 6, 12, 18)):
        conv = module.conv
        assert conv.kernel_size == ((1, 1) if rate == 1 else (3, 3))
        pad = 0 if rate == 1 else rate
        branches.append(
            bn_relu(F.conv2d(x, conv.weight, padding=pad, dilation=rate),
                    module.bn))
    pooled = bn_relu(
        F.conv2d(x.mean((2, 3), keepdim=True), head.image_pool[1].conv.weight),
        head.image_pool[1].bn)
    branches.append(pooled.expand(-1, -1, 33, 29))
    fused = bn_relu(
        F.conv2d(torch.cat(branches, 1), head.bottleneck.conv.weight),
        head.bottleneck.bn)
    ref = F.conv2d(fused, head.conv_seg.weight, head.conv_seg.bias)
    assert head.bottleneck.conv.kernel_size == (1, 1)
    assert head.dropout is None
    with torch.no_grad():
        assert torch.allclose(head([x]), ref, atol=1e-5)
