# DenseNet201+Elastic with its first dense block memory-efficient (each
# layer's concatenation, norm1 and 1x1 convs recomputed in the backward
# pass): the same model and weights, less training memory for a longer step.
# The Elastic layout has 10 layers at 56x56 (DenseNet201: 6) with large
# concatenated inputs (docs/performance.md, "Activation memory in training").
_base_ = './densenet201_elastic.py'

model = dict(
    backbone=dict(memory_efficient=(True, False, False, False)))
