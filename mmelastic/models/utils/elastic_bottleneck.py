# Copyright (c) mmelastic contributors. All rights reserved.
"""The Elastic split bottleneck shared by every bottleneck architecture.

One block class serves the ResNeXt family and DLA (and their baselines):

.. code-block:: none

    x ──┬── high: 1x1 → norm → ReLU → 3x3 (groups) → norm → ReLU → 1x1 ──┐
        │                                                             (+) → norm3 → [SE] → (+) → ReLU
        ├── low: down → 1x1 → norm → ReLU → 3x3 (groups) → norm → ReLU → 1x1 → up ──┘      │
        └── identity / downsample ─────────────────────────────────────────────────────────┘

The two 1x1 outputs are summed *before* the shared ``norm3`` (there is no
norm after either branch's last conv), as in the official ``BottleneckX``.
A block is elastic (its ``low`` branch resampled) only where its stride is 1
and the architecture allows it; a non-elastic block keeps both branches at
full resolution, which is exactly one ResNeXt block of the summed width: the
two branches are a channel split of its grouped convolutions.
"""
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.utils import SELayer

from .fast_ops import (add, can_fuse_branches, can_merge_branches,
                       can_recompute_down, down_conv1, fast_path,
                       fast_path_enabled, fused_branches, merged_branches,
                       merging_pays_off, uses_channels_last_kernels)
from .resample import Resample2x, split_channels


