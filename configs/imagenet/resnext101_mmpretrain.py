# mmpretrain's own single-branch ResNeXt-101 32x4d, unchanged (its config,
# its training recipe): the reference baseline of the speed targets,
#   python tools/analysis/benchmark.py --models resnext101_mmpretrain \
#       resnext101 resnext101_elastic
# ./resnext101.py is the same network (same parameter count) in the official
# two-branch layout, so that the official checkpoints load.
_base_ = 'mmpretrain::resnext/resnext101-32x4d_8xb32_in1k.py'
