# Copyright (c) mmelastic contributors. All rights reserved.
r"""Scale stress test (ELASTIC Sec. 4.2, Figure 7): test one trained model at
several input resolutions.

The paper tests a COCO model trained at 224x224 on images resized to 96x96,
224x224, 448x448 and 896x896 (the global average pooling adapts to the
feature map) and plots the relative F1 improvement of Elastic over its
baseline per size. For each ``--sizes`` entry this tool replaces the
``Resize`` of the config's test pipeline with ``Resize(scale=(s, s))``, runs
the test set through the model, and evaluates it with the config's own
``test_evaluator`` (e.g. ``ElasticMultiLabelMetric`` and
``ScaleStratifiedMultiLabelMetric``). A loop over the test dataloader
replaces mmengine's Runner, so each model is loaded once for all sizes.

Writes to ``--out-dir`` (default ``work_dirs/stress_test/<config name>``):

* ``stress_test.json``: per size the model's (and the baseline's) CF1, OF1,
  CP, CR, OP, OR, all evaluator outputs, and the relative improvement
  ``100 * (model - baseline) / baseline`` in percent (null where the
  baseline is 0);
* ``stress_test.png``: bar chart of the relative CF1/OF1 improvement per
  size (Figure 7) with a baseline, of the absolute CF1/OF1 without one;
* ``stress_test.md``: the table printed at the end.

Multi-label configs report CF1/OF1 (and CP/CR/OP/OR); single-label configs
whose evaluator has ``Accuracy`` report top-1 (and top-5) instead. The
checkpoints are read strictly with mmengine's ``load_checkpoint`` (a
``tools/train.py`` checkpoint, or any file with the model's
``state_dict``).

Examples:
    python tools/analysis/scale_stress_test.py \
        configs/demo/resnext_tiny_elastic_coco.py \
        work_dirs/demo/resnext_tiny_elastic_coco/seed0/epoch_12.pth \
        --baseline-config configs/demo/resnext_tiny_coco.py \
        --baseline-checkpoint \
        work_dirs/demo/resnext_tiny_coco/seed0/epoch_12.pth \
        --sizes 48 128 256 512 --data-root data/demo/coco
    python tools/analysis/scale_stress_test.py \
        configs/coco/resnext50_elastic.py work_dirs/x/epoch_36.pth \
        --baseline-config configs/coco/resnext50.py \
        --baseline-checkpoint work_dirs/y/epoch_36.pth --device cuda
"""
import copy
import json
import logging
import math
import os
import os.path as osp
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _import_mmelastic():
    """Register mmelastic's classes (from a checkout too); called once, by
    :func:`parse_args`, as the shared options live in mmelastic."""
    try:
        import mmelastic  # noqa: F401
    except ImportError as err:
        if getattr(err, 'name', None) != 'mmelastic':
            raise
        sys.path.insert(0, ROOT)
        import mmelastic  # noqa: F401


PAPER_SIZES = (96, 224, 448, 896)
MULTI_LABEL_FIGURES = ('CF1', 'OF1', 'CP', 'CR', 'OP', 'OR')
# Transforms that change the image size after the Resize: with one of
# them the network would not see the stress-test size.
CROPS = ('CenterCrop', 'RandomCrop', 'RandomResizedCrop', 'ResizeEdge',
         'EfficientNetCenterCrop', 'EfficientNetRandomCrop', 'TenCrop',
         'FiveCrop')


class StressTestError(Exception):
    """A bad input of the tool; the message names the problem and the fix."""


def parse_args(argv=None):
    _import_mmelastic()
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('config', help='config of the model (e.g. Elastic)')
    parser.add_argument('checkpoint', help='its checkpoint (.pth)')
    parser.add_argument(
        '--sizes',
        type=int,
        nargs='+',
        default=list(PAPER_SIZES),
        help='square test sizes in px (default: the paper\'s 96 224 448 896)')
    parser.add_argument(
        '--out-dir',
        help='folder for the outputs (default: '
        'work_dirs/stress_test/<config name>)')
    parser.add_argument(
        '--data-root',
        help='dataset root replacing the test set\'s data_root (e.g. '
        'data/demo/coco), for both models')
    from mmelastic.analysis.tool_args import add_evaluation_options
    add_evaluation_options(
        parser, 'override settings of both configs, key=value (mmengine '
        'syntax)')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------
