# Copyright (c) mmelastic contributors. All rights reserved.
"""The fast path of the Elastic blocks: every speed-only rewrite, in one place.

ELASTIC's promise is "no extra computation", but on a CPU in PyTorch's
default (NCHW) memory format the straightforward block loses much of it to
kernels that are slow there, not to arithmetic. Everything in this module
computes what the straightforward path computes -- within 1e-5 in float32
for the same weights, checked by ``tests/test_models/test_fast_path.py`` --
only faster. The straightforward path stays the readable definition
(:meth:`Resample2x.down` / :meth:`Resample2x.up` and
:meth:`BottleneckBranch.forward`); switch this module off with
:func:`fast_path` to run it:

.. code-block:: python

    from mmelastic.models.utils import fast_path
    with fast_path(False):
        reference = model(inputs)

What is here and why (``tools/analysis/benchmark.py`` measures it):

* :func:`avg_pool_2x` -- ATen's NCHW ``avg_pool2d`` is ~4x slower on a CPU
  than the same 2x2/2 average written as a depthwise convolution with weights
  1/4 (oneDNN), which gives bit-identical results. Channels-last tensors
  keep ``avg_pool2d`` (its channels-last kernel is the fast one) in eager
  mode, and so do tensors on a GPU, where the convolutions were never
  measured (see :func:`uses_aten_resampling`).
* :func:`bilinear_up_2x` -- ATen's NCHW bilinear upsampling is ~10x slower
  on a CPU than its channels-last kernel. A bilinear x2 with
  ``align_corners=False`` is a depthwise transposed convolution with the
  4x4 kernel ``k k^T``, ``k = (1/4, 3/4, 3/4, 1/4)``, once the input is
  replicate-padded by one pixel (which reproduces the border clamping);
  the result differs from ``F.interpolate`` only by float rounding.
* :func:`nearest_up_2x` -- likewise a depthwise transposed convolution with
  a 2x2 kernel of ones (exact). Both upsamplings stay ATen's for bfloat16
  (CPU autocast), where the transposed convolution is slow
  (:func:`uses_aten_upsampling`). The pool's backward is its own
  (a quarter of the gradient to every pixel of its cell), not the
  convolution's.
* :func:`fused_branches` -- in an elastic block on NCHW input (any input
  under ``torch.compile``), the low
  branch's upsampling is moved before its (linear, bias-free) 1x1 conv3, so
  it runs on 4x fewer channels, and both conv3 become one conv.
* :func:`merged_branches` -- a non-elastic block runs its two branches as
  the one grouped bottleneck they are, except on small maps
  (:func:`merging_pays_off`).
* :func:`merged_dense_conv1` / :func:`merged_dense_exit` -- the same for
  the two full-resolution branches of a non-elastic dense layer
  (DenseNet+Elastic's last dense block).
* :func:`down_conv1` -- in training, a low branch's conv1 does not keep
  its pooled input for the backward pass; the pool runs again there.
* :func:`conv_of_parts` -- in training, the merged convs keep their weight
  parts, not a concatenated copy, for the backward pass.
* In-place residual sums (in :class:`ElasticBottleneck`) and branch sums
  (in :class:`ElasticDenseLayer`), by :func:`add`.

``torch.compile`` traces the fast path for training, not for inference (see
:func:`fast_path_enabled`). While it traces, the three resampling functions
are written as strided slices and sums instead
(:func:`_avg_pool_2x_elementwise` and the two after it), which Inductor
fuses into its own kernels.
"""
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

_state = dict(enabled=True)


def fast_path_enabled():
    """bool: Whether the Elastic blocks use the fast path (default True).

    While ``torch.compile`` traces, it is used where gradients are on
    (training) and not in inference. Inductor fuses the straightforward
    forward resampling into its own element-wise kernels, which beat the
    fast path's convolutions (ResNeXt50+Elastic compiled inference: 0.89x
    against 0.73x of mmpretrain's ResNeXt50 with the fast path), while
    compiled training is faster with the fast path (0.77x against 0.51x),
    whose backward passes are convolutions or element-wise too. Two parts
    change while it traces: the resampling is written element-wise for
    Inductor to fuse (:func:`avg_pool_2x`), and :func:`fused_branches` uses
    plain autograd.

    It is off while a model is exported, by ``torch.export`` (and so
    ``torch.onnx.export``) or by ``torch.onnx.export``'s TorchScript
    exporter (``dynamo=False``, which mmdeploy uses): an exported graph
    runs in another runtime, which fuses standard pooling and ``Resize``
    ops its own way, and the fast path's rewrites would reach it as slower
    ops (ResNeXt50+Elastic in ONNX Runtime, docs/performance.md), or, with
    gradients on, not export at all (its custom autograd functions).
    """
    if torch.compiler.is_exporting() or (
            # The TorchScript exporter traces; is_in_onnx_export() alone
            # costs ~0.9 us (two imports) on every call.
            torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()):
        return False
    if torch.compiler.is_compiling():
        return _state['enabled'] and torch.is_grad_enabled()
    return _state['enabled']


