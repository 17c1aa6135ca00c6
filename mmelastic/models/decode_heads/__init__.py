# Copyright (c) mmelastic contributors. All rights reserved.
"""Segmentation decode heads (need mmseg, hence the full mmcv build).

Imported by :mod:`mmelastic.segmentation` only, never by
``mmelastic.models`` itself.
"""
import mmseg.models  # noqa: F401  (fails early where mmcv.ops is missing)
