# Copyright (c) mmelastic contributors. All rights reserved.
"""Helpers shared by the model tests (imported by path: no package)."""
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmelastic.analysis.complexity import model_complexity


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def flops(model, size=224):
    """mmengine's FLOPs at ``size x size`` (on the straightforward path)."""
    return model_complexity(model, (size, size))['flops']


def randomize_bn(model, seed=0):
    """Give every norm non-trivial affine parameters and running statistics
    (fresh BN is an identity in eval mode and would hide norm bugs)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) * 0.5 + 0.25
            m.bias.data = torch.randn(n, generator=gen) * 0.1
            m.running_mean = torch.randn(n, generator=gen) * 0.1
            m.running_var = torch.rand(n, generator=gen) + 0.5


def assert_same_training_step(model, twin, x, out_atol=1e-6, grad_atol=1e-5):
    """One training forward/backward of two models with the same weights
    (e.g. with and without gradient checkpointing) gives the same first
    output and the same parameter gradients."""
    outs = []
    for m in (model, twin):
        m.train()
        out = m(x)[0]
        out.sum().backward()
        outs.append(out.detach())
    assert torch.allclose(outs[0], outs[1], atol=out_atol)
    for (name, a), (_, b) in zip(model.named_parameters(),
                                 twin.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=grad_atol), name
