# Copyright (c) mmelastic contributors. All rights reserved.
"""Reports of the scale-policy analysis (ELASTIC Sec. 4.1.1, Figures 5 and
6, Appendix C): tables, figures and the interactive HTML demo.

:func:`run_scale_policy_analysis` runs a trained Elastic classifier (and
optionally its baseline) over a dataset with
:func:`~mmelastic.analysis.scale_policy.collect_scale_policy` and writes,
under ``out_dir``:

* ``scores.csv`` / ``scores.json`` -- one row per image: its path,
  categories, prediction, whether it is correct (multi-label: the predicted
  set, score > 0.5, equals the gt set), its per-image F1, the baseline's
  prediction and correctness when a baseline is given, the mean score and
  the score ``S`` of every Elastic block (columns ``layer_0`` ...; the JSON
  maps them to module names in ``blocks``). Category lists are joined with
  ``|`` in the CSV.
* ``category_scores.png`` (Fig. 5) -- categories sorted by their mean score
  (over blocks and over the images of the category; a multi-label image
  counts for each of its categories).
* ``score_matrix.png`` (Fig. 6 middle) -- the images x blocks matrix of S.
* ``tsne.png`` (Fig. 6 left) -- a 2-D t-SNE of the score vectors, dots
  coloured by category (a multi-label image by its first category).
  scikit-learn's TSNE is used when installed, else a small exact t-SNE in
  numpy (up to :data:`NUMPY_TSNE_MAX_POINTS` images), else PCA -- the title
  says which.
* ``tsne_density.png`` (Fig. 6 right, only with a baseline) -- the density
  of all images in the t-SNE plane and of the images that the Elastic model
  gets right and the baseline gets wrong.
* ``index.html`` -- the interactive demo of Appendix C: one row per image
  with its category, a thumbnail, a colour bar of its scale policy and one
  column per layer; click a header to sort (again to reverse), filter by
  category, page through. One self-contained file (inline script, style,
  data and thumbnails) that works from disk with no network; with more than
  ``inline_thumbnail_limit`` images the thumbnails go to ``thumbnails/``
  beside it instead.
"""
import base64
import csv
import html
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .scale_policy import ScalePolicyResults, collect_scale_policy

__all__ = [
    'run_scale_policy_analysis', 'write_scale_policy_report',
    'write_scores_csv', 'write_scores_json', 'write_scale_policy_html',
    'plot_category_scores', 'plot_score_matrix', 'plot_tsne',
    'plot_tsne_density', 'embed_scores', 'tsne_numpy', 'category_means'
]

#: Above this many images the numpy t-SNE (O(n^2) memory) gives way to PCA.
NUMPY_TSNE_MAX_POINTS = 3000
#: Colour map of the scores: red = high resolution (S > 0), blue = low.
SCORE_CMAP = 'RdBu_r'


# ----------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------
def _table_rows(results: ScalePolicyResults) -> List[dict]:
    """The per-image rows shared by the CSV and the JSON."""
    scores = results.scores
    rows = []
    for record, row_scores in zip(results.records, scores):
        row = dict(
            index=record['index'],
            img_path=record['img_path'],
            categories=record['categories'],
            prediction=record['prediction'],
            correct=bool(record['correct']),
            f1=round(float(record['f1']), 6))
        if results.has_baseline:
            row.update(
                baseline_prediction=record['baseline_prediction'],
                baseline_correct=bool(record['baseline_correct']),
                baseline_f1=round(float(record['baseline_f1']), 6))
        row['mean_score'] = float(np.mean(row_scores))
        row['scores'] = [float(v) for v in row_scores]
        rows.append(row)
    return rows


def csv_columns(results: ScalePolicyResults) -> List[str]:
    """The header of ``scores.csv``."""
    columns = [
        'index', 'img_path', 'categories', 'prediction', 'correct', 'f1'
    ]
    if results.has_baseline:
        columns += ['baseline_prediction', 'baseline_correct', 'baseline_f1']
    return columns + ['mean_score'] + results.layer_names


def write_scores_csv(results: ScalePolicyResults, path: str) -> str:
    """Write ``scores.csv``: one row per image, see :func:`csv_columns`.

    Category lists are joined with ``|``; ``correct`` columns are 0/1.
    """
    columns = csv_columns(results)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in _table_rows(results):
            values = dict(row)
            for key in ('categories', 'prediction', 'baseline_prediction'):
                if key in values:
                    values[key] = '|'.join(values[key])
            for key in ('correct', 'baseline_correct'):
                if key in values:
                    values[key] = int(values[key])
            for name, value in zip(results.layer_names, row['scores']):
                values[name] = f'{value:.6g}'
            values['mean_score'] = f"{row['mean_score']:.6g}"
            writer.writerow([values[c] for c in columns])
    return path


