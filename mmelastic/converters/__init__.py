# Copyright (c) mmelastic contributors. All rights reserved.
from .official import (OFFICIAL_RELEASES, ConversionError, convert_checkpoint,
                       convert_official_state_dict, detect_release)
from .resnext import (convert_official_deeplab_resnext,
                      convert_official_resnext, convert_single_branch_resnext,
                      strip_prefix)

__all__ = [
    'OFFICIAL_RELEASES', 'ConversionError', 'convert_checkpoint',
    'convert_official_state_dict', 'detect_release',
    'convert_official_deeplab_resnext', 'convert_official_resnext',
    'convert_single_branch_resnext', 'strip_prefix'
]
