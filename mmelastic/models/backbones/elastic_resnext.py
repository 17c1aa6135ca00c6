# Copyright (c) mmelastic contributors. All rights reserved.
import math

import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model.weight_init import constant_init
from mmpretrain.models.backbones import ResNet

from mmelastic.registry import register
from ..utils import (ElasticBackboneMixin, ElasticBottleneck, Resample2x,
                     kaiming_init_cfg, pretrained_init_cfg, resolve_arch,
                     stage_flags)


class ElasticResLayer(nn.Sequential):
    """A stage of :class:`ElasticBottleneck` blocks.

    Args:
        num_blocks (int): Number of blocks.
        in_channels (int): Input channels of the stage.
        out_channels (int): Output channels of every block.
        mid_channels (int): Total bottleneck width of every block.
        groups (int): Total groups of the 3x3 convs.
        stride (int): Stride of the first block. Default: 1.
        dilations (Sequence[int]): 3x3 dilation of each block.
        elastic (bool): Whether the stage's stride-1 blocks are elastic.
        avg_down (bool): Average-pool in the strided shortcut (ResNet-D).
            Default: False.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        **block_kwargs: Passed to every block (``high_ratio``, ``resample``,
            ``with_se``, ``with_cp``).
    """

    def __init__(self,
                 num_blocks,
                 in_channels,
                 out_channels,
                 mid_channels,
                 groups,
                 stride=1,
                 dilations=None,
                 elastic=True,
                 avg_down=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 **block_kwargs):
        dilations = dilations or [1] * num_blocks
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = []
            conv_stride = stride
            if avg_down and stride != 1:
                # ResNet-D shortcut (mmpretrain's ResNetV1d): average pool,
                # then a stride-1 projection.
                conv_stride = 1
                downsample.append(
                    nn.AvgPool2d(
                        kernel_size=stride,
                        stride=stride,
                        ceil_mode=True,
                        count_include_pad=False))
            downsample += [
                build_conv_layer(
                    conv_cfg,
                    in_channels,
                    out_channels,
                    kernel_size=1,
                    stride=conv_stride,
                    bias=False),
                build_norm_layer(norm_cfg, out_channels)[1]
            ]
            downsample = nn.Sequential(*downsample)
        blocks = []
        for i in range(num_blocks):
            block_stride = stride if i == 0 else 1
            blocks.append(
                ElasticBottleneck(
                    in_channels=in_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    mid_channels=mid_channels,
                    groups=groups,
                    stride=block_stride,
                    dilation=dilations[i],
                    downsample=downsample if i == 0 else None,
                    # The low branch is resized back to the input size, so
                    # only stride-1 blocks can be elastic (official rule).
                    elastic=elastic and block_stride == 1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    **block_kwargs))
        super().__init__(*blocks)


