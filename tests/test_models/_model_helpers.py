# Copyright (c) mmelastic contributors. All rights reserved.
"""Helpers shared by the model tests (imported by path: no package)."""
import torch
from torch.nn.modules.batchnorm import _BatchNorm


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