@contextmanager
def fast_path(enabled=True):
    """Turn the fast path on or off inside a ``with`` block.

    Args:
        enabled (bool): False runs the straightforward path (the readable
            reference the fast path is tested against).
    """
    previous = _state['enabled']
    _state['enabled'] = bool(enabled)
    try:
        yield
    finally:
        _state['enabled'] = previous


def is_channels_last(x):
    """bool: Whether ``x`` is a channels-last (not also NCHW) 4D tensor."""
    # A (N, C, 1, 1) tensor is both; count it as NCHW.
    return x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last)


def uses_channels_last_kernels(x):
    """bool: Whether the fast path keeps ATen's resampling for ``x`` (and
    an elastic block's two conv3 apart) instead of its convolutions.

    It does for channels-last input in eager mode, where ATen's kernels are
    the fast ones (bilinear x2 of a 8x256x28x28 map: ~4 ms, against ~48 ms
    in NCHW) and the commuted conv3 was slower. Not while ``torch.compile``
    traces (which it does with the fast path for training only): Inductor
    lowers ATen's resampling and its backward to slow loops of its own, so
    there the resampling is written element-wise for Inductor to fuse and
    the conv3 are commuted in either format (compiled channels-last training
    of ResNeXt50+Elastic: 4.72 img/s with the commuted conv3 and
    convolution kernels, 2.91 with ATen's kernels; docs/performance.md).
    """
    return is_channels_last(x) and not torch.compiler.is_compiling()


def uses_aten_resampling(x):
    """bool: Whether the fast path leaves the resampling of ``x`` to ATen.

    It does in eager mode for channels-last input (ATen's kernels are the
    fast ones there, :func:`uses_channels_last_kernels`) and for tensors on
    any device but a CPU. The convolution kernels below replace ATen's NCHW
    kernels because those are slow on a CPU, and they were measured only
    there; a GPU has NCHW pooling and upsampling kernels of its own, and no
    GPU was available to us to measure the convolutions against them. The
    rest of the fast path (the commuted conv3, the merged branches, the
    in-place sums) only removes work and applies on every device.
    """
    if torch.compiler.is_compiling():
        return False
    return is_channels_last(x) or x.device.type != 'cpu'


def uses_aten_upsampling(x):
    """bool: Whether the fast path leaves the upsampling of ``x`` to ATen:
    where it leaves all resampling to it (:func:`uses_aten_resampling`),
    and for any dtype but float32. oneDNN runs float32 transposed
    convolutions fast on a CPU, but not the bfloat16 ones that CPU autocast
    makes (bilinear x2 of a bfloat16 ``8x256x28x28`` map: 117 ms as a
    transposed convolution, 12 ms in ATen).
    """
    return uses_aten_resampling(x) or x.dtype != torch.float32


def _depthwise_kernel(taps, channels, like):
    """The separable 2D kernel ``taps taps^T`` for every channel."""
    k = torch.tensor(taps, dtype=like.dtype, device=like.device)
    return (k[:, None] * k[None, :]).expand(channels, 1, len(taps),
                                             len(taps)).contiguous()


def _as_resampling(x):
    """Autocast off for the convolutions below: they stand for pooling and
    interpolation, which autocast leaves in the input's dtype (a float32
    map pooled by a bfloat16 convolution would be rounded first)."""
    return torch.autocast(x.device.type, enabled=False)


def avg_pool_2x(x):
    """2x2 average pooling with stride 2 of an even-sized ``x``."""
    if torch.compiler.is_compiling():
        return _avg_pool_2x_elementwise(x)
    if uses_aten_resampling(x):
        return F.avg_pool2d(x, 2, 2)
    return _AvgPool2x.apply(x)