def check_args(args):
    """The cheap checks, before anything is built."""
    from mmelastic.analysis.tool_args import check_evaluation_options
    check_evaluation_options(
        args, StressTestError, without_baseline='for absolute F1 per size')
    pairs = [('config', args.config, 'checkpoint', args.checkpoint)]
    if args.baseline_config is not None:
        pairs.append(('baseline config', args.baseline_config,
                      'baseline checkpoint', args.baseline_checkpoint))
    for what_cfg, config, what_ckpt, checkpoint in pairs:
        if not osp.isfile(config):
            raise StressTestError(
                f'{what_cfg} {config!r} does not exist; pass the path of an '
                'mmpretrain config such as '
                'configs/demo/resnext_tiny_elastic_coco.py')
        if not osp.isfile(checkpoint):
            raise StressTestError(
                f'{what_ckpt} {checkpoint!r} does not exist; train one with '
                f'`python tools/train.py {config}` (or `python tools/demo.py`)'
                ' and pass its work_dirs/.../epoch_N.pth')
    if not args.sizes or any(s < 1 for s in args.sizes):
        raise StressTestError(
            f'--sizes {args.sizes}: give positive sizes in px, e.g. '
            '--sizes 96 224 448 896')
    if len(set(args.sizes)) != len(args.sizes):
        raise StressTestError(f'--sizes {args.sizes} has repeated sizes; '
                              'give each size once')


def load_config(path, options=None):
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def _type_name(transform):
    return str(transform.get('type', '')).split('.')[-1]


def _plain(obj):
    return obj.to_dict() if hasattr(obj, 'to_dict') else copy.deepcopy(obj)


def test_pipeline(cfg, config):
    """The config's test pipeline (a list of dicts) and its Resize indices."""
    loader = cfg.get('test_dataloader')
    if not loader or not loader.get('dataset'):
        raise StressTestError(
            f'config {config!r} has no test set (test_dataloader with a '
            'dataset); add one, e.g. test_dataloader = val_dataloader')
    pipeline = [_plain(t) for t in (loader.dataset.get('pipeline') or [])]
    types = [_type_name(t) for t in pipeline]
    resizes = [i for i, name in enumerate(types) if name == 'Resize']
    if not resizes:
        raise StressTestError(
            f'the test pipeline of {config!r} has no Resize '
            f'({" -> ".join(types) or "empty"}); '
            'the stress test replaces it with Resize(scale=(s, s)). Use a '
            "config whose test pipeline resizes to a square, e.g. dict(type="
            "'Resize', scale=(224, 224)) as in configs/coco/resnext50.py")
    crops = [name for name in types[resizes[-1] + 1:] if name in CROPS]
    if crops:
        raise StressTestError(
            f'the test pipeline of {config!r} crops after its Resize '
            f'({", ".join(crops)}), so the network would not see the '
            'stress-test size; remove the crop (e.g. with --cfg-options) or '
            'use a config that resizes to the full input size')
    return pipeline, resizes


def resized_pipeline(pipeline, resizes, size):
    """A copy of ``pipeline`` with every Resize set to ``(size, size)``."""
    new = copy.deepcopy(pipeline)
    for i in resizes:
        t = new[i]
        t.pop('scale_factor', None)
        t['scale'] = (size, size)
        t['keep_ratio'] = False
    return new


def config_size(pipeline, resizes):
    """The size of the config's own Resize (``'HxW'`` or None)."""
    scale = pipeline[resizes[-1]].get('scale')
    if isinstance(scale, int):
        return [scale, scale]
    if isinstance(scale, (list, tuple)) and len(scale) == 2:
        return [int(scale[0]), int(scale[1])]
    return None


def build_test_set(cfg, args, config):
    """The test set, built once per model; the pipeline is set per size."""
    from mmpretrain.registry import DATASETS
    dataset_cfg = _plain(cfg.test_dataloader.dataset)
    if args.data_root is not None:
        dataset_cfg['data_root'] = args.data_root
    if args.max_images is not None:
        dataset_cfg['indices'] = args.max_images
    try:
        dataset = DATASETS.build(dataset_cfg)
    except FileNotFoundError as err:
        raise StressTestError(
            f'cannot read the test set of {config!r}: '
            f'{str(err).rstrip(".")}. Point --data-root at the dataset') \
            from err
    if len(dataset) == 0:
        raise StressTestError(f'the test set of {config!r} is empty; check '
                              '--data-root')
    return dataset


def evaluator_cfg(cfg, config):
    metrics = cfg.get('test_evaluator')
    if not metrics:
        raise StressTestError(
            f'config {config!r} has no test_evaluator; add one, e.g. '
            "[dict(type='ElasticMultiLabelMetric')] for a multi-label or "
            "dict(type='Accuracy', topk=(1, 5)) for a single-label "
            'classifier')
    metrics = _plain(metrics)
    metrics = metrics if isinstance(metrics, list) else [metrics]
    return [m for m in metrics if _type_name(m) != 'DumpResults']


