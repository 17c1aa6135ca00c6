# Copyright (c) mmelastic contributors. All rights reserved.
from .elastic_resnext import ElasticResLayer, ElasticResNeXt

__all__ = ['ElasticResLayer', 'ElasticResNeXt']
