# Copyright (c) mmelastic contributors. All rights reserved.
"""The fast path computes what the straightforward path computes.

Issue rule: within 1e-5 in float32 for the same weights -- outputs, input
and parameter gradients, and BN running statistics -- for the kernels, the
blocks and whole backbones, in NCHW and channels-last, at odd sizes.
"""
import math
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmelastic.models import (ElasticBottleneck, ElasticDenseNet,
                              ElasticDLA, ElasticResNeXt)
from mmelastic.models.backbones.densenet import ElasticDenseLayer
from mmelastic.models.utils import (Resample2x, fast_ops, fast_path,
                                    fast_path_enabled)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _model_helpers import randomize_bn  # noqa: E402

ATOL = 1e-5
CL = torch.channels_last
# Autocast's lower precisions: bfloat16 (what a CPU trains in) and float16
# (what CUDA AMP uses; CPU autocast takes it too).
AMP_DTYPES = [torch.bfloat16, torch.float16]


def dtype_name(dtype):
    return str(dtype).replace('torch.', '')


SIZES = [(1, 1), (2, 2), (7, 7), (15, 10), (28, 28), (9, 4)]


MIN_MERGED_PIXELS = fast_ops.MIN_MERGED_PIXELS  # before merge_small_maps


@pytest.fixture(autouse=True)
def merge_small_maps(monkeypatch):
    """The tiny maps of these tests are below the size where non-elastic
    blocks merge their branches; merge them anyway, so that the merged path
    is tested (test_merging_only_where_it_pays_off tests the threshold)."""
    monkeypatch.setattr(fast_ops, 'MIN_MERGED_PIXELS', 1)


def as_format(x, channels_last):
    return x.contiguous(memory_format=CL) if channels_last else x


def assert_close(fast, ref, atol=ATOL):
    assert fast.shape == ref.shape
    err = (fast - ref).abs().max().item()
    assert err <= atol, f'max abs difference {err:.2e} > {atol:.0e}'


def assert_close_scaled(fast, ref, atol=ATOL):
    """:func:`assert_close` relative to ``max(|ref|)`` when that exceeds 1."""
    scale = max(ref.abs().max().item(), 1.0)
    assert_close(fast / scale, ref / scale, atol)


# --- kernels -----------------------------------------------------------------
KERNELS = ['avg_pool_2x', 'bilinear_up_2x', 'nearest_up_2x']
# The same kernels as torch.compile traces them (slices and sums).
ELEMENTWISE_KERNELS = [f'_{name}_elementwise' for name in KERNELS]


def reference_kernel(name, x):
    name = name.strip('_').replace('_elementwise', '')
    if name == 'avg_pool_2x':
        return F.avg_pool2d(x, 2, 2)
    mode = 'bilinear' if name == 'bilinear_up_2x' else 'nearest'
    kwargs = dict(align_corners=False) if mode == 'bilinear' else {}
    return F.interpolate(x, scale_factor=2, mode=mode, **kwargs)


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('name', KERNELS + ELEMENTWISE_KERNELS)
def test_kernels_match_aten(name, size, channels_last):
    h, w = size
    if 'avg_pool_2x' in name:
        h, w = 2 * h, 2 * w  # the pool is applied after pad_to_even
    x = torch.randn(2, 5, h, w) * 3
    x = as_format(x, channels_last).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out = getattr(fast_ops, name)(x)
    ref = reference_kernel(name, x_ref)
    assert_close(out, ref)
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    assert_close(x.grad, x_ref.grad)


@pytest.mark.parametrize('dtype', AMP_DTYPES, ids=dtype_name)
def test_kernels_keep_dtype_and_work_in_half_precision(dtype):
    x = torch.randn(1, 4, 6, 6, dtype=dtype)
    for name in KERNELS + ELEMENTWISE_KERNELS:
        out = getattr(fast_ops, name)(x)
        assert out.dtype == dtype
        ref = reference_kernel(name, x.float())
        assert (out.float() - ref).abs().max() < 0.1


