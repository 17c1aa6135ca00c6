# mmpretrain's own DenseNet-201, unchanged (its config, its training
# recipe): the reference baseline of the DenseNet speed targets,
#   python tools/analysis/benchmark.py --models densenet201_mmpretrain \
#       densenet201 densenet201_elastic
# ./densenet201.py is the same network in the official layout.
_base_ = 'mmpretrain::densenet/densenet201_4xb256_in1k.py'
