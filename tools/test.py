# Copyright (c) mmelastic contributors. All rights reserved.
r"""Test (and evaluate) a checkpoint or an exported graph with an
mmpretrain or mmseg config.

The config's ``default_scope`` picks the library's conventions:

* mmpretrain: ``--out results.pkl`` dumps the predictions (or the metrics
  with ``--out-item metrics``); ``--show-dir`` turns on the
  ``VisualizationHook`` and saves images there; ``--tta`` defaults to flip
  TTA averaging the class scores.
* mmseg: ``--out DIR`` makes ``IoUMetric`` write the predicted masks to DIR;
  ``--show-dir`` draws the predictions into DIR; ``--tta`` uses the config's
  ``tta_pipeline`` and ``tta_model``.

Instead of a checkpoint it tests an exported graph (``MODEL.onnx``, from
tools/deployment/pytorch2onnx.py) in ONNX Runtime or OpenVINO
(``--runtime``): the config's data pipeline, preprocessing, head or
segmentor post-processing and evaluator stay the same, only the network
runs in the runtime (needs requirements/deploy.txt).

Examples:
    python tools/test.py CONFIG work_dirs/x/epoch_12.pth
    bash tools/dist_test.sh CONFIG CHECKPOINT 8 --out results.pkl
    python tools/test.py CONFIG work_dirs/model.onnx --runtime openvino \
        --precision bf16
"""
import os.path as osp
import sys
from copy import deepcopy

try:
    import mmelastic  # noqa: F401  (registers modules, checkpoint loading)
except ImportError as err:
    if getattr(err, 'name', None) != 'mmelastic':
        raise
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    import mmelastic  # noqa: F401

import mmengine
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from mmelastic.deployment.onnx import OPENVINO_PRECISIONS, RUNTIMES
from mmelastic.utils import distributed_run, setup_cpu_distributed
from mmelastic.utils.runner_tool import (add_runner_options, build_runner,
                                         docstring_parser,
                                         export_local_rank,
                                         merge_runner_options)


def parse_args(argv=None):
    parser = docstring_parser(__doc__)
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or an exported .onnx graph to test in '
        '--runtime')
    parser.add_argument(
        '--out',
        help='mmpretrain configs: a .pkl file for the predictions (or the '
        'metrics, see --out-item); mmseg configs: a directory for the '
        'predicted masks')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='mmpretrain configs: what --out holds (default: pred)')
    parser.add_argument(
        '--show', action='store_true', help='show the predictions in a window')
    parser.add_argument(
        '--show-dir', help='directory to save images with the predictions')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='--show interval (s)')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='mmpretrain configs: visualise every N-th sample')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in the dataloader (mmpretrain configs)')
    parser.add_argument(
        '--runtime',
        choices=RUNTIMES,
        help='a .onnx checkpoint: run it in ONNX Runtime (default) or '
        'OpenVINO')
    parser.add_argument(
        '--precision',
        choices=OPENVINO_PRECISIONS,
        help='a .onnx checkpoint in OpenVINO: compute in f32 (default) or '
        'bf16')
    parser.add_argument(
        '--threads', type=int, help="a .onnx checkpoint: the runtime's "
        'threads (default: its own)')
    add_runner_options(
        parser,
        work_dir_help='the directory to save the evaluation metrics '
        '(default: ./work_dirs/<config name>)')
    args = parser.parse_args(argv)
    export_local_rank(args)
    if args.out_item is not None and args.out is None:
        parser.error('--out-item needs --out FILE')
    if not args.checkpoint.endswith('.onnx'):
        given = [f'--{name}' for name in ('runtime', 'precision', 'threads')
                 if getattr(args, name) is not None]
        if given:
            parser.error(f'{", ".join(given)}: only for an exported .onnx '
                         'graph, not a checkpoint')
    elif args.precision == 'bf16' and args.runtime != 'openvino':
        parser.error('--precision bf16 needs --runtime openvino (ONNX '
                     'Runtime runs the graphs in f32)')
    return args