@pytest.mark.parametrize('amp', AMP_DTYPES, ids=dtype_name)
@pytest.mark.parametrize('name', KERNELS)
def test_kernels_are_resampling_under_autocast(name, amp):
    """Autocast leaves ATen's pooling and interpolation in the input's
    dtype; the kernels that stand for them do the same, though they are
    convolutions."""
    x = torch.randn(2, 5, 8, 6)
    with torch.autocast('cpu', dtype=amp):
        out = getattr(fast_ops, name)(x)
        ref = reference_kernel(name, x)
    assert out.dtype == ref.dtype == torch.float32
    assert_close(out, ref)


@pytest.mark.parametrize('mode', ['bilinear', 'nearest'])
@pytest.mark.parametrize('size', [(15, 10), (7, 1), (1, 6), (32, 32)])
def test_resample_fast_equals_straightforward(mode, size):
    resample = Resample2x(mode)
    x = torch.randn(2, 3, *size)
    with fast_path(False):
        low_ref = resample.down(x)
        up_ref = resample.up(low_ref, size)
    low = resample.down(x)
    assert_close(low, low_ref)
    assert_close(resample.up(low, size), up_ref)


def test_switch_restores_state_on_error():
    assert fast_path_enabled()
    with pytest.raises(RuntimeError):
        with fast_path(False):
            assert not fast_path_enabled()
            raise RuntimeError('boom')
    assert fast_path_enabled()


# --- blocks ------------------------------------------------------------------
def block_cases():
    # (kwargs, input channels, size): elastic, non-elastic (merged), strided
    # non-elastic with a projection, SE, dilation, nearest, high_ratio 0.75,
    # with_cp.
    proj = dict(downsample=None)
    return [
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4),
         32, (15, 10)),
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4,
              elastic=False), 32, (15, 10)),
        (dict(in_channels=16, out_channels=32, mid_channels=16, groups=4,
              stride=2, elastic=False, **proj), 16, (9, 12)),
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4,
              with_se=True, se_ratio=4), 32, (8, 8)),
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4,
              dilation=2, elastic=False), 32, (11, 11)),
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4,
              resample='nearest'), 32, (7, 9)),
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4,
              high_ratio=0.75), 32, (10, 10)),
        # Checkpointed: the backward pass (run outside the fast-path switch
        # in run_step) must recompute the forward's path.
        (dict(in_channels=32, out_channels=32, mid_channels=16, groups=4,
              with_cp=True), 32, (9, 8)),
    ]


def make_block(kwargs, seed=0):
    torch.manual_seed(seed)
    kwargs = dict(kwargs)
    if 'downsample' in kwargs:
        kwargs['downsample'] = nn.Sequential(
            nn.Conv2d(kwargs['in_channels'], kwargs['out_channels'], 1,
                      stride=kwargs['stride'], bias=False),
            nn.BatchNorm2d(kwargs['out_channels']))
    block = ElasticBottleneck(**kwargs)
    block.init_weights()
    randomize_bn(block, seed)
    return block


def run_step(module, x, fast, amp=None):
    """Forward (under CPU autocast to the dtype ``amp``, if given) +
    backward; returns output, input grad, param grads, BN buffers (after the
    step). ``x`` is a tensor, or a list of tensors for a dense layer (then
    the input grads are a list too)."""
    xs = [x] if torch.is_tensor(x) else x
    xs = [t.detach().clone().requires_grad_() for t in xs]
    with fast_path(fast), torch.autocast('cpu', dtype=amp or torch.bfloat16,
                                         enabled=amp is not None):
        out = module(xs[0] if torch.is_tensor(x) else xs)
    out.float().backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    module.zero_grad()
    buffers = {n: b.clone() for n, b in module.named_buffers()}
    x_grad = xs[0].grad if torch.is_tensor(x) else [t.grad for t in xs]
    return out.detach(), x_grad, grads, buffers


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('case', range(len(block_cases())))
def test_block_fast_equals_straightforward(case, train, channels_last):
    kwargs, cin, size = block_cases()[case]
    x = as_format(torch.randn(3, cin, *size), channels_last)
    ref_block, fast_block = make_block(kwargs), make_block(kwargs)
    ref_block.train(train)
    fast_block.train(train)
    ref = run_step(ref_block, x, fast=False)
    out = run_step(fast_block, x, fast=True)
    assert_steps_match(out, ref)


