# Copyright (c) mmelastic contributors. All rights reserved.
from .complexity import feature_map_traffic, model_complexity
from .paper import IMAGENET as PAPER_IMAGENET
from .scale_policy import (NoElasticBlocksError, ScalePolicyRecorder,
                           ScalePolicyResults, collect_scale_policy,
                           find_scale_policy_blocks, load_classifier)
from .scale_policy_report import (run_scale_policy_analysis,
                                  write_scale_policy_report)

__all__ = [
    'model_complexity', 'feature_map_traffic', 'PAPER_IMAGENET',
    'ScalePolicyRecorder',
    'ScalePolicyResults', 'NoElasticBlocksError', 'find_scale_policy_blocks',
    'collect_scale_policy', 'load_classifier', 'run_scale_policy_analysis',
    'write_scale_policy_report'
]