class _AvgPool2x(torch.autograd.Function):
    """:func:`avg_pool_2x` by the pooling convolution, with the pool's own
    backward: every input pixel gets a quarter of its 2x2 cell's gradient
    (one pass over memory). The depthwise convolution's backward is slower,
    most of all in bfloat16, and ATen's pooling is slower in NCHW (forward
    and backward of ``8x256x56x56``: 7.7 ms this way, 26 ms in ATen, 43 ms
    with the convolution's backward in bfloat16; 9.5, 25 and 22 ms in
    float32)."""

    @staticmethod
    def forward(ctx, x):
        channels = x.shape[1]
        weight = x.new_full((channels, 1, 2, 2), 0.25)
        with _as_resampling(x):
            return F.conv2d(x, weight, stride=2, groups=channels)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _nearest_up_2x_elementwise(grad * 0.25)


def bilinear_up_2x(x):
    """Bilinear x2 upsampling (``align_corners=False``), size ``2H x 2W``."""
    if torch.compiler.is_compiling():
        return _bilinear_up_2x_elementwise(x)
    if uses_aten_upsampling(x):
        return F.interpolate(
            x, scale_factor=2, mode='bilinear', align_corners=False)
    channels = x.shape[1]
    weight = _depthwise_kernel((0.25, 0.75, 0.75, 0.25), channels, x)
    # Output (2(H+2)) x (2(W+2)) of the padded input; its 2-px frame is the
    # transposed convolution's own border and is cut off.
    with _as_resampling(x):
        out = F.conv_transpose2d(
            F.pad(x, (1, 1, 1, 1), mode='replicate'),
            weight,
            stride=2,
            padding=1,
            groups=channels)
    return out[..., 2:-2, 2:-2]


def nearest_up_2x(x):
    """Nearest-neighbour x2 upsampling, size ``2H x 2W``."""
    if torch.compiler.is_compiling():
        return _nearest_up_2x_elementwise(x)
    if uses_aten_upsampling(x):
        return F.interpolate(x, scale_factor=2, mode='nearest')
    channels = x.shape[1]
    weight = x.new_ones((channels, 1, 2, 2))
    with _as_resampling(x):
        return F.conv_transpose2d(x, weight, stride=2, groups=channels)


# The resampling above written as strided slices, sums and interleaving, for
# torch.compile (training): Inductor fuses these into its element-wise
# kernels, with the neighbouring batch norms, ReLUs and sums, in the forward
# and in the backward pass, where ATen's resampling ops lower to slow loops
# and the convolutions stay separate oneDNN calls (compiled ResNeXt50+Elastic
# training, channels-last: 0.81x of mmpretrain's ResNeXt50 with these,
# 0.74x-0.75x with the convolutions, in two same-process A/B runs;
# docs/performance.md). In eager mode each slice and sum would be a pass of
# its own over memory.
def _avg_pool_2x_elementwise(x):
    """:func:`avg_pool_2x` as the mean of the four 2x2 phases of ``x``."""
    return (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] +
            x[..., 1::2, 1::2]) * 0.25


def _interleave(even, odd, dim):
    """``out[2i] = even[i]``, ``out[2i + 1] = odd[i]`` along ``dim``."""
    shape = list(even.shape)
    shape[dim] *= 2
    return torch.stack([even, odd], dim + 1).reshape(shape)


def _bilinear_up_2x_1d(x, dim):
    """Bilinear x2 along one dim, the edge sample repeated (clamped)."""
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    # Output pixel 2i sits a quarter pixel before input pixel i, 2i + 1 a
    # quarter after it (align_corners=False).
    return _interleave(0.25 * before + 0.75 * x, 0.75 * x + 0.25 * after, dim)


def _bilinear_up_2x_elementwise(x):
    """:func:`bilinear_up_2x`, separably: rows, then columns."""
    return _bilinear_up_2x_1d(_bilinear_up_2x_1d(x, x.dim() - 2), x.dim() - 1)


def _nearest_up_2x_elementwise(x):
    """:func:`nearest_up_2x`: every pixel repeated into a 2x2 square."""
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(
        n, c, 2 * h, 2 * w)