def assert_steps_match(out, ref):
    """Two :func:`run_step` results agree: output, input gradient,
    parameter gradients and BN buffers."""
    assert_close(out[0], ref[0])
    assert_close(out[1], ref[1])
    assert out[2].keys() == ref[2].keys()
    # Parameter gradients sum over every pixel (magnitudes up to ~100 here),
    # so float32 rounding alone reaches 1e-5 in absolute terms: compare
    # them relative to their scale, as for the backbones below.
    for name in ref[2]:
        assert_close_scaled(out[2][name], ref[2][name])
    for name in ref[3]:
        assert torch.allclose(out[3][name].float(), ref[3][name].float(),
                              atol=ATOL), name


def saved_tensors(module, inputs):
    """The tensors a training forward keeps for backward."""
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(inputs)
    return saved


def saved_shapes(module, inputs):
    return [tuple(t.shape) for t in saved_tensors(module, inputs)]


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('case', [0, 5])  # bilinear, nearest
def test_pooled_input_is_not_kept_for_backward(case, channels_last):
    """The fast path pools the block input again in the backward pass
    instead of keeping the pooled map (down_conv1); the numbers are
    checked by test_block_fast_equals_straightforward."""
    kwargs, cin, size = block_cases()[case]
    block = make_block(kwargs).train()
    x = as_format(torch.randn(2, cin, *size), channels_last)
    pooled = (2, cin, (size[0] + 1) // 2, (size[1] + 1) // 2)
    with fast_path(False):
        assert pooled in saved_shapes(block, x.requires_grad_())
    assert pooled not in saved_shapes(block, x)


@pytest.mark.parametrize('channels_last', [False, True])
def test_dense_pooled_input_is_not_kept_for_backward(channels_last):
    """The same for an elastic dense layer, whose low branch pools the
    whole concatenated pre-activation."""
    layer = make_dense_layer(elastic=True).train()
    inputs = [as_format(torch.randn(3, c, 11, 9), channels_last)
              for c in (16, 8)]
    inputs[0].requires_grad_()
    pooled = (3, 24, 6, 5)
    with fast_path(False):
        assert pooled in saved_shapes(layer, inputs)
    assert pooled not in saved_shapes(layer, inputs)


def saved_weight_copies(module, inputs):
    """4D tensors a training forward keeps for backward that are neither a
    parameter nor a feature map (batch 3): copies of weights."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    return [tuple(t.shape) for t in saved_tensors(module, inputs)
            if t.dim() == 4 and t.shape[0] != 3 and
            t.untyped_storage().data_ptr() not in params]


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('layer', ['block', 'strided block', 'dense layer'])
def test_merged_weights_are_not_kept_for_backward(layer, channels_last,
                                                  monkeypatch):
    """Merged branches concatenate their weights on every call; training
    keeps the parts (parameters) for the backward pass, not a copy
    (conv_of_parts). The numbers are checked by the tests above."""
    if layer == 'dense layer':
        module = make_dense_layer(elastic=False).train()
        inputs = [as_format(torch.randn(3, c, 11, 9), channels_last)
                  for c in (16, 8)]
        inputs[0].requires_grad_()
    else:
        kwargs, cin, size = block_cases()[1 if layer == 'block' else 2]
        module = make_block(kwargs).train()
        inputs = as_format(torch.randn(3, cin, *size),
                           channels_last).requires_grad_()
    merged = []

    def plain_autograd(x, dim, conv, *weights):
        merged.append(1)
        return F.conv2d(x, torch.cat(weights, dim), **conv)

    monkeypatch.setattr(fast_ops._ConvOfParts, 'apply', plain_autograd)
    assert saved_weight_copies(module, inputs)
    assert merged
    monkeypatch.undo()
    assert not saved_weight_copies(module, inputs)


@pytest.mark.parametrize('x_grad,w_grad',
                         [(True, True), (True, False), (False, True)])
def test_memory_saving_functions_with_frozen_parts(x_grad, w_grad):
    """conv_of_parts and down_conv1 give plain autograd's gradients when
    only the input or only the weights need them (frozen stages)."""
    x = torch.randn(3, 6, 9, 7, requires_grad=x_grad)
    parts = [torch.randn(4, 3, 3, 3, requires_grad=w_grad),
             torch.randn(2, 3, 3, 3, requires_grad=w_grad)]
    conv = dict(stride=2, padding=1, groups=2)
    branch = make_block(block_cases()[0][0]).low
    branch.conv1.weight.requires_grad_(w_grad)
    x_branch = torch.randn(3, 32, 9, 7, requires_grad=x_grad)
    for function, fast, reference, leaves in (
            ('_ConvOfParts',
             lambda: fast_ops.conv_of_parts(x, parts, **conv),
             lambda: F.conv2d(x, torch.cat(parts), **conv), [x, *parts]),
            ('_DownConv1', lambda: fast_ops.down_conv1(branch, x_branch),
             lambda: branch.conv1(branch.resample.down(x_branch)),
             [x_branch, branch.conv1.weight])):
        leaves = [t for t in leaves if t.requires_grad]
        out = fast()
        assert type(out.grad_fn).__name__ == f'{function}Backward'
        grad = torch.randn_like(out)
        got = torch.autograd.grad(out, leaves, grad)
        want = torch.autograd.grad(reference(), leaves, grad)
        for a, b in zip(got, want):
            assert_close(a, b)


def test_merged_batch_norm_cumulative_momentum():
    kwargs, cin, size = block_cases()[1]
    blocks = []
    for _ in range(2):
        block = make_block(kwargs)
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative moving average
        block.train()
        blocks.append(block)
    for step in range(3):
        x = torch.randn(2, cin, *size)
        for block, fast in zip(blocks, (False, True)):
            with fast_path(fast):
                block(x)
    for (name, a), (_, b) in zip(blocks[0].named_buffers(),
                                 blocks[1].named_buffers()):
        assert torch.allclose(a.float(), b.float(), atol=ATOL), name
    assert int(blocks[1].high.norm1.num_batches_tracked) == 3


# --- autocast ----------------------------------------------------------------
# The GPU target trains with AMP. Under autocast the fast path's
# custom backward functions hold float32 weights (and maybe a float32 input)
# while the forward convolution ran, and the gradient arrives, in the lower
# precision; cuDNN and oneDNN take one dtype for all three. CPU autocast
# runs the same Python code as CUDA autocast; it takes both AMP_DTYPES.


@pytest.mark.parametrize('amp', AMP_DTYPES, ids=dtype_name)
@pytest.mark.parametrize('groups', [1, 4])
def test_conv2d_backward_runs_in_the_autocast_dtype(groups, amp):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 5)
    weight = torch.randn(12, 8 // groups, 3, 3)
    grad = torch.randn(2, 12, 6, 5).to(amp)
    got = fast_ops._conv2d_backward(grad, x, weight, True, True,
                                    padding=(1, 1), groups=groups)
    # What autograd does for F.conv2d under autocast: cast, convolve, and
    # cast the gradients back.
    leaves = [t.clone().requires_grad_() for t in (x, weight)]
    out = F.conv2d(leaves[0].to(amp), leaves[1].to(amp), padding=1,
                   groups=groups)
    want = torch.autograd.grad(out, leaves, grad)
    for a, b, like in zip(got, want, (x, weight)):
        assert a.dtype == like.dtype
        assert torch.equal(a, b)


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def assert_autocast_matches(make, x, amp):
    """The fast path under autocast: the dtypes of the straightforward path
    under autocast, and as close to the float32 result as that is.

    Rounding to bfloat16 (8-bit mantissa; float16 has 11) flips ReLU masks
    and, in training, passes through the batch norms' backward, so both
    paths are off the float32 result by up to tens of percent in the
    smallest parameter gradients of these tiny blocks; they round at
    different places (the fused conv3 convolves the upsampled branch in
    the low precision, the straightforward path upsamples its output), so
    they are compared with the float32 result, not with each other.
    """
    fast = run_step(make(), x, fast=True, amp=amp)
    ref = run_step(make(), x, fast=False, amp=amp)
    exact = run_step(make(), x.float(), fast=False)
    # A half-precision branch sum plus a float32 shortcut is float32 (not
    # summed in place into the half-precision tensor); gradients come in
    # the dtypes of what they are the gradients of.
    assert fast[0].dtype == ref[0].dtype
    assert fast[1].dtype == ref[1].dtype == x.dtype
    assert all(g.dtype == torch.float32 for g in fast[2].values())
    pairs = [(fast[0], ref[0], exact[0]), (fast[1], ref[1], exact[1])]
    pairs += [(fast[2][n], ref[2][n], exact[2][n]) for n in exact[2]]
    for got, rounded, want in pairs:
        # A missing or wrong gradient term would be off by 30%-100%.
        assert relative_error(got, want) <= \
            3 * relative_error(rounded, want) + 0.05


@pytest.mark.parametrize('amp', AMP_DTYPES, ids=dtype_name)
@pytest.mark.parametrize('input_in_amp_dtype', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('case', range(len(block_cases())))
def test_block_fast_path_under_autocast(case, channels_last,
                                        input_in_amp_dtype, amp):
    kwargs, cin, size = block_cases()[case]
    torch.manual_seed(case)
    x = as_format(torch.randn(3, cin, *size), channels_last)
    if input_in_amp_dtype:
        x = x.to(amp)
    assert_autocast_matches(lambda: make_block(kwargs).train(), x, amp)


@pytest.mark.parametrize('amp', AMP_DTYPES, ids=dtype_name)
@pytest.mark.parametrize('elastic', [False, True])
def test_dense_layer_fast_path_under_autocast(elastic, amp):
    torch.manual_seed(0)
    assert_autocast_matches(
        lambda: make_dense_layer(elastic=elastic).train(),
        torch.randn(3, 24, 11, 9), amp)


def count_calls(monkeypatch, name, module=None):
    """Count the calls of ``module.name`` (by default the block module's)."""
    if module is None:
        import mmelastic.models.utils.elastic_bottleneck as module
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_dispatch(monkeypatch):
    merged = count_calls(monkeypatch, 'merged_branches')
    fused = count_calls(monkeypatch, 'fused_branches')
    elastic = make_block(block_cases()[0][0]).eval()
    plain = make_block(block_cases()[1][0]).eval()
    x = torch.randn(1, 32, 8, 8)
    plain(x)
    assert (len(merged), len(fused)) == (1, 0)
    elastic(x)
    assert (len(merged), len(fused)) == (1, 1)
    # Channels-last keeps the branches apart: the native upsample is fast
    # there and the commuted conv3 would only add work.
    elastic(x.contiguous(memory_format=CL))
    assert len(fused) == 1
    with fast_path(False):
        plain(x)
        elastic(x)
    assert (len(merged), len(fused)) == (1, 1)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('train', [False, True])
def test_merging_only_where_it_pays_off(monkeypatch, train, stride):
    """Merging copies the branches' conv weights on every call, so a
    non-elastic block whose output map has fewer pixels per image than
    MIN_MERGED_PIXELS runs its branches apart (not fused either: that
    copies conv3's weights and the activations), with the straightforward
    path's results, whatever the batch size."""
    monkeypatch.setattr(fast_ops, 'MIN_MERGED_PIXELS', MIN_MERGED_PIXELS)
    merged = count_calls(monkeypatch, 'merged_branches')
    fused = count_calls(monkeypatch, 'fused_branches')
    kwargs = block_cases()[1 if stride == 1 else 2][0]
    cin = kwargs['in_channels']
    block = make_block(kwargs).train(train)
    side = math.isqrt(fast_ops.MIN_MERGED_PIXELS) * stride
    # Output maps one row short of the threshold, and just at it.
    small = torch.randn(3, cin, side - stride, side)
    large = torch.randn(2, cin, side, side)
    out = run_step(block, small, fast=True)
    assert (len(merged), len(fused)) == (0, 0)
    ref = run_step(make_block(kwargs).train(train), small, fast=False)
    assert_steps_match(out, ref)
    run_step(block, large, fast=True)
    assert (len(merged), len(fused)) == (1, 0)


@pytest.mark.parametrize('name', KERNELS)
def test_resampling_left_to_aten_off_the_cpu(name, monkeypatch):
    """The convolution kernels were measured on a CPU only: on any other
    device (here 'meta', which needs no GPU) the fast path calls ATen's
    resampling, and on a CPU its convolutions."""
    aten = {'avg_pool_2x': 'avg_pool2d'}.get(name, 'interpolate')
    x = torch.randn(2, 4, 8, 8)
    for device, expect_aten in (('cpu', False), ('meta', True)):
        aten_calls = count_calls(monkeypatch, aten, F)
        conv_calls = [count_calls(monkeypatch, conv, F)
                      for conv in ('conv2d', 'conv_transpose2d')]
        out = getattr(fast_ops, name)(x.to(device))
        monkeypatch.undo()
        assert out.device.type == device
        assert tuple(out.shape) == tuple(reference_kernel(name, x).shape)
        assert bool(aten_calls) == expect_aten
        assert any(conv_calls) != expect_aten


@pytest.mark.parametrize('name', KERNELS)
def test_bfloat16_resampling_kernels(name, monkeypatch):
    """In bfloat16 (CPU autocast) oneDNN's transposed convolutions are slow,
    so upsampling is ATen's; the pool stays a convolution, with or without
    gradients (its backward is its own, not the convolution's), and gives
    ATen's values and input gradients."""
    aten = {'avg_pool_2x': 'avg_pool2d'}.get(name, 'interpolate')
    x = torch.randn(2, 4, 8, 8, dtype=torch.bfloat16)
    expect_aten = name != 'avg_pool_2x'
    for requires_grad in (False, True):
        aten_calls = count_calls(monkeypatch, aten, F)
        conv_calls = [count_calls(monkeypatch, conv, F)
                      for conv in ('conv2d', 'conv_transpose2d')]
        leaf = x.clone().requires_grad_(requires_grad)
        out = getattr(fast_ops, name)(leaf)
        monkeypatch.undo()
        assert out.dtype == torch.bfloat16
        assert bool(aten_calls) == expect_aten
        assert any(conv_calls) != expect_aten
    ref_leaf = x.clone().requires_grad_()
    ref = reference_kernel(name, ref_leaf)
    if not expect_aten:  # the same values and gradients as ATen's pool
        assert torch.equal(out.detach(), ref.detach())
        grad = torch.randn_like(ref)
        assert torch.equal(torch.autograd.grad(out, leaf, grad)[0],
                           torch.autograd.grad(ref, ref_leaf, grad)[0])
    # float32 keeps the convolutions, with or without gradients.
    conv_calls = [count_calls(monkeypatch, conv, F)
                  for conv in ('conv2d', 'conv_transpose2d')]
    getattr(fast_ops, name)(x.float().requires_grad_())
    assert any(conv_calls)


def test_merge_skipped_for_other_norms(monkeypatch):
    merged = count_calls(monkeypatch, 'merged_branches')
    kwargs = dict(block_cases()[1][0], norm_cfg=dict(type='GN',
                                                    num_groups=2))
    block = ElasticBottleneck(**kwargs).eval()
    x = torch.randn(1, 32, 8, 8)
    ref = block(x)
    assert not merged
    # Swapping BN for SyncBN after construction must also turn it off.
    block = make_block(block_cases()[1][0]).eval()
    block.high.norm1 = nn.SyncBatchNorm(8)
    block(x)
    assert not merged
    assert ref.shape == (1, 32, 8, 8)


def test_trained_resample_is_never_commuted(monkeypatch):
    fused = count_calls(monkeypatch, 'fused_branches')
    block = make_block(dict(block_cases()[0][0], resample='trained')).eval()
    x = torch.randn(1, 32, 9, 8)
    out = block(x)
    with fast_path(False):
        ref = block(x)
    assert not fused
    assert_close(out, ref)


@pytest.mark.parametrize('case,channels_last', [(0, False), (1, False),
                                                (0, True), (5, False)])
def test_block_fast_path_under_torch_compile(case, channels_last,
                                             monkeypatch):
    """torch.compile traces the fast path in one graph (no graph break) and
    trains it to the straightforward numbers, down to 2x2 low-resolution
    maps (on which torch 2.14's Inductor fails for the replicate pad). In
    channels-last too, compiled training takes the commuted conv3
    (uses_channels_last_kernels) and the element-wise resampling."""
    torch._dynamo.reset()
    kwargs, cin, _ = block_cases()[case]
    x = as_format(torch.randn(2, cin, 4, 4), channels_last)
    ref_block, fast_block = make_block(kwargs).train(), \
        make_block(kwargs).train()
    ref = run_step(ref_block, x, fast=False)
    compiled = torch.compile(fast_block, fullgraph=True)
    traced_fused = count_calls(monkeypatch, 'fused_branches')
    traced = {name: count_calls(monkeypatch, name, fast_ops)
              for name in ELEMENTWISE_KERNELS}
    out = run_step(compiled, x, fast=True)
    elastic = case in (0, 5)  # 5: nearest upsampling
    assert bool(traced_fused) == elastic
    up = '_nearest_up_2x_elementwise' if case == 5 else \
        '_bilinear_up_2x_elementwise'
    assert {name for name, calls in traced.items() if calls} == \
        ({'_avg_pool_2x_elementwise', up} if elastic else set())
    monkeypatch.undo()
    assert_close(out[0], ref[0])
    assert_close(out[1], ref[1])
    grads = {n.replace('_orig_mod.', ''): g for n, g in out[2].items()}
    assert grads.keys() == ref[2].keys()
    for name in ref[2]:
        assert_close(grads[name], ref[2][name], atol=1e-4)
    # Compiled inference traces the straightforward path: Inductor fuses
    # its resampling (fast_path_enabled).
    calls = count_calls(monkeypatch, 'fused_branches')
    merged = count_calls(monkeypatch, 'merged_branches')
    fast_block.eval()
    ref_block.eval()
    with torch.no_grad():
        out = torch.compile(fast_block, fullgraph=True)(x)
        with fast_path(False):
            ref = ref_block(x)
    assert_close(out, ref)
    assert not calls and not merged
    torch._dynamo.reset()


# --- dense layers ------------------------------------------------------------
def make_dense_layer(seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = ElasticDenseLayer(24, growth_rate=8, bn_size=4, **kwargs)
    layer.init_weights()
    randomize_bn(layer, seed)
    return layer


@pytest.mark.parametrize('memory_efficient', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('elastic', [False, True])
def test_dense_layer_fast_equals_straightforward(elastic, train,
                                                 channels_last,
                                                 memory_efficient):
    kwargs = dict(elastic=elastic, memory_efficient=memory_efficient)
    inputs = [
        as_format(torch.randn(3, c, 11, 9), channels_last) for c in (16, 8)
    ]
    ref_layer, fast_layer = make_dense_layer(**kwargs), \
        make_dense_layer(**kwargs)
    for layer in (ref_layer, fast_layer):
        layer.train(train)
    ref = run_step(ref_layer, inputs, fast=False)
    out = run_step(fast_layer, inputs, fast=True)
    # Relative to the scale of each tensor, as for the backbones below: the
    # merged layer sums the two branches' products in another order.
    assert_close_scaled(out[0], ref[0])
    for grad, ref_grad in zip(out[1], ref[1]):
        assert_close_scaled(grad, ref_grad)
    assert out[2].keys() == ref[2].keys()
    for name in ref[2]:
        assert_close_scaled(out[2][name], ref[2][name],
                            atol=1e-4 if train else ATOL)
    for name in ref[3]:
        assert torch.allclose(out[3][name].float(), ref[3][name].float(),
                              atol=ATOL), name


def test_dense_merge_dispatch(monkeypatch):
    import mmelastic.models.backbones.densenet as densenet
    merged = count_calls(monkeypatch, 'merged_dense_exit', densenet)
    inputs = [torch.randn(2, 24, 8, 8)]
    make_dense_layer(elastic=True).eval()(inputs)
    make_dense_layer(elastic=False, high_ratio=1.0).eval()(inputs)
    assert not merged  # elastic, or a single branch: nothing to merge
    plain = make_dense_layer(elastic=False).eval()
    plain(inputs)
    assert len(merged) == 1
    with fast_path(False):
        plain(inputs)
    assert len(merged) == 1
    # Dropout acts on the high branch only: merged in eval, not in training.
    dropout = make_dense_layer(elastic=False, drop_rate=0.5)
    dropout.eval()(inputs)
    assert len(merged) == 2
    dropout.train()(inputs)
    assert len(merged) == 2
    # Other norms (here set after construction) fall back.
    plain.low.norm2 = nn.GroupNorm(4, plain.low.norm2.num_features)
    plain(inputs)
    assert len(merged) == 2


# --- backbones ---------------------------------------------------------------
def tiny_backbones():
    return {
        'resnext50_elastic': lambda: ElasticResNeXt(
            arch='resnext50_elastic', base_channels=16, stem_channels=16,
            groups=8, width_per_group=2, out_indices=(0, 1, 2, 3)),
        'resnext50': lambda: ElasticResNeXt(
            arch='resnext50', base_channels=16, stem_channels=16, groups=8,
            width_per_group=2, out_indices=(0, 1, 2, 3)),
        'se_resnext50_elastic': lambda: ElasticResNeXt(
            arch='se_resnext50_elastic', base_channels=16, stem_channels=16,
            groups=8, width_per_group=2),
        'dla60x_elastic': lambda: ElasticDLA(
            arch='dla60x_elastic', channels=(8, 16, 32, 64, 96, 128),
            cardinality=4, out_indices=(2, 3, 4, 5)),
        'densenet201_elastic': lambda: ElasticDenseNet(
            arch=dict(ElasticDenseNet.arch_settings['densenet201_elastic'],
                      growth_rate=8, init_channels=16)),
    }


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('arch', sorted(tiny_backbones()))
def test_backbone_fast_equals_straightforward(arch, channels_last):
    torch.manual_seed(0)
    model = tiny_backbones()[arch]()
    model.init_weights()
    randomize_bn(model)
    model.eval()
    x = as_format(torch.randn(2, 3, 97, 81), channels_last)
    with torch.no_grad():
        outs = model(x)
        with fast_path(False):
            refs = model(x)
    for out, ref in zip(outs, refs):
        # Relative to the feature scale: deep nets grow activations.
        assert_close_scaled(out, ref)
