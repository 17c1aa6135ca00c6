# Copyright (c) mmelastic contributors. All rights reserved.
"""Parameter, FLOP and feature-map traffic counts of whole models."""
from collections import Counter

import torch
from mmengine.analysis import get_model_complexity_info
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorForward(torch.nn.Module):
    """``model(x, mode='tensor')`` as a plain module: a classifier or
    segmentor end to end on a raw tensor (no data preprocessor), so the
    counters see backbone, neck and head, and torch.compile one module."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs, mode='tensor')


def model_complexity(model, shape=(224, 224)):
    """Count a model's parameters and FLOPs with mmengine's counter.

    The counter counts one multiply-add as one FLOP (the convention of the
    ELASTIC paper's tables); it counts bilinear upsampling (4 per output
    element) and batch norm, not pooling, additions or ReLUs. It runs the
    straightforward path (:func:`mmelastic.models.utils.fast_path`), i.e.
    counts the model as the paper defines it.

    Args:
        model (nn.Module): An mmpretrain classifier or mmseg segmentor.
        shape (tuple[int, int]): Input height and width. Default: (224, 224).

    Returns:
        dict: ``params`` (int, all parameters including the head) and
        ``flops`` (int, batch size 1).
    """
    from mmelastic.models.utils import fast_path
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    # Count the straightforward path: the fast path computes the same
    # function with kernels the counter sees differently (pooling and
    # upsampling written as convolutions, a commuted conv3 at full size).
    with torch.no_grad(), fast_path(False):
        info = get_model_complexity_info(
            TensorForward(model),
            input_shape=(3, *shape),
            show_table=False,
            show_arch=False)
    return dict(params=params, flops=int(info['flops']))


class _CountWrites(TorchDispatchMode):
    """Count the elements every non-view ATen op writes (in-place ops
    included: they write their output over their input), per op."""

    def __init__(self):
        super().__init__()
        self.by_op = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            self.by_op[func.overloadpacket.__name__] += sum(
                t.numel() for t in tree_leaves(out)
                if isinstance(t, torch.Tensor))
        return out


def feature_map_traffic(model, shape=(224, 224)):
    """How much feature-map memory a model's forward pass writes and keeps.

    FLOPs do not predict wall-clock time where layers are limited by memory
    traffic (batch norms, ReLUs, residual sums, resampling, grouped and
    thin 1x1 convolutions on a CPU). Two counts that do, per image, on the
    path that runs (the fast path unless it is switched off):

    * ``written``: elements written by every ATen op of an inference
      forward pass (views excluded, in-place ops included);
    * ``saved_bytes``: bytes of the tensors autograd keeps for the backward
      pass of a training forward pass (parameters excluded; a storage kept
      by several ops counted once) -- the activation memory of a training
      step.

    Both are the growth from batch size 2 to 4, halved: what every further
    image adds (batch norms can train on 1x1 maps). What a training pass
    keeps once per batch, whatever the batch size (per-channel statistics,
    or copies of weights, which the fast path once kept for its merged
    branches), is ``saved_per_batch_bytes``.

    The model is left in eval mode, its BN running statistics as they were.

    Args:
        model (nn.Module): An mmpretrain classifier or mmseg segmentor.
        shape (tuple[int, int]): Input height and width. Default: (224, 224).

    Returns:
        dict: ``written`` (int), ``written_by_op`` (dict: ATen op name, e.g.
        ``'native_batch_norm'``, to its part of ``written``, largest first),
        ``saved_bytes`` (int) and ``saved_per_batch_bytes`` (int).
    """
    forward = TensorForward(model)
    param = next(model.parameters())
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def count(batch):
        inputs = torch.randn(batch, 3, *shape, dtype=param.dtype,
                             device=param.device)
        model.eval()
        counter = _CountWrites()
        with torch.no_grad(), counter:
            forward(inputs)

        saved = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in params:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward(inputs)
        return counter.by_op, sum(saved.values())

    buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        written2, saved2 = count(2)
        written4, saved4 = count(4)
    finally:
        with torch.no_grad():
            for buffer, before in buffers:
                buffer.copy_(before)
        model.eval()
    by_op = {op: (written4[op] - written2[op]) // 2 for op in written4}
    by_op = dict(sorted(((op, n) for op, n in by_op.items() if n),
                        key=lambda item: -item[1]))
    return dict(written=sum(by_op.values()), written_by_op=by_op,
                saved_bytes=(saved4 - saved2) // 2,
                saved_per_batch_bytes=2 * saved2 - saved4)
