# mmpretrain's own single-branch ResNeXt-50 32x4d, unchanged (its config,
# its training recipe): the reference baseline of the speed targets,
#   python tools/analysis/benchmark.py --models resnext50_mmpretrain \
#       resnext50 resnext50_elastic
# ./resnext50.py is the same network (same parameter count) in the official
# two-branch layout, so that the official checkpoints load.
_base_ = 'mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py'
