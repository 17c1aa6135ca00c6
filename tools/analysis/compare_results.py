# Copyright (c) mmelastic contributors. All rights reserved.
r"""Table 4 of ELASTIC: relative improvement per object-size image subset.

Given the result dumps of an ELASTIC model and of its baseline on the same
COCO-format test set, print for each image subset of the paper's Table 4
(``S, M, M+S, L, L+S, L+M, L+M+S``: the object sizes present in the image)
and for all images the CF1 and OF1 of both models and the relative
improvement ``(elastic - baseline) / baseline`` in percent.

The dumps are the pickles written by ``tools/test.py CONFIG CKPT --out
result.pkl`` (mmengine's ``DumpResults``: a list of data-sample dicts). Each
sample needs ``pred_score``, ``gt_label`` (or ``gt_score``) and
``gt_size_label``; the last one is present when the test pipeline packs it,
as mmelastic's COCO configs do::

    dict(type='PackInputs',
         meta_keys=PackInputs.DEFAULT_META_KEYS + ('img_id',
                   'gt_size_label', 'size_subset'))

The samples of the two dumps are matched by ``img_id`` (else ``img_path``,
else ``sample_idx``). The figures use the rules of
:mod:`mmelastic.evaluation.metrics.elastic_multi_label` (a label is
predicted when its score is > 0.5, i.e. logit > 0).

Example:
    python tools/analysis/compare_results.py work_dirs/elastic.pkl \
        work_dirs/baseline.pkl
    python tools/analysis/compare_results.py e.pkl b.pkl --json table4.json
"""
import json
import math
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

try:
    import mmelastic  # noqa: F401
