# Copyright (c) mmelastic contributors. All rights reserved.
"""mmelastic: ELASTIC (CVPR 2019) instance-specific scaling policies for
OpenMMLab 2.x.

Importing the package registers every mmelastic class into its own
registries (scope ``mmelastic``), into mmpretrain's, and, where mmseg can be
imported, into mmseg's (see :mod:`mmelastic.registry`).
"""
from .version import __version__, version_info  # noqa: F401
from . import utils  # noqa: F401,E402  (patches checkpoint loading)
from . import models  # noqa: F401,E402
from . import datasets  # noqa: F401,E402
from . import evaluation  # noqa: F401,E402
from .segmentation import register_mmseg_modules  # noqa: E402

register_mmseg_modules()

__all__ = ['__version__', 'version_info']