def write_scores_json(
        results: ScalePolicyResults,
        path: str,
        embedding: Optional[Tuple[np.ndarray, str]] = None) -> str:
    """Write ``scores.json``.

    Layout::

        {"score": "S = A_high - A_low ...", "model": "ImageClassifier",
         "task": "multi-label" | "single-label", "threshold": 0.5,
         "has_baseline": false, "classes": [...],
         "blocks": ["backbone.layer1.0", ...],    # module of layer_i
         "layers": ["layer_0", ...],
         "embedding": "t-SNE (scikit-learn)",     # with an embedding
         "images": [{"index": 0, "img_path": ..., "categories": [...],
                     "prediction": [...], "correct": true, "f1": 1.0,
                     ["baseline_prediction", "baseline_correct",
                      "baseline_f1",] "mean_score": ..., "scores": [...],
                     ["tsne": [x, y]]}, ...]}
    """
    images = _table_rows(results)
    if embedding is not None:
        coords, _ = embedding
        for row, xy in zip(images, coords):
            row['tsne'] = [float(xy[0]), float(xy[1])]
    data = dict(
        score='S = A_high - A_low: mean activation after the ReLU that '
        'follows the 3x3 conv of the high-resolution branch minus that of '
        'the low-resolution branch (ELASTIC Sec. 4.1.1)',
        model=results.model_name,
        task='multi-label' if results.multi_label else 'single-label',
        threshold=results.thr if results.multi_label else None,
        has_baseline=results.has_baseline,
        num_images=len(results),
        classes=results.class_names,
        blocks=results.block_names,
        layers=results.layer_names,
        embedding=embedding[1] if embedding is not None else None,
        images=images)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1)
    return path


# ----------------------------------------------------------------------------
# Embedding
# ----------------------------------------------------------------------------
def _pca(x: np.ndarray, dims: int = 2) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), dims))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:dims].T
    if out.shape[1] < dims:
        out = np.pad(out, ((0, 0), (0, dims - out.shape[1])))
    return out


def _perplexity_affinities(dist2: np.ndarray,
                           perplexity: float,
                           tol: float = 1e-5,
                           steps: int = 64) -> np.ndarray:
    """Row-conditional Gaussian affinities with the given perplexity
    (binary search of each row's precision, as in van der Maaten's
    reference implementation)."""
    n = len(dist2)
    target = np.log(perplexity)
    p = np.zeros((n, n))
    for i in range(n):
        d = np.delete(dist2[i], i)
        beta, lo, hi = 1.0, 0.0, np.inf
        for _ in range(steps):
            w = np.exp(-(d - d.min()) * beta)
            sw = w.sum()
            h = np.log(sw) + beta * np.sum((d - d.min()) * w) / sw
            if abs(h - target) < tol:
                break
            if h > target:
                lo = beta
                beta = beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi = beta
                beta = (beta + lo) / 2
        p[i, np.arange(n) != i] = w / sw
    return p


