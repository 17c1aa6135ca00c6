# tiny_cls.py the way a user of mmpretrain's own tools writes it: plain type
# names, mmelastic pulled in by custom_imports, default_scope='mmpretrain'
# inherited from mmpretrain's runtime.
_base_ = ['./tiny_cls.py']
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)
