# Copyright (c) mmelastic contributors. All rights reserved.
"""Command-line options shared by the evaluation tools.

``tools/analysis/scale_policy.py`` and ``tools/analysis/scale_stress_test.py``
both evaluate a model (and optionally its baseline) on a config's test set;
the options that say which baseline, how many images, on which device and
in which batches, and their checks, live here once.
"""
import os.path as osp


def add_evaluation_options(parser, cfg_options_help):
    """Add ``--baseline-config``, ``--baseline-checkpoint``,
    ``--max-images``, ``--device``, ``--batch-size``, ``--num-workers`` and
    ``--cfg-options`` to an ``argparse`` parser."""
    from mmengine.config import DictAction
    parser.add_argument('--baseline-config', help='config of the baseline')
    parser.add_argument(
        '--baseline-checkpoint', help='checkpoint of the baseline')
    parser.add_argument(
        '--max-images',
        type=int,
        default=None,
        help='use only the first N images of the test set')
    parser.add_argument(
        '--device', default='cpu', help='cpu, cuda, cuda:1 ... (default: cpu)')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='images per batch (default: the test dataloader\'s)')
    parser.add_argument(
        '--num-workers',
        type=int,
        default=None,
        help='dataloader workers (default: the test dataloader\'s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=cfg_options_help)


def check_evaluation_options(args, error, without_baseline=''):
    """Check the options of :func:`add_evaluation_options` (and
    ``--data-root`` where the tool has one) before anything is built.

    Args:
        args (argparse.Namespace): The parsed command line.
        error (type): The tool's exception class, raised with a message that
            names the problem and the fix.
        without_baseline (str): What the tool does without a baseline, for
            the message on half of the baseline options, e.g. ``'for
            absolute F1 per size'``.
    """
    if (args.baseline_config is None) != (args.baseline_checkpoint is None):
        given, missing = (('--baseline-config', '--baseline-checkpoint')
                          if args.baseline_config is not None else
                          ('--baseline-checkpoint', '--baseline-config'))
        neither = f'neither, {without_baseline}' if without_baseline else \
            'neither'
        raise error(f'{given} was given without {missing}: give both '
                    f'--baseline-config and --baseline-checkpoint (or '
                    f'{neither})')
    if args.max_images is not None and args.max_images < 1:
        raise error('--max-images must be at least 1')
    if args.batch_size is not None and args.batch_size < 1:
        raise error('--batch-size must be at least 1')
    if args.num_workers is not None and args.num_workers < 0:
        raise error('--num-workers must be 0 or more')
    data_root = getattr(args, 'data_root', None)
    if data_root is not None and not osp.isdir(data_root):
        raise error(f'--data-root {data_root!r} is not a folder; pass the '
                    'dataset root (e.g. data/coco or data/demo/coco)')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            raise error(f'--device {args.device}: CUDA is not available '
                        'here; use --device cpu')
