# Copyright (c) mmelastic contributors. All rights reserved.
r"""ELASTIC's multi-label figures: CP, CR, CF1, OP, OR, OF1, per size subset.

The definitions follow ELASTIC's reference script
(``allenai/elastic/multilabel_classify.py``), which follows the multi-label
literature it cites:

* a label is predicted when its **logit is > 0**, i.e. its sigmoid score is
  **strictly greater than 0.5** (mmpretrain's ``MultiLabelMetric`` uses
  ``score >= thr``; the two differ only for a score of exactly ``thr``);
* true positives, false positives and false negatives are summed per class
  over all images;
* per class, :math:`P_c = TP_c / (TP_c + FP_c)`, :math:`R_c = TP_c / (TP_c +
  FN_c)` and :math:`F_c = 2 P_c R_c / (P_c + R_c)`, **each 0 when
  TP_c = 0**;
* **CP, CR and CF1 are the means of** :math:`P_c`, :math:`R_c`, :math:`F_c`
  over the classes (CF1 is *not* the harmonic mean of CP and CR);
* OP, OR and OF1 use the counts summed over the classes (micro average).

All figures are percentages. With these rules CP, CR, CF1 equal mmpretrain's
``MultiLabelMetric(average='macro')`` precision, recall and f1-score, and OP,
OR, OF1 its ``average='micro'`` ones, whenever no score equals the threshold:
mmpretrain's ``tp / max(pred, 1)`` is also 0 when a class has no true
positive.

The size-stratified figures (Table 4 of the paper) evaluate the same
quantities on the images of each subset ``S, M, M+S, L, L+S, L+M, L+M+S``
(the set of object sizes in the image; see
:mod:`mmelastic.datasets.object_sizes`); images without objects belong to no
subset. Per-size recall is the recall of (class, size) ground-truth pairs: a
class that has small objects in an image counts as a recalled *small* pair
when the class is predicted for that image (ELASTIC's ``tp_size`` and
``fn_size``).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmelastic.datasets.object_sizes import (SIZE_NAMES, SIZE_SUBSETS,
                                             subset_name)
from mmelastic.registry import register

__all__ = [
    'multilabel_counts', 'precision_recall_f1', 'size_label_to_array',
    'elastic_multilabel_metrics', 'ElasticMultiLabelMetric',
    'ScaleStratifiedMultiLabelMetric'
]

FIGURES = ('CP', 'CR', 'CF1', 'OP', 'OR', 'OF1')


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def multilabel_counts(pred_positive: np.ndarray, target: np.ndarray):
    """Per-class true positive, false positive and false negative counts.

    Args:
        pred_positive (np.ndarray): ``(N, C)`` bool, the predicted labels.
        target (np.ndarray): ``(N, C)`` with 1 for a ground-truth label, 0 for
            none and -1 for an entry to ignore (e.g. VOC's difficult labels,
            as in mmpretrain).

    Returns:
        tuple[np.ndarray]: ``tp``, ``fp`` and ``fn``, each ``(C,)`` int64.
    """
    target = np.asarray(target)
    valid = target != -1
    gt = (target == 1) & valid
    pred = np.asarray(pred_positive, dtype=bool) & valid
    tp = (pred & gt).sum(0).astype(np.int64)
    fp = (pred & ~gt).sum(0).astype(np.int64)
    fn = (~pred & gt).sum(0).astype(np.int64)
    return tp, fp, fn


def _ratio(num, den):
    """num / den * 100, and 0 where num is 0 (ELASTIC's no-TP rule)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=num > 0)
    return out * 100.0


def precision_recall_f1(tp: np.ndarray,
                        fp: np.ndarray,
                        fn: np.ndarray,
                        class_average: str = 'all',
                        classwise: bool = False) -> Dict[str, object]:
    """CP, CR, CF1 (class means) and OP, OR, OF1 (micro) from counts.

    Args:
        tp, fp, fn (np.ndarray): ``(C,)`` per-class counts.
        class_average (str): Which classes the class means run over:
            ``'all'`` (ELASTIC and mmpretrain: every class; a class without
            ground truth has 0 precision, recall and F1) or ``'present'``
            (only the classes with at least one ground-truth label here,
            useful for the absolute numbers of a small subset). The choice
            does not change a relative improvement between two models on the
            same images: classes without ground truth add 0 either way.
            Defaults to 'all'.
        classwise (bool): Also return the per-class lists as
            ``'CP_classwise'``, ``'CR_classwise'`` and ``'CF1_classwise'``.

    Returns:
        dict: ``CP, CR, CF1, OP, OR, OF1`` as floats in percent (NaN for the
        class means when ``class_average='present'`` and no class is).
    """
    if class_average not in ('all', 'present'):
        raise ValueError(f"class_average must be 'all' or 'present', got "
                         f'{class_average!r}')
    tp, fp, fn = (np.asarray(x, dtype=np.int64) for x in (tp, fp, fn))
    precision_c = _ratio(tp, tp + fp)
    recall_c = _ratio(tp, tp + fn)
    f1_c = np.zeros_like(precision_c)
    np.divide(
        2 * precision_c * recall_c,
        precision_c + recall_c,
        out=f1_c,
        where=tp > 0)
    if class_average == 'all':
        keep = np.ones(tp.shape, dtype=bool)
    else:
        keep = (tp + fn) > 0

    def class_mean(values):
        return float(values[keep].mean()) if keep.any() else float('nan')

    op = float(_ratio(tp.sum(), (tp + fp).sum()))
    orec = float(_ratio(tp.sum(), (tp + fn).sum()))
    of1 = 2 * op * orec / (op + orec) if tp.sum() > 0 else 0.0
    result = dict(
        CP=class_mean(precision_c),
        CR=class_mean(recall_c),
        CF1=class_mean(f1_c),
        OP=op,
        OR=orec,
        OF1=float(of1))
    if classwise:
        result['CP_classwise'] = precision_c.tolist()
        result['CR_classwise'] = recall_c.tolist()
        result['CF1_classwise'] = f1_c.tolist()
    return result


def size_label_to_array(gt_size_labels: Sequence,
                        num_classes: int) -> np.ndarray:
    """Stack per-image ``gt_size_label`` into an ``(N, 3, C)`` bool array.

    Args:
        gt_size_labels (Sequence): Per image, three sequences of class
            indices (classes with small, medium and large objects), as
            :class:`~mmelastic.datasets.COCOMultiLabel` stores them; an
            ``(3, C)`` multi-hot array is accepted too.
        num_classes (int): The number of classes C.

    Returns:
        np.ndarray: ``(N, 3, C)`` bool.
    """
    out = np.zeros((len(gt_size_labels), len(SIZE_NAMES), num_classes),
                   dtype=bool)
    for i, size_label in enumerate(gt_size_labels):
        if isinstance(size_label, (np.ndarray, torch.Tensor)):
            size_label = _to_numpy(size_label)
            if size_label.shape == (len(SIZE_NAMES), num_classes):
                out[i] = size_label.astype(bool)  # already multi-hot
                continue
        if len(size_label) != len(SIZE_NAMES):
            raise ValueError(
                'gt_size_label must hold three lists of class indices '
                f'(small, medium, large), got {size_label!r}')
        for size, labels in enumerate(size_label):
            labels = np.asarray(_to_numpy(labels), dtype=np.int64).ravel()
            if labels.size and (labels.min() < 0
                                or labels.max() >= num_classes):
                raise ValueError(
                    f'gt_size_label has class index {labels.max()} but the '
                    f'predictions have {num_classes} classes; the model and '
                    'the dataset disagree on the number of classes.')
            out[i, size, labels] = True
    return out


def elastic_multilabel_metrics(pred_score,
                               target,
                               gt_size_label: Optional[Sequence] = None,
                               thr: float = 0.5,
                               overall: bool = True,
                               subsets: bool = False,
                               size_recall: bool = False,
                               class_average: str = 'all',
                               classwise: bool = False) -> Dict[str, object]:
    """Compute ELASTIC's multi-label figures without a metric object.

    Args:
        pred_score (array-like): ``(N, C)`` scores (sigmoid probabilities).
        target (array-like): ``(N, C)`` multi-hot ground truth (-1 entries
            are ignored).
        gt_size_label (Sequence, optional): Per image, the classes with
            small, medium and large objects; needed for ``subsets`` and
            ``size_recall``. ``target`` must contain these classes.
        thr (float): A label is predicted when its score is **> thr**
            (ELASTIC's logit > 0). Defaults to 0.5.
        overall (bool): Report the figures on all images. Defaults to True.
        subsets (bool): Report the figures on each Table-4 subset as
            ``'<subset>/<figure>'`` plus ``'<subset>/num_images'``; the
            figures of an empty subset are NaN. Defaults to False.
        size_recall (bool): Report ``'recall_small'``, ``'recall_medium'``
            and ``'recall_large'`` (NaN where no object has that size).
            Defaults to False.
        class_average (str): See :func:`precision_recall_f1`.
        classwise (bool): See :func:`precision_recall_f1` (overall only).

    Returns:
        dict: Figure name to value (percent), without prefix.

    Example:
        >>> import numpy as np
        >>> scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
        >>> target = np.array([[1, 0], [0, 1], [0, 1]])
        >>> res = elastic_multilabel_metrics(scores, target)
        >>> # class 0: tp 1, fp 1 -> P 50, R 100, F 66.7
        >>> # class 1: tp 1, fn 1 -> P 100, R 50, F 66.7
        >>> round(res['CF1'], 1), round(res['OF1'], 1)
        (66.7, 66.7)
    """
    scores = _to_numpy(pred_score).astype(np.float64)
    target = _to_numpy(target).astype(np.int64)
    if scores.ndim != 2 or scores.shape != target.shape:
        raise ValueError(f'pred_score {scores.shape} and target '
                         f'{target.shape} must both be (N, num_classes)')
    pred_positive = scores > thr
    results: Dict[str, object] = {}
    if overall:
        results.update(
            precision_recall_f1(
                *multilabel_counts(pred_positive, target),
                class_average=class_average,
                classwise=classwise))
    if not (subsets or size_recall):
        return results
    if gt_size_label is None:
        raise ValueError('subsets and size_recall need gt_size_label')
    if len(gt_size_label) != len(scores):
        raise ValueError(f'{len(gt_size_label)} gt_size_label entries for '
                         f'{len(scores)} predictions')
    sizes = size_label_to_array(gt_size_label, scores.shape[1])
    if subsets:
        # The sizes present in each image name its subset ('' without any).
        present = sizes.any(axis=2)
        names = np.array([
            subset_name({SIZE_NAMES[k]
                         for k in np.flatnonzero(row)}) for row in present
        ])
        for name in SIZE_SUBSETS:
            rows = names == name
            results[f'{name}/num_images'] = int(rows.sum())
            if rows.any():
                figures = precision_recall_f1(
                    *multilabel_counts(pred_positive[rows], target[rows]),
                    class_average=class_average)
            else:
                figures = {key: float('nan') for key in FIGURES}
            for key in FIGURES:
                results[f'{name}/{key}'] = figures[key]
    if size_recall:
        for size, name in enumerate(SIZE_NAMES):
            pairs = sizes[:, size, :]
            recalled = int((pairs & pred_positive).sum())
            total = int(pairs.sum())
            results[f'recall_{name}'] = (100.0 * recalled /
                                         total if total else float('nan'))
    return results


@register('metric')
class ElasticMultiLabelMetric(BaseMetric):
    """ELASTIC's multi-label metric: CP, CR, CF1, OP, OR and OF1.

    See the module documentation for the exact definitions (threshold rule
    ``score > thr``, per-class figures 0 without true positives, class
    means). Keys, with the default prefix ``multi-label``:

    * ``multi-label/{CP,CR,CF1,OP,OR,OF1}`` on all images (``overall``);
    * ``multi-label/<subset>/{CP,...,OF1,num_images}`` for each subset
      ``S, M, M+S, L, L+S, L+M, L+M+S`` (``subsets=True``);
    * ``multi-label/recall_{small,medium,large}`` (``size_recall=True``).

    The size information comes from the data samples' ``gt_size_label``,
    which :class:`~mmelastic.datasets.COCOMultiLabel` provides and the test
    pipeline must pack: ``dict(type='PackInputs', meta_keys=(...,
    'gt_size_label'))``.

    Args:
        thr (float): Score threshold; a label is predicted when its score is
            strictly greater. Defaults to 0.5 (logit > 0).
        overall (bool): Report the figures on all images. Defaults to True.
        subsets (bool): Report the figures per Table-4 subset. Defaults to
            False.
        size_recall (bool): Report the recall per object size. Defaults to
            False.
        class_average (str): ``'all'`` or ``'present'``, the classes the
            class means run over (see :func:`precision_recall_f1`).
            Defaults to 'all'.
        classwise (bool): Also report ``CP_classwise``, ``CR_classwise`` and
            ``CF1_classwise`` lists. Defaults to False.
        collect_device (str): Device for collecting results across ranks,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Key prefix. Defaults to ``'multi-label'``.

    Example:
        >>> import torch
        >>> from mmpretrain.structures import DataSample
        >>> from mmelastic.evaluation import ElasticMultiLabelMetric
        >>> samples = [
        ...     DataSample().set_gt_label([0]).set_pred_score(
        ...         torch.tensor([0.9, 0.2])).to_dict(),
        ...     DataSample().set_gt_label([1]).set_pred_score(
        ...         torch.tensor([0.6, 0.7])).to_dict()]
        >>> metric = ElasticMultiLabelMetric()
        >>> metric.process(None, samples)
        >>> res = metric.evaluate(2)
        >>> # class 0: tp 1, fp 1 -> F 66.7; class 1: tp 1 -> F 100
        >>> round(res['multi-label/CF1'], 1), round(res['multi-label/OP'], 1)
        (83.3, 66.7)
    """
    default_prefix: Optional[str] = 'multi-label'

    def __init__(self,
                 thr: float = 0.5,
                 overall: bool = True,
                 subsets: bool = False,
                 size_recall: bool = False,
                 class_average: str = 'all',
                 classwise: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if class_average not in ('all', 'present'):
            raise ValueError(f"class_average must be 'all' or 'present', "
                             f'got {class_average!r}')
        if not (overall or subsets or size_recall):
            raise ValueError('nothing to report: set at least one of '
                             'overall, subsets and size_recall')
        self.thr = thr
        self.overall = overall
        self.subsets = subsets
        self.size_recall = size_recall
        self.class_average = class_average
        self.classwise = classwise

    @property
    def _needs_sizes(self) -> bool:
        return self.subsets or self.size_recall

    def _check_num_classes(self, num_classes: int) -> None:
        classes = (self.dataset_meta or {}).get('classes')
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f'{type(self).__name__}: the model gives {num_classes} '
                f'scores per image but the dataset has {len(classes)} '
                f'classes ({", ".join(map(str, classes[:3]))}, ...). Set '
                f'num_classes={len(classes)} in the model head and in '
                'data_preprocessor.')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's scores, multi-hot target and size labels."""
        for data_sample in data_samples:
            score = data_sample['pred_score'].detach().cpu().float()
            num_classes = score.numel()
            self._check_num_classes(num_classes)
            if 'gt_score' in data_sample:
                target = data_sample['gt_score'].detach().cpu()
            else:
                label = torch.as_tensor(data_sample['gt_label']).long()
                if label.numel() and (int(label.max()) >= num_classes
                                      or int(label.min()) < 0):
                    raise ValueError(
                        f'{type(self).__name__}: ground-truth class '
                        f'{int(label.max())} is outside the model\'s '
                        f'{num_classes} classes; set num_classes in the '
                        'head to the number of dataset classes.')
                target = torch.zeros(num_classes, dtype=torch.long)
                target[label] = 1
            result = dict(pred_score=score, target=target.long())
            if self._needs_sizes:
                if 'gt_size_label' not in data_sample:
                    raise KeyError(
                        f'{type(self).__name__}: the data samples have no '
                        "'gt_size_label'. Use the COCOMultiLabel dataset "
                        "and keep the key in the test pipeline: dict(type="
                        "'PackInputs', meta_keys=(..., 'gt_size_label')).")
                result['gt_size_label'] = data_sample['gt_size_label']
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, object]:
        """Compute the figures from all processed samples."""
        pred = torch.stack([res['pred_score'] for res in results])
        target = torch.stack([res['target'] for res in results])
        sizes = [res['gt_size_label'] for res in results] \
            if self._needs_sizes else None
        return elastic_multilabel_metrics(
            pred,
            target,
            gt_size_label=sizes,
            thr=self.thr,
            overall=self.overall,
            subsets=self.subsets,
            size_recall=self.size_recall,
            class_average=self.class_average,
            classwise=self.classwise)