def add(a, b, in_place):
    """``a + b``; in place into ``a`` if ``in_place`` (the caller knows that
    no op saved ``a`` for its backward pass) and ``a`` already has the sum's
    dtype. Under autocast a bfloat16 or float16 branch plus a float32
    shortcut is float32, and an in-place sum would round it back."""
    if in_place and torch.promote_types(a.dtype, b.dtype) == a.dtype:
        return a.add_(b)
    return a + b


def _plain_conv(conv, kernel_size):
    return type(conv) is torch.nn.Conv2d and conv.bias is None and \
        conv.kernel_size == (kernel_size, kernel_size) and \
        conv.padding_mode == 'zeros'


def can_fuse_branches(high, low):
    """Whether :func:`fused_branches` applies to a block's two branches:
    both exist, their last convs are plain bias-free 1x1 ``nn.Conv2d`` and
    the low branch's resampling (if any) is a fixed linear map."""
    if low is None:
        return False
    for branch in (high, low):
        conv = branch.conv3
        if not _plain_conv(conv, 1) or conv.stride != (1, 1) or \
                conv.groups != 1:
            return False
    return low.resample is None or low.resample.mode in ('bilinear',
                                                         'nearest')


def fused_branches(high, low, x):
    """``high(x) + low(x)`` of two :class:`BottleneckBranch` es, as one conv.

    The low branch ends with ``up(conv3(y))``. ``up`` (bilinear or nearest,
    then a crop) acts on each channel alone and ``conv3`` (1x1, no bias) on
    each pixel alone, so they commute: ``conv3(up(y))``. The upsampling then
    runs on the ``mid`` channels instead of ``out_channels`` (4x fewer in
    ResNeXt), and the two ``conv3`` and their sum become one 1x1 conv over
    the concatenated branches (one large GEMM instead of two thin ones and
    an add).
    """
    h = high.transform(x)
    y = low.transform(x)
    size = x.shape[-2:]

    def up(t):
        return t if low.resample is None else low.resample.up(t, size)

    args = (h, y, high.conv3.weight, low.conv3.weight)
    # With the custom function, compiled training ran at half the speed.
    if _saves_for_backward(*args):
        return _CommutedConv3.apply(*args, up)
    return _commuted_conv3(*args, up)


def _commuted_conv3(h, y, weight_high, weight_low, up):
    return F.conv2d(
        torch.cat([h, up(y)], dim=1),
        torch.cat([weight_high, weight_low], dim=1))


class _CommutedConv3(torch.autograd.Function):
    """``conv2d(cat([h, up(y)]), cat([w_high, w_low]))`` for training,
    saving only ``h`` and ``y``.

    Plain autograd would keep the concatenated full-resolution input alive
    until the backward pass (an extra ``mid``-channel map per block); ``h``
    and the low-resolution ``y`` are kept anyway by the ReLUs that made
    them, so saving them costs nothing and the concatenation is rebuilt in
    the backward pass (an upsample and a copy, no convolution).
    """

    @staticmethod
    def forward(ctx, h, y, weight_high, weight_low, up):
        ctx.up = up
        ctx.save_for_backward(h, y, weight_high, weight_low)
        return _commuted_conv3(h, y, weight_high, weight_low, up)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        h, y, weight_high, weight_low = ctx.saved_tensors
        need_h, need_y, need_wh, need_wl = ctx.needs_input_grad[:4]
        with torch.enable_grad():
            y_leaf = y.detach().requires_grad_(need_y)
            up_y = ctx.up(y_leaf)
        inputs = torch.cat([h, up_y.detach()], dim=1)
        weight = torch.cat([weight_high, weight_low], dim=1)
        grad_inputs, grad_weight = _conv2d_backward(
            grad, inputs, weight, need_h or need_y, need_wh or need_wl)
        split = h.shape[1]
        grad_h = grad_y = grad_wh = grad_wl = None
        if need_h:
            grad_h = grad_inputs[:, :split]
        if need_y:
            grad_y, = torch.autograd.grad(up_y, y_leaf,
                                          grad_inputs[:, split:])
        if need_wh:
            grad_wh = grad_weight[:, :split]
        if need_wl:
            grad_wl = grad_weight[:, split:]
        return grad_h, grad_y, grad_wh, grad_wl, None


