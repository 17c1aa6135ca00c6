# Copyright (c) mmelastic contributors. All rights reserved.
from .backbone import (ElasticBackboneMixin, kaiming_init_cfg,
                       pretrained_init_cfg, resolve_arch, stage_flags)
from .elastic_bottleneck import BottleneckBranch, ElasticBottleneck
from .fast_ops import fast_path, fast_path_enabled
from .resample import RESAMPLE_MODES, Resample2x, split_channels

__all__ = [
    'ElasticBackboneMixin', 'kaiming_init_cfg', 'pretrained_init_cfg',
    'resolve_arch', 'stage_flags',
    'BottleneckBranch', 'ElasticBottleneck', 'RESAMPLE_MODES', 'Resample2x',
    'split_channels', 'fast_path', 'fast_path_enabled'
]
