# Copyright (c) mmelastic contributors. All rights reserved.
from .densenet import ElasticDenseLayer, ElasticDenseNet
from .dla import ElasticDLA
from .elastic_resnext import ElasticResLayer, ElasticResNeXt

__all__ = [
    'ElasticResLayer', 'ElasticResNeXt', 'ElasticDLA', 'ElasticDenseLayer',
    'ElasticDenseNet'
]
