# Copyright (c) mmelastic contributors. All rights reserved.
"""What ``tools/train.py`` and ``tools/test.py`` share.

Both take ``--work-dir``, ``--cfg-options``, ``--launcher`` and
``--local-rank`` as OpenMMLab's own tools do, resolve the work directory the
same way and build the Runner the same way. Both run it inside
:func:`~mmelastic.utils.dist.distributed_run`, which ends the process group.
"""
import os
import os.path as osp

CFG_OPTIONS_HELP = (
    'override some settings in the used config, the key-value pair in '
    'xxx=yyy format will be merged into config file. If the value to be '
    'overwritten is a list, it should be like key="[a,b]" or key=a,b It also '
    'allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" Note that the '
    'quotation marks are necessary and that no white space is allowed.')


def add_runner_options(parser, work_dir_help):
    """Add ``--work-dir``, ``--cfg-options``, ``--launcher`` and
    ``--local-rank`` to an ``argparse`` parser.

    ``torch.distributed.launch`` passes ``--local-rank`` (torch >= 2.0) or
    ``--local_rank`` (older), so both spellings are accepted; torchrun sets
    ``LOCAL_RANK`` instead (see :func:`export_local_rank`).
    """
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=CFG_OPTIONS_HELP)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(args):
    """Set ``LOCAL_RANK`` from ``--local-rank`` where the launcher did not
    (mmengine reads the environment)."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def default_work_dir(config_path):
    """``./work_dirs/<config file name without extension>``."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def merge_runner_options(cfg, args):
    """Apply ``--cfg-options``, ``--launcher`` and ``--work-dir``.

    The work directory is, in this order: ``--work-dir``, the config's
    ``work_dir``, ``./work_dirs/<config name>``.

    Args:
        cfg (mmengine.Config): Loaded config; changed in place.
        args (argparse.Namespace): With ``config``, ``cfg_options``,
            ``launcher`` and ``work_dir``.
    """
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(args.config)


def build_runner(cfg):
    """The config's ``runner_type`` from the registry, else mmengine's
    ``Runner``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def docstring_parser(doc, **kwargs):
    """An ``argparse`` parser whose ``--help`` shows a tool's docstring.

    The docstring's first paragraph is the description; the rest (usage
    notes and example commands) follows the options as written, so that
    example commands split over lines with a trailing backslash can be
    copied from ``--help`` as they are. Give such docstrings an ``r``
    prefix: in a plain string literal a backslash at a line end joins the
    lines.

    Args:
        doc (str): The tool's module docstring.
        **kwargs: Further :class:`argparse.ArgumentParser` arguments.

    Returns:
        argparse.ArgumentParser: The parser.
    """
    import argparse
    summary, _, rest = doc.strip('\n').partition('\n\n')
    return argparse.ArgumentParser(
        description=' '.join(summary.split()),
        epilog=rest.strip('\n') or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs)
