# Copyright (c) mmelastic contributors. All rights reserved.
"""Helpers shared by the converter tests: random official-layout values and
the reference batch norm of the official models' forward passes."""
import torch
import torch.nn.functional as F


def randomize(state_dict, seed=0):
    """Random values with non-trivial BN statistics."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state_dict.items():
        if k.endswith('num_batches_tracked'):
            out[k] = torch.tensor(7)
        elif k.endswith('running_var'):
            out[k] = torch.rand(v.shape, generator=gen) + 0.5
        elif k.endswith('running_mean'):
            out[k] = torch.randn(v.shape, generator=gen) * 0.1
        elif v.dim() == 1 and k.endswith('weight'):  # norm scale
            # Small scales keep the residual stream, and so the logits,
            # O(1): tolerances then mean what they say.
            out[k] = torch.rand(v.shape, generator=gen) * 0.2 + 0.1
        elif v.dim() == 1:  # norm shift, conv/fc bias
            out[k] = torch.randn(v.shape, generator=gen) * 0.1
        else:
            fan_in = v[0].numel()
            out[k] = torch.randn(v.shape, generator=gen) * (2 / fan_in)**0.5
    return out


def bn(sd, name, x):
    """Eval-mode batch norm with the official state dict's entries."""
    return F.batch_norm(x, sd[f'{name}.running_mean'],
                        sd[f'{name}.running_var'], sd[f'{name}.weight'],
                        sd[f'{name}.bias'], False, 0., 1e-5)
