# Copyright (c) mmelastic contributors. All rights reserved.
"""The resampling unit of an Elastic branch: a 2x down/up pair.

ELASTIC (Wang et al., CVPR 2019, Sec. 3.2) runs part of every block at half
resolution: ``up(T(down(x)))``. The default pair reproduces the official
code exactly, including its handling of odd sizes, so that converted
checkpoints compute the same numbers:

* down: 2x2 average pooling with stride 2; when H or W is odd the input is
  first replicate-padded by one pixel at the bottom/right;
* up: bilinear x2 with ``align_corners=False``, then cropped back to the
  input's exact size.

The other modes are the upsampling/downsampling ablation of the paper
(Table 6). The paper names them without defining them; our reading, chosen
so that the FLOPs column of Table 6 comes out as printed (3.2B for methods
that run at half resolution, 3.6B = the original model for the dilated
ones):

* ``'bilinear'`` -- "Bilinear w/ AP": average pool down, bilinear up (default).
* ``'nearest'`` -- "Nearest w/ AP": average pool down, nearest-neighbour up.
* ``'trained'`` -- "Trained Filter": a learned depthwise 2x2 stride-2 conv
  down (initialised to the average pool) and a learned depthwise 4x4
  stride-2 transposed conv up (initialised to bilinear). Half resolution.
* ``'trained_dilated'`` -- "Trained Dilated Filter": no resampling at all; the
  branch stays at full resolution and its 3x3 conv uses dilation 2, i.e. a
  trained filter with the receptive field of the half-resolution branch.
* ``'trained_dilated_ap'`` -- "Trained Dilated Filter w/ AP": the same, after
  a stride-1 2x2 average pool (the anti-aliasing part of the pool, without
  the subsampling).
"""
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fast_ops as fp

RESAMPLE_MODES = ('bilinear', 'nearest', 'trained', 'trained_dilated',
                  'trained_dilated_ap')


#: Set while exporting free sizes that are multiples of 32 (see
#: :func:`even_free_sizes`).
_EVEN_FREE_SIZES = False


@contextlib.contextmanager
def even_free_sizes():
    """Trace free sizes as even ones (exports in multiples of 32).

    Traced for a graph with a free height or width, the Elastic blocks pad
    and crop every map, since its parity is not known (see
    :func:`pad_to_even`). When the input's sizes are multiples of 32, every
    map an Elastic block sees is even, and inside this context they are
    traced as such: no padding or cropping, which ONNX Runtime runs much
    faster. The exporter (:func:`mmelastic.deployment.onnx.export_onnx`)
    declares the sizes as multiples, so ``torch.export`` proves the
    parities rather than assuming them.
    """
    global _EVEN_FREE_SIZES
    before, _EVEN_FREE_SIZES = _EVEN_FREE_SIZES, True
    try:
        yield
    finally:
        _EVEN_FREE_SIZES = before


def _free_parity(x):
    """bool: Whether ``x`` is traced for an exported graph in which its
    height or width may be odd or even (free sizes, outside
    :func:`even_free_sizes`)."""
    return (not _EVEN_FREE_SIZES and torch.compiler.is_exporting()
            and any(isinstance(size, torch.SymInt)
                    for size in x.shape[-2:]))


def pad_to_even(x):
    """Replicate-pad 1 px at the bottom/right of odd spatial dims.

    This is what the official code does before its 2x2 average pool (or the
    learned 2x2 stride-2 conv), so that no row or column is dropped and odd
    sizes round up.

    Exported with a free height or width whose parity is not known, every
    map is padded instead: the 2x2 windows that follow never reach the
    extra row or column of an even size, so the result is the same, and the
    graph does not branch on the parity (it would otherwise compute the
    traced size's parity at every size). The average pool does without the
    pad there, see :func:`avg_pool_2x`.
    """
    if _free_parity(x):
        return F.pad(x, (0, 1, 0, 1), mode='replicate')
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), mode='replicate')
    return x


def avg_pool_2x(x):
    """The 2x2 stride-2 average pool of :func:`pad_to_even`'s output.

    Exported with a free height or width whose parity is not known, it is
    one ceil-mode pool that averages the pixels each window covers: on an
    odd edge the window holds a pixel and its replicated copy, so the mean
    is the same, without a padded copy of the map.
    """
    if _free_parity(x):
        return F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
    return F.avg_pool2d(pad_to_even(x), 2, 2)


def crop_to(x, size):
    """Crop the bottom/right of ``x`` to the spatial ``size`` (always, in a
    graph exported with free sizes of unknown parity; see
    :func:`pad_to_even`)."""
    if _free_parity(x) or x.shape[-2] != size[0] or x.shape[-1] != size[1]:
        x = x[..., :size[0], :size[1]]
    return x


