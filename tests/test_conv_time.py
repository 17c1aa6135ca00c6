# Copyright (c) mmelastic contributors. All rights reserved.
"""mmelastic.analysis.conv_time: which convolutions a step runs (forward,
backward, custom autograd functions, inference mode) and the bookkeeping of
timing them alone."""
import itertools

import pytest
import torch
import torch.nn as nn

from mmelastic.analysis.conv_time import (BACKWARD_OP, record_convolutions,
                                          summarize_conv_time,
                                          time_convolutions)
from mmelastic.models.utils import ElasticBottleneck, fast_path


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 1, groups=2, bias=False))


def train_step(model, x):
    return lambda: model(x).sum().backward()


def by_kind(calls, kind):
    return {c: n for c, n in calls.items() if c.kind == kind}


def test_records_forward_and_backward_of_a_training_step():
    model, x = small_net(), torch.rand(2, 3, 8, 8)
    calls = record_convolutions(train_step(model, x))
    forward, backward = by_kind(calls, 'forward'), by_kind(calls, 'backward')
    assert sum(forward.values()) == 2 and sum(backward.values()) == 2
    assert {c.op for c in backward} == {BACKWARD_OP}
    masks = sorted(tuple(c.argument('output_mask')) for c in backward)
    # The first conv's input needs no gradient; only it has a bias.
    assert masks == [(False, True, True), (True, True, False)]
    shapes = sorted((c.argument('input').shape, c.argument('weight').shape,
                     c.argument('groups')) for c in forward)
    assert shapes == [((2, 3, 8, 8), (4, 3, 3, 3), 1),
                      ((2, 4, 8, 8), (8, 2, 1, 1), 2)]
    assert not any(c.argument('input').channels_last for c in calls)
    described = sorted(c.describe() for c in calls)
    assert 'backward x(2, 4, 8, 8) w(8, 2, 1, 1) groups=2 ' \
        'grads=input+weight' in described
    assert 'backward x(2, 3, 8, 8) w(4, 3, 3, 3) grads=weight+bias' \
        in described