def tsne_numpy(x: np.ndarray,
               perplexity: float = 30.0,
               n_iter: int = 750,
               seed: int = 0) -> np.ndarray:
    """A small exact t-SNE (van der Maaten & Hinton, 2008) in numpy.

    The standard recipe: perplexity-calibrated affinities, early
    exaggeration 12 for 250 iterations, momentum 0.5 then 0.8, adaptive
    gains, PCA initialisation. O(n^2) time and memory per iteration: meant
    for up to a few thousand points (use scikit-learn beyond).

    Args:
        x (np.ndarray): ``(n, d)`` points.
        perplexity (float): Effective number of neighbours; clipped to
            ``(n - 1) / 3``.
        n_iter (int): Gradient steps.
        seed (int): Seed of the tiny jitter added to the initialisation.

    Returns:
        np.ndarray: ``(n, 2)`` embedding.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 3:
        return _pca(x)
    perplexity = float(min(perplexity, max((n - 1) / 3.0, 1.0)))
    sq = np.sum(x * x, axis=1)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    p = _perplexity_affinities(dist2, perplexity)
    p = (p + p.T) / (2.0 * n)
    p = np.maximum(p, 1e-12)
    rng = np.random.default_rng(seed)
    y = _pca(x)
    scale = y[:, 0].std() if y[:, 0].std() > 0 else 1.0
    y = y / scale * 1e-4 + rng.normal(0, 1e-6, y.shape)
    exaggeration = 12.0
    learning_rate = max(n / exaggeration / 4.0, 50.0)
    velocity = np.zeros_like(y)
    gains = np.ones_like(y)
    for it in range(n_iter):
        pe = p * exaggeration if it < 250 else p
        momentum = 0.5 if it < 250 else 0.8
        sy = np.sum(y * y, axis=1)
        num = 1.0 / (1.0 +
                     np.maximum(sy[:, None] + sy[None, :] - 2 * y @ y.T, 0))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        w = (pe - q) * num
        grad = 4.0 * (np.diag(w.sum(axis=1)) - w) @ y
        inc = np.sign(grad) != np.sign(velocity)
        gains = np.where(inc, gains + 0.2, gains * 0.8)
        gains = np.maximum(gains, 0.01)
        velocity = momentum * velocity - learning_rate * gains * grad
        y = y + velocity
        y = y - y.mean(axis=0)
    return y


def embed_scores(scores: np.ndarray,
                 method: str = 'auto',
                 seed: int = 0) -> Tuple[np.ndarray, str]:
    """2-D embedding of the score vectors for Fig. 6.

    Args:
        scores (np.ndarray): ``(images, blocks)``.
        method (str): ``'auto'`` (scikit-learn's TSNE if installed, else the
            numpy t-SNE up to :data:`NUMPY_TSNE_MAX_POINTS` images, else
            PCA), ``'sklearn'``, ``'numpy'`` or ``'pca'``.
        seed (int): Random seed.

    Returns:
        tuple[np.ndarray, str]: ``(images, 2)`` coordinates and a label
        naming the method, e.g. ``'t-SNE (scikit-learn)'``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if method not in ('auto', 'sklearn', 'numpy', 'pca'):
        raise ValueError(f"unknown embedding method {method!r}: use 'auto', "
                         "'sklearn', 'numpy' or 'pca'")
    if n < 4 and method != 'pca':
        return _pca(scores), f'PCA (t-SNE needs at least 4 images, got {n})'
    if method in ('auto', 'sklearn'):
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            if method == 'sklearn':
                raise ImportError('scikit-learn is not installed: pip install '
                                  'scikit-learn (or use method="numpy")')
            TSNE = None
        if TSNE is not None:
            tsne = TSNE(
                n_components=2,
                perplexity=float(min(30.0, (n - 1) / 3.0)),
                init='pca',
                # Barnes-Hut pays off only for larger sets.
                method='exact' if n <= 500 else 'barnes_hut',
                random_state=seed)
            return tsne.fit_transform(scores), 't-SNE (scikit-learn)'
        method = 'numpy'
    if method == 'numpy':
        if n <= NUMPY_TSNE_MAX_POINTS:
            return tsne_numpy(scores, seed=seed), 't-SNE (numpy, exact)'
        return _pca(scores), (
            f'PCA (no scikit-learn for t-SNE of {n} images; pip install '
            'scikit-learn)')
    return _pca(scores), 'PCA'


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def category_means(
        results: ScalePolicyResults) -> List[Tuple[str, float, int]]:
    """``(category, mean score, images)`` sorted by mean score, highest
    first. The mean runs over the blocks and the images of the category;
    a multi-label image counts for each of its categories, images without
    one form ``'(none)'``."""
    scores = results.scores.mean(axis=1) if len(results) else np.zeros(0)
    groups: Dict[str, List[float]] = {}
    for record, value in zip(results.records, scores):
        for category in (record['categories'] or ['(none)']):
            groups.setdefault(category, []).append(float(value))
    table = [(c, float(np.mean(v)), len(v)) for c, v in groups.items()]
    return sorted(table, key=lambda item: (-item[1], item[0]))


