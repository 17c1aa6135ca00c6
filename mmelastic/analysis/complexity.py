# Copyright (c) mmelastic contributors. All rights reserved.
"""Parameter and FLOP counts of whole models built from configs."""
import torch
from mmengine.analysis import get_model_complexity_info


class _TensorForward(torch.nn.Module):
    """Run a classifier/segmentor end to end on a raw tensor (no data
    preprocessor), so the counter sees backbone, neck and head."""

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
            _TensorForward(model),
            input_shape=(3, *shape),
            show_table=False,
            show_arch=False)
    return dict(params=params, flops=int(info['flops']))
