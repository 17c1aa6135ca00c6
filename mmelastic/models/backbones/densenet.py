# Copyright (c) mmelastic contributors. All rights reserved.
"""DenseNet-BC and DenseNet+Elastic (ELASTIC, CVPR 2019, Table 11).

The Elastic dense layer parallelises the bottleneck of a DenseNet layer into
two branches and runs one of them at half resolution (paper Figure 3,
right; allenai/elastic ``models/densenet.py``):

.. code-block:: none

    cat(prev) → norm1 → ReLU ─┬─ 1x1 (→64) → norm2 → ReLU → 3x3 (→32) ─┐
                              │                            [dropout]   │
                              └─ down → 1x1 (→64) → norm2 → ReLU      (+)
                                        → 3x3 (→32) → up ──────────────┘

The low branch is resampled by the shared
:class:`~mmelastic.models.utils.Resample2x` (2x2 average pool / bilinear x2,
replicate-padded and cropped for odd sizes, so any input size works).
"""
import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from mmpretrain.models.backbones.densenet import DenseTransition
from torch.nn.modules.batchnorm import _BatchNorm

from mmelastic.registry import register
from ..utils import (ElasticBackboneMixin, Resample2x, fast_path,
                     fast_path_enabled, kaiming_init_cfg, resolve_arch,
                     stage_flags)
from ..utils.fast_ops import (add, can_merge_dense_branches,
                              can_recompute_down, down_conv1,
                              merged_dense_conv1, merged_dense_exit)


@contextmanager
def _running_stats_frozen(norm):
    """Run ``norm`` in training mode without updating its running stats.

    Memory-efficient layers run their bottleneck twice per step (forward and
    the recomputation in backward); the second run must not count the batch
    again, or the running statistics would differ from the plain mode.
    """
    if not (isinstance(norm, _BatchNorm) and norm.training
            and norm.track_running_stats):
        yield
        return
    momentum, tracked = norm.momentum, norm.num_batches_tracked.clone()
    norm.momentum = 0.  # running = 1 * running + 0 * batch statistic
    try:
        yield
    finally:
        norm.momentum = momentum
        norm.num_batches_tracked.copy_(tracked)


