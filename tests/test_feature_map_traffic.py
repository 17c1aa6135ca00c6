# Copyright (c) mmelastic contributors. All rights reserved.
"""feature_map_traffic on hand-made models whose counts follow from their
layers (per image: what each image adds to a batch)."""
import torch
import torch.nn.functional as F
from torch import nn

from mmelastic.analysis import feature_map_traffic


class TinyNet(nn.Module):
    """conv (3->4, no bias) -> in-place ReLU -> conv (4->2) -> flatten, run
    like a classifier (``model(x, mode='tensor')``)."""

    def __init__(self, norm=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(4) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 2, 1, bias=False)

    def forward(self, inputs, mode='tensor'):
        assert mode == 'tensor'
        return self.conv2(self.relu(self.norm(self.conv1(inputs)))).flatten(1)


def test_counts_of_a_plain_net():
    h, w = 6, 10
    counts = feature_map_traffic(TinyNet(), (h, w))
    # Written: conv1 (4 maps), the in-place ReLU over them (4), conv2 (2);
    # the flatten is a view.
    assert counts['written'] == (4 + 4 + 2) * h * w
    assert counts['written_by_op'] == dict(convolution=(4 + 2) * h * w,
                                           relu_=4 * h * w)
    # Saved: conv1's input (3 maps) and the ReLU's output (4), which conv2
    # keeps too (one storage, counted once); no weights.
    assert counts['saved_bytes'] == (3 + 4) * h * w * 4
    assert counts['saved_per_batch_bytes'] == 0


class ConcatWeights(nn.Module):
    """One conv whose weight is concatenated from two parameters on every
    call: plain autograd keeps the concatenation, once per batch."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(3, 3, 3, 3))
        self.b = nn.Parameter(torch.randn(5, 3, 3, 3))

    def forward(self, inputs, mode='tensor'):
        return F.conv2d(inputs, torch.cat([self.a, self.b]), padding=1)


def test_weights_kept_once_per_batch():
    h, w = 4, 6
    counts = feature_map_traffic(ConcatWeights(), (h, w))
    # Per image: the input (3 maps); per batch: the 8x3x3x3 weight copy.
    assert counts['saved_bytes'] == 3 * h * w * 4
    assert counts['saved_per_batch_bytes'] == 8 * 3 * 3 * 3 * 4


def test_norm_layer_counts_and_state():
    h, w = 5, 7
    model = TinyNet(norm=True)
    model.norm.running_mean.fill_(0.5)
    model.train()
    counts = feature_map_traffic(model, (h, w))
    # + the BN output (4 maps) written; BN keeps conv1's output for its
    # backward pass (4 maps; its per-channel statistics do not grow with
    # the batch).
    assert counts['written'] == (4 + 4 + 4 + 2) * h * w
    assert counts['saved_bytes'] == (3 + 4 + 4) * h * w * 4
    # Once per batch: the running mean and variance and the batch mean and
    # inverse std the BN keeps, 4 channels each.
    assert counts['saved_per_batch_bytes'] == 4 * 4 * 4
    # The training-mode pass leaves no trace.
    assert not model.training
    assert torch.all(model.norm.running_mean == 0.5)
    assert model.norm.num_batches_tracked.item() == 0


def test_get_flops_traffic_columns(tmp_path, config_path, run_cmd):
    """tools/analysis/get_flops.py --traffic reports the counts of
    feature_map_traffic for the config's model (default and fast path)."""
    import json

    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from mmelastic.analysis import model_complexity
    config = config_path('tiny_cls.py')
    out = run_cmd([
        'python', 'tools/analysis/get_flops.py', config, '--traffic',
        '--shape', '32', '--json', tmp_path / 'counts.json'
    ]).stdout
    assert 'writes (M elements)' in out and 'saved for backward (MB)' in out
    assert 'saved once per batch (MB)' in out
    row, = json.loads((tmp_path / 'counts.json').read_text())['models']

    import mmelastic  # noqa: F401
    cfg = Config.fromfile(config)
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    assert row['flops'] == model_complexity(model, (32, 32))['flops']
    expected = feature_map_traffic(model, (32, 32))
    keys = ('written', 'written_by_op', 'saved_bytes',
            'saved_per_batch_bytes')
    assert [row[k] for k in keys] == [expected[k] for k in keys]
    assert row['written'] > 0 and row['saved_bytes'] > 0
