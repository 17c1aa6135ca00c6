# Copyright (c) mmelastic contributors. All rights reserved.
# Segmentation-only modules (decode heads) live in mmelastic.models.
# decode_heads and are imported by mmelastic.segmentation, never from here:
# they need mmseg (and so the full mmcv build).
from .backbones import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
