# Copyright (c) mmelastic contributors. All rights reserved.
"""The embedded demo: Elastic vs. its equal-FLOPs baseline on demo COCO data.

Builds the demo datasets (tools/data/make_demo_data.py) if they are missing,
trains the small ResNeXt of configs/demo/resnext_tiny_coco.py and its Elastic
twin configs/demo/resnext_tiny_elastic_coco.py from scratch on the demo
multi-label COCO set, evaluates both, and prints one table: parameters,
FLOPs, CF1/OF1 and the paper's Table-4 breakdown by object size, averaged
over the seeds with their spread. Results are reported as measured: at this
toy scale on a CPU, Elastic need not win.

Outputs (under --work-dir, default work_dirs/demo): summary.json,
summary.md, demo_results.png (per-subset F1 of both models), scale_policy/
(the scale-policy report of the first seed's Elastic model: scores, the
paper's figures and the interactive index.html), and per run the
checkpoint, logs and test predictions (predictions.pkl, readable by
tools/analysis/compare_results.py).

Example:
    python tools/demo.py                      # the README's main job
    python tools/demo.py --seeds 0 1 2 --epochs 12
"""
import json
import logging
import os
import os.path as osp
import sys
import time
import warnings

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'data'))

MODELS = (
    ('ResNeXt (baseline)', 'configs/demo/resnext_tiny_coco.py'),
    ('ResNeXt+Elastic', 'configs/demo/resnext_tiny_elastic_coco.py'),
)
SUBSETS = ('S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S')


def parse_args(argv=None):
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/demo')
    parser.add_argument(
        '--seeds', type=int, nargs='+', default=[0, 1],
        help='training seeds; the table shows mean and spread. Default: 0 1')
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the configs\' epochs')
    parser.add_argument('--num-train', type=int, default=800,
                        help='demo COCO train images. Default: 800')
    parser.add_argument('--num-val', type=int, default=400,
                        help='demo COCO val images. Default: 400')
    parser.add_argument(
        '--max-iters', type=int, default=None,
        help='stop each training after this many iterations (smoke tests)')
    return parser.parse_args(argv)