def test_repeated_calls_are_counted_and_layouts_kept():
    conv = nn.Conv2d(4, 4, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(1, 4, 6, 6).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.no_grad():
            for _ in range(3):
                conv(x)

    calls = record_convolutions(step)
    assert list(calls.values()) == [3]
    call, = calls
    assert call.kind == 'forward'
    assert call.argument('input').channels_last
    assert call.argument('input').dtype == torch.float32


def test_records_inference_mode_and_transposed_convs():
    # Under inference_mode the functional ops reach the dispatcher
    # themselves (aten.conv2d, aten.conv_transpose2d), not
    # aten.convolution.
    model = small_net()
    up = nn.ConvTranspose2d(8, 8, 2, stride=2, groups=8, bias=False)
    with torch.inference_mode():
        calls = record_convolutions(lambda: up(model(torch.rand(1, 3, 8, 8))))
    assert sum(calls.values()) == 3
    assert all(c.kind == 'forward' for c in calls)
    names = sorted(c.op._schema.name for c in calls)
    assert names == ['aten::conv2d', 'aten::conv2d',
                     'aten::conv_transpose2d']
    transposed, = [c for c in calls if 'transposed' in c.describe()]
    assert transposed.argument('groups') == 8


def test_records_the_fast_paths_custom_backward_convolutions():
    """An elastic block's fast path (NCHW, CPU) pools with a depthwise
    conv and runs the low branch's conv1 and the fused conv3 in custom
    autograd functions, whose backward calls convolution_backward
    itself: all of them are recorded; the straightforward path has no
    depthwise conv."""
    torch.manual_seed(0)
    block = ElasticBottleneck(32, 32, mid_channels=16, groups=4).train()
    x = torch.rand(2, 32, 8, 8, requires_grad=True)
    calls = record_convolutions(train_step(block, x))
    low_conv1 = tuple(block.low.conv1.weight.shape)
    conv3 = (32, 16, 1, 1)  # both branches' conv3 as one conv
    backward_weights = [c.argument('weight').shape
                        for c in by_kind(calls, 'backward')]
    assert low_conv1 in backward_weights and conv3 in backward_weights
    depthwise = [c for c in calls if c.argument('groups') == 32]
    assert depthwise and all(c.argument('weight').shape[1] == 1
                             for c in depthwise)
    with fast_path(False):
        plain = record_convolutions(train_step(block, x))
    assert not [c for c in plain if c.argument('groups') == 32]
    # Straightforward: 3 convs per branch, each forward and backward.
    assert sum(plain.values()) == 12


def fake_clock():
    """A clock that advances by exactly 1 between two readings."""
    return itertools.count().__next__


def test_time_convolutions_counts_each_call_as_often_as_the_step():
    model, x = small_net(), torch.rand(2, 3, 8, 8)

    def step():
        for _ in range(2):
            model(x).sum().backward()

    calls = record_convolutions(step)
    assert set(calls.values()) == {2}
    result = time_convolutions(calls, clock=fake_clock())
    assert result['per_call'] == {c: 1 for c in calls}
    with pytest.raises(ValueError, match='repeats must be >= 1'):
        time_convolutions(calls, repeats=0)
    assert result['forward'] == 4 and result['backward'] == 4
    assert result['total'] == 8


def test_time_convolutions_reruns_the_recorded_op():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).to(
        memory_format=torch.channels_last)
    x = torch.rand(1, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.rand(1, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    calls = record_convolutions(lambda: conv(x).backward(grad))
    seen = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (BACKWARD_OP, torch.ops.aten.convolution.default):
                seen.append((func._schema.name, tuple(args[0].shape),
                             args[0].is_contiguous(
                                 memory_format=torch.channels_last)))
            return func(*args, **(kwargs or {}))

    with Spy():
        time_convolutions(calls, repeats=2)
    # Each call: once untimed, twice timed, on tensors of its layout.
    assert sorted(seen) == [('aten::convolution', (1, 4, 5, 5), True)] * 3 + \
        [('aten::convolution_backward', (1, 6, 5, 5), True)] * 3


def test_summarize_conv_time():
    model, x = small_net(), torch.rand(2, 3, 8, 8)
    calls = record_convolutions(train_step(model, x))
    calls = {c: (3 if c.kind == 'forward' else 1) for c in calls}
    fwd = sorted((c for c in calls if c.kind == 'forward'), key=str)
    bwd = sorted((c for c in calls if c.kind == 'backward'), key=str)
    per_call = [  # seconds of one call, three rounds
        {fwd[0]: 0.01, fwd[1]: 0.02, bwd[0]: 0.10, bwd[1]: 0.01},
        {fwd[0]: 0.01, fwd[1]: 0.02, bwd[0]: 0.30, bwd[1]: 0.01},
        {fwd[0]: 0.02, fwd[1]: 0.02, bwd[0]: 0.20, bwd[1]: 0.01},
    ]
    rounds = []
    for times, step in zip(per_call, (0.7, 0.5, 0.9)):
        forward = sum(times[c] * calls[c] for c in fwd)
        backward = sum(times[c] * calls[c] for c in bwd)
        rounds.append(dict(forward=forward, backward=backward,
                           total=forward + backward, per_call=times,
                           step=step))
    summary = summarize_conv_time(calls, rounds, top=2)
    assert summary['calls'] == dict(forward=6, backward=2)
    assert summary['forward_ms'] == pytest.approx(90)  # (0.01+0.02)*3
    assert summary['backward_ms'] == pytest.approx(210)
    # Totals 200, 400, 330 ms; steps 700, 500, 900 ms.
    assert summary['total_ms'] == pytest.approx(330)
    assert summary['step_ms'] == pytest.approx(700)
    # The rest is the median of each round's difference (500, 100, 570),
    # not the difference of the medians (370).
    assert summary['rest_ms'] == pytest.approx(500)
    assert summary['rounds_ms'] == [
        dict(step=pytest.approx(s), convolutions=pytest.approx(c))
        for s, c in ((700, 200), (500, 400), (900, 330))]
    # Largest time per step first: bwd[0] (200 ms), then fwd[1] (60 ms).
    assert summary['top_calls'] == [
        dict(call=bwd[0].describe(), count=1, ms=pytest.approx(200)),
        dict(call=fwd[1].describe(), count=3, ms=pytest.approx(60)),
    ]