except ImportError:  # run from a checkout that is not pip-installed
    sys.path.insert(0,
                    osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmelastic.datasets.object_sizes import SIZE_SUBSETS  # noqa: E402
from mmelastic.evaluation.metrics.elastic_multi_label import (  # noqa: E402
    _to_numpy, elastic_multilabel_metrics)

FIGURES = ('CF1', 'OF1')
ROWS = SIZE_SUBSETS + ('all', )


def load_dump(path: str) -> List[dict]:
    """Load a ``DumpResults`` pickle with a clear error for a wrong file."""
    from mmengine.fileio import load
    if not osp.isfile(path):
        raise FileNotFoundError(f'result dump {path!r} does not exist; '
                                'write one with tools/test.py ... --out '
                                'result.pkl')
    samples = load(path)
    if not isinstance(samples, list) or not samples or \
            not isinstance(samples[0], dict):
        raise ValueError(f'{path!r} is not a result dump (a list of data '
                         'sample dicts from tools/test.py --out)')
    for key in ('pred_score', 'gt_size_label'):
        if key not in samples[0]:
            hint = ("pack it in the test pipeline: dict(type='PackInputs', "
                    "meta_keys=(..., 'gt_size_label'))"
                    if key == 'gt_size_label' else
                    'dump the predictions of a multi-label classifier')
            raise KeyError(f'the samples in {path!r} have no {key!r}; '
                           f'{hint}')
    return samples


def _sample_key(sample: dict):
    for key in ('img_id', 'img_path', 'sample_idx'):
        if key in sample:
            return key, sample[key]
    raise KeyError('samples have none of img_id, img_path, sample_idx to '
                   'match the two dumps by')


def _arrays(samples: Sequence[dict]):
    scores = np.stack([_to_numpy(s['pred_score']) for s in samples])
    num_classes = scores.shape[1]
    targets = np.zeros(scores.shape, dtype=np.int64)
    for i, sample in enumerate(samples):
        if 'gt_score' in sample:
            targets[i] = _to_numpy(sample['gt_score'])
        else:
            labels = np.asarray(
                _to_numpy(sample['gt_label']), dtype=np.int64).ravel()
            if labels.size and labels.max() >= num_classes:
                raise ValueError(f'gt_label {labels.max()} outside the '
                                 f'{num_classes} predicted classes')
            targets[i, labels] = 1
    return scores, targets, [s['gt_size_label'] for s in samples]


def align(elastic: List[dict], baseline: List[dict]) -> List[dict]:
    """Reorder ``baseline`` to the order of ``elastic``; both must hold the
    same images."""
    key_name, _ = _sample_key(elastic[0])
    by_key = {}
    for sample in baseline:
        if key_name not in sample:
            raise KeyError(f'baseline samples have no {key_name!r} to '
                           'match the ELASTIC samples by')
        by_key[_hashable(sample[key_name])] = sample
    missing = [
        s[key_name] for s in elastic if _hashable(s[key_name]) not in by_key
    ]
    if missing or len(by_key) != len(elastic):
        raise ValueError(
            f'the two dumps hold different images ({len(elastic)} vs '
            f'{len(baseline)} samples; e.g. {key_name}={missing[:1]} only '
            'in the ELASTIC dump); run both models on the same test set')
    return [by_key[_hashable(s[key_name])] for s in elastic]


def _hashable(value):
    if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
        return value.item()
    return value


def relative_gain(elastic: float, baseline: float) -> Optional[float]:
    """``(elastic - baseline) / baseline`` in percent; None when undefined
    (a baseline of 0 or NaN, e.g. an empty subset)."""
    if baseline == 0 or math.isnan(baseline) or math.isnan(elastic):
        return None
    return 100.0 * (elastic - baseline) / baseline


def compare(elastic: List[dict],
            baseline: List[dict],
            thr: float = 0.5,
            class_average: str = 'all') -> Dict[str, dict]:
    """Compute the Table-4 rows.

    Returns:
        dict: For each row name (the seven subsets and ``'all'``):
        ``num_images`` and, per figure (CF1, OF1), ``baseline``, ``elastic``
        and ``gain`` (percent, or None).
    """
    baseline = align(elastic, baseline)
    results = {}
    for name, samples in (('elastic', elastic), ('baseline', baseline)):
        scores, targets, sizes = _arrays(samples)
        results[name] = elastic_multilabel_metrics(
            scores,
            targets,
            gt_size_label=sizes,
            thr=thr,
            overall=True,
            subsets=True,
            class_average=class_average)
    table = {}
    for row in ROWS:
        prefix = '' if row == 'all' else f'{row}/'
        entry = dict(
            num_images=len(elastic) if row ==
            'all' else results['elastic'][f'{row}/num_images'])
        for figure in FIGURES:
            e = results['elastic'][prefix + figure]
            b = results['baseline'][prefix + figure]
            entry[figure] = dict(
                baseline=b, elastic=e, gain=relative_gain(e, b))
        table[row] = entry
    return table


def format_table(table: Dict[str, dict]) -> str:
    """Render the rows as a fixed-width text table."""

    def num(value, fmt='{:.2f}'):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return 'n/a'
        return fmt.format(value)

    header = ['subset', 'images']
    for figure in FIGURES:
        header += [f'{figure} base', f'{figure} elastic', f'{figure} gain%']
    rows = [header]
    for name, entry in table.items():
        row = [name, str(entry['num_images'])]
        for figure in FIGURES:
            cell = entry[figure]
            row += [
                num(cell['baseline']),
                num(cell['elastic']),
                num(cell['gain'], '{:+.2f}')
            ]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        '  '.join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def main(argv: Optional[list] = None) -> Dict[str, dict]:
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('elastic', help='result dump of the ELASTIC model')
    parser.add_argument('baseline', help='result dump of the baseline')
    parser.add_argument(
        '--thr',
        type=float,
        default=0.5,
        help='score threshold, predicted when > thr')
    parser.add_argument(
        '--class-average',
        choices=('all', 'present'),
        default='all',
        help='classes the CF1 mean runs over (all: as ELASTIC; present: '
        'those with ground truth in the subset); gains are the same')
    parser.add_argument(
        '--json',
        nargs='?',
        const='-',
        default=None,
        metavar='PATH',
        help='also write the rows as JSON to PATH (or stdout if no PATH)')
    args = parser.parse_args(argv)
    table = compare(
        load_dump(args.elastic),
        load_dump(args.baseline),
        thr=args.thr,
        class_average=args.class_average)
    print('Relative improvement of ELASTIC over the baseline, '
          '(elastic - baseline) / baseline in %, per image subset '
          '(object sizes present: S small, M medium, L large)')
    print(format_table(table))
    if args.json:
        # JSON has no NaN: undefined figures (empty subsets) become null.
        text = json.dumps(_nan_to_none(table), indent=1)
        if args.json == '-':
            print(text)
        else:
            with open(args.json, 'w') as f:
                f.write(text + '\n')
    return table


if __name__ == '__main__':
    main()