def ensure_demo_data(data_root, num_train, num_val):
    """Build the demo data unless a matching build is already there."""
    meta_file = osp.join(data_root, 'meta.json')
    if osp.exists(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
        coco = meta.get('sets', {}).get('coco', {})
        counts = {k: v.get('images') for k, v in coco.items()
                  if isinstance(v, dict)}
        if counts.get('train') == num_train and counts.get('val') == num_val:
            print(f'[demo] demo data: {data_root} ({meta["source"]} objects, '
                  f'seed {meta["seed"]})')
            return meta
    print(f'[demo] building demo data in {data_root} ...', flush=True)
    import make_demo_data
    start = time.time()
    meta = make_demo_data.build(
        out=data_root, num_train=num_train, num_val=num_val)
    print(f'[demo] built in {time.time() - start:.0f}s ({meta["source"]} '
          'objects)')
    return meta


def make_progress_hook(tag, max_epochs):
    """A hook printing one line per epoch (mmengine's logs are silenced)."""
    from mmengine.hooks import Hook

    class ProgressHook(Hook):

        def __init__(self):
            self.tag = tag
            self.max_epochs = max_epochs
            self.losses = []
            self.start = time.time()

        after_train_iter = _after_train_iter
        after_train_epoch = _after_train_epoch

    return ProgressHook()


def _after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
    if outputs and 'loss' in outputs:
        self.losses.append(float(outputs['loss']))


def _after_train_epoch(self, runner):
    loss = np.mean(self.losses) if self.losses else float('nan')
    self.losses = []
    print(f'[demo] {self.tag}: epoch {runner.epoch + 1}/{self.max_epochs} '
          f'loss {loss:.3f} ({time.time() - self.start:.0f}s)', flush=True)


def run_one(name, config, seed, args):
    """Train and test one model; returns its test metrics."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(osp.join(ROOT, config))
    stem = osp.splitext(osp.basename(config))[0]
    run_dir = osp.join(args.work_dir, stem, f'seed{seed}')
    cfg.work_dir = run_dir
    cfg.experiment_name = f'{stem}_seed{seed}_{time.time_ns()}'
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.log_level = 'WARNING'
    data_root = osp.join(args.data_root, 'coco')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    if args.epochs:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.train_cfg.val_interval = args.epochs
        for sched in cfg.param_scheduler:
            if sched.type == 'CosineAnnealingLR':
                sched.T_max = args.epochs - 1
                sched.end = args.epochs
        cfg.default_hooks.checkpoint.interval = args.epochs
    if args.max_iters:
        # Smoke test: a few iterations of one epoch.
        cfg.train_cfg.max_epochs = 1
        cfg.train_cfg.val_interval = 1
        cfg.train_dataloader.dataset.indices = args.max_iters * \
            cfg.train_dataloader.batch_size
        cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
        cfg.default_hooks.checkpoint.interval = 1
    cfg.test_evaluator = list(cfg.test_evaluator) + [
        dict(type='DumpResults',
             out_file_path=osp.join(run_dir, 'predictions.pkl'))
    ]
    # A train-time val would only repeat the test below.
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    runner = Runner.from_cfg(cfg)
    tag = f'{name} seed {seed}'
    runner.register_hook(
        make_progress_hook(tag, cfg.train_cfg.max_epochs),
        priority='VERY_LOW')
    runner.train()
    metrics = runner.test()
    return {k: float(v) for k, v in metrics.items()}


def scale_policy_report(args, seed):
    """The scale-policy analysis (paper Sec. 4.1.1, Appendix C) of the
    first seed's Elastic model, against its baseline."""
    from mmengine.config import Config

    from mmelastic.analysis import load_classifier, run_scale_policy_analysis

    def trained(config):
        stem = osp.splitext(osp.basename(config))[0]
        run_dir = osp.join(args.work_dir, stem, f'seed{seed}')
        with open(osp.join(run_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        cfg = Config.fromfile(osp.join(ROOT, config))
        cfg.test_dataloader.dataset.data_root = osp.join(
            args.data_root, 'coco')
        return cfg, load_classifier(cfg, checkpoint)

    print(f'[demo] scale-policy analysis of seed {seed} ...', flush=True)
    _, baseline = trained(MODELS[0][1])
    cfg, elastic = trained(MODELS[1][1])
    out_dir = osp.join(args.work_dir, 'scale_policy')
    paths = run_scale_policy_analysis(
        elastic, cfg.test_dataloader, out_dir, baseline_model=baseline,
        num_workers=0)
    return paths


def run_isolated(name, config, seed, args):
    """:func:`run_one` in a fresh process: runners left behind by an
    earlier training in the same process (their data loader workers, global
    mmengine state) measurably slowed the next one."""
    import multiprocessing

    # Not a Pool: its workers are daemons, which may not start the data
    # loader's worker processes.
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    child = ctx.Process(
        target=_child_run, args=(queue, name, config, seed, args))
    child.start()
    ok, result = queue.get()
    child.join()
    if not ok:
        raise RuntimeError(f'{name} seed {seed} failed:\n{result}')
    return result


def _child_run(queue, name, config, seed, args):
    try:
        warnings.filterwarnings('ignore')
        os.chdir(ROOT)
        import mmelastic  # noqa: F401
        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().setLevel(logging.ERROR)
        queue.put((True, run_one(name, config, seed, args)))
    except BaseException:  # report, then let the parent raise
        import traceback
        queue.put((False, traceback.format_exc()))


def complexity(config, shape):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from mmelastic.analysis import model_complexity
    cfg = Config.fromfile(osp.join(ROOT, config))
    init_default_scope(cfg.default_scope)
    return model_complexity(MODELS.build(cfg.model), shape)


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)), float(np.nanstd(values))


def summarize(results, complexities, seeds):
    rows = []
    for (name, config), runs in zip(MODELS, results):
        row = dict(name=name, config=config, **complexities[config])
        keys = sorted(set().union(*[r.keys() for r in runs]))
        row['metrics'] = {
            k.replace('multi-label/', ''): mean_std([r.get(k) for r in runs])
            for k in keys
        }
        row['per_seed'] = {str(s): r for s, r in zip(seeds, runs)}
        rows.append(row)
    return rows


def fmt(ms, seeds):
    mean, std = ms
    return f'{mean:.1f}' if len(seeds) == 1 else f'{mean:.1f} ± {std:.1f}'


def markdown_table(rows, seeds, shape):
    lines = [
        f'Demo COCO val, {len(seeds)} seed(s) {list(seeds)}, input '
        f'{shape[0]}x{shape[1]}; F1 in %, mean ± std over seeds.', '',
        '| model | params | FLOPs | mAP | CF1 | OF1 | ' + ' | '.join(
            f'{s} OF1' for s in SUBSETS) +
        ' | recall S | recall M | recall L |',
        '|' + '---|' * (6 + len(SUBSETS) + 3)
    ]
    for r in rows:
        m = r['metrics']
        cells = [
            r['name'], f"{r['params'] / 1e3:.0f}K",
            f"{r['flops'] / 1e6:.1f}M",
            fmt(m['mAP'], seeds),
            fmt(m['CF1'], seeds),
            fmt(m['OF1'], seeds)
        ]
        cells += [fmt(m[f'{s}/OF1'], seeds) for s in SUBSETS]
        cells += [
            fmt(m[f'recall_{size}'], seeds)
            for size in ('small', 'medium', 'large')
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    base, elastic = rows
    lines += [
        '', 'Elastic vs. baseline, relative OF1 change per subset (Table-4 '
        'style, from the means): ' + ', '.join(
            f"{s} {rel(elastic, base, f'{s}/OF1')}"
            for s in ('all', ) + SUBSETS)
    ]
    return '\n'.join(lines)


def rel(elastic, base, key):
    key = 'OF1' if key == 'all/OF1' else key
    e, b = elastic['metrics'][key][0], base['metrics'][key][0]
    if not b or np.isnan(b) or np.isnan(e):
        return 'n/a'
    return f'{100 * (e - b) / b:+.1f}%'


def plot(rows, seeds, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = ['all'] + list(SUBSETS)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, r in enumerate(rows):
        keys = ['OF1'] + [f'{s}/OF1' for s in SUBSETS]
        means = [r['metrics'][k][0] for k in keys]
        stds = [r['metrics'][k][1] for k in keys]
        ax.bar(x + (i - 0.5) * 0.4, means, 0.4, yerr=stds, capsize=3,
               label=f"{r['name']} ({r['params'] / 1e3:.0f}K params, "
               f"{r['flops'] / 1e6:.0f}M FLOPs)")
    ax.set_xticks(x, labels)
    ax.set_xlabel('images by object sizes present (paper Table 4 subsets)')
    ax.set_ylabel('overall F1 (OF1, %)')
    ax.set_title(f'mmelastic demo: multi-label COCO-format demo set, '
                 f'{len(seeds)} seed(s)')
    ax.legend(loc='best', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    warnings.filterwarnings('ignore')
    os.chdir(ROOT)
    import mmelastic  # noqa: F401  (registers our classes)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)

    os.makedirs(args.work_dir, exist_ok=True)
    ensure_demo_data(args.data_root, args.num_train, args.num_val)

    from mmengine.config import Config
    size = Config.fromfile(osp.join(ROOT, MODELS[0][1])).input_size
    shape = (size, size)
    complexities = {c: complexity(c, shape) for _, c in MODELS}
    for name, config in MODELS:
        c = complexities[config]
        print(f'[demo] {name}: {c["params"]:,} params, '
              f'{c["flops"] / 1e6:.1f}M FLOPs at {size}x{size}')

    results = [[] for _ in MODELS]
    for seed in args.seeds:
        for i, (name, config) in enumerate(MODELS):
            results[i].append(run_isolated(name, config, seed, args))
            m = results[i][-1]
            print(f"[demo] {name} seed {seed}: mAP "
                  f"{m['multi-label/mAP']:.1f}  CF1 {m['multi-label/CF1']:.1f}"
                  f"  OF1 {m['multi-label/OF1']:.1f}"
                  f'  ({time.time() - start:.0f}s so far)', flush=True)

    policy = scale_policy_report(args, args.seeds[0])
    rows = summarize(results, complexities, args.seeds)
    table = markdown_table(rows, args.seeds, shape)
    summary = dict(
        scale_policy={k: osp.relpath(v, args.work_dir)
                      for k, v in policy.items()},
        seeds=args.seeds,
        input_shape=shape,
        epochs=args.epochs,
        seconds=round(time.time() - start, 1),
        models=rows)
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    with open(osp.join(args.work_dir, 'summary.md'), 'w') as f:
        f.write(table + '\n')
    plot(rows, args.seeds, osp.join(args.work_dir, 'demo_results.png'))
    print()
    print(table)
    print()
    print(f'[demo] done in {time.time() - start:.0f}s. Outputs in '
          f'{osp.abspath(args.work_dir)}: summary.md, summary.json, '
          'demo_results.png, per run <config>/seed<N>/ (checkpoint, '
          'predictions.pkl for tools/analysis/compare_results.py), and the '
          'scale-policy report scale_policy/ (open '
          f"{osp.abspath(policy['html'])} in a browser).")
    return summary


if __name__ == '__main__':
    main()
