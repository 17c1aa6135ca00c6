# Copyright (c) mmelastic contributors. All rights reserved.
"""Train a model from an mmpretrain or mmseg style config.

One tool for both libraries: the config's ``default_scope`` decides the
library-specific defaults (mmpretrain's dataloader defaults; nothing extra
for mmseg). ``mmelastic`` is imported first, so configs need no
``custom_imports`` (they may still have one).

Examples:
    python tools/train.py configs/demo/xxx.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume
    python tools/train.py CONFIG --resume work_dirs/run1/epoch_3.pth
    bash tools/dist_train.sh CONFIG 8 --amp
"""
import logging
import os.path as osp
import sys
from copy import deepcopy

try:
    import mmelastic  # noqa: F401  (registers modules, checkpoint loading)
except ImportError as err:
    if getattr(err, 'name', None) != 'mmelastic':
        raise
    # Not installed: run from a checkout (``python tools/train.py``).
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    import mmelastic  # noqa: F401

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from mmelastic.utils import distributed_run, setup_cpu_distributed
from mmelastic.utils.runner_tool import (add_runner_options, build_runner,
                                         docstring_parser,
                                         export_local_rank,
                                         merge_runner_options)


def parse_args(argv=None):
    parser = docstring_parser(__doc__)
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path (or with "auto") '
        'resume from the latest checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size '
        'relative to auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in the dataloaders (mmpretrain configs)')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='disable persistent_workers in the dataloaders (mmpretrain '
        'configs)')
    add_runner_options(
        parser,
        work_dir_help='the dir to save logs and models (default: '
        './work_dirs/<config name>)')
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def set_mmpretrain_dataloader_defaults(cfg, args):
    """Fill the dataloader keys mmpretrain configs leave to its train.py.

    mmpretrain's configs omit ``collate_fn`` (without it mmengine uses
    ``pseudo_collate`` and the data preprocessor gets lists instead of
    batched tensors), ``pin_memory`` and ``persistent_workers``. Values in
    the config win. Unlike mmpretrain's own tool, ``persistent_workers`` is
    only defaulted on where ``num_workers > 0`` (torch's DataLoader raises
    for it otherwise) and ``pin_memory`` only where CUDA is available
    (pinning is useless without a GPU and only warns).
    """
    import torch
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if loader is None:
            continue
        defaults = ConfigDict(
            pin_memory=torch.cuda.is_available() and not args.no_pin_memory,
            persistent_workers=(loader.get('num_workers', 0) > 0
                                and not args.no_persistent_workers),
            collate_fn=dict(type='default_collate'))
        merged = deepcopy(defaults)
        merged.update(loader)
        if args.no_pin_memory:
            merged['pin_memory'] = False
        if args.no_persistent_workers or merged.get('num_workers', 0) == 0:
            merged['persistent_workers'] = False
        cfg[field] = merged


def merge_args(cfg, args):
    """Merge the command line into the config.

    Args:
        cfg (mmengine.Config): Loaded config; changed in place.
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        mmengine.Config: The config.
    """
    merge_runner_options(cfg, args)

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        elif optim_wrapper != 'OptimWrapper':
            raise ValueError(
                f'--amp needs optim_wrapper.type="OptimWrapper", but the '
                f'config has {optim_wrapper!r}; enable mixed precision in '
                'that wrapper instead, or drop --amp.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    # --resume (bare) == --resume auto: the latest checkpoint of work_dir.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(
                f'--resume {args.resume}: no such checkpoint file; pass an '
                'existing .pth, or a bare --resume to continue from the '
                'latest checkpoint in the work directory.')
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=N)` in the config (N: the total batch size '
                'the learning rate was tuned for).')
        cfg.auto_scale_lr.enable = True

    if cfg.get('default_scope') == 'mmpretrain':
        set_mmpretrain_dataloader_defaults(cfg, args)

    setup_cpu_distributed(cfg, args.launcher)
    return cfg


def check_amp_device(cfg):
    """Fail early, with the fix, where mixed precision cannot train.

    mmengine's ``AmpOptimWrapper`` (what ``--amp`` selects) runs on CUDA,
    NPU, MLU or MUSA devices only; on a CPU it fails with an assertion once
    the model and data are built.
    """
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    if cfg.get('optim_wrapper', {}).get('type') != 'AmpOptimWrapper':
        return
    if is_cuda_available() or is_npu_available() or is_mlu_available() or \
            is_musa_available():
        return
    raise RuntimeError(
        'mixed-precision training (--amp, or AmpOptimWrapper in the config) '
        'needs a GPU: mmengine\'s AmpOptimWrapper runs on CUDA, NPU, MLU or '
        'MUSA devices only, and none is available here. Train without '
        '--amp (optim_wrapper.type="OptimWrapper") on a CPU; '
        'tools/analysis/benchmark.py --amp times CPU bfloat16 autocast, '
        'which mmengine does not train with.')


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    check_amp_device(cfg)

    runner = build_runner(cfg)
    with distributed_run(args.launcher):
        runner.train()


if __name__ == '__main__':
    main()