def plot_category_scores(results: ScalePolicyResults, path: str) -> str:
    """Fig. 5: categories sorted by their mean scale-policy score."""
    plt = _pyplot()
    table = category_means(results)
    names = [t[0] for t in table]
    means = np.array([t[1] for t in table])
    counts = [t[2] for t in table]
    colours = plt.get_cmap(SCORE_CMAP)(0.5 + 0.5 * means /
                                       (np.abs(means).max() or 1.0))
    if len(table) <= 60:
        fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(table) + 1.2)))
        y = np.arange(len(table))
        ax.barh(y, means, color=colours, edgecolor='0.3', linewidth=0.4)
        ax.set_yticks(
            y, [f'{n} ({c})' for n, c in zip(names, counts)], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color='0.3', linewidth=0.6)
        ax.set_xlabel('mean scale-policy score S (over blocks and images)')
        ax.set_ylabel('category (images)')
    else:
        fig, ax = plt.subplots(figsize=(10, 4))
        x = np.arange(len(table))
        ax.bar(x, means, width=1.0, color=colours)
        ax.axhline(0, color='0.3', linewidth=0.6)
        ax.set_xlim(-0.5, len(table) - 0.5)
        ax.set_xlabel(f'{len(table)} categories, sorted')
        ax.set_ylabel('mean scale-policy score S')
        for i in list(range(5)) + list(range(len(table) - 5, len(table))):
            ax.annotate(
                names[i], (i, means[i]),
                fontsize=6,
                rotation=90,
                va='bottom' if means[i] >= 0 else 'top')
    ax.set_title(
        'Categories by mean scale-policy score (ELASTIC Fig. 5)\n'
        'S > 0: mostly high resolution, S < 0: mostly low',
        fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _symmetric_limit(scores: np.ndarray) -> float:
    if scores.size == 0:
        return 1.0
    vmax = float(np.percentile(np.abs(scores), 99))
    return vmax if vmax > 0 else float(np.abs(scores).max() or 1.0)


def score_matrix_order(results: ScalePolicyResults) -> np.ndarray:
    """Row order of the score matrix: by first category, then by mean
    score (highest first)."""
    primary = results.primary_categories()
    means = results.scores.mean(axis=1) if len(results) else np.zeros(0)
    return np.array(
        sorted(range(len(results)), key=lambda i: (primary[i], -means[i])),
        dtype=int)


def plot_score_matrix(results: ScalePolicyResults, path: str) -> str:
    """Fig. 6 middle: the images x blocks matrix of S."""
    plt = _pyplot()
    scores = results.scores
    order = score_matrix_order(results)
    vmax = _symmetric_limit(scores)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * scores.shape[1] + 2.5), 6))
    image = ax.imshow(
        scores[order],
        aspect='auto',
        cmap=SCORE_CMAP,
        vmin=-vmax,
        vmax=vmax,
        interpolation='nearest')
    ax.set_xticks(
        np.arange(scores.shape[1]), [str(i) for i in range(scores.shape[1])],
        fontsize=7)
    ax.set_xlabel('Elastic block (layer_i)')
    ax.set_ylabel(f'{len(results)} images (by category, then mean S)')
    ax.set_title(
        'Scale-policy score per image and block (ELASTIC Fig. 6 '
        'middle)',
        fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.05)
    bar.set_label('S = A_high - A_low  (red: high res., blue: low res.)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _category_colours(plt, categories: Sequence[str]):
    names = sorted(set(categories))
    if len(names) <= 10:
        cmap = plt.get_cmap('tab10')
        lut = {n: cmap(i) for i, n in enumerate(names)}
    elif len(names) <= 20:
        cmap = plt.get_cmap('tab20')
        lut = {n: cmap(i) for i, n in enumerate(names)}
    else:
        cmap = plt.get_cmap('turbo')
        lut = {n: cmap(i / (len(names) - 1)) for i, n in enumerate(names)}
    if '(none)' in lut:
        lut['(none)'] = (0.6, 0.6, 0.6, 1.0)
    return names, lut


def plot_tsne(results: ScalePolicyResults, coords: np.ndarray, method: str,
              path: str) -> str:
    """Fig. 6 left: the embedded score vectors coloured by category."""
    plt = _pyplot()
    primary = results.primary_categories()
    names, lut = _category_colours(plt, primary)
    fig, ax = plt.subplots(figsize=(7.5 if len(names) <= 20 else 6.5, 6))
    size = float(np.clip(3000 / max(len(results), 1), 3, 40))
    for name in names:
        mask = np.array([c == name for c in primary])
        ax.scatter(
            coords[mask, 0],
            coords[mask, 1],
            s=size,
            color=lut[name],
            label=name,
            alpha=0.8,
            linewidths=0)
    if len(names) <= 20:
        ax.legend(
            fontsize=7,
            loc='center left',
            bbox_to_anchor=(1.0, 0.5),
            markerscale=max(1.0, 20 / size)**0.5,
            title='first category' if results.multi_label else 'category',
            title_fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f'{method} of the {len(results.block_names)}-d '
        f'scale-policy vectors\n({len(results)} images; ELASTIC '
        'Fig. 6 left)',
        fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _density(coords: np.ndarray, extent, bins: int = 120) -> np.ndarray:
    """Gaussian-smoothed 2-D histogram, normalised to sum 1 (zeros for no
    points). The kernel width follows Scott's rule on the full plane."""
    (x0, x1), (y0, y1) = extent
    hist, _, _ = np.histogram2d(
        coords[:, 1], coords[:, 0], bins=bins, range=[[y0, y1], [x0, x1]])
    if hist.sum() == 0:
        return hist
    sigma = max(1.5, bins * max(len(coords), 1)**(-1 / 6) * 0.12)
    radius = int(3 * sigma)
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (t / sigma)**2)
    kernel /= kernel.sum()
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode='same'),
                                 0, hist)
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode='same'),
                                 1, smooth)
    return smooth / smooth.sum()


def improved_mask(results: ScalePolicyResults) -> np.ndarray:
    """Images the model gets right and the baseline gets wrong."""
    if not results.has_baseline:
        raise ValueError('no baseline was run: the "Elastic right, baseline '
                         'wrong" images need --baseline-config and '
                         '--baseline-checkpoint (baseline_model=...)')
    return np.array(
        [r['correct'] and not r['baseline_correct'] for r in results.records],
        dtype=bool)


