# Copyright (c) mmelastic contributors. All rights reserved.
from .elastic_multi_label import (ElasticMultiLabelMetric,
                                  ScaleStratifiedMultiLabelMetric,
                                  elastic_multilabel_metrics,
                                  multilabel_counts, precision_recall_f1,
                                  size_label_to_array)

__all__ = [
    'ElasticMultiLabelMetric', 'ScaleStratifiedMultiLabelMetric',
    'elastic_multilabel_metrics', 'multilabel_counts', 'precision_recall_f1',
    'size_label_to_array'
]