def figures_of(metrics, config):
    """The figures of the stress test from an evaluator's output."""
    if 'multi-label/CF1' in metrics:
        return 'multi-label', {
            k: float(metrics[f'multi-label/{k}'])
            for k in MULTI_LABEL_FIGURES if f'multi-label/{k}' in metrics
        }
    if 'accuracy/top1' in metrics:
        return 'single-label', {
            k: float(metrics[f'accuracy/{k}'])
            for k in ('top1', 'top5') if f'accuracy/{k}' in metrics
        }
    raise StressTestError(
        f'the test evaluator of {config!r} gives neither multi-label/CF1 '
        f'nor accuracy/top1 (it gives {", ".join(sorted(metrics)) or "none"}'
        '); use ElasticMultiLabelMetric (multi-label) or Accuracy '
        '(single-label)')


# ----------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------
class ModelUnderTest:
    """A loaded model with its test set, pipeline and evaluator config."""

    def __init__(self, role, name, config, checkpoint, args):
        from mmelastic.analysis.scale_policy import load_classifier
        self.role, self.name = role, name
        self.config, self.checkpoint = config, checkpoint
        self.cfg = load_config(config, args.cfg_options)
        self.pipeline, self.resizes = test_pipeline(self.cfg, config)
        self.metrics = evaluator_cfg(self.cfg, config)
        try:
            self.model = load_classifier(
                self.cfg, checkpoint,
                what='model' if role == 'model' else 'baseline')
        except ValueError as err:  # a checkpoint that does not fit
            raise StressTestError(str(err)) from err
        self.model.to(args.device)
        self.dataset = build_test_set(self.cfg, args, config)
        loader = _plain(self.cfg.test_dataloader)
        loader.pop('dataset')
        if args.batch_size is not None:
            loader['batch_size'] = args.batch_size
        if args.num_workers is not None:
            loader['num_workers'] = args.num_workers
        if not loader.get('num_workers'):
            loader.pop('persistent_workers', None)
        loader.setdefault('sampler', dict(type='DefaultSampler',
                                          shuffle=False))
        self.loader_cfg = loader

    def evaluate(self, size):
        """Test at ``size`` x ``size``; returns the evaluator's output."""
        import torch
        from mmengine.dataset import Compose
        from mmengine.evaluator import Evaluator
        from mmengine.runner import Runner

        self.dataset.pipeline = Compose(
            resized_pipeline(self.pipeline, self.resizes, size))
        loader = Runner.build_dataloader(
            dict(self.loader_cfg, dataset=self.dataset))
        evaluator = Evaluator(copy.deepcopy(self.metrics))
        evaluator.dataset_meta = self.dataset.metainfo
        self.model.eval()
        with torch.no_grad():
            for data in loader:
                outputs = self.model.test_step(data)
                evaluator.process(data_samples=outputs, data_batch=data)
        return {
            k: (v if isinstance(v, (int, float)) else
                v.tolist() if hasattr(v, 'tolist') else v)
            for k, v in evaluator.evaluate(len(self.dataset)).items()
        }


def relative(model, baseline):
    """``100 * (model - baseline) / baseline`` per figure; None where the
    baseline is 0 (or either is not finite)."""
    out = {}
    for k, b in baseline.items():
        e = model.get(k)
        if e is None or not b or not math.isfinite(b) or \
                not math.isfinite(e):
            out[k] = None
        else:
            out[k] = 100.0 * (e - b) / b
    return out


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ----------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------
def _num(value, fmt='.1f'):
    return 'n/a' if value is None else format(value, fmt)


def _signed(value):
    return 'n/a' if value is None else f'{value:+.1f}'


