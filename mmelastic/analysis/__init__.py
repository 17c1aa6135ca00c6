# Copyright (c) mmelastic contributors. All rights reserved.
from .complexity import model_complexity
from .paper import IMAGENET as PAPER_IMAGENET

__all__ = ['model_complexity', 'PAPER_IMAGENET']
