# Copyright (c) mmelastic contributors. All rights reserved.
"""Mirror mmelastic's classes into mmseg's registries, where mmseg imports.

Kept apart from the classification path on purpose: mmseg 1.2.2 imports
``mmcv.ops`` when its models package loads, so a classification-only user
with mmcv-lite (or without mmseg) must never get here by accident.
"""
import importlib.util
import warnings

from .registry import REGISTERED

_DONE = False


def register_mmseg_modules():
    """Register every mmelastic class (and the segmentation-only heads) into
    mmseg's registries. A no-op where mmseg is not installed; a warning where
    it is installed but cannot be imported (for example with mmcv-lite).

    Returns:
        bool: True when the classes are available to mmseg configs.
    """
    global _DONE
    if _DONE:
        return True
    try:
        if importlib.util.find_spec('mmseg') is None:
            return False
    except (ImportError, ValueError):  # blocked by an import hook
        return False
    try:
        from mmseg import registry as mmseg_registry
        import mmseg.models  # noqa: F401  (needs mmcv.ops)
    except ImportError as err:  # e.g. "No module named 'mmcv._ext'"
        warnings.warn(
            'mmseg is installed but cannot be imported '
            f'({err}); mmelastic models are not registered for mmseg '
            'configs. Install the full mmcv build (tools/install_mmcv.py) '
            'to use them for segmentation.')
        return False
    # Outside the try: an error in our own heads must not pass for a
    # missing mmcv build. They subclass mmseg's heads.
    from .models import decode_heads  # noqa: F401
    names = {
        'model': 'MODELS',
        'dataset': 'DATASETS',
        'transform': 'TRANSFORMS',
        'metric': 'METRICS',
        'hook': 'HOOKS',
    }
    for kind, cls in REGISTERED:
        registry = getattr(mmseg_registry, names[kind])
        # module_dict, not get(): get() also searches the parents.
        if registry.module_dict.get(cls.__name__) is not cls:
            registry.register_module(module=cls)
    _DONE = True
    return True