@register('metric')
class ScaleStratifiedMultiLabelMetric(ElasticMultiLabelMetric):
    """ELASTIC's figures on the seven object-size subsets of Table 4.

    The same figures as :class:`ElasticMultiLabelMetric` (CP, CR, CF1, OP,
    OR, OF1 and the image count) for each subset ``S, M, M+S, L, L+S, L+M,
    L+M+S``, and the recall per object size. It reports no overall figures
    by default, so it can sit next to an :class:`ElasticMultiLabelMetric` in
    one evaluator without duplicate keys.

    Keys: ``multi-label/<subset>/<figure>``, ``multi-label/<subset>/
    num_images`` and ``multi-label/recall_{small,medium,large}``.

    Args:
        overall (bool): Also report the overall figures. Defaults to False.
        subsets (bool): Defaults to True.
        size_recall (bool): Defaults to True.
        **kwargs: The other arguments of :class:`ElasticMultiLabelMetric`.

    Example:
        >>> val_evaluator = [
        ...     dict(type='ElasticMultiLabelMetric'),
        ...     dict(type='ScaleStratifiedMultiLabelMetric'),
        ... ]
    """

    def __init__(self,
                 overall: bool = False,
                 subsets: bool = True,
                 size_recall: bool = True,
                 **kwargs) -> None:
        super().__init__(
            overall=overall,
            subsets=subsets,
            size_recall=size_recall,
            **kwargs)