def can_recompute_down(branch):
    """Whether :func:`down_conv1` applies to a branch (a
    :class:`BottleneckBranch` or a dense layer's ``DenseBranch``): its input
    is average-pooled (a fixed map) into a plain 1x1 conv1."""
    resample, conv = branch.resample, branch.conv1
    return resample is not None and resample.mode in ('bilinear', 'nearest') \
        and _plain_conv(conv, 1) and conv.stride == (1, 1) and \
        conv.groups == 1


def down_conv1(branch, x):
    """``conv1(down(x))`` of a low-resolution branch, in training without
    keeping ``down(x)`` for the backward pass.

    conv1 needs its input, the pooled map, for its weight gradient; plain
    autograd keeps it until the backward pass, a quarter of the block
    input's size per elastic block (7.5 MB per image in ResNeXt50+Elastic,
    17 MB in ResNeXt101+Elastic, in DenseNet201+Elastic a quarter of every
    elastic layer's concatenated input). ``x`` itself is kept anyway, by the
    high branch's conv1, so the backward pass pools it again instead: one
    2x2 average pool per elastic block, ~26 ms of a ~2.2 s ResNeXt50+Elastic
    training step at batch 8 on our 2-core CPU.
    """
    args = (x, branch.conv1.weight)
    if _saves_for_backward(*args):
        return _DownConv1.apply(*args, branch.resample.down)
    return branch.conv1(branch.resample.down(x))


class _DownConv1(torch.autograd.Function):
    """``conv2d(down(x), weight)`` (1x1), saving ``x`` instead of
    ``down(x)`` (:func:`down_conv1`)."""

    @staticmethod
    def forward(ctx, x, weight, down):
        ctx.down = down
        ctx.save_for_backward(x, weight)
        return F.conv2d(down(x), weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        # The forward ran on the fast path; pool the same way again.
        with torch.enable_grad(), fast_path(True):
            x_leaf = x.detach().requires_grad_(need_x)
            pooled = ctx.down(x_leaf)
        grad_pooled, grad_w = _conv2d_backward(grad, pooled.detach(), weight,
                                               need_x, need_w)
        grad_x = None
        if need_x:
            grad_x, = torch.autograd.grad(pooled, x_leaf, grad_pooled)
        return grad_x, grad_w, None


def _memory_format(x):
    return torch.channels_last if is_channels_last(x) else \
        torch.contiguous_format


def _saves_for_backward(*tensors):
    """Whether autograd will keep tensors of an op on ``tensors`` for the
    backward pass that the custom functions here can keep fewer of: in
    eager training. Under torch.compile, Inductor's partitioner chooses
    what to save."""
    return torch.is_grad_enabled() and \
        not torch.compiler.is_compiling() and \
        any(t.requires_grad for t in tensors)


def _conv2d_backward(grad, x, weight, need_x, need_weight, stride=(1, 1),
                     padding=(0, 0), dilation=(1, 1), groups=1):
    """Gradients of ``F.conv2d(x, weight, ...)`` (no bias) for ``grad``:
    ``(grad_x, grad_weight)``, each None where not needed, in the dtypes of
    ``x`` and ``weight``.

    Under autocast the forward convolution ran in a lower precision than
    its saved input or weight (float32 weights under float16/bfloat16
    autocast), and ``grad`` has that precision. The backward convolution
    runs in it too, as autograd's own does (cuDNN and oneDNN need one dtype
    for all three), and the gradients are cast back, as autocast's casts
    would be in autograd.
    """
    dtype = grad.dtype
    grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
        grad.contiguous(memory_format=_memory_format(x)), x.to(dtype),
        weight.to(dtype), None, stride, padding, dilation, False, [0, 0],
        groups, [need_x, need_weight, False])
    if grad_x is not None:
        grad_x = grad_x.to(x.dtype)
    if grad_weight is not None:
        grad_weight = grad_weight.to(weight.dtype)
    return grad_x, grad_weight


