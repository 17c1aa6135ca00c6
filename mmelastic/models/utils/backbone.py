# Copyright (c) mmelastic contributors. All rights reserved.
"""What every mmelastic backbone shares: arch lookup, default init, the
deprecated ``pretrained`` argument, per-stage flags, the ``norm_eval`` train
mode, and listing its elastic blocks."""
import warnings
from collections.abc import Sequence

from torch.nn.modules.batchnorm import _BatchNorm


def kaiming_init_cfg(mode):
    """The default ``init_cfg`` of mmelastic's backbones and heads: Kaiming
    normal convs (``mode`` 'fan_in' or 'fan_out', as the official model
    of each family does) and norms with weight 1 and bias 0."""
    return [
        dict(
            type='Kaiming',
            layer=['Conv2d'],
            mode=mode,
            nonlinearity='relu',
            distribution='normal'),
        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
    ]


def pretrained_init_cfg(owner, pretrained, init_cfg):
    """Honour the deprecated ``pretrained=PATH`` argument (mmseg's
    ``EncoderDecoder`` still passes it): warn, and return the
    ``Pretrained`` init_cfg it stands for; else ``init_cfg`` unchanged."""
    if pretrained is None:
        return init_cfg
    warnings.warn(f'{owner}: `pretrained` is deprecated, use '
                  "init_cfg=dict(type='Pretrained', checkpoint=...)")
    return dict(type='Pretrained', checkpoint=pretrained)


def resolve_arch(owner, arch_settings, arch, required, hint=''):
    """Look up ``arch`` in ``arch_settings`` or accept a custom dict.

    Args:
        owner (str): The backbone's name, for the error messages.
        arch_settings (dict): Named settings.
        arch (str | dict): A name, or a custom setting.
        required (str): The key a custom dict must have.
        hint (str): What ``required`` holds, for the error message.

    Returns:
        dict: A copy of the setting.
    """
    if isinstance(arch, str):
        if arch not in arch_settings:
            raise KeyError(f'unknown {owner} arch {arch!r}; choose one of '
                           f'{sorted(arch_settings)} or pass a dict with '
                           f'{required!r}')
        return dict(arch_settings[arch])
    if isinstance(arch, dict):
        if required not in arch:
            raise KeyError(f'a custom {owner} arch dict needs {required!r}'
                           + (f' ({hint})' if hint else ''))
        return dict(arch)
    raise TypeError(f'arch must be a str or dict, got {type(arch)}')


def stage_flags(value, num_stages, name, unit='stage', last=None):
    """One bool per stage from a bool or a sequence of bools.

    Backbones take ``elastic``, ``with_cp`` and the like either for the whole
    model or stage by stage (e.g. ``with_cp=(True, False, False, False)``
    checkpoints only the first, high-resolution stage).

    Args:
        value (bool | Sequence[bool]): One flag for every stage, or one per
            stage.
        num_stages (int): How many stages there are.
        name (str): The argument's name, for the error messages.
        unit (str): What a stage is called in this backbone ('stage',
            'dense block', ...), for the error messages. Default: 'stage'.
        last (bool, optional): If given, a single bool applies to every stage
            but the last, which gets ``last`` (the official models are never
            elastic in their last, 7x7 stage). Default: None.

    Returns:
        tuple[bool]: ``num_stages`` flags.
    """

    def is_flag(v):
        # 0 and 1 too, as hand-written configs may have them.
        return isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))

    if is_flag(value):
        value = bool(value)
        if last is None:
            return (value, ) * num_stages
        return (value, ) * (num_stages - 1) + (bool(last), )
    if isinstance(value, str) or not isinstance(value, Sequence) or \
            not all(is_flag(v) for v in value):
        raise TypeError(f'{name} must be a bool or a sequence of bools, one '
                        f'per {unit}, got {value!r}')
    if len(value) != num_stages:
        raise ValueError(f'{name} needs one flag per {unit} ({num_stages}), '
                         f'got {tuple(value)}')
    return tuple(bool(v) for v in value)


class ElasticBackboneMixin:
    """``train()`` honouring ``frozen_stages`` and ``norm_eval``, and
    :meth:`elastic_blocks`, for backbones built on ``BaseBackbone``.

    The backbone defines ``_freeze_stages()`` and ``norm_eval``.
    """

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                # Only batch norm keeps running statistics to freeze.
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def elastic_blocks(self):
        """list[str]: Names of the blocks (or dense layers) whose low branch
        is resampled."""
        return [
            name for name, m in self.named_modules()
            if hasattr(m, 'scale_policy_modules') and getattr(
                m, 'elastic', False)
        ]
