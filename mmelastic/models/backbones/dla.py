# Copyright (c) mmelastic contributors. All rights reserved.
"""Deep Layer Aggregation with (Elastic) ResNeXt bottlenecks.

DLA-X60/X102 (Yu et al., CVPR 2018) and their ELASTIC versions (Wang et al.,
CVPR 2019, Table 2, Table 8 and Table 9), as in allenai/elastic
``models/dla.py``. Every bottleneck is the shared
:class:`~mmelastic.models.utils.ElasticBottleneck`; the trees pass it their
own shortcut through ``identity``.
"""

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone

from mmelastic.registry import register
from ..utils import (ElasticBackboneMixin, ElasticBottleneck,
                     kaiming_init_cfg, pretrained_init_cfg, resolve_arch,
                     stage_flags)

#: The official bottleneck width rule: ``planes * cardinality / 32``, i.e. a
#: "Split32" block is as wide as its output.
CARDINALITY_BASE = 32


class DLARoot(BaseModule):
    """Aggregation node of a DLA tree.

    ``relu(norm(conv1x1(cat(x2, x1, *children))) [+ x2])``: the first input
    is the tree's last block output, which is also the residual.

    Args:
        in_channels (int): Channels of the concatenated inputs.
        out_channels (int): Output channels.
        residual (bool): Add the first input before the ReLU (DLA-X102).
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 residual,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.conv = build_conv_layer(
            conv_cfg, in_channels, out_channels, 1, bias=False)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, *inputs):
        out = self.norm(self.conv(torch.cat(inputs, 1)))
        if self.residual:
            out = out + inputs[0]
        return self.relu(out)


class DLATree(BaseModule):
    """A DLA hierarchical aggregation tree of depth ``levels``.

    A leaf (``levels == 1``) holds two blocks and a :class:`DLARoot`; a
    deeper tree holds two subtrees, and only the last leaf aggregates, with
    every earlier subtree output (and, at a ``level_root``, the pooled input)
    as extra children.

    ``project`` (1x1 conv + norm on the max-pooled input, the shortcut of the
    first, possibly strided, block) exists in leaves only. The official code
    also builds one in every deeper tree whose channels change, computes it
    and discards it; those dead parameters are dropped here (see
    ``docs/dla_densenet.md``).

    Args:
        levels (int): Depth of the tree.
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        make_block (callable): ``make_block(in, out, stride)`` builds one
            :class:`~mmelastic.models.utils.ElasticBottleneck`.
        stride (int): Stride of the tree's first block. Default: 1.
        level_root (bool): Whether the pooled input is also aggregated by
            the last root. Default: False.
        root_channels (int): Channels entering the last root from the
            enclosing trees; 0 at the top. Default: 0.
        root_residual (bool): Residual roots (DLA-X102). Default: False.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self,
                 levels,
                 in_channels,
                 out_channels,
                 make_block,
                 stride=1,
                 level_root=False,
                 root_channels=0,
                 root_residual=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        if root_channels == 0:
            root_channels = 2 * out_channels
        if level_root:
            root_channels += in_channels
        self.levels = levels
        self.level_root = level_root
        if levels == 1:
            self.tree1 = make_block(in_channels, out_channels, stride)
            self.tree2 = make_block(out_channels, out_channels, 1)
            self.root = DLARoot(root_channels, out_channels, root_residual,
                                conv_cfg, norm_cfg)
        else:
            subtree = dict(
                make_block=make_block,
                root_residual=root_residual,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg)
            self.tree1 = DLATree(
                levels - 1,
                in_channels,
                out_channels,
                stride=stride,
                **subtree)
            self.tree2 = DLATree(
                levels - 1,
                out_channels,
                out_channels,
                root_channels=root_channels + out_channels,
                **subtree)
        # ceil_mode: a 3x3 stride-2 conv gives ceil(n / 2) rows, so the
        # pooled shortcut must round up too for odd sizes (the official
        # segmentation mode). For even sizes floor and ceil agree, so this
        # is exactly the official classification model wherever that runs.
        self.downsample = nn.MaxPool2d(stride, stride, ceil_mode=True) \
            if stride > 1 else None
        self.project = None
        if levels == 1 and in_channels != out_channels:
            self.project = nn.Sequential(
                build_conv_layer(
                    conv_cfg, in_channels, out_channels, 1, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])

    def forward(self, x, children=None):
        children = [] if children is None else children
        if self.levels == 1 or self.level_root:
            bottom = x if self.downsample is None else self.downsample(x)
            if self.level_root:
                children.append(bottom)
        if self.levels == 1:
            identity = bottom if self.project is None else \
                self.project(bottom)
            x1 = self.tree1(x, identity=identity)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