def plot_tsne_density(results: ScalePolicyResults, coords: np.ndarray,
                      method: str, path: str) -> str:
    """Fig. 6 right: density of all images (bottom) and of the images the
    Elastic model gets right and the baseline wrong (top)."""
    plt = _pyplot()
    improved = improved_mask(results)
    pad_x = 0.05 * (np.ptp(coords[:, 0]) or 1.0)
    pad_y = 0.05 * (np.ptp(coords[:, 1]) or 1.0)
    extent = ((coords[:, 0].min() - pad_x, coords[:, 0].max() + pad_x),
              (coords[:, 1].min() - pad_y, coords[:, 1].max() + pad_y))
    fig, axes = plt.subplots(2, 1, figsize=(5, 9))
    panels = ((axes[0], coords[improved],
               f'Elastic right, baseline wrong ({int(improved.sum())} '
               'images)', 'Reds'), (axes[1], coords,
                                    f'all images ({len(coords)})', 'Blues'))
    for ax, points, title, cmap in panels:
        density = _density(points, extent)
        ax.imshow(
            density,
            origin='lower',
            cmap=cmap,
            aspect='auto',
            extent=(*extent[0], *extent[1]))
        ax.scatter(
            points[:, 0],
            points[:, 1],
            s=2,
            color='k',
            alpha=0.3,
            linewidths=0)
        if len(points) == 0:
            ax.text(
                0.5,
                0.5,
                'no such images',
                ha='center',
                va='center',
                transform=ax.transAxes)
        ax.set_xlim(*extent[0])
        ax.set_ylim(*extent[1])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
    fig.suptitle(
        f'Density in the {method} plane (ELASTIC Fig. 6 right)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------
# HTML demo (Appendix C)
# ----------------------------------------------------------------------------
_HTML_STYLE = """
body { font-family: sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; margin: 0 0 6px 0; }
p.info { font-size: 13px; margin: 4px 0 10px 0; max-width: 70em; }
#controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center;
  font-size: 13px; margin-bottom: 8px; position: sticky; top: 0;
  background: #fff; padding: 6px 0; z-index: 2; }
#controls button { min-width: 2.2em; }
#filter { width: 16em; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 4px; text-align: center; }
th { background: #f2f2f2; white-space: nowrap; }
th[data-sort] { cursor: pointer; user-select: none; }
th[data-sort]:hover { background: #e0e6f0; }
th .arrow { font-size: 10px; color: #555; }
td.category { text-align: left; max-width: 16em; }
td.prediction { text-align: left; max-width: 14em; }
td.score { font-family: monospace; }
td img { display: block; width: 64px; height: auto; }
.policy { display: flex; height: 18px; width: 170px; border: 1px solid #999; }
.policy span { flex: 1 1 0; }
.ok { color: #1a7f37; font-weight: bold; }
.wrong { color: #b42318; font-weight: bold; }
.legend span { display: inline-block; width: 14px; height: 10px;
  border: 1px solid #999; vertical-align: middle; }
"""

_HTML_SCRIPT = r"""
(function () {
  'use strict';
  var DATA = JSON.parse(
    document.getElementById('scale-policy-data').textContent);
  var rows = DATA.rows;
  var nLayers = DATA.layers.length;
  rows.forEach(function (r) {
    r.cat = r.c.length ? r.c.join(', ') : '(none)';
    r.catLower = r.cat.toLowerCase();
  });
  var state = { key: null, dir: 1, filter: '', improved: false, page: 0,
                pageSize: parseInt(document.getElementById('page-size').value,
                                   10) };
  var view = rows.slice();

  function mix(a, b, t) {
    return Math.round(a + (b - a) * t);
  }
  // Diverging colour: blue (low resolution, S < 0), white, red (high).
  function colour(v, strength) {
    var t = Math.max(-1, Math.min(1, v / DATA.vmax)) * (strength || 1);
    var end = t >= 0 ? [178, 24, 43] : [33, 102, 172];
    var a = Math.abs(t);
    return 'rgb(' + mix(255, end[0], a) + ',' + mix(255, end[1], a) + ',' +
      mix(255, end[2], a) + ')';
  }
  function sortValue(r, key) {
    if (key === 'category') { return r.catLower; }
    if (key === 'index') { return r.i; }
    if (key === 'mean') { return r.m; }
    return r.s[parseInt(key.slice(6), 10)];  // 'layer_<k>'
  }
  function compare(a, b) {
    var va = sortValue(a, state.key), vb = sortValue(b, state.key);
    if (va < vb) { return -state.dir; }
    if (va > vb) { return state.dir; }
    return a.i - b.i;
  }
  function update() {
    var q = state.filter.trim().toLowerCase();
    view = rows.filter(function (r) {
      if (q && r.catLower.indexOf(q) < 0) { return false; }
      if (state.improved && !(r.ok && r.bok === false)) { return false; }
      return true;
    });
    if (state.key !== null) { view.sort(compare); }
    var pages = Math.max(1, Math.ceil(view.length / state.pageSize));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    render(pages);
  }
  function text(el, value) {
    el.textContent = value;
    return el;
  }
  function cell(tr, cls, value) {
    var td = document.createElement('td');
    if (cls) { td.className = cls; }
    if (value !== undefined) { td.textContent = value; }
    tr.appendChild(td);
    return td;
  }
  function verdict(td, ok, names) {
    var mark = document.createElement('span');
    mark.className = ok ? 'ok' : 'wrong';
    mark.textContent = ok ? '\u2713 ' : '\u2717 ';
    td.appendChild(mark);
    td.appendChild(document.createTextNode(
      names.length ? names.join(', ') : '(none)'));
  }
  function render(pages) {
    var body = document.getElementById('rows');
    var fragment = document.createDocumentFragment();
    var start = state.page * state.pageSize;
    var slice = view.slice(start, start + state.pageSize);
    slice.forEach(function (r) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-index', r.i);
      cell(tr, 'index', String(r.i));
      cell(tr, 'category', r.cat);
      var imgCell = cell(tr, 'image');
      if (r.t) {
        var img = document.createElement('img');
        img.src = r.t;
        img.alt = r.cat;
        img.loading = 'lazy';
        img.title = r.path;
        imgCell.appendChild(img);
      } else {
        imgCell.textContent = '\u2014';
        imgCell.title = r.path;
      }
      var bar = document.createElement('div');
      bar.className = 'policy';
      bar.title = r.s.map(function (v, k) {
        return 'layer_' + k + ': ' + v.toFixed(3);
      }).join('\n');
      r.s.forEach(function (v) {
        var span = document.createElement('span');
        span.style.background = colour(v);
        bar.appendChild(span);
      });
      cell(tr, 'policy').appendChild(bar);
      verdict(cell(tr, 'prediction'), r.ok, r.p);
      if (DATA.hasBaseline) {
        var b = cell(tr, 'baseline');
        verdict(b, r.bok, r.bp);
      }
      var mean = cell(tr, 'score mean', r.m.toFixed(3));
      mean.setAttribute('data-value', r.m);
      r.s.forEach(function (v, k) {
        var td = cell(tr, 'score', v.toFixed(3));
        td.setAttribute('data-layer', k);
        td.setAttribute('data-value', v);
        td.style.background = colour(v, 0.6);
      });
      fragment.appendChild(tr);
    });
    body.replaceChildren(fragment);
    text(document.getElementById('page-info'),
      'Page ' + (state.page + 1) + ' of ' + pages);
    text(document.getElementById('row-count'),
      view.length + ' of ' + rows.length + ' images');
    document.getElementById('first-page').disabled = state.page === 0;
    document.getElementById('prev-page').disabled = state.page === 0;
    document.getElementById('next-page').disabled = state.page >= pages - 1;
    document.getElementById('last-page').disabled = state.page >= pages - 1;
    var ths = document.querySelectorAll('th[data-sort]');
    Array.prototype.forEach.call(ths, function (th) {
      var key = th.getAttribute('data-sort');
      var arrow = th.querySelector('.arrow');
      if (key === state.key) {
        th.setAttribute('aria-sort',
          state.dir > 0 ? 'ascending' : 'descending');
        arrow.textContent = state.dir > 0 ? ' \u25B2' : ' \u25BC';
      } else {
        th.removeAttribute('aria-sort');
        arrow.textContent = '';
      }
    });
    document.body.setAttribute('data-ready', 'true');
  }
  function header() {
    var tr = document.getElementById('header');
    function th(label, key, title) {
      var el = document.createElement('th');
      el.textContent = label;
      if (title) { el.title = title; }
      if (key) {
        el.setAttribute('data-sort', key);
        var arrow = document.createElement('span');
        arrow.className = 'arrow';
        el.appendChild(arrow);
        el.addEventListener('click', function () {
          if (state.key === key) {
            state.dir = -state.dir;
          } else {
            state.key = key;
            state.dir = 1;
          }
          state.page = 0;
          update();
        });
      }
      tr.appendChild(el);
    }
    th('#', 'index', 'position in the dataset');
    th('Category', 'category',
       DATA.multiLabel ? 'ground-truth categories' : 'ground-truth category');
    th('Image');
    th('Scale Policy', null, 'S per block, layer_0 to layer_' + (nLayers - 1));
    th('Prediction', null, DATA.multiLabel ?
       'labels with score > ' + DATA.threshold + ' (\u2713: exact set match)' :
       'top-1 prediction');
    if (DATA.hasBaseline) {
      th('Baseline', null, 'the baseline\'s prediction');
    }
    th('mean', 'mean', 'mean S over the blocks');
    DATA.layers.forEach(function (name, k) {
      th(name, name, DATA.blocks[k]);
    });
  }
  function go(page) {
    state.page = page;
    update();
  }
  document.getElementById('filter').addEventListener('input', function (e) {
    state.filter = e.target.value;
    state.page = 0;
    update();
  });
  var improved = document.getElementById('only-improved');
  if (improved) {
    improved.addEventListener('change', function (e) {
      state.improved = e.target.checked;
      state.page = 0;
      update();
    });
  }
  document.getElementById('page-size').addEventListener('change',
    function (e) {
      state.pageSize = parseInt(e.target.value, 10);
      state.page = 0;
      update();
    });
  document.getElementById('first-page').addEventListener('click',
    function () { go(0); });
  document.getElementById('prev-page').addEventListener('click',
    function () { go(state.page - 1); });
  document.getElementById('next-page').addEventListener('click',
    function () { go(state.page + 1); });
  document.getElementById('last-page').addEventListener('click',
    function () { go(Number.MAX_SAFE_INTEGER); });
  header();
  update();
})();
"""


def _json_for_script(data) -> str:
    """JSON that is safe inside ``<script>``: no ``<``, ``>`` or ``&``."""
    text = json.dumps(data, separators=(',', ':'), allow_nan=False)
    return text.replace('<',
                        '\\u003c').replace('>',
                                           '\\u003e').replace('&', '\\u0026')


def write_scale_policy_html(results: ScalePolicyResults,
                            path: str,
                            page_size: int = 50,
                            inline_thumbnail_limit: int = 5000,
                            title: Optional[str] = None) -> str:
    """Write the interactive scale-policy demo (ELASTIC Appendix C).

    One row per image: index, category, thumbnail, a colour bar of its
    scale policy (one cell per block, red = high resolution, blue = low),
    its prediction (and the baseline's), the mean and the per-layer scores.
    Click a header (``#``, Category, mean, ``layer_i``) to sort ascending,
    again for descending; type in the filter box to keep the rows whose
    category contains the text; with a baseline, a checkbox keeps the
    images the model gets right and the baseline wrong. Rows are shown a
    page at a time so that tens of thousands of images stay responsive.

    The page needs no server and no network: the style, the script and
    the data are inline, and so are the thumbnails (JPEG data URIs) up to
    ``inline_thumbnail_limit`` images; beyond that they are written as
    files to ``thumbnails/`` beside the page.

    Args:
        results (ScalePolicyResults): What to show.
        path (str): The ``.html`` file to write.
        page_size (int): Rows per page at first (25, 50, 100, 200 or 500).
        inline_thumbnail_limit (int): Most images with inline thumbnails.
        title (str, optional): Page heading.

    Returns:
        str: ``path``.
    """
    scores = results.scores
    inline = len(results) <= inline_thumbnail_limit
    thumb_dir = osp.join(osp.dirname(osp.abspath(path)), 'thumbnails')
    rows = []
    for k, (record, row_scores, thumb) in enumerate(
            zip(results.records, scores, results.thumbnails)):
        if thumb and not inline:
            os.makedirs(thumb_dir, exist_ok=True)
            name = f'{record["index"]:07d}.jpg'
            with open(osp.join(thumb_dir, name), 'wb') as f:
                f.write(base64.b64decode(thumb.split(',', 1)[1]))
            thumb = f'thumbnails/{name}'
        row = dict(
            i=int(record['index']),
            c=list(record['categories']),
            p=list(record['prediction']),
            ok=bool(record['correct']),
            m=round(float(np.mean(row_scores)), 6),
            s=[round(float(v), 6) for v in row_scores],
            t=thumb or '',
            path=record['img_path'])
        if results.has_baseline:
            row.update(
                bp=list(record['baseline_prediction']),
                bok=bool(record['baseline_correct']))
        rows.append(row)
    data = dict(
        layers=results.layer_names,
        blocks=results.block_names,
        multiLabel=results.multi_label,
        threshold=results.thr,
        hasBaseline=results.has_baseline,
        vmax=_symmetric_limit(scores),
        rows=rows)
    sizes = [25, 50, 100, 200, 500]
    if page_size not in sizes:
        sizes = sorted(sizes + [int(page_size)])
    options = ''.join(
        f'<option value="{s}"{" selected" if s == page_size else ""}>{s}'
        '</option>' for s in sizes)
    improved = ''
    if results.has_baseline:
        improved = ('<label><input type="checkbox" id="only-improved"> '
                    'only images the model gets right and the baseline '
                    'wrong</label>')
    data_script = ('<script type="application/json" id="scale-policy-data">'
                   f'{_json_for_script(data)}</script>')
    heading = html.escape(title or 'ELASTIC scale-policy demo')
    task = 'multi-label' if results.multi_label else 'single-label'
    info = (f'{len(results)} images ({task}), {len(results.block_names)} '
            f'Elastic blocks of {html.escape(results.model_name)}. Score per '
            'block: S = A<sub>high</sub> &minus; A<sub>low</sub>, the mean '
            'activation after the ReLU that follows the 3&times;3 conv of the '
            'high-resolution branch minus that of the low-resolution branch '
            '(ELASTIC, Sec. 4.1.1). Colours: '
            '<span class="legend"><span style="background:rgb(178,24,43)">'
            '</span></span> S &gt; 0, mostly high resolution; '
            '<span class="legend"><span style="background:rgb(33,102,172)">'
            '</span></span> S &lt; 0, mostly low resolution. Click a column '
            'header to sort by it, click again to reverse.')
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading}</title>
<style>{_HTML_STYLE}</style>
</head>
<body>
<h1>{heading}</h1>
<p class="info">{info}</p>
<div id="controls">
<label>Category filter <input id="filter" type="search"
  placeholder="category contains..." autocomplete="off"></label>
{improved}
<label>Rows per page <select id="page-size">{options}</select></label>
<span>
<button id="first-page" title="first page">&laquo;</button>
<button id="prev-page" title="previous page">&lsaquo;</button>
<span id="page-info"></span>
<button id="next-page" title="next page">&rsaquo;</button>
<button id="last-page" title="last page">&raquo;</button>
</span>
<span id="row-count"></span>
</div>
<table id="policy-table">
<thead><tr id="header"></tr></thead>
<tbody id="rows"></tbody>
</table>
{data_script}
<script>{_HTML_SCRIPT}</script>
</body>
</html>
"""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(page)
    return path


# ----------------------------------------------------------------------------
# Everything
# ----------------------------------------------------------------------------
def write_scale_policy_report(results: ScalePolicyResults,
                              out_dir: str,
                              embedding_method: str = 'auto',
                              seed: int = 0,
                              html_title: Optional[str] = None,
                              log=print) -> Dict[str, str]:
    """Write every table, figure and the HTML demo of ``results``.

    Args:
        results (ScalePolicyResults): From
            :func:`~mmelastic.analysis.scale_policy.collect_scale_policy`.
        out_dir (str): Output folder (created).
        embedding_method (str): See :func:`embed_scores`.
        seed (int): Seed of the embedding.
        html_title (str, optional): Heading of the HTML page.
        log (callable, optional): Where notes go (e.g. a skipped figure);
            None for silence.

    Returns:
        dict[str, str]: Paths by kind: ``csv``, ``json``,
        ``category_scores``, ``score_matrix``, ``tsne``, ``html`` and, with
        a baseline, ``tsne_density``.
    """
    log = log or (lambda *args: None)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    coords, method = embed_scores(results.scores, embedding_method, seed)
    paths['csv'] = write_scores_csv(results, osp.join(out_dir, 'scores.csv'))
    paths['json'] = write_scores_json(results,
                                      osp.join(out_dir, 'scores.json'),
                                      (coords, method))
    paths['category_scores'] = plot_category_scores(
        results, osp.join(out_dir, 'category_scores.png'))
    paths['score_matrix'] = plot_score_matrix(
        results, osp.join(out_dir, 'score_matrix.png'))
    paths['tsne'] = plot_tsne(results, coords, method,
                              osp.join(out_dir, 'tsne.png'))
    if results.has_baseline:
        paths['tsne_density'] = plot_tsne_density(
            results, coords, method, osp.join(out_dir, 'tsne_density.png'))
    else:
        log('[scale-policy] no baseline given: skipped tsne_density.png '
            '(Fig. 6 right needs the baseline\'s predictions)')
    paths['html'] = write_scale_policy_html(
        results, osp.join(out_dir, 'index.html'), title=html_title)
    return paths


def run_scale_policy_analysis(model,
                              data,
                              out_dir: str,
                              class_names: Optional[Sequence[str]] = None,
                              baseline_model=None,
                              max_images: Optional[int] = None,
                              device: str = 'cpu',
                              batch_size: Optional[int] = None,
                              num_workers: Optional[int] = None,
                              multi_label: Optional[bool] = None,
                              thr: float = 0.5,
                              thumbnail_size: int = 64,
                              embedding_method: str = 'auto',
                              progress: bool = True,
                              html_title: Optional[str] = None,
                              log=print) -> Dict[str, str]:
    """Scale-policy analysis of a trained Elastic classifier, end to end.

    Runs ``model`` (and ``baseline_model``) over ``data`` with forward hooks
    on the Elastic blocks, then writes the tables, the figures and the HTML
    demo (see the module docstring) to ``out_dir``.

    Args:
        model (BaseModel): An mmpretrain classifier with Elastic blocks
            (weights loaded).
        data: A dataloader, a dataloader config (``cfg.test_dataloader``),
            a dataset config or a dataset.
        out_dir (str): Output folder.
        class_names (Sequence[str], optional): Category names (default: the
            dataset's ``metainfo['classes']``).
        baseline_model (BaseModel, optional): The baseline classifier; adds
            its predictions and ``tsne_density.png``.
        max_images (int, optional): Analyse only the first N images.
        device (str): Device to run the models on. Default: 'cpu'.
        batch_size (int, optional): Default: the dataloader config's, else
            16.
        num_workers (int, optional): Default: the config's, else 0.
        multi_label (bool, optional): Default: from the head / dataset.
        thr (float): Multi-label score threshold. Default: 0.5.
        thumbnail_size (int): Thumbnail side in the HTML (0: none).
        embedding_method (str): See :func:`embed_scores`.
        progress (bool): Show a progress bar.
        html_title (str, optional): Heading of the HTML page.
        log (callable, optional): Where notes go; None for silence.

    Returns:
        dict[str, str]: The paths written, by kind (see
        :func:`write_scale_policy_report`).

    Example:
        >>> paths = run_scale_policy_analysis(
        ...     elastic_model, cfg.test_dataloader, 'work_dirs/policy',
        ...     baseline_model=baseline_model, max_images=400)
        >>> paths['html']
        'work_dirs/policy/index.html'
    """
    results = collect_scale_policy(
        model,
        data,
        class_names=class_names,
        baseline_model=baseline_model,
        max_images=max_images,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        multi_label=multi_label,
        thr=thr,
        thumbnail_size=thumbnail_size,
        progress=progress)
    return write_scale_policy_report(
        results,
        out_dir,
        embedding_method=embedding_method,
        html_title=html_title,
        log=log)
