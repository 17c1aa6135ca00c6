# Copyright (c) mmelastic contributors. All rights reserved.
"""Segmentation decode heads (need mmseg, hence the full mmcv build).

Imported by :mod:`mmelastic.segmentation` only, never by
``mmelastic.models`` itself.
"""
from .dla_up_head import DLAUpHead
from .elastic_aspp_head import ElasticASPPHead

__all__ = ['DLAUpHead', 'ElasticASPPHead']