@register('model')
class ElasticResNeXt(ResNet):
    """ResNeXt with Elastic blocks (ELASTIC, CVPR 2019).

    Implements ResNeXt-50/101 32x4d, their Elastic and sElastic versions,
    SE-ResNeXt and ResNeXt50x2+Elastic of `ELASTIC: Improving CNNs with
    Instance Specific Scaling Policies <https://arxiv.org/abs/1812.05262>`_.
    Every block is an :class:`~mmelastic.models.utils.ElasticBottleneck` split
    into two branches of half the width; in elastic blocks the low branch runs
    at half resolution. The baselines use the same two-branch blocks at full
    resolution (mathematically a standard ResNeXt block), so the official
    two-branch checkpoints of both load, and single-branch ResNeXt weights
    convert by a channel split.

    A block is elastic when its stage is elastic (every stage but the last,
    by default) and its stride is 1, as in the official code: the first block
    of stages 2-4 and the whole last stage stay at full resolution.

    Args:
        arch (str | dict): One of :attr:`arch_settings`' keys, or a dict with
            ``stage_blocks`` and optionally ``elastic``, ``groups``,
            ``width_per_group`` and ``with_se``. Default: 'resnext50_elastic'.
        stage_blocks (Sequence[int], optional): Override the arch's blocks per
            stage. Default: None.
        groups (int, optional): Total groups (cardinality) of each block's 3x3
            convs, both branches together. Default: from ``arch`` (32).
        width_per_group (int, optional): Channels per group at the first
            stage. Default: from ``arch`` (4).
        with_se (bool, optional): Squeeze-and-excitation after each block's
            merged norm. Default: from ``arch``.
        elastic (bool | Sequence[bool], optional): Which stages have elastic
            blocks, overriding the arch; a bool means "all stages but the
            last". Default: None.
        high_ratio (float): Fraction of each block's groups at high
            resolution (paper Table 7). Default: 0.5.
        resample (str): Resampling of the low branch (paper Table 6), see
            :class:`~mmelastic.models.utils.Resample2x`. Default: 'bilinear'.
        multi_grid (Sequence[int], optional): Multi-grid factors of the last
            stage's blocks. As in the paper (and DeepLabV3), they *multiply*
            the stage dilation: ``dilations[-1]=2, multi_grid=(1, 2, 4)``
            gives 3x3 rates 2, 4, 8. (mmseg's ``multi_grid`` instead uses the
            factors as absolute rates.) Default: None.
        contract_dilation (bool): Halve the dilation of the first block of a
            dilated stage without multi-grid, like mmseg. Default: False.
        base_channels (int): Planes of the first stage; block outputs are
            ``4 * base_channels * 2**i``. Default: 64.
        stem_channels (int): Channels of the 7x7 stem conv. Default: 64.
        num_stages (int): Stages to build. Default: 4.
        with_cp (bool | Sequence[bool]): Gradient checkpointing of every
            block, or of the blocks of the stages flagged (one flag per
            stage). Checkpointing the first stage alone saves most of the
            activation memory the Elastic layout adds (its blocks run at the
            highest resolution) for a fraction of the time that checkpointing
            every block costs; see ``configs/imagenet/*_lowmem.py``.
            Default: False.
        pretrained (str, optional): Deprecated, use ``init_cfg``; accepted
            because mmseg's ``EncoderDecoder`` passes it. Default: None.
        **kwargs: Other arguments of mmpretrain's
            :class:`~mmpretrain.models.backbones.ResNet`: ``in_channels``,
            ``strides``, ``dilations``, ``out_indices``,
            ``deep_stem`` and ``avg_down`` (ResNetV1c/V1d), ``frozen_stages``,
            ``conv_cfg``, ``norm_cfg``, ``norm_eval``,
            ``zero_init_residual``, ``init_cfg``.

    Other ResNet-family backbones get Elastic by configuration: the widths
    come from ``groups x width_per_group`` (ResNeXt 32x8d:
    ``width_per_group=8``), SE from ``with_se``, ResNetV1c/V1d from
    ``deep_stem``/``avg_down``, any depth from a custom ``arch`` dict.
    ResNet's dense 3x3 convs cannot be channel-split without dropping the
    cross-branch terms, so ``groups=2, width_per_group=32`` gives ResNet's
    widths with two dense half-width 3x3 convs per block (fewer parameters
    than ResNet).

    Example:
        >>> import torch
        >>> from mmelastic.models import ElasticResNeXt
        >>> model = ElasticResNeXt(arch='resnext50_elastic',
        ...                        out_indices=(0, 1, 2, 3))
        >>> model.eval()
        >>> outputs = model(torch.rand(1, 3, 224, 224))
        >>> for out in outputs:
        ...     print(tuple(out.shape))
        (1, 256, 56, 56)
        (1, 512, 28, 28)
        (1, 1024, 14, 14)
        (1, 2048, 7, 7)
    """

    arch_settings = {
        'resnext50': dict(stage_blocks=(3, 4, 6, 3), elastic=False),
        'resnext50_elastic': dict(stage_blocks=(6, 8, 5, 3), elastic=True),
        # sElastic (paper Appendix A): the original depths, elastic blocks.
        'resnext50_selastic': dict(stage_blocks=(3, 4, 6, 3), elastic=True),
        'se_resnext50': dict(
            stage_blocks=(3, 4, 6, 3), elastic=False, with_se=True),
        'se_resnext50_elastic': dict(
            stage_blocks=(6, 8, 5, 3), elastic=True, with_se=True),
        'resnext101': dict(stage_blocks=(3, 4, 23, 3), elastic=False),
        'resnext101_elastic': dict(
            stage_blocks=(12, 14, 20, 3), elastic=True),
        # Not in the official code; derived in docs/resnext50x2.md: twice the
        # cardinality (64x4d) on the ResNeXt50+Elastic layout.
        'resnext50x2_elastic': dict(
            stage_blocks=(6, 8, 5, 3), elastic=True, groups=64),
    }

    def __init__(self,
                 arch='resnext50_elastic',
                 stage_blocks=None,
                 groups=None,
                 width_per_group=None,
                 with_se=None,
                 elastic=None,
                 high_ratio=0.5,
                 resample='bilinear',
                 multi_grid=None,
                 contract_dilation=False,
                 base_channels=64,
                 stem_channels=64,
                 num_stages=4,
                 with_cp=False,
                 pretrained=None,
                 init_cfg=kaiming_init_cfg('fan_in'),
                 **kwargs):
        setting = resolve_arch('ElasticResNeXt', self.arch_settings, arch,
                               'stage_blocks')
        if stage_blocks is not None:
            setting['stage_blocks'] = tuple(stage_blocks)
        if len(setting['stage_blocks']) < num_stages:
            raise ValueError(
                f"stage_blocks {setting['stage_blocks']} has fewer than "
                f'num_stages={num_stages} entries')
        self.groups = groups if groups is not None else setting.get(
            'groups', 32)
        self.width_per_group = width_per_group if width_per_group \
            is not None else setting.get('width_per_group', 4)
        self.with_se = with_se if with_se is not None else setting.get(
            'with_se', False)
        if elastic is None:
            elastic = setting.get('elastic', True)
        # Official rule: never elastic in the last (7x7) stage.
        self.elastic_stages = stage_flags(elastic, num_stages, 'elastic',
                                          last=False)
        self.cp_stages = stage_flags(with_cp, num_stages, 'with_cp')
        self.high_ratio = high_ratio
        self.resample = resample
        self.multi_grid = tuple(multi_grid) if multi_grid else None
        self.contract_dilation = contract_dilation
        init_cfg = pretrained_init_cfg('ElasticResNeXt', pretrained, init_cfg)
        # ResNet reads (block, stage_blocks) from arch_settings[depth]; give
        # it this instance's resolved layout under the arch's name.
        self.arch_settings = {
            'custom': (ElasticBottleneck, setting['stage_blocks'])
        }
        super().__init__(
            depth='custom',
            base_channels=base_channels,
            stem_channels=stem_channels,
            num_stages=num_stages,
            expansion=4,
            with_cp=any(self.cp_stages),
            init_cfg=init_cfg,
            **kwargs)
        if self.multi_grid is not None and \
                len(self.multi_grid) != self.stage_blocks[-1]:
            raise ValueError(
                f'multi_grid {self.multi_grid} needs one factor per block of '
                f'the last stage ({self.stage_blocks[-1]} blocks)')

    def make_res_layer(self, num_blocks, in_channels, out_channels, stride,
                       dilation, with_cp, conv_cfg, norm_cfg, avg_down,
                       **kwargs):
        """Build one stage (called by ResNet.__init__ for each stage)."""
        stage = int(round(
            math.log2(out_channels / (self.base_channels * self.expansion))))
        if self.multi_grid is not None and stage == self.num_stages - 1:
            if len(self.multi_grid) != num_blocks:
                raise ValueError(
                    f'multi_grid {self.multi_grid} needs one factor per '
                    f'block of the last stage ({num_blocks} blocks)')
            dilations = [dilation * g for g in self.multi_grid]
        elif self.contract_dilation and dilation > 1:
            dilations = [dilation // 2] + [dilation] * (num_blocks - 1)
        else:
            dilations = [dilation] * num_blocks
        mid_channels = self.groups * self.width_per_group * 2**stage
        return ElasticResLayer(
            num_blocks=num_blocks,
            in_channels=in_channels,
            out_channels=out_channels,
            mid_channels=mid_channels,
            groups=self.groups,
            stride=stride,
            dilations=dilations,
            elastic=self.elastic_stages[stage],
            avg_down=avg_down,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            high_ratio=self.high_ratio,
            resample=self.resample,
            with_se=self.with_se,
            with_cp=self.cp_stages[stage])

    def init_weights(self):
        # ResNet.init_weights zero-inits mmpretrain's own blocks only.
        super(ResNet, self).init_weights()
        for m in self.modules():
            if isinstance(m, Resample2x):
                m.init_weights()
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg['type'] == 'Pretrained':
            return
        if self.zero_init_residual:
            # The official init zeroes the merged norm (bn3) of every block.
            for m in self.modules():
                if isinstance(m, ElasticBottleneck):
                    constant_init(m.norm3, 0)

    def train(self, mode=True):
        # mmpretrain's ResNet.train returns None; nn.Module.train returns
        # the module, and ``model = backbone.eval()`` relies on that.
        super().train(mode)
        return self

    elastic_blocks = ElasticBackboneMixin.elastic_blocks
