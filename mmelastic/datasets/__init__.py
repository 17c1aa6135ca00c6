# Copyright (c) mmelastic contributors. All rights reserved.
"""Datasets of mmelastic: multi-label COCO with object-size information."""
from .coco_multilabel import COCO_CATEGORIES, SIZE_META_KEYS, COCOMultiLabel
from .object_sizes import (COCO_AREA_THRESHOLDS, SIZE_NAMES, SIZE_SUBSETS,
                           size_index, subset_name)

__all__ = [
    'COCOMultiLabel', 'COCO_CATEGORIES', 'SIZE_META_KEYS',
    'COCO_AREA_THRESHOLDS', 'SIZE_NAMES', 'SIZE_SUBSETS', 'size_index',
    'subset_name'
]
