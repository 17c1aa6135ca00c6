# Copyright (c) mmelastic contributors. All rights reserved.
"""How much of a step its convolutions take, each timed alone.

A step's time splits into its convolutions and the rest: batch norms,
ReLUs, sums, resampling, gradient accumulation, the optimizer. ELASTIC
keeps the FLOPs of its baseline, and so roughly its convolution time, but
runs more blocks at high resolution, whose element-wise layers FLOPs do not
count. :func:`record_convolutions` lists every convolution one step runs
(forward and backward, with shapes, memory formats and which gradients
each backward call computes), and :func:`time_convolutions` runs each again
alone on random tensors of the same layout.
``tools/analysis/benchmark.py --conv-time`` prints their sum next to the
time of a whole step, taken in the same rounds, per model, and the rest of
the step (step minus convolutions).

Timed alone, a convolution runs with warm caches and without its
neighbours' memory traffic, so the sum is an estimate of the convolutions'
share of a step, not a profile of it.
"""
import collections
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmelastic.models.utils.fast_ops import is_channels_last


def _conv_ops():
    """The ATen ops a convolution can reach the dispatcher as.

    With autograd on, every 2D convolution (transposed or not) arrives as
    ``aten.convolution`` and its backward as ``aten.convolution_backward``;
    under ``torch.inference_mode`` the functional ops themselves arrive
    (``aten.conv2d``, ``aten.conv_transpose2d``, ...).
    """
    names = ('convolution.default', 'conv1d.default', 'conv1d.padding',
             'conv2d.default', 'conv2d.padding', 'conv3d.default',
             'conv3d.padding', 'conv_transpose1d.default',
             'conv_transpose2d.input', 'conv_transpose3d.input',
             '_convolution.default', 'convolution_backward.default')
    ops = set()
    for name in names:
        packet, overload = name.split('.')
        op = getattr(getattr(torch.ops.aten, packet, None), overload, None)
        if op is not None:
            ops.add(op)
    return frozenset(ops)


CONV_OPS = _conv_ops()
BACKWARD_OP = torch.ops.aten.convolution_backward.default

TensorSpec = collections.namedtuple('TensorSpec',
                                    'shape channels_last dtype device')
TensorSpec.__doc__ = 'Layout of one tensor argument of a recorded call.'


class ConvCall(collections.namedtuple('ConvCall', 'op args kwargs')):
    """One convolution a step ran: the ATen op and its arguments (tensors
    as :class:`TensorSpec`; ``kwargs`` as sorted ``(name, value)`` pairs).
    """

    @property
    def kind(self):
        """'backward' for ``aten.convolution_backward``, else 'forward'."""
        return 'backward' if self.op is BACKWARD_OP else 'forward'

    def argument(self, name):
        """The recorded value of the op's argument ``name`` (None if the
        call left it to its default)."""
        kwargs = dict(self.kwargs)
        if name in kwargs:
            return kwargs[name]
        names = [a.name for a in self.op._schema.arguments]
        index = names.index(name) if name in names else len(self.args)
        return self.args[index] if index < len(self.args) else None

    def describe(self):
        """Short text: the kind, input and weight shapes, groups and (for
        backward calls) the gradients computed."""
        x = self.argument('input')
        w = self.argument('weight')
        text = f'{self.kind} x{tuple(x.shape)} w{tuple(w.shape)}'
        if self.argument('transposed') or \
                'transpose' in self.op._schema.name:
            text += ' transposed'
        groups = self.argument('groups')
        if groups not in (None, 1):
            text += f' groups={groups}'
        if self.kind == 'backward':
            grads = [n for n, on in zip(('input', 'weight', 'bias'),
                                        self.argument('output_mask')) if on]
            text += f' grads={"+".join(grads) or "none"}'
        return text


def _freeze(value):
    """A hashable record of one op argument."""
    if isinstance(value, torch.Tensor):
        return TensorSpec(
            tuple(value.shape), is_channels_last(value), value.dtype,
            str(value.device))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _materialize(value, generator):
    if isinstance(value, TensorSpec):
        t = torch.randn(value.shape, generator=generator, dtype=torch.float32)
        t = t.to(device=value.device, dtype=value.dtype)
        if value.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(value, tuple):
        return [_materialize(v, generator) for v in value]
    return value


