# Copyright (c) mmelastic contributors. All rights reserved.
from .elastic_bottleneck import BottleneckBranch, ElasticBottleneck
from .resample import RESAMPLE_MODES, Resample2x, split_channels

__all__ = [
    'BottleneckBranch', 'ElasticBottleneck', 'RESAMPLE_MODES', 'Resample2x',
    'split_channels'
]
