# Copyright (c) mmelastic contributors. All rights reserved.
r"""Scale-policy analysis of a trained Elastic classifier (ELASTIC Sec.
4.1.1, Figures 5 and 6, and the interactive demo of Appendix C).

For every image of the config's test set (or of ``--data-root``) and every
Elastic block, the score ``S = A_high - A_low`` (mean activation after the
ReLU that follows the 3x3 conv of the high- minus the low-resolution
branch) is read with forward hooks. Writes to ``--out-dir``:

* ``scores.csv``, ``scores.json``: per image its path, categories,
  prediction, correctness (and the baseline's), F1 and the score per block;
* ``category_scores.png`` (Fig. 5), ``score_matrix.png`` (Fig. 6 middle),
  ``tsne.png`` (Fig. 6 left) and, with a baseline, ``tsne_density.png``
  (Fig. 6 right);
* ``index.html``: the sortable, filterable demo; open it from disk.

Works for single-label (mmpretrain ``ImageNet``/``CustomDataset``) and
multi-label (``COCOMultiLabel``) classifiers. CHECKPOINT is anything mmengine's
``load_checkpoint`` reads (e.g. ``work_dirs/x/epoch_12.pth``).

Examples:
    python tools/analysis/scale_policy.py \
        configs/demo/resnext_tiny_elastic_coco.py \
        work_dirs/demo/resnext_tiny_elastic_coco/seed0/epoch_12.pth \
        --baseline-config configs/demo/resnext_tiny_coco.py \
        --baseline-checkpoint \
        work_dirs/demo/resnext_tiny_coco/seed0/epoch_12.pth \
        --out-dir work_dirs/demo/scale_policy
    python tools/analysis/scale_policy.py \
        configs/imagenet/resnext50_elastic.py \
        checkpoints/imagenet/resnext50_elastic.pth --data-root data/imagenet \
        --device cuda --batch-size 64 --out-dir work_dirs/policy_imagenet
"""
import os.path as osp
import sys
import time

try:
    import mmelastic  # noqa: F401  (registers modules, checkpoint loading)