def can_merge_branches(high, low):
    """Whether a block's two full-resolution branches can run as one path
    (:func:`merged_branches`): plain bias-free convs with the same 3x3
    geometry and plain ``nn.BatchNorm2d`` norms with the same settings."""
    if low is None or low.resample is not None or \
            not can_fuse_branches(high, low):
        return False
    if not (_twin_plain_convs(high.conv1, low.conv1, 1)
            and _twin_plain_convs(high.conv2, low.conv2, 3)):
        return False
    if high.conv1.stride != (1, 1) or high.conv1.groups != 1 or \
            low.conv1.groups != 1:
        return False
    if high.conv2.out_channels // high.conv2.groups != \
            low.conv2.out_channels // low.conv2.groups:
        return False
    return _mergeable_norms(high.norm1, low.norm1) and \
        _mergeable_norms(high.norm2, low.norm2)


# Merged non-elastic blocks whose output maps are smaller than this (pixels
# per image) run their branches apart; see merging_pays_off.
MIN_MERGED_PIXELS = 100


def merging_pays_off(high, x):
    """Whether :func:`merged_branches` is worth its weight copies for ``x``
    (``high``: the block's high branch, whose conv2 stride the other shares).

    Merging concatenates the branches' conv weights on every call (and, in
    training, again in the backward pass): a copy of every weight, against
    kernel launches saved and wider GEMMs over every output pixel. The
    copy's share of the work is about one over the number of output
    pixels, so the branches run apart where a block's output map is small:
    under :data:`MIN_MERGED_PIXELS` per image, which separates ResNeXt's
    last stage (7x7) from the stages before it (14x14 and up). Measured
    per block, time merged over time apart (docs/performance.md): at 7x7
    (2048 -> 1024 -> 2048) 1.00x-1.04x in inference and 1.28x-1.35x in
    training at batch 8, 1.18x-2.77x at batch 1; at 14x14 (1024 -> 512 ->
    1024) 0.90x-1.06x, so those stay merged. The rule is per image, so
    that a model takes the same path at every batch size.
    """
    stride = high.conv2.stride
    pixels = (x.shape[-2] // stride[0]) * (x.shape[-1] // stride[1])
    return pixels >= MIN_MERGED_PIXELS


def _twin_plain_convs(a, b, kernel_size):
    """Plain bias-free ``kernel_size`` convs with the same geometry (the
    channel halves of one conv)."""
    return _plain_conv(a, kernel_size) and _plain_conv(b, kernel_size) and \
        (a.stride, a.padding, a.dilation) == (b.stride, b.padding, b.dilation)


def _mergeable_norms(a, b):
    """Plain ``nn.BatchNorm2d`` s with the same settings (one call of
    :func:`_merged_batch_norm` can stand for both)."""
    if type(a) is not torch.nn.BatchNorm2d or \
            type(b) is not torch.nn.BatchNorm2d:
        return False
    return (a.eps, a.momentum, a.affine, a.track_running_stats) == \
        (b.eps, b.momentum, b.affine, b.track_running_stats)


def _merged_batch_norm(x, norms):
    """``torch.cat([norm(part) for ...], 1)`` for ``nn.BatchNorm2d`` s that
    split the channels of ``x``, as one call; the running statistics are
    written back to each module exactly as its own forward would."""
    first = norms[0]
    training = first.training or not first.track_running_stats
    running = first.track_running_stats and first.running_mean is not None
    momentum = 0.0 if first.momentum is None else first.momentum
    if first.training and first.track_running_stats:
        for norm in norms:
            norm.num_batches_tracked.add_(1)
        if first.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(first.num_batches_tracked)
    mean = torch.cat([n.running_mean for n in norms]) if running else None
    var = torch.cat([n.running_var for n in norms]) if running else None
    weight = torch.cat([n.weight for n in norms]) if first.affine else None
    bias = torch.cat([n.bias for n in norms]) if first.affine else None
    out = F.batch_norm(x, mean, var, weight, bias, training, momentum,
                       first.eps)
    if running and training:
        with torch.no_grad():
            start = 0
            for norm in norms:
                end = start + norm.num_features
                norm.running_mean.copy_(mean[start:end])
                norm.running_var.copy_(var[start:end])
                start = end
    return out


def merged_branches(high, low, x):
    """``high(x) + low(x)`` of a non-elastic block, run as one ResNeXt path.

    Without resampling, the two branches of a block are a channel split of
    one grouped bottleneck: concatenating their conv1 outputs, their 3x3
    groups and their conv3 inputs gives one 1x1, one grouped 3x3 and one 1x1
    conv, i.e. half the kernel launches, on wider (faster) GEMMs. The
    branches' modules are bypassed (forward hooks on them do not fire);
    their parameters and running statistics are used and updated as usual.
    """
    conv2 = high.conv2
    out = conv_of_parts(x, [high.conv1.weight, low.conv1.weight])
    out = F.relu(_merged_batch_norm(out, (high.norm1, low.norm1)), True)
    out = conv_of_parts(
        out, [conv2.weight, low.conv2.weight],
        stride=conv2.stride,
        padding=conv2.padding,
        dilation=conv2.dilation,
        groups=conv2.groups + low.conv2.groups)
    out = F.relu(_merged_batch_norm(out, (high.norm2, low.norm2)), True)
    return conv_of_parts(out, [high.conv3.weight, low.conv3.weight], dim=1)


def conv_of_parts(x, weights, dim=0, stride=1, padding=0, dilation=1,
                  groups=1):
    """``conv2d(x, cat(weights, dim))`` that, in training, keeps the weight
    parts for the backward pass instead of their concatenation.

    The merged branches concatenate the branches' weights on every call;
    plain autograd would keep each concatenation until the backward pass,
    a second copy of every merged block's weights (51 MB in
    ResNeXt50+Elastic, whose last stage is not elastic;
    ``feature_map_traffic``'s ``saved_per_batch_bytes``). The parts are
    parameters, kept anyway, so the backward pass concatenates them again.
    """
    conv = dict(stride=_pair(stride), padding=_pair(padding),
                dilation=_pair(dilation), groups=groups)
    if _saves_for_backward(x, *weights):
        return _ConvOfParts.apply(x, dim, conv, *weights)
    return F.conv2d(x, torch.cat(weights, dim), **conv)


class _ConvOfParts(torch.autograd.Function):
    """:func:`conv_of_parts` in training: saves ``x`` and the parts."""

    @staticmethod
    def forward(ctx, x, dim, conv, *weights):
        ctx.dim, ctx.conv = dim, conv
        ctx.save_for_backward(x, *weights)
        return F.conv2d(x, torch.cat(weights, dim), **conv)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, *weights = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], any(
            ctx.needs_input_grad[3:])
        grad_x, grad_w = _conv2d_backward(
            grad, x, torch.cat(weights, ctx.dim), need_x, need_w, **ctx.conv)
        grad_parts = [None] * len(weights)
        if need_w:
            grad_parts = grad_w.split([w.shape[ctx.dim] for w in weights],
                                      ctx.dim)
        return (grad_x, None, None, *grad_parts)