def table(report):
    primary = report['primary_figures']
    has_base = report['baseline'] is not None
    head = ['size'] + list(primary)
    if has_base:
        head += [f'baseline {k}' for k in primary]
        head += [f'rel. {k} %' for k in primary]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in report['results']:
        size = f"{row['size']}x{row['size']}"
        if row['size'] == report['trained_size']:
            size += ' (config)'
        cells = [size] + [_num(row['model'].get(k)) for k in primary]
        if has_base:
            cells += [_num(row['baseline'].get(k)) for k in primary]
            cells += [_signed(row['relative'].get(k)) for k in primary]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(report, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    primary = report['primary_figures']
    rows = report['results']
    has_base = report['baseline'] is not None
    labels = [f"{r['size']}x{r['size']}" +
              ('\n(config)' if r['size'] == report['trained_size'] else '')
              for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(primary)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(rows) + 2), 4))
    for i, k in enumerate(primary):
        if has_base:
            values = [r['relative'].get(k) for r in rows]
        else:
            values = [r['model'].get(k) for r in rows]
        heights = [0.0 if v is None else v for v in values]
        bars = ax.bar(x + (i - (len(primary) - 1) / 2) * width, heights,
                      width, label=k)
        for bar, v in zip(bars, values):
            text = 'n/a' if v is None else (f'{v:+.1f}' if has_base else
                                            f'{v:.1f}')
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2,
                               bar.get_height()),
                        ha='center',
                        va='bottom' if bar.get_height() >= 0 else 'top',
                        fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_xlabel('test image size (px)')
    name = osp.splitext(osp.basename(report['config']))[0]
    if has_base:
        ax.axhline(0, color='black', linewidth=0.8)
        ax.set_ylabel('relative improvement over the baseline (%)')
        base = osp.splitext(osp.basename(report['baseline']['config']))[0]
        ax.set_title(f'Scale stress test: {name}\nvs. the baseline {base}',
                     fontsize=10)
    else:
        ax.set_ylabel(f'{" / ".join(primary)} (%)')
        ax.set_title(f'Scale stress test: {name}', fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    check_args(args)
    warnings.filterwarnings('ignore')
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)

    out_dir = args.out_dir or osp.join(
        'work_dirs', 'stress_test',
        osp.splitext(osp.basename(args.config))[0])
    runs = [ModelUnderTest('model', osp.splitext(osp.basename(
        args.config))[0], args.config, args.checkpoint, args)]
    if args.baseline_config is not None:
        runs.append(
            ModelUnderTest(
                'baseline',
                osp.splitext(osp.basename(args.baseline_config))[0],
                args.baseline_config, args.baseline_checkpoint, args))
        if len(runs[0].dataset) != len(runs[1].dataset):
            raise StressTestError(
                f'the model is tested on {len(runs[0].dataset)} images, the '
                f'baseline on {len(runs[1].dataset)}: give both configs the '
                'same test set (e.g. with --data-root)')

    trained = config_size(runs[0].pipeline, runs[0].resizes)
    trained_size = trained[0] if trained and trained[0] == trained[1] \
        else None
    print(f'[stress-test] {len(runs[0].dataset)} test images, sizes '
          f'{args.sizes} (config: '
          f'{"x".join(map(str, trained)) if trained else "?"}), '
          f'{len(runs)} model(s) on {args.device}', flush=True)

    results = {run.role: {} for run in runs}
    task = {}
    for run in runs:
        for size in args.sizes:
            tic = time.time()
            metrics = run.evaluate(size)
            task[run.role], figures = figures_of(metrics, run.config)
            results[run.role][size] = dict(figures=figures, metrics=metrics)
            shown = '  '.join(
                f'{k} {figures[k]:.1f}'
                for k in (('CF1', 'OF1') if task[run.role] == 'multi-label'
                          else figures))
            print(f'[stress-test] {run.role:8s} {run.name} @ '
                  f'{size}x{size}: {shown}  ({len(run.dataset)} images, '
                  f'{time.time() - tic:.1f}s)', flush=True)
    if len(set(task.values())) > 1:
        raise StressTestError(
            f'the model is {task["model"]}, the baseline '
            f'{task["baseline"]}: compare models of the same task')
    kind = task['model']
    primary = ['CF1', 'OF1'] if kind == 'multi-label' else [
        k for k in ('top1', 'top5')
        if k in results['model'][args.sizes[0]]['figures']
    ]

    rows = []
    for size in args.sizes:
        model = results['model'][size]['figures']
        row = dict(
            size=size,
            model=model,
            baseline=None,
            relative=None,
            model_metrics=results['model'][size]['metrics'],
            baseline_metrics=None)
        if 'baseline' in results:
            base = results['baseline'][size]['figures']
            row.update(
                baseline=base,
                relative=relative(model, base),
                baseline_metrics=results['baseline'][size]['metrics'])
        rows.append(row)
    report = dict(
        task=kind,
        primary_figures=primary,
        figures=list(rows[0]['model']),
        sizes=list(args.sizes),
        trained_size=trained_size,
        config_input_size=trained,
        num_images=len(runs[0].dataset),
        config=args.config,
        checkpoint=args.checkpoint,
        baseline=None if len(runs) == 1 else dict(
            config=args.baseline_config, checkpoint=args.baseline_checkpoint),
        relative_formula='100 * (model - baseline) / baseline',
        results=rows,
        seconds=round(time.time() - start, 1))

    os.makedirs(out_dir, exist_ok=True)
    paths = dict(
        json=osp.join(out_dir, 'stress_test.json'),
        png=osp.join(out_dir, 'stress_test.png'),
        md=osp.join(out_dir, 'stress_test.md'))
    with open(paths['json'], 'w') as f:
        json.dump(_json_safe(report), f, indent=1, allow_nan=False)
    text = table(report)
    with open(paths['md'], 'w') as f:
        f.write(text + '\n')
    plot(report, paths['png'])
    print()
    print(text)
    print()
    print(f'[stress-test] done in {time.time() - start:.0f}s; wrote '
          f"{paths['json']}, {paths['png']}, {paths['md']}")
    return report


def cli(argv=None):
    try:
        main(argv)
    except (StressTestError, FileNotFoundError) as err:
        sys.exit(f'scale_stress_test.py: error: {err}')


if __name__ == '__main__':
    cli()