@register('model')
class ElasticDLA(ElasticBackboneMixin, BaseBackbone):
    """DLA-X with (Elastic) ResNeXt bottlenecks (ELASTIC, CVPR 2019).

    Implements DLA-X60 and DLA-X102 (`Deep Layer Aggregation
    <https://arxiv.org/abs/1707.06484>`_) and their Elastic and sElastic
    versions of `ELASTIC: Improving CNNs with Instance Specific Scaling
    Policies <https://arxiv.org/abs/1812.05262>`_ (Tables 2, 8 and 9), as in
    allenai/elastic ``models/dla.py``.

    Layout: a 7x7 stride-1 stem conv, ``level0`` (3x3 convs), ``level1``
    (3x3 convs, the first with stride 2) and four aggregation trees
    ``level2``-``level5`` of stride 2 each (output stride 32).

    Every bottleneck has width ``planes * cardinality / 32`` and a grouped
    3x3 with ``cardinality`` groups. The baselines use a single-branch
    bottleneck (``ElasticBottleneck(high_ratio=1.0)``); the Elastic models
    split it into two branches of half the width and ``cardinality / 2``
    groups each, summed before the merged norm, and resample the low branch
    of every stride-1 block of ``level2``-``level4``. ``level5`` and the
    first (stride-2) block of each tree stay at full resolution. This is
    decided by structure, never by the feature-map size.

    ``dla60x_selastic`` is an alias of ``dla60x_elastic``: the paper's
    DLA-X60+sElastic and DLA-X60+Elastic are the same model (Appendix A).

    The pooled shortcuts of the trees use ``ceil_mode``, as the official
    segmentation mode does, so any input size works (e.g. 513x513 crops);
    for sizes that the official classifier accepts the result is the same.

    Args:
        arch (str | dict): One of :attr:`arch_settings`' keys, or a dict with
            ``levels`` and optionally ``channels``, ``cardinality``,
            ``residual_root`` and ``elastic``. Default: 'dla60x_elastic'.
        cardinality (int, optional): Groups of each bottleneck's 3x3 conv
            (both branches together); overrides the arch. Every model keeps
            its own value (the official code sets it on a class attribute, so
            building dla102x_elastic changes every later DLA). Default: None.
        channels (Sequence[int], optional): Output channels of the six
            levels; overrides the arch. Default: None.
        elastic (bool | Sequence[bool], optional): Which trees (levels 2-5)
            have elastic blocks, overriding the arch; a bool means "every
            tree but the last". Default: None.
        high_ratio (float, optional): Fraction of each block's groups at high
            resolution (paper Table 7). Default: 0.5 for elastic archs, 1.0
            (single-branch blocks) for the baselines.
        resample (str): Resampling of the low branch (paper Table 6), see
            :class:`~mmelastic.models.utils.Resample2x`. Default: 'bilinear'.
        in_channels (int): Input image channels. Default: 3.
        out_indices (Sequence[int] | int): Levels (0-5) to output; negative
            values count from the end. Default: (5, ).
        frozen_stages (int): Freeze the stem and levels ``0..frozen_stages``
            (parameters fixed, norms in eval mode); -1 freezes nothing.
            Default: -1.
        norm_eval (bool): Keep every norm layer in eval mode while training.
            Default: False.
        with_cp (bool | Sequence[bool]): Gradient checkpointing of every
            bottleneck (the official segmentation model checkpoints every
            level), or of those in the trees flagged (one flag per tree,
            levels 2-5). Default: False.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        pretrained (str, optional): Deprecated, use ``init_cfg``; accepted
            because mmseg's ``EncoderDecoder`` may pass it. Default: None.
        init_cfg (dict | list[dict], optional): Initialization config. The
            default is the official DLA init: conv weights ~ N(0,
            sqrt(2 / (k * k * out_channels))), norm weight 1 and bias 0.

    Example:
        >>> import torch
        >>> from mmelastic.models import ElasticDLA
        >>> model = ElasticDLA(arch='dla60x_elastic',
        ...                    out_indices=(0, 1, 2, 3, 4, 5))
        >>> _ = model.eval()
        >>> outputs = model(torch.rand(1, 3, 224, 224))
        >>> for out in outputs:
        ...     print(tuple(out.shape))
        (1, 16, 224, 224)
        (1, 32, 112, 112)
        (1, 128, 56, 56)
        (1, 256, 28, 28)
        (1, 512, 14, 14)
        (1, 1024, 7, 7)
    """

    #: ``levels``: conv count of levels 0-1 and tree depth of levels 2-5.
    arch_settings = {
        'dla60x':
        dict(levels=(1, 1, 1, 2, 3, 1), cardinality=32, elastic=False),
        'dla60x_elastic':
        dict(levels=(1, 1, 1, 2, 3, 1), cardinality=32, elastic=True),
        'dla102x':
        dict(
            levels=(1, 1, 1, 3, 4, 1),
            cardinality=32,
            residual_root=True,
            elastic=False),
        # sElastic (paper Table 8/9): the DLA-X102 layout, elastic blocks.
        'dla102x_selastic':
        dict(
            levels=(1, 1, 1, 3, 4, 1),
            cardinality=32,
            residual_root=True,
            elastic=True),
        # Paper Table 9 "Split50+Elastic": deeper level2, 50 groups.
        'dla102x_elastic':
        dict(
            levels=(1, 1, 3, 3, 3, 1),
            cardinality=50,
            residual_root=True,
            elastic=True),
    }
    # Paper Appendix A: "DLA-X60+sElastic ... is equivalent to
    # DLA-X60+Elastic": the same layout, so one setting under two names.
    arch_settings['dla60x_selastic'] = arch_settings['dla60x_elastic']

    default_channels = (16, 32, 128, 256, 512, 1024)

    def __init__(self,
                 arch='dla60x_elastic',
                 cardinality=None,
                 channels=None,
                 elastic=None,
                 high_ratio=None,
                 resample='bilinear',
                 in_channels=3,
                 out_indices=(5, ),
                 frozen_stages=-1,
                 norm_eval=False,
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 pretrained=None,
                 init_cfg=kaiming_init_cfg('fan_out')):
        init_cfg = pretrained_init_cfg('ElasticDLA', pretrained, init_cfg)
        super().__init__(init_cfg)
        setting = self._resolve_arch(arch)
        self.levels = tuple(setting['levels'])
        if channels is None:
            channels = setting.get('channels', self.default_channels)
        self.channels = tuple(channels)
        self.cardinality = cardinality if cardinality is not None else \
            setting.get('cardinality', 32)
        self.residual_root = setting.get('residual_root', False)
        if len(self.levels) != 6 or len(self.channels) != 6:
            raise ValueError(
                'DLA needs 6 levels and 6 channels (level0-level5), got '
                f'levels={self.levels} and channels={self.channels}')
        if elastic is None:
            elastic = setting.get('elastic', True)
        # Official rule: the last tree (7x7 at 224) is never elastic.
        self.elastic_levels = stage_flags(elastic, 4, 'elastic',
                                          'tree of levels 2-5', last=False)
        self.cp_levels = stage_flags(with_cp, 4, 'with_cp',
                                     'tree of levels 2-5')
        if high_ratio is None:
            high_ratio = 0.5 if any(self.elastic_levels) else 1.0
        self.high_ratio = high_ratio
        self.resample = resample
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(i + 6 if i < 0 else i for i in out_indices)
        if not out_indices or any(not 0 <= i <= 5 for i in out_indices):
            raise ValueError(f'out_indices must be level indices in [-6, 5], '
                             f'got {out_indices}')
        self.out_indices = out_indices
        if not -1 <= frozen_stages <= 5:
            raise ValueError('frozen_stages must be in [-1, 5] (the last '
                             f'frozen level), got {frozen_stages}')
        self.frozen_stages = frozen_stages

        ch = self.channels
        self.base_layer = self._make_conv_level(in_channels, ch[0], 1, 7)
        self.level0 = self._make_conv_level(ch[0], ch[0], self.levels[0])
        self.level1 = self._make_conv_level(
            ch[0], ch[1], self.levels[1], stride=2)
        for i in range(2, 6):
            self.add_module(
                f'level{i}',
                DLATree(
                    self.levels[i],
                    ch[i - 1],
                    ch[i],
                    make_block=self._block_factory(
                        self.elastic_levels[i - 2], self.cp_levels[i - 2]),
                    stride=2,
                    # level2 does not aggregate its pooled input.
                    level_root=i > 2,
                    root_residual=self.residual_root,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg))
        self._freeze_stages()

    def _resolve_arch(self, arch):
        return resolve_arch(
            'ElasticDLA', self.arch_settings, arch, 'levels',
            '6 ints: convs of level0-1, tree depths of level2-5')

    def _make_conv_level(self,
                         in_channels,
                         out_channels,
                         convs,
                         kernel=3,
                         stride=1):
        # Keys as the official nn.Sequential: conv at 3i, norm at 3i + 1.
        modules = []
        for i in range(convs):
            modules += [
                build_conv_layer(
                    self.conv_cfg,
                    in_channels,
                    out_channels,
                    kernel,
                    stride=stride if i == 0 else 1,
                    padding=kernel // 2,
                    bias=False),
                build_norm_layer(self.norm_cfg, out_channels)[1],
                nn.ReLU(inplace=True)
            ]
            in_channels = out_channels
        return nn.Sequential(*modules)

    def _block_factory(self, elastic_tree, with_cp):

        def make_block(in_channels, out_channels, stride):
            mid_channels = out_channels * self.cardinality
            if mid_channels % CARDINALITY_BASE:
                raise ValueError(
                    f'bottleneck width {out_channels} * cardinality '
                    f'{self.cardinality} / {CARDINALITY_BASE} is not an '
                    'integer; choose channels or cardinality so it is')
            return ElasticBottleneck(
                in_channels,
                out_channels,
                mid_channels=mid_channels // CARDINALITY_BASE,
                groups=self.cardinality,
                stride=stride,
                # The low branch is resized back to the input size, so only
                # stride-1 blocks can be elastic (official rule).
                elastic=elastic_tree and stride == 1,
                high_ratio=self.high_ratio,
                resample=self.resample,
                with_cp=with_cp,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg)

        return make_block

    def forward(self, x):
        outs = []
        x = self.base_layer(x)
        for i in range(6):
            x = getattr(self, f'level{i}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        levels = [f'level{i}' for i in range(self.frozen_stages + 1)]
        for name in ['base_layer'] + levels:
            module = getattr(self, name)
            module.eval()
            for param in module.parameters():
                param.requires_grad = False