class DenseBranch(BaseModule):
    """One path of a dense layer's bottleneck: 1x1 → norm → ReLU → 3x3.

    The input is the layer's shared pre-activation. With a ``resample``
    module the path runs at half resolution: ``up(path(down(x)))``. It is
    split into :meth:`enter` (resampling + 1x1) and :meth:`exit` so that a
    memory-efficient layer can recompute only the part that reads the large
    concatenated input.

    Args:
        in_channels (int): Input channels (all previous features).
        mid_channels (int): Width of the 1x1 conv.
        growth_rate (int): Output channels of the 3x3 conv.
        resample (Resample2x, optional): Down/up resampling; None keeps the
            path at full resolution. Default: None.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.
    """

    def __init__(self,
                 in_channels,
                 mid_channels,
                 growth_rate,
                 resample=None,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        self.resample = resample
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, mid_channels, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.act2 = nn.ReLU(inplace=True)
        dilation = 1 if resample is None else resample.conv_dilation
        self.conv2 = build_conv_layer(
            conv_cfg,
            mid_channels,
            growth_rate,
            3,
            padding=dilation,
            dilation=dilation,
            bias=False)

    def enter(self, x):
        """Resample down (if any) and apply the 1x1 conv."""
        if fast_path_enabled() and can_recompute_down(self):
            return down_conv1(self, x)  # conv1(down(x)), less memory
        if self.resample is not None:
            x = self.resample.down(x)
        return self.conv1(x)

    def exit(self, x, size):
        """norm → ReLU → 3x3, then resample up to the spatial ``size``."""
        out = self.conv2(self.act2(self.norm2(x)))
        if self.resample is not None:
            out = self.resample.up(out, size)
        return out

    def forward(self, x):
        return self.exit(self.enter(x), x.shape[-2:])


class ElasticDenseLayer(BaseModule):
    """DenseNet-BC layer with an optional low-resolution branch (ELASTIC).

    The bottleneck of ``bn_size * growth_rate`` channels is split into a
    high- and a low-resolution :class:`DenseBranch` (``high_ratio`` of the
    width at high resolution); both read the shared pre-activation
    ``relu(norm1(cat(previous)))`` and their ``growth_rate``-channel outputs
    are summed. Because the 3x3 convs are summed, a non-elastic two-branch
    layer equals one plain layer with the concatenated 1x1 weights and the
    3x3 weights concatenated along their input channels. With
    ``high_ratio=1.0`` the layer is a plain DenseNet-BC layer.

    Whether a layer is elastic is a constructor argument (decided by the
    network's structure), never a test of the feature-map size.

    Args:
        in_channels (int): Channels of all previous features together.
        growth_rate (int): New channels per layer. Default: 32.
        bn_size (int): Bottleneck width as a multiple of ``growth_rate``.
            Default: 4.
        elastic (bool): Resample the low branch. Default: True.
        high_ratio (float): Fraction of the bottleneck width at high
            resolution, in (0, 1]. Default: 0.5.
        resample (str): Resampling mode, see
            :class:`~mmelastic.models.utils.Resample2x`. Default: 'bilinear'.
        drop_rate (float): Dropout after the high branch (the official code
            applies none to the low branch). Default: 0.
        memory_efficient (bool): Recompute the concatenation, ``norm1`` and
            the 1x1 convs in backward instead of storing them (gradient
            checkpointing, as mmpretrain's DenseNet). Same outputs, gradients
            and running statistics. Default: False.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict, optional): Initialization config. Default: None.

    Example:
        >>> import torch
        >>> layer = ElasticDenseLayer(64, growth_rate=32)
        >>> new = layer([torch.rand(1, 48, 15, 15), torch.rand(1, 16, 15, 15)])
        >>> tuple(new.shape)
        (1, 32, 15, 15)
    """

    def __init__(self,
                 in_channels,
                 growth_rate=32,
                 bn_size=4,
                 elastic=True,
                 high_ratio=0.5,
                 resample='bilinear',
                 drop_rate=0.,
                 memory_efficient=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        mid_channels = bn_size * growth_rate
        if not 0 < high_ratio <= 1:
            raise ValueError(f'high_ratio must be in (0, 1], got {high_ratio}')
        high_mid = high_ratio * mid_channels
        if not math.isclose(high_mid, round(high_mid)):
            raise ValueError(
                f'high_ratio={high_ratio} does not split the {mid_channels}'
                '-channel bottleneck into whole channels; choose r with '
                'r * bn_size * growth_rate an integer')
        high_mid = round(high_mid)
        low_mid = mid_channels - high_mid
        self.in_channels = in_channels
        self.elastic = elastic and low_mid > 0
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.act1 = nn.ReLU(inplace=True)
        branch = dict(
            in_channels=in_channels,
            growth_rate=growth_rate,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg)
        self.high = DenseBranch(mid_channels=high_mid, **branch)
        self.low = None
        if low_mid > 0:
            self.low = DenseBranch(
                mid_channels=low_mid,
                resample=Resample2x(resample, in_channels, growth_rate)
                if self.elastic else None,
                **branch)

    def scale_policy_modules(self):
        """The modules whose outputs define the scale-policy score.

        ELASTIC (Sec. 4.1.1) scores a layer by ``S = A_high - A_low``, the
        mean activations of the high- and low-resolution branches. A dense
        layer has no ReLU after its 3x3 conv (its output is concatenated and
        pre-activated by the next layers), and adding one as a hook point
        would change the output. These are therefore the two 3x3 convs: a
        scale-policy tool must average ``relu(output)`` of each (the low one
        at half resolution, before upsampling).

        Returns:
            tuple[nn.Module, nn.Module] | None: ``(high.conv2, low.conv2)``,
            or None for a layer that is not elastic.
        """
        if not self.elastic:
            return None
        return self.high.conv2, self.low.conv2

    def bottleneck(self, inputs, merged=False):
        """concat → norm1 → ReLU → each branch's (resampling and) 1x1.

        With ``merged`` (the fast path of a non-elastic two-branch layer)
        both 1x1 convs run as one and a single tensor of both branches'
        channels is returned.
        """
        x = self.act1(self.norm1(torch.cat(inputs, 1)))
        if merged:
            return (merged_dense_conv1(self.high, self.low, x), )
        outs = (self.high.enter(x), )
        if self.low is not None:
            outs += (self.low.enter(x), )
        return outs

    def _checkpointed_bottleneck(self, inputs, merged):
        calls = []
        # The recomputation in backward must take the forward's path even
        # if the fast path was switched in between.
        fast = fast_path_enabled()

        def closure(*xs):
            calls.append(None)
            with fast_path(fast):
                if len(calls) == 1:  # the forward pass
                    return self.bottleneck(xs, merged)
                with _running_stats_frozen(self.norm1):  # the recomputation
                    return self.bottleneck(xs, merged)

        return cp.checkpoint(closure, *inputs, use_reentrant=False)

    def _can_merge(self):
        # The fast path (fast_ops.py) runs the two full-resolution branches
        # of a non-elastic layer as one; dropout, which the official layer
        # applies to the high branch only, keeps them apart in training.
        return not self.elastic and \
            (self.drop_rate == 0 or not self.training) and \
            can_merge_dense_branches(self.high, self.low)

    def forward(self, inputs):
        """Forward.

        Args:
            inputs (list[Tensor]): The block input and every earlier layer's
                new features, all of the same spatial size.

        Returns:
            Tensor: ``growth_rate`` new feature channels.
        """
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        fast = fast_path_enabled()
        merged = fast and self._can_merge()
        if self.memory_efficient and any(t.requires_grad for t in inputs):
            mids = self._checkpointed_bottleneck(inputs, merged)
        else:
            mids = self.bottleneck(inputs, merged)
        if merged:
            return merged_dense_exit(self.high, self.low, mids[0])
        size = inputs[0].shape[-2:]
        out = self.high.exit(mids[0], size)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        if self.low is not None:
            low = self.low.exit(mids[1], size)
            # In place on the fast path: neither the conv nor the dropout
            # that made ``out`` saves it for backward.
            out = add(out, low, fast)
        return out


class ElasticDenseBlock(BaseModule):
    """A dense block of :class:`ElasticDenseLayer` (keys as mmpretrain's).

    Args:
        num_layers (int): Number of layers.
        in_channels (int): Input channels of the block.
        **layer_kwargs: Passed to every layer.
    """

    def __init__(self, num_layers, in_channels, growth_rate, **layer_kwargs):
        super().__init__()
        self.block = nn.ModuleList([
            ElasticDenseLayer(
                in_channels + i * growth_rate,
                growth_rate=growth_rate,
                **layer_kwargs) for i in range(num_layers)
        ])

    def forward(self, x):
        features = [x]
        for layer in self.block:
            features.append(layer(features))
        return torch.cat(features, 1)


@register('model')
class ElasticDenseNet(ElasticBackboneMixin, BaseBackbone):
    """DenseNet-BC and DenseNet+Elastic (ELASTIC, CVPR 2019).

    Implements DenseNet201 and DenseNet201+Elastic of `ELASTIC: Improving
    CNNs with Instance Specific Scaling Policies
    <https://arxiv.org/abs/1812.05262>`_ (Table 11), as in allenai/elastic
    ``models/densenet.py``: DenseNet-BC with growth rate 32, bottleneck
    ``bn_size=4``, compression 0.5 and a 64-channel 7x7 stem. The elastic
    model uses :class:`ElasticDenseLayer` in dense blocks 1-3; its last block
    keeps the two-branch layout at full resolution, as the official model
    (whose 224-px run skips the resampling at 7x7). Which blocks are elastic
    is fixed by the architecture, so every input size of 32 px or more works
    and computes the same model.

    The layout and outputs follow mmpretrain's
    :class:`~mmpretrain.models.backbones.DenseNet`: ``stem``, ``stages``
    (dense blocks) and ``transitions``; output ``i`` is taken after
    ``transitions[i]`` (the last one is the final norm + ReLU).

    Args:
        arch (str | dict): One of :attr:`arch_settings`' keys, or a dict with
            ``depths`` and optionally ``growth_rate``, ``init_channels`` and
            ``elastic``. Default: 'densenet201_elastic'.
        in_channels (int): Input image channels. Default: 3.
        bn_size (int): Bottleneck width as a multiple of the growth rate.
            Default: 4.
        drop_rate (float): Dropout after each layer's high branch.
            Default: 0.
        compression_factor (float): Channel reduction of the transitions.
            Default: 0.5.
        elastic (bool | Sequence[bool], optional): Which dense blocks are
            elastic, overriding the arch; a bool means "every block but the
            last". Default: None.
        high_ratio (float, optional): Fraction of each layer's bottleneck at
            high resolution. Default: 0.5 for elastic archs, 1.0 (plain
            single-branch layers) for the baselines.
        resample (str): Resampling of the low branch, see
            :class:`~mmelastic.models.utils.Resample2x`. Default: 'bilinear'.
        memory_efficient (bool | Sequence[bool]): Checkpoint every layer's
            concatenation, ``norm1`` and 1x1 convs (much less memory,
            slower), in every dense block or in those flagged (one flag per
            block). Default: False.
        out_indices (Sequence[int] | int): Stages to output; negative values
            count from the end. Default: -1.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages``
            stages with their transitions (mmpretrain's DenseNet leaves the
            stem trainable; freezing a stage but not its input makes little
            sense). 0 freezes nothing. Default: 0.
        norm_eval (bool): Keep every norm layer in eval mode while training.
            Default: False.
        conv_cfg (dict, optional): Conv layer config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        init_cfg (dict | list[dict], optional): Initialization config. The
            default is the official init: conv weights ~ N(0,
            sqrt(2 / (k * k * out_channels))), norm weight 1 and bias 0.

    Example:
        >>> import torch
        >>> from mmelastic.models import ElasticDenseNet
        >>> model = ElasticDenseNet(arch='densenet201_elastic',
        ...                         out_indices=(0, 1, 2, 3))
        >>> _ = model.eval()
        >>> outputs = model(torch.rand(1, 3, 224, 224))
        >>> for out in outputs:
        ...     print(tuple(out.shape))
        (1, 192, 28, 28)
        (1, 416, 14, 14)
        (1, 848, 7, 7)
        (1, 1808, 7, 7)
    """

    arch_settings = {
        'densenet201':
        dict(
            growth_rate=32,
            depths=(6, 12, 48, 32),
            init_channels=64,
            elastic=False),
        # Paper Table 11: more layers at high resolution, two resolutions in
        # every layer of blocks 1-3.
        'densenet201_elastic':
        dict(
            growth_rate=32,
            depths=(10, 20, 40, 30),
            init_channels=64,
            elastic=True),
    }

    def __init__(self,
                 arch='densenet201_elastic',
                 in_channels=3,
                 bn_size=4,
                 drop_rate=0.,
                 compression_factor=0.5,
                 elastic=None,
                 high_ratio=None,
                 resample='bilinear',
                 memory_efficient=False,
                 out_indices=-1,
                 frozen_stages=0,
                 norm_eval=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 init_cfg=kaiming_init_cfg('fan_out')):
        super().__init__(init_cfg)
        setting = resolve_arch('ElasticDenseNet', self.arch_settings, arch,
                               'depths', 'layers per dense block')
        self.depths = tuple(setting['depths'])
        self.growth_rate = setting.get('growth_rate', 32)
        self.init_channels = setting.get('init_channels', 64)
        self.num_stages = len(self.depths)
        if elastic is None:
            elastic = setting.get('elastic', True)
        # Official model: the last (7x7 at 224) block is not elastic.
        self.elastic_stages = stage_flags(
            elastic, self.num_stages, 'elastic', 'dense block', last=False)
        self.memory_efficient_stages = stage_flags(
            memory_efficient, self.num_stages, 'memory_efficient',
            'dense block')
        if high_ratio is None:
            high_ratio = 0.5 if any(self.elastic_stages) else 1.0
        self.high_ratio = high_ratio
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(i + self.num_stages if i < 0 else i
                            for i in out_indices)
        if not out_indices or any(not 0 <= i < self.num_stages
                                  for i in out_indices):
            raise ValueError(
                f'out_indices must be stage indices in [-{self.num_stages}, '
                f'{self.num_stages - 1}], got {out_indices}')
        self.out_indices = out_indices
        if not 0 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [0, '
                             f'{self.num_stages}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.stem = nn.Sequential(
            build_conv_layer(
                conv_cfg,
                in_channels,
                self.init_channels,
                7,
                stride=2,
                padding=3,
                bias=False),
            build_norm_layer(norm_cfg, self.init_channels)[1],
            nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        channels = self.init_channels
        act_cfg = dict(type='ReLU')
        for i, depth in enumerate(self.depths):
            self.stages.append(
                ElasticDenseBlock(
                    depth,
                    channels,
                    growth_rate=self.growth_rate,
                    bn_size=bn_size,
                    elastic=self.elastic_stages[i],
                    high_ratio=high_ratio,
                    resample=resample,
                    drop_rate=drop_rate,
                    memory_efficient=self.memory_efficient_stages[i],
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg))
            channels += depth * self.growth_rate
            if i < self.num_stages - 1:
                out_channels = math.floor(channels * compression_factor)
                self.transitions.append(
                    DenseTransition(channels, out_channels, norm_cfg, act_cfg))
                channels = out_channels
            else:
                # The official final norm ("norm_final") and the ReLU before
                # global pooling, as mmpretrain's last "transition".
                self.transitions.append(
                    nn.Sequential(
                        build_norm_layer(norm_cfg, channels)[1],
                        nn.ReLU(inplace=True)))
        self.out_channels = channels
        self._freeze_stages()

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i in range(self.num_stages):
            x = self.transitions[i](self.stages[i](x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages <= 0:
            return
        modules = [self.stem] + [
            m for i in range(self.frozen_stages)
            for m in (self.stages[i], self.transitions[i])
        ]
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    # Dense layers are the blocks here.
    elastic_layers = ElasticBackboneMixin.elastic_blocks