def can_merge_dense_branches(high, low):
    """Whether a dense layer's two full-resolution branches
    (:class:`~mmelastic.models.backbones.densenet.DenseBranch`) can run as
    one path (:func:`merged_dense_conv1` and :func:`merged_dense_exit`):
    plain bias-free 1x1 and 3x3 convs with the same geometry and plain
    ``nn.BatchNorm2d`` norms with the same settings."""
    if low is None or low.resample is not None:
        return False
    for a, b, size in ((high.conv1, low.conv1, 1), (high.conv2, low.conv2,
                                                    3)):
        if not _twin_plain_convs(a, b, size) or a.groups != 1 or \
                b.groups != 1:
            return False
    return _mergeable_norms(high.norm2, low.norm2)


def merged_dense_conv1(high, low, x):
    """Both branches' 1x1 convs of a non-elastic dense layer as one conv:
    ``cat([high.conv1(x), low.conv1(x)], 1)``."""
    return conv_of_parts(x, [high.conv1.weight, low.conv1.weight],
                         stride=high.conv1.stride)


def merged_dense_exit(high, low, mid):
    """``high.exit(a) + low.exit(b)`` for ``mid = cat([a, b], 1)`` of a
    non-elastic dense layer, as one path.

    The two norms split the channels of ``mid``, and two 3x3 convs whose
    outputs are summed are one conv over the concatenated inputs, so the
    layer runs one norm, one ReLU and one wider 3x3 conv instead of two of
    each and an add. Running statistics are updated per branch as usual.
    """
    conv2 = high.conv2
    out = F.relu(_merged_batch_norm(mid, (high.norm2, low.norm2)), True)
    return conv_of_parts(
        out, [conv2.weight, low.conv2.weight],
        dim=1,
        stride=conv2.stride,
        padding=conv2.padding,
        dilation=conv2.dilation)