class BottleneckBranch(BaseModule):
    """One path of a split bottleneck: 1x1 → 3x3 (grouped) → 1x1.

    With a ``resample`` module the path runs at the resampled resolution:
    ``up(path(down(x)))``. The ReLU after the 3x3 conv is its own module,
    ``act2``, so that scale-policy hooks can read the activation that the
    paper's score is defined on.

    Args:
        in_channels (int): Input channels.
        mid_channels (int): Width of the 1x1 and 3x3 convs.
        out_channels (int): Output channels of the last 1x1 conv.
        groups (int): Groups of the 3x3 conv.
        stride (int): Stride of the 3x3 conv. Default: 1.
        dilation (int): Dilation of the 3x3 conv. Default: 1.
        resample (Resample2x, optional): Down/up resampling; None keeps the
            path at full resolution. Default: None.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels,
                 mid_channels,
                 out_channels,
                 groups,
                 stride=1,
                 dilation=1,
                 resample=None,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.resample = resample
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, mid_channels, 1, bias=False)
        self.norm1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = build_conv_layer(
            conv_cfg,
            mid_channels,
            mid_channels,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            groups=groups,
            bias=False)
        self.norm2 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = build_conv_layer(
            conv_cfg, mid_channels, out_channels, 1, bias=False)

    def transform(self, x):
        """``down`` → 1x1 → norm → ReLU → 3x3 → norm → ReLU (``act2``)."""
        if fast_path_enabled() and can_recompute_down(self):
            out = down_conv1(self, x)  # conv1(down(x)), less memory
        else:
            out = x if self.resample is None else self.resample.down(x)
            out = self.conv1(out)
        out = self.act1(self.norm1(out))
        return self.act2(self.norm2(self.conv2(out)))

    def forward(self, x):
        out = self.conv3(self.transform(x))
        if self.resample is not None:
            out = self.resample.up(out, x.shape[-2:])
        return out


class ElasticBottleneck(BaseModule):
    """Split bottleneck with an optional low-resolution branch (ELASTIC).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        mid_channels (int): Total width of the bottleneck (both branches).
        groups (int): Total groups of the 3x3 convs (both branches).
        stride (int): Stride of the 3x3 convs. Default: 1.
        dilation (int): Dilation of the 3x3 convs. Default: 1.
        downsample (nn.Module, optional): Shortcut projection. Default: None.
        elastic (bool): Resample the low branch. Only allowed with stride 1.
            Default: True.
        high_ratio (float): Fraction of groups in the high-resolution
            branch; 1.0 gives a single-branch (plain) bottleneck.
            Default: 0.5.
        resample (str): Resampling mode, see
            :class:`~mmelastic.models.utils.Resample2x`. Default: 'bilinear'.
        with_se (bool): Squeeze-and-excitation after ``norm3`` (reduction
            16, 1x1 convs with bias). Default: False.
        se_ratio (int): SE reduction ratio. Default: 16.
        with_cp (bool): Gradient checkpointing of the block. Default: False.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.

    Example:
        >>> import torch
        >>> block = ElasticBottleneck(256, 256, mid_channels=128, groups=32)
        >>> tuple(block(torch.rand(1, 256, 15, 15)).shape)
        (1, 256, 15, 15)
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 mid_channels,
                 groups,
                 stride=1,
                 dilation=1,
                 downsample=None,
                 elastic=True,
                 high_ratio=0.5,
                 resample='bilinear',
                 with_se=False,
                 se_ratio=16,
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        if elastic and stride != 1:
            raise ValueError('an elastic block needs stride 1: its '
                             'low-resolution branch is resized back to the '
                             'input size')
        (high_mid, high_groups), (low_mid, low_groups) = split_channels(
            mid_channels, groups, high_ratio)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.with_cp = with_cp
        self.elastic = elastic and low_mid > 0
        branch = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            stride=stride,
            dilation=dilation,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg)
        self.high = BottleneckBranch(
            mid_channels=high_mid, groups=high_groups, **branch)
        self.low = None
        if low_mid > 0:
            low_resample = None
            if self.elastic:
                low_resample = Resample2x(resample, in_channels, out_channels)
                if low_resample.halves_resolution:
                    # Same receptive field in input pixels at half
                    # resolution; with the usual dilation 1 this keeps 1, as
                    # the official elastic blocks do.
                    branch['dilation'] = max(dilation // 2, 1)
                else:
                    # Dilated ablations emulate half resolution at full size.
                    branch['dilation'] = dilation * low_resample.conv_dilation
            self.low = BottleneckBranch(
                mid_channels=low_mid,
                groups=low_groups,
                resample=low_resample,
                **branch)
        self.norm3 = build_norm_layer(norm_cfg, out_channels)[1]
        self.se = SELayer(
            out_channels, squeeze_channels=out_channels // se_ratio,
            conv_cfg=conv_cfg) if with_se else None
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def scale_policy_modules(self):
        """The modules whose outputs define the scale-policy score.

        ELASTIC (Sec. 4.1.1) scores a block by ``S = A_high - A_low``, the
        mean activations after the ReLU that follows the 3x3 conv in the
        high- and the low-resolution branch. Forward hooks on these two
        modules read them at no cost to the forward pass.

        Returns:
            tuple[nn.Module, nn.Module] | None: ``(high, low)``, or None for
            a block that is not elastic.
        """
        if not self.elastic:
            return None
        return self.high.act2, self.low.act2

    def forward(self, x, identity=None):
        """Forward.

        Args:
            x (Tensor): Input feature map.
            identity (Tensor, optional): The shortcut to add. By default it
                is ``downsample(x)`` (or ``x``); DLA trees pass their own.
        """

        def _inner_forward(x):
            # The fast path (fast_ops.py) sums in place where autograd
            # allows (no op here saves its output): fresh feature maps are
            # costly. Its branch rewrites are chosen per call: modules may
            # be swapped after construction (BN -> SyncBN), and the best
            # kernel depends on the input's memory format.
            fast = fast_path_enabled()
            mergeable = fast and can_merge_branches(self.high, self.low)
            if mergeable and merging_pays_off(self.high, x):
                out = merged_branches(self.high, self.low, x)
            elif fast and not mergeable and \
                    can_fuse_branches(self.high, self.low) and \
                    not uses_channels_last_kernels(x):
                out = fused_branches(self.high, self.low, x)
            else:
                out = self.high(x)
                if self.low is not None:
                    low = self.low(x)
                    out = add(out, low, fast)
            out = self.norm3(out)
            if self.se is not None:
                out = self.se(out)
            shortcut = identity
            if shortcut is None:
                shortcut = x if self.downsample is None else \
                    self.downsample(x)
            return add(out, shortcut, fast)

        if self.with_cp and x.requires_grad:
            # The recomputation in backward must take the forward's path
            # even if the fast path was switched in between.
            fast = fast_path_enabled()

            def _checkpointed(x):
                with fast_path(fast):
                    return _inner_forward(x)

            out = cp.checkpoint(_checkpointed, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        return self.relu(out)
