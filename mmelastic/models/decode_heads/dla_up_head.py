# Copyright (c) mmelastic contributors. All rights reserved.
"""The iterative deep aggregation decoder of DLA-seg (DLAUp / IDAUp).

ELASTIC segments with DLA through DLA's own up-path, not DeepLab (paper
Sec. 4.3: "Our DLA models use the original iterative deep aggregation as a
decoder"), as in allenai/elastic ``models/dla_up.py`` (from ucbdrive/dla).
"""
import math

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS as MMSEG_MODELS

from mmelastic.registry import MODELS
from ..utils import kaiming_init_cfg


def bilinear_kernel(size):
    """A ``size x size`` bilinear interpolation kernel (for upsampling by
    ``ceil(size / 2)`` with a transposed conv)."""
    factor = math.ceil(size / 2)
    center = (2 * factor - 1 - factor % 2) / (2. * factor)
    og = torch.arange(size, dtype=torch.float32) / factor
    filt = 1 - (og - center).abs()
    return filt[:, None] * filt[None, :]


class IDAUp(BaseModule):
    """Iterative deep aggregation of feature maps of decreasing resolution.

    Every input ``i`` is projected to ``out_channels`` (1x1 conv + norm +
    ReLU, where its channels differ), upsampled by ``up_factors[i]`` with a
    depthwise transposed conv initialised to bilinear interpolation (and
    trained), and cropped to the first input's size; then the running
    aggregate is fused with each of them in turn by a 3x3 conv + norm + ReLU
    node.

    Args:
        in_channels (Sequence[int]): Channels of the inputs, highest
            resolution first.
        out_channels (int): Channels of the aggregation.
        up_factors (Sequence[int]): Upsampling factor of each input.
        node_kernel (int): Kernel size of the aggregation nodes. Default: 3.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        act_cfg (dict): Activation config. Default: ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 up_factors,
                 node_kernel=3,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 act_cfg=dict(type='ReLU'),
                 init_cfg=None):
        super().__init__(init_cfg)
        if len(in_channels) != len(up_factors):
            raise ValueError(f'IDAUp needs one up factor per input: '
                             f'{in_channels} vs {up_factors}')
        layer = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.projs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for channels, factor in zip(in_channels, up_factors):
            proj = up = nn.Identity()
            if channels != out_channels:
                proj = ConvModule(channels, out_channels, 1, **layer)
            factor = int(factor)
            if factor > 1:
                up = nn.ConvTranspose2d(
                    out_channels,
                    out_channels,
                    2 * factor,
                    stride=factor,
                    padding=factor // 2,
                    groups=out_channels,
                    bias=False)
            self.projs.append(proj)
            self.ups.append(up)
        self.nodes = nn.ModuleList([
            ConvModule(
                2 * out_channels,
                out_channels,
                node_kernel,
                padding=node_kernel // 2,
                **layer) for _ in range(len(in_channels) - 1)
        ])
        self.reset_upsamplers()

    def reset_upsamplers(self):
        """Initialise the transposed convs to bilinear upsampling."""
        for up in self.ups:
            if isinstance(up, nn.ConvTranspose2d):
                with torch.no_grad():
                    up.weight.copy_(
                        bilinear_kernel(up.weight.shape[-1]).expand_as(
                            up.weight))

    def init_weights(self):
        super().init_weights()
        # The generic conv init of the head must not reach the upsamplers.
        self.reset_upsamplers()

    def forward(self, inputs):
        """Aggregate ``inputs``; returns the final aggregate and every
        intermediate one (all at the first input's resolution)."""
        if len(inputs) != len(self.projs):
            raise ValueError(f'IDAUp expects {len(self.projs)} inputs, got '
                             f'{len(inputs)}')
        layers = [
            up(proj(x)) for x, proj, up in zip(inputs, self.projs, self.ups)
        ]
        x = layers[0]
        h, w = x.shape[-2:]
        aggregates = []
        for node, layer in zip(self.nodes, layers[1:]):
            if layer.shape[-2] < h or layer.shape[-1] < w:
                raise ValueError(
                    f'an upsampled input ({tuple(layer.shape[-2:])}) is '
                    f'smaller than the aggregate ({h}, {w}): each input must '
                    'be the ceil-halved size of the previous one (use a '
                    'backbone with ceil-mode downsampling, e.g. ElasticDLA)')
            x = node(torch.cat([x, layer[:, :, :h, :w]], 1))
            aggregates.append(x)
        return x, aggregates


class DLAUp(BaseModule):
    """DLA's up-path: IDAUp stages from the deepest pair to the shallowest.

    Stage ``i`` aggregates level ``-(i + 2)`` with the outputs of stage
    ``i - 1`` (the deepest two levels for stage 0), so the deep features are
    merged progressively, each stage at one level's resolution and width.

    Args:
        in_channels (Sequence[int]): Channels of the levels, highest
            resolution first; consecutive levels differ by a stride of 2.
        **kwargs: Passed to every :class:`IDAUp`.
    """

    def __init__(self, in_channels, **kwargs):
        super().__init__()
        in_channels = list(in_channels)
        if len(in_channels) < 2:
            raise ValueError('DLAUp needs at least two levels, got '
                             f'{in_channels}')
        scales = [2**i for i in range(len(in_channels))]
        self.idas = nn.ModuleList()
        for i in range(len(in_channels) - 1):
            j = -i - 2
            self.idas.append(
                IDAUp(in_channels[j:], in_channels[j],
                      [s // scales[j] for s in scales[j:]], **kwargs))
            # The stage's outputs replace the deeper levels, at level j's
            # scale and width.
            scales[j + 1:] = [scales[j]] * (-j - 1)
            in_channels[j + 1:] = [in_channels[j]] * (-j - 1)

    def forward(self, inputs):
        layers = list(inputs)
        for i, ida in enumerate(self.idas):
            x, aggregates = ida(layers[-i - 2:])
            layers[-i - 1:] = aggregates
        return x


@MODELS.register_module()
@MMSEG_MODELS.register_module()
class DLAUpHead(BaseDecodeHead):
    """DLA-seg decode head: DLAUp aggregation + 1x1 classifier.

    Implements the segmentation decoder of `Deep Layer Aggregation
    <https://arxiv.org/abs/1707.06484>`_ used by ELASTIC for DLA on PASCAL
    VOC (allenai/elastic ``DLASeg``, ``down_ratio=2``): the backbone levels
    from stride 2 down are aggregated by :class:`DLAUp` into a
    ``in_channels[0]``-channel map at the first level's resolution, and a
    1x1 conv with bias (``conv_seg``) classifies it. The logits stay at that
    stride; mmseg resizes them to the input (bilinear) for the loss and the
    prediction, where the official model applies a frozen bilinear
    transposed conv and crops the last row and column.

    Args:
        in_channels (Sequence[int]): Channels of the selected backbone
            levels, highest resolution first (ElasticDLA levels 1-5:
            ``(32, 128, 256, 512, 1024)``).
        channels (int): Width of the aggregated map; must equal
            ``in_channels[0]`` (the aggregation ends at the first level).
            Default: None, meaning ``in_channels[0]``.
        in_index (Sequence[int], optional): Which backbone outputs to use.
            Default: None, meaning all of them, in order.
        node_kernel (int): Kernel size of the aggregation nodes. Default: 3.
        **kwargs: Other arguments of
            :class:`~mmseg.models.decode_heads.decode_head.BaseDecodeHead`
            (``num_classes``, ``dropout_ratio``, ``norm_cfg``,
            ``align_corners``, ``loss_decode``...).

    Example:
        >>> import torch
        >>> head = DLAUpHead(in_channels=(8, 16, 32), num_classes=21,
        ...                  dropout_ratio=0)
        >>> feats = [torch.rand(1, 8, 257, 257), torch.rand(1, 16, 129, 129),
        ...          torch.rand(1, 32, 65, 65)]
        >>> tuple(head(feats).shape)
        (1, 21, 257, 257)
    """

    def __init__(self,
                 in_channels,
                 channels=None,
                 in_index=None,
                 node_kernel=3,
                 norm_cfg=dict(type='BN'),
                 init_cfg=kaiming_init_cfg('fan_out'),
                 **kwargs):
        if isinstance(in_channels, int) or len(in_channels) < 2:
            raise ValueError('DLAUpHead aggregates several levels: give '
                             'in_channels as a list of at least two, got '
                             f'{in_channels}')
        in_channels = list(in_channels)
        if channels is None:
            channels = in_channels[0]
        if channels != in_channels[0]:
            raise ValueError(
                f'DLAUpHead: channels ({channels}) must equal in_channels[0] '
                f'({in_channels[0]}), the width the aggregation ends with; '
                'leave channels unset')
        if in_index is None:
            in_index = list(range(len(in_channels)))
        kwargs.setdefault('input_transform', 'multiple_select')
        super().__init__(
            in_channels,
            channels,
            in_index=list(in_index),
            norm_cfg=norm_cfg,
            init_cfg=init_cfg,
            **kwargs)
        self.dla_up = DLAUp(
            in_channels,
            node_kernel=node_kernel,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def forward(self, inputs):
        return self.cls_seg(self.dla_up(self._transform_inputs(inputs)))