except ImportError as err:
    if getattr(err, 'name', None) != 'mmelastic':
        raise
    sys.path.insert(
        0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    import mmelastic  # noqa: F401


from mmelastic.analysis.tool_args import (  # noqa: E402
    add_evaluation_options, check_evaluation_options)


class ScalePolicyToolError(Exception):
    """A bad input of the tool; the message names the problem and the fix."""


def parse_args(argv=None):
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('config', help='config of the Elastic model')
    parser.add_argument('checkpoint', help='its checkpoint (.pth)')
    parser.add_argument(
        '--out-dir', required=True, help='folder for the outputs')
    parser.add_argument(
        '--data-root',
        help='dataset root replacing the test set\'s data_root (same '
        'dataset type and layout, e.g. an ImageNet-layout folder with '
        'meta/val.txt, or a COCO folder)')
    parser.add_argument(
        '--ann-file',
        help='annotation file replacing the test set\'s ann_file (relative '
        'to the data root)')
    parser.add_argument(
        '--data-prefix',
        help='image folder replacing the test set\'s data_prefix (relative '
        'to the data root)')
    parser.add_argument(
        '--thumbnail-size',
        type=int,
        default=64,
        help='thumbnail side in the HTML demo in px; 0 for none (default 64)')
    parser.add_argument(
        '--embedding',
        choices=('auto', 'sklearn', 'numpy', 'pca'),
        default='auto',
        help='2-D embedding of Fig. 6: auto = scikit-learn t-SNE if '
        'installed, else a numpy t-SNE (<= 3000 images), else PCA')
    add_evaluation_options(
        parser, 'override settings of CONFIG, key=value (mmengine syntax)')
    return parser.parse_args(argv)


def load_config(path, options=None):
    from mmengine.config import Config
    if not osp.isfile(path):
        raise ScalePolicyToolError(
            f'config {path!r} does not exist; pass the path of an mmpretrain '
            'config such as configs/demo/resnext_tiny_elastic_coco.py')
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def test_dataloader_cfg(cfg, args):
    """The config's test dataloader with the command line's data options."""
    loader = cfg.get('test_dataloader')
    if not loader or not loader.get('dataset'):
        raise ScalePolicyToolError(
            f'config {args.config!r} has no test set (test_dataloader with a '
            'dataset); add one, e.g. test_dataloader = val_dataloader, or '
            'use a config that has it')
    loader = loader.to_dict() if hasattr(loader, 'to_dict') else dict(loader)
    dataset = dict(loader['dataset'])
    if args.data_root is not None:  # a folder (check_evaluation_options)
        dataset['data_root'] = args.data_root
    if args.ann_file is not None:
        dataset['ann_file'] = args.ann_file
    if args.data_prefix is not None:
        dataset['data_prefix'] = args.data_prefix
    loader['dataset'] = dataset
    return loader


def build_test_set(dataset_cfg, config):
    """Build the test set now, so that a wrong path fails before any
    model is built, with the fix in the message."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    try:
        dataset = DATASETS.build(dataset_cfg)
    except FileNotFoundError as err:
        raise ScalePolicyToolError(
            f'cannot read the test set of {config!r}: '
            f'{str(err).rstrip(".")}. Point '
            '--data-root (and --ann-file / --data-prefix) at the dataset') \
            from err
    if len(dataset) == 0:
        raise ScalePolicyToolError(
            f'the test set of {config!r} is empty; check --data-root, '
            '--ann-file and --data-prefix')
    return dataset


def _load(load_classifier, cfg, checkpoint, what='model'):
    try:
        return load_classifier(cfg, checkpoint, what=what)
    except ValueError as err:  # a checkpoint that does not fit
        raise ScalePolicyToolError(str(err)) from err


def _num_classes(model):
    head = getattr(model, 'head', None)
    return getattr(head, 'num_classes', None)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    from mmelastic.analysis import (NoElasticBlocksError,
                                    find_scale_policy_blocks,
                                    run_scale_policy_analysis)
    from mmelastic.analysis.scale_policy import load_classifier
    check_evaluation_options(args, ScalePolicyToolError)

    cfg = load_config(args.config, args.cfg_options)
    loader_cfg = test_dataloader_cfg(cfg, args)
    loader_cfg['dataset'] = build_test_set(loader_cfg['dataset'], args.config)
    model = _load(load_classifier, cfg, args.checkpoint)
    if not find_scale_policy_blocks(model):
        raise NoElasticBlocksError(
            f'no Elastic blocks found in {type(model).__name__}: the '
            'scale-policy score needs a model with elastic blocks, and '
            f'{args.config!r} builds none; pass the Elastic config (e.g. an '
            "ElasticResNeXt with an '*_elastic' arch) and give the plain "
            'model as --baseline-config')
    baseline = None
    if args.baseline_config is not None:
        baseline_cfg = load_config(args.baseline_config)
        baseline = _load(
            load_classifier,
            baseline_cfg,
            args.baseline_checkpoint,
            what='baseline')
        if _num_classes(baseline) != _num_classes(model):
            raise ScalePolicyToolError(
                f'the baseline predicts {_num_classes(baseline)} classes, '
                f'the model {_num_classes(model)}: pass a baseline trained '
                'on the same dataset')

    print(
        f'[scale-policy] {args.config}: '
        f'{len(find_scale_policy_blocks(model))} Elastic blocks; running '
        f'on {args.device}' + (' with the baseline '
                               f'{args.baseline_config}' if baseline else ''),
        flush=True)
    paths = run_scale_policy_analysis(
        model,
        loader_cfg,
        args.out_dir,
        baseline_model=baseline,
        max_images=args.max_images,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        thumbnail_size=args.thumbnail_size,
        embedding_method=args.embedding,
        html_title=f'ELASTIC scale-policy demo: '
        f'{osp.splitext(osp.basename(args.config))[0]}')
    print(f'[scale-policy] done in {time.time() - start:.0f}s; wrote:')
    for kind, path in paths.items():
        print(f'  {kind:16s} {path}')
    return paths


def cli(argv=None):
    from mmelastic.analysis import NoElasticBlocksError
    try:
        main(argv)
    except (ScalePolicyToolError, NoElasticBlocksError,
            FileNotFoundError) as err:
        sys.exit(f'scale_policy.py: error: {err}')


if __name__ == '__main__':
    cli()
