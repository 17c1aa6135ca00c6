# Copyright (c) mmelastic contributors. All rights reserved.
"""Registries of mmelastic and the helper that exposes every class in them.

Every mmelastic class is reachable three ways:

* ``type='mmelastic.Name'`` from any config, with no ``custom_imports``: the
  child registries below have ``scope='mmelastic'`` and ``locations``, so
  mmengine imports this package lazily on first lookup.
* ``type='Name'`` from an mmpretrain config (``default_scope='mmpretrain'``)
  after ``custom_imports=dict(imports=['mmelastic'])``: :func:`register` also
  puts the class into mmpretrain's registry.
* ``type='Name'`` from an mmseg config (``default_scope='mmseg'``): the same
  classes are put into mmseg's registries by :mod:`mmelastic.segmentation`,
  which is imported only where mmseg itself imports (a classification-only
  user may have mmcv-lite, with which mmseg cannot import).

We never change a config's ``default_scope``: building always resolves in the
registry of the current default scope, so the plain names must live there.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmelastic',
    locations=['mmelastic.models'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope='mmelastic',
    locations=['mmelastic.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope='mmelastic',
    locations=['mmelastic.datasets'])
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, scope='mmelastic',
    locations=['mmelastic.evaluation'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmelastic',
    locations=['mmelastic'])

_KINDS = {
    'model': MODELS,
    'dataset': DATASETS,
    'transform': TRANSFORMS,
    'metric': METRICS,
    'hook': HOOKS,
}

# (kind, class) for everything registered, so mmelastic.segmentation can
# mirror them into mmseg's registries when (and only when) mmseg imports.
REGISTERED = []


def register(kind, segmentation=True):
    """Class decorator: register into mmelastic's and mmpretrain's registry.

    Args:
        kind (str): One of ``'model'``, ``'dataset'``, ``'transform'``,
            ``'metric'`` and ``'hook'``.
        segmentation (bool): Whether the class is also mirrored into mmseg's
            registry of the same kind. Default: True.
    """
    if kind not in _KINDS:
        raise KeyError(f'unknown registry kind {kind!r}; '
                       f'expected one of {sorted(_KINDS)}')

    def _decorator(cls):
        _KINDS[kind].register_module(module=cls)
        from mmpretrain import registry as mmpretrain_registry
        getattr(mmpretrain_registry, _MMPRETRAIN_NAMES[kind]).register_module(
            module=cls)
        if segmentation:
            REGISTERED.append((kind, cls))
        return cls

    return _decorator


_MMPRETRAIN_NAMES = {
    'model': 'MODELS',
    'dataset': 'DATASETS',
    'transform': 'TRANSFORMS',
    'metric': 'METRICS',
    'hook': 'HOOKS',
}
