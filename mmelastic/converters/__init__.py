# Copyright (c) mmelastic contributors. All rights reserved.
from .densenet import convert_official_densenet, official_densenet_arch
from .dla import (convert_official_dla, convert_official_dla_seg,
                  dead_projection_keys, official_dla_arch)
from .official import (OFFICIAL_RELEASES, ConversionError, convert_checkpoint,
                       convert_official_state_dict, detect_release)
from .resnext import (convert_official_deeplab_resnext,
                      convert_official_resnext, convert_single_branch_resnext,
                      strip_prefix)

__all__ = [
    'convert_official_densenet', 'official_densenet_arch',
    'convert_official_dla', 'convert_official_dla_seg', 'dead_projection_keys',
    'official_dla_arch',
    'OFFICIAL_RELEASES', 'ConversionError', 'convert_checkpoint',
    'convert_official_state_dict', 'detect_release',
    'convert_official_deeplab_resnext', 'convert_official_resnext',
    'convert_single_branch_resnext', 'strip_prefix'
]