class Resample2x(nn.Module):
    """A 2x down/up resampling pair for the low-resolution Elastic branch.

    Args:
        mode (str): One of :data:`RESAMPLE_MODES`. Default: 'bilinear'.
        in_channels (int, optional): Channels entering the branch; needed by
            the learned downsampler of ``mode='trained'``.
        out_channels (int, optional): Channels leaving the branch; needed by
            the learned upsampler of ``mode='trained'``.

    Attributes:
        conv_dilation (int): Dilation factor the branch applies to its 3x3
            conv (2 for the dilated modes, which stay at full resolution).

    Example:
        >>> import torch
        >>> resample = Resample2x()
        >>> x = torch.rand(1, 8, 15, 10)
        >>> low = resample.down(x)
        >>> tuple(low.shape)
        (1, 8, 8, 5)
        >>> tuple(resample.up(low, x.shape[-2:]).shape)
        (1, 8, 15, 10)
    """

    def __init__(self, mode='bilinear', in_channels=None, out_channels=None):
        super().__init__()
        if mode not in RESAMPLE_MODES:
            raise ValueError(f'unknown Elastic resample mode {mode!r}; '
                             f'choose one of {RESAMPLE_MODES}')
        self.mode = mode
        self.conv_dilation = 2 if mode.startswith('trained_dilated') else 1
        if mode == 'trained':
            if in_channels is None or out_channels is None:
                raise ValueError("mode='trained' needs in_channels and "
                                 'out_channels for its learned filters')
            self.down_conv = nn.Conv2d(
                in_channels, in_channels, 2, stride=2, groups=in_channels,
                bias=False)
            self.up_conv = nn.ConvTranspose2d(
                out_channels, out_channels, 4, stride=2, padding=1,
                groups=out_channels, bias=False)
            self.reset_trained_filters()

    @property
    def halves_resolution(self):
        """bool: Whether the branch really runs at half resolution."""
        return self.conv_dilation == 1

    def reset_trained_filters(self):
        """Initialise the learned filters to average pooling and bilinear
        upsampling, so training starts from the default Elastic block."""
        with torch.no_grad():
            self.down_conv.weight.fill_(0.25)
            k = self.up_conv.weight.shape[-1]
            factor = (k + 1) // 2
            center = factor - 1 if k % 2 == 1 else factor - 0.5
            og = torch.arange(k, dtype=torch.float32)
            filt = 1 - (og - center).abs() / factor
            self.up_conv.weight.copy_((filt[:, None] * filt[None, :]).expand_as(
                self.up_conv.weight))

    def init_weights(self):
        # Called by BaseModule.init_weights: keep the resampling filters out
        # of the generic Kaiming init of the backbone.
        if self.mode == 'trained':
            self.reset_trained_filters()

    def down(self, x):
        """Resample the branch input (half resolution unless dilated)."""
        if self.mode in ('bilinear', 'nearest'):
            if fp.fast_path_enabled():
                return fp.avg_pool_2x(pad_to_even(x))
            return avg_pool_2x(x)
        if self.mode == 'trained':
            return self.down_conv(pad_to_even(x))
        if self.mode == 'trained_dilated_ap':
            # Stride-1 2x2 average: pad 1 px bottom/right to keep the size.
            return F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode='replicate'), 2, 1)
        return x  # 'trained_dilated'

    def up(self, x, size):
        """Resample the branch output back to the spatial ``size``."""
        if self.mode in ('bilinear', 'nearest') and fp.fast_path_enabled():
            up = fp.bilinear_up_2x if self.mode == 'bilinear' else \
                fp.nearest_up_2x
            x = up(x)
        elif self.mode == 'bilinear':
            x = F.interpolate(
                x, scale_factor=2, mode='bilinear', align_corners=False)
        elif self.mode == 'nearest':
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        elif self.mode == 'trained':
            x = self.up_conv(x)
        else:
            return x
        return crop_to(x, size)

    def extra_repr(self):
        return f'mode={self.mode!r}'


def split_channels(channels, groups, high_ratio):
    """Split a grouped bottleneck into a high- and a low-resolution part.

    Whole groups move between the branches, so each group keeps its width.

    Args:
        channels (int): Total bottleneck width of the block.
        groups (int): Total number of groups of the 3x3 conv.
        high_ratio (float): Fraction of the groups at high resolution, in
            (0, 1]. 0.5 is the paper's default; Table 7 also uses 1.0, 0.75
            and 0.25.

    Returns:
        tuple: ``((high_channels, high_groups), (low_channels, low_groups))``;
        the low part is ``(0, 0)`` when ``high_ratio == 1``.
    """
    if not 0 < high_ratio <= 1:
        raise ValueError(f'high_ratio must be in (0, 1], got {high_ratio}')
    if channels % groups:
        raise ValueError(f'bottleneck width {channels} is not divisible by '
                         f'its {groups} groups')
    high_groups = high_ratio * groups
    if not math.isclose(high_groups, round(high_groups)) or \
            round(high_groups) < 1:
        raise ValueError(
            f'high_ratio={high_ratio} does not split {groups} groups into '
            'whole groups; choose a ratio r with r * groups an integer >= 1')
    high_groups = round(high_groups)
    width = channels // groups
    low_groups = groups - high_groups
    return (high_groups * width, high_groups), (low_groups * width, low_groups)
