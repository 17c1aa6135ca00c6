# DenseNet201 (paper Table 2, "DenseNet201*"): DenseNet-BC, growth rate 32,
# blocks [6, 12, 48, 32]. Recipe: see ./resnext50.py.
_base_ = './resnext50.py'

model = dict(
    backbone=dict(_delete_=True, type='ElasticDenseNet', arch='densenet201'),
    # The official classifier keeps PyTorch's default Linear init
    # (U(+-1/sqrt(in)), i.e. Kaiming-uniform with a=sqrt(5)); bias 0.
    head=dict(
        in_channels=1920,
        init_cfg=dict(
            _delete_=True,
            type='Kaiming',
            layer='Linear',
            a=2.23606797749979,
            mode='fan_in',
            nonlinearity='leaky_relu',
            distribution='uniform',
            bias=0)))