class _ConvRecorder(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in CONV_OPS:
            frozen_kwargs = tuple(
                sorted((k, _freeze(v)) for k, v in kwargs.items()))
            self.calls[ConvCall(func, _freeze(args), frozen_kwargs)] += 1
        return func(*args, **kwargs)


def record_convolutions(step):
    """Run ``step()`` once and list the convolutions it ran.

    Every call of a convolution op (forward, transposed convolutions
    included; :func:`_conv_ops`) and of ``aten.convolution_backward``
    (backward, including the calls custom autograd functions make) is
    recorded with the layout of its tensors and its other arguments. Calls
    that :mod:`torch.compile`'d code makes inside its own kernels are not
    seen: record an eager model.

    Returns:
        collections.Counter: ``ConvCall -> number of calls``.
    """
    recorder = _ConvRecorder()
    with recorder:
        step()
    return recorder.calls


def time_convolutions(calls, sync=None, clock=time.perf_counter, seed=0,
                      repeats=3):
    """Time every recorded convolution alone, on random inputs.

    Each distinct call gets fresh random tensors of its recorded layout,
    runs once untimed (warm-up) and ``repeats`` times timed; the median of
    those is its time, which counts as often as the step made the call.
    The tensors are freed before the next call.

    Args:
        calls (collections.Counter): From :func:`record_convolutions`.
        sync (callable, optional): Waits for the device (CUDA); None on a
            CPU.
        clock (callable): Seconds, monotonic. Default: time.perf_counter.
        seed (int): Seed of the random tensors.
        repeats (int): Timed runs per call. Default: 3.

    Returns:
        dict: seconds per step of the ``forward`` and ``backward`` calls,
        ``total``, and ``per_call`` (``ConvCall -> seconds of one call``).
    """
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    sync = sync or (lambda: None)
    generator = torch.Generator().manual_seed(seed)
    totals = dict(forward=0.0, backward=0.0)
    per_call = {}
    with torch.no_grad():
        for call, count in calls.items():
            args = _materialize(call.args, generator)
            kwargs = {k: _materialize(v, generator) for k, v in call.kwargs}
            call.op(*args, **kwargs)
            sync()
            seconds = []
            for _ in range(repeats):
                start = clock()
                call.op(*args, **kwargs)
                sync()
                seconds.append(clock() - start)
            del args, kwargs
            per_call[call] = statistics.median(seconds)
            totals[call.kind] += per_call[call] * count
    totals['total'] = totals['forward'] + totals['backward']
    totals['per_call'] = per_call
    return totals


def summarize_conv_time(calls, rounds, top=10):
    """The JSON-ready summary of one model's convolution time.

    Args:
        calls (collections.Counter): From :func:`record_convolutions`.
        rounds (list[dict]): One per round: a :func:`time_convolutions`
            result with ``step``, the seconds of one whole step timed in
            the same round.
        top (int): How many calls to list, by their time per step.

    Returns:
        dict: ``calls`` (count of forward and backward calls), medians over
        the rounds in ms per step (``forward_ms``, ``backward_ms``,
        ``total_ms``, ``step_ms`` and ``rest_ms``, the median of each
        round's step minus its convolutions), ``rounds_ms`` (each round's
        ``step`` and ``convolutions``) and ``top_calls`` (description,
        count, median ms per step).
    """
    def median_ms(values):
        return statistics.median(values) * 1000

    by_call = [(median_ms([r['per_call'][c] * n for r in rounds]), c, n)
               for c, n in calls.items()]
    by_call.sort(key=lambda item: -item[0])
    return dict(
        calls={kind: sum(n for c, n in calls.items() if c.kind == kind)
               for kind in ('forward', 'backward')},
        forward_ms=median_ms([r['forward'] for r in rounds]),
        backward_ms=median_ms([r['backward'] for r in rounds]),
        total_ms=median_ms([r['total'] for r in rounds]),
        step_ms=median_ms([r['step'] for r in rounds]),
        rest_ms=median_ms([r['step'] - r['total'] for r in rounds]),
        rounds_ms=[dict(step=r['step'] * 1000,
                        convolutions=r['total'] * 1000) for r in rounds],
        top_calls=[dict(call=c.describe(), count=n, ms=ms)
                   for ms, c, n in by_call[:top]])
