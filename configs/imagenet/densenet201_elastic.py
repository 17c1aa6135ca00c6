# DenseNet201+Elastic (paper Tables 2 and 11): blocks [10, 20, 40, 30],
# two-resolution layers in blocks 1-3 (the last block stays at full
# resolution). Recipe: see ./resnext50.py.
_base_ = './densenet201.py'

model = dict(
    backbone=dict(arch='densenet201_elastic'), head=dict(in_channels=1808))
