# Copyright (c) mmelastic contributors. All rights reserved.
r"""Print parameters and FLOPs of configs beside the ELASTIC paper's figures.

Examples:
    python tools/analysis/get_flops.py configs/imagenet/resnext50_elastic.py
    python tools/analysis/get_flops.py --all configs/imagenet --markdown
    python tools/analysis/get_flops.py configs/imagenet/resnext50.py \
        --shape 448 320
    python tools/analysis/get_flops.py --traffic \
        configs/imagenet/resnext50_mmpretrain.py \
        configs/imagenet/resnext50_elastic.py

FLOPs are mmengine's count at batch size 1, one multiply-add = one FLOP, for
the whole model (backbone, neck and classifier), as in the paper's tables.
``--traffic`` adds what predicts speed where FLOPs do not (memory-bound
layers on a CPU): the feature-map elements an inference forward pass writes
and the activation memory a training forward pass keeps for its backward
pass (see ``mmelastic.analysis.feature_map_traffic``); ``--json`` also
holds the writes per ATen op (``written_by_op``).
"""
import json
import logging
import os.path as osp
import sys
import time
import warnings
from glob import glob

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope

from mmelastic.analysis import (PAPER_IMAGENET, feature_map_traffic,
                                model_complexity)


def parse_args(argv=None):
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('configs', nargs='*', help='config files')
    parser.add_argument(
        '--all', metavar='DIR', help='every *.py config in DIR (sorted)')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=[224],
        help='input size: one value (square) or H W. Default: 224')
    parser.add_argument(
        '--markdown', action='store_true', help='print a Markdown table')
    parser.add_argument(
        '--traffic', action='store_true',
        help='also count feature-map writes and activation memory')
    parser.add_argument('--json', metavar='FILE', help='also write JSON')
    args = parser.parse_args(argv)
    if args.all:
        args.configs += sorted(glob(osp.join(args.all, '*.py')))
    if not args.configs:
        parser.error('give config files or --all DIR')
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    elif len(args.shape) != 2:
        parser.error('--shape takes one or two integers')
    return args


def build_model(config):
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model
    if model_cfg.get('type') == 'EncoderDecoder':
        # Counting needs no auxiliary head and no SyncBN process group.
        model_cfg.pop('auxiliary_head', None)
    model = MODELS.build(model_cfg)
    if cfg.get('default_scope') == 'mmseg':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    return model


def fmt_paper(value, unit):
    return '–' if value is None else f'{value}{unit}'


def main():
    args = parse_args()
    # The counter warns about every op it does not count; keep the table
    # readable (what it counts is documented in model_complexity).
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')
    rows = []
    for i, config in enumerate(args.configs, 1):
        name = osp.splitext(osp.basename(config))[0]
        start = time.time()
        print(f'[{i}/{len(args.configs)}] {name} ...', end=' ', flush=True,
              file=sys.stderr)
        model = build_model(config)
        result = model_complexity(model, tuple(args.shape))
        if args.traffic:
            result.update(feature_map_traffic(model, tuple(args.shape)))
        print(f'{time.time() - start:.0f}s', file=sys.stderr)
        paper = PAPER_IMAGENET.get(name)
        row = dict(
            config=config,
            name=name,
            params=result['params'],
            flops=result['flops'],
            paper_params_m=paper[0] if paper else None,
            paper_flops_b=paper[1] if paper else None,
            paper_source=paper[4] if paper else None)
        if args.traffic:
            row.update(written=result['written'],
                       written_by_op=result['written_by_op'],
                       saved_bytes=result['saved_bytes'],
                       saved_per_batch_bytes=result['saved_per_batch_bytes'])
        rows.append(row)
    shape = 'x'.join(map(str, args.shape))
    header = ['model', 'params', 'params (M)', 'paper params',
              f'FLOPs @{shape}', 'paper FLOPs', 'source']
    if args.traffic:
        header += ['writes (M elements)', 'saved for backward (MB)',
                   'saved once per batch (MB)']
    lines = []
    for r in rows:
        lines.append([
            r['name'], f"{r['params']:,}", f"{r['params'] / 1e6:.2f}M",
            fmt_paper(r['paper_params_m'], 'M'),
            f"{r['flops'] / 1e9:.3f}G", fmt_paper(r['paper_flops_b'], 'B'),
            r['paper_source'] or '–'
        ])
        if args.traffic:
            lines[-1] += [
                f"{r['written'] / 1e6:.2f}", f"{r['saved_bytes'] / 2**20:.1f}",
                f"{r['saved_per_batch_bytes'] / 2**20:.1f}"
            ]
    if args.markdown:
        print('| ' + ' | '.join(header) + ' |')
        print('|' + '---|' * len(header))
        for line in lines:
            print('| ' + ' | '.join(line) + ' |')
    else:
        widths = [
            max(len(str(x)) for x in col) for col in zip(header, *lines)
        ]
        for line in [header] + lines:
            print('  '.join(str(x).ljust(w) for x, w in zip(line, widths)))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(shape=args.shape, models=rows), f, indent=2)
        print(f'wrote {args.json}', file=sys.stderr)


if __name__ == '__main__':
    main()
