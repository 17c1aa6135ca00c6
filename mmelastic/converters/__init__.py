# Copyright (c) mmelastic contributors. All rights reserved.
from .resnext import (convert_official_resnext, convert_single_branch_resnext,
                      strip_prefix)

__all__ = [
    'convert_official_resnext', 'convert_single_branch_resnext',
    'strip_prefix'
]
