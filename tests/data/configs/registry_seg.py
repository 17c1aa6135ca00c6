# tiny_seg.py with custom_imports; default_scope='mmseg' is inherited.
_base_ = ['./tiny_seg.py']
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)