def _visualization_hook(cfg):
    hooks = cfg.get('default_hooks') or {}
    if 'visualization' not in hooks:
        raise ValueError(
            '--show/--show-dir need a visualization hook: add '
            "default_hooks.visualization=dict(type='VisualizationHook') "
            "(mmpretrain) or dict(type='SegVisualizationHook') (mmseg) to "
            'the config.')
    return hooks['visualization']


def merge_mmpretrain_args(cfg, args):
    if args.show or args.show_dir is not None:
        hook = _visualization_hook(cfg)
        hook.enable = True
        hook.show = args.show
        hook.wait_time = args.wait_time
        hook.out_dir = args.show_dir
        hook.interval = args.interval

    if args.tta:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            test_pipeline = cfg.test_dataloader.dataset.pipeline
            cfg.tta_pipeline = deepcopy(test_pipeline)
            cfg.tta_pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[[
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ], [test_pipeline[-1]]])
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline

    # mmpretrain configs leave these to the tool (see tools/train.py).
    import torch
    loader = ConfigDict(
        pin_memory=torch.cuda.is_available() and not args.no_pin_memory,
        collate_fn=dict(type='default_collate'))
    loader.update(cfg.test_dataloader)
    if args.no_pin_memory:
        loader.pin_memory = False
    cfg.test_dataloader = loader

    if args.out is not None and (args.out_item or 'pred') == 'pred' \
            and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {args.out}: predictions are saved as a '
                         'pickle; give a file name ending in .pkl')


def merge_mmseg_args(cfg, args):
    if args.show or args.show_dir is not None:
        hook = _visualization_hook(cfg)
        hook.draw = True
        if args.show:
            hook.show = True
            hook.wait_time = args.wait_time
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir

    if args.tta:
        if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
            raise ValueError(
                '--tta with an mmseg config needs `tta_pipeline` and '
                '`tta_model` in the config (mmseg default_runtime.py defines '
                'tta_model; the dataset bases define tta_pipeline).')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model

    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True


def merge_args(cfg, args):
    """Merge the command line into the config (changed in place).

    Args:
        cfg (mmengine.Config): Loaded config.
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        mmengine.Config: The config.
    """
    merge_runner_options(cfg, args)
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise FileNotFoundError(
            f'checkpoint {args.checkpoint} does not exist; pass a .pth '
            'written by tools/train.py (or a URL).')
    # An exported graph replaces the network's weights: nothing to load.
    cfg.load_from = None if args.checkpoint.endswith('.onnx') \
        else args.checkpoint

    if cfg.get('default_scope') == 'mmseg':
        merge_mmseg_args(cfg, args)
    else:
        merge_mmpretrain_args(cfg, args)

    setup_cpu_distributed(cfg, args.launcher)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)

    runner = build_runner(cfg)
    timer = None
    if args.checkpoint.endswith('.onnx'):
        timer = route_runner_to_graph(runner, args)

    is_seg = cfg.get('default_scope') == 'mmseg'
    if args.out and not is_seg and (args.out_item or 'pred') == 'pred':
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))

    with distributed_run(args.launcher):
        metrics = runner.test()
        if args.out and not is_seg and args.out_item == 'metrics':
            mmengine.dump(metrics, args.out)
    if timer is not None:
        print_log(timer.summary(), logger='current')


def route_runner_to_graph(runner, args):
    """Make the runner's model predict with the exported graph.

    Returns:
        RuntimeTimer: Counts the graph's images and time.
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper

    from mmelastic.deployment.evaluation import (RuntimeTimer,
                                                 route_predictions)
    from mmelastic.deployment.onnx import load_runtime
    model = runner.model
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, BaseTTAModel):
        model = model.module
    timer = RuntimeTimer(
        load_runtime(args.checkpoint, args.runtime or 'onnxruntime',
                     threads=args.threads, precision=args.precision or 'f32'))
    route_predictions(model, timer)
    return timer


if __name__ == '__main__':
    main()
