# Copyright (c) mmelastic contributors. All rights reserved.
"""Evaluation of mmelastic: ELASTIC's multi-label COCO figures."""
from .metrics import *  # noqa: F401,F403
from .metrics import __all__  # noqa: F401
