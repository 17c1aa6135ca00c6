# Copyright (c) mmelastic contributors. All rights reserved.
"""ELASTIC's multi-label figures, checked against hand computations."""
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _data_fixtures as fixtures  # noqa: E402
from mmelastic.evaluation import ElasticMultiLabelMetric  # noqa: E402
from mmelastic.evaluation import (  # noqa: E402
    ScaleStratifiedMultiLabelMetric, elastic_multilabel_metrics)

demo_shapes = fixtures.demo_shapes  # fixture
load_tool = fixtures.load_tool

FIGURES = ('CP', 'CR', 'CF1', 'OP', 'OR', 'OF1')


def onehot(labels, num_classes):
    out = np.zeros((len(labels), num_classes), dtype=np.int64)
    for i, row in enumerate(labels):
        out[i, list(row)] = 1
    return out


def assert_figures(result, expected, prefix=''):
    for key, value in expected.items():
        assert result[prefix + key] == pytest.approx(value, abs=1e-9), key


# ----------------------------------------------------------------------------
# Overall figures
# ----------------------------------------------------------------------------
def test_hand_example():
    scores = np.array([
        [0.9, 0.4, 0.7],  # gt {0, 1} -> predicted {0, 2}
        [0.2, 0.8, 0.1],  # gt {1}    -> predicted {1}
        [0.6, 0.3, 0.2],  # gt {0, 2} -> predicted {0}
        [0.1, 0.9, 0.3],  # gt {}     -> predicted {1}
    ])
    target = onehot([{0, 1}, {1}, {0, 2}, set()], 3)
    result = elastic_multilabel_metrics(scores, target)
    # class 0: tp 2 fp 0 fn 0 -> P 100, R 100, F 100
    # class 1: tp 1 (img 1), fp 1 (img 3), fn 1 (img 0) -> 50, 50, 50
    # class 2: tp 0, fp 1, fn 1 -> 0, 0, 0
    # overall: tp 3, fp 2, fn 2 -> OP 60, OR 60, OF1 60
    assert_figures(result, dict(CP=50, CR=50, CF1=50, OP=60, OR=60, OF1=60))


def test_cf1_is_the_mean_of_class_f1_not_f1_of_means():
    scores = np.array([[0.9, 0.9], [0.1, 0.1], [0.2, 0.8]])
    target = onehot([{0, 1}, {0}, set()], 2)
    result = elastic_multilabel_metrics(scores, target, classwise=True)
    # class 0: tp 1, fn 1 -> P 100, R 50, F 2*100*50/150 = 66.67
    # class 1: tp 1, fp 1 -> P 50, R 100, F 66.67
    f1 = 2 * 100 * 50 / 150
    assert_figures(
        result,
        dict(CP=75, CR=75, CF1=f1, OP=200 / 3, OR=200 / 3, OF1=200 / 3))
    # the F1 of the means would be 75, which is not what ELASTIC reports
    assert result['CF1'] != pytest.approx(75)
    assert result['CF1_classwise'] == pytest.approx([f1, f1])
    assert result['CP_classwise'] == pytest.approx([100, 50])


def test_classes_without_true_positive_count_zero():
    scores = np.array([[0.9, 0.2, 0.1], [0.3, 0.4, 0.2]])
    # class 0: tp 1. class 1: one gt, never predicted (P = 0/0 -> 0).
    # class 2: no gt and no prediction at all (everything 0/0 -> 0).
    target = onehot([{0}, {1}], 3)
    result = elastic_multilabel_metrics(scores, target)
    assert_figures(
        result,
        dict(CP=100 / 3, CR=100 / 3, CF1=100 / 3, OP=100, OR=50, OF1=200 / 3))
    # 'present' averages over the classes with ground truth (0 and 1).
    present = elastic_multilabel_metrics(
        scores, target, class_average='present')
    assert_figures(present, dict(CP=50, CR=50, CF1=50, OP=100, OR=50))
    # nothing predicted, nothing true: every figure is 0, not NaN
    zero = elastic_multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 3)))
    assert_figures(zero, {key: 0 for key in FIGURES})


def test_threshold_is_strict():
    # ELASTIC predicts a label when logit > 0, i.e. score > 0.5.
    scores = np.array([[0.5, 0.5000001]])
    target = onehot([{0, 1}], 2)
    result = elastic_multilabel_metrics(scores, target, classwise=True)
    assert result['CR_classwise'] == [0, 100]
    # mmpretrain counts score >= thr, so it recalls class 0 as well
    from mmpretrain.evaluation import MultiLabelMetric
    _, recall, _, _ = MultiLabelMetric.calculate(
        torch.tensor(scores), torch.tensor(target), average=None, thr=0.5)
    assert recall.tolist() == [100, 100]
    # another threshold
    result = elastic_multilabel_metrics(scores, target, thr=0.4)
    assert result['OR'] == 100


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_equals_mmpretrain_macro_and_micro_without_ties(seed):
    from mmpretrain.evaluation import MultiLabelMetric
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(40, 7))
    scores[scores == 0.5] = 0.25  # no ties at the threshold
    target = (rng.uniform(size=(40, 7)) < 0.3).astype(np.int64)
    target[:, 6] = 0  # a class without ground truth
    target[5] = 0  # an image without objects
    result = elastic_multilabel_metrics(scores, target)
    for average, names in (('macro', ('CP', 'CR', 'CF1')),
                           ('micro', ('OP', 'OR', 'OF1'))):
        expected = MultiLabelMetric.calculate(
            torch.tensor(scores),
            torch.tensor(target),
            average=average,
            thr=0.5)[:3]
        for name, value in zip(names, expected):
            assert result[name] == pytest.approx(value.item(), abs=1e-4)


# ----------------------------------------------------------------------------
# Size subsets and per-size recall
# ----------------------------------------------------------------------------
# One image per Table-4 subset plus one without objects, two classes.
# gt_size_label = [classes with small, medium, large objects].
SUBSET_CASE = [
    # subset,  gt_size_label,       scores,       predicted
    ('S', [[0], [], []], [0.9, 0.1]),  # {0}
    ('M', [[], [1], []], [0.8, 0.2]),  # {0}
    ('M+S', [[0], [1], []], [0.7, 0.6]),  # {0, 1}
    ('L', [[], [], [0]], [0.6, 0.9]),  # {0, 1}
    ('L+S', [[1], [], [0]], [0.3, 0.95]),  # {1}
    ('L+M', [[], [0], [0]], [0.55, 0.45]),  # {0}
    ('L+M+S', [[1], [0], [0, 1]], [0.2, 0.3]),  # {}
    ('', [[], [], []], [0.99, 0.99]),  # {0, 1}, both false positives
]


def _subset_inputs(case=SUBSET_CASE):
    sizes = [sizes for _, sizes, _ in case]
    scores = np.array([scores for _, _, scores in case])
    target = onehot([set().union(*map(set, s)) for s in sizes], 2)
    return scores, target, sizes


def test_each_subset_by_hand():
    scores, target, sizes = _subset_inputs()
    result = elastic_multilabel_metrics(
        scores, target, gt_size_label=sizes, subsets=True, size_recall=True)
    # Per subset (one image each). CF1 is the mean over both classes.
    expected = {
        # gt {0}, pred {0}: class 0 perfect, class 1 empty (0)
        'S': dict(CP=50, CR=50, CF1=50, OP=100, OR=100, OF1=100),
        # gt {1}, pred {0}: no true positive at all
        'M': dict(CP=0, CR=0, CF1=0, OP=0, OR=0, OF1=0),
        # gt {0, 1}, pred {0, 1}
        'M+S': dict(CP=100, CR=100, CF1=100, OP=100, OR=100, OF1=100),
        # gt {0}, pred {0, 1}: tp 1, fp 1 -> OP 50, OR 100
        'L': dict(CP=50, CR=50, CF1=50, OP=50, OR=100, OF1=200 / 3),
        # gt {0, 1}, pred {1}: tp 1, fn 1 -> OP 100, OR 50
        'L+S': dict(CP=50, CR=50, CF1=50, OP=100, OR=50, OF1=200 / 3),
        # gt {0} (medium and large), pred {0}
        'L+M': dict(CP=50, CR=50, CF1=50, OP=100, OR=100, OF1=100),
        # gt {0, 1}, nothing predicted
        'L+M+S': dict(CP=0, CR=0, CF1=0, OP=0, OR=0, OF1=0),
    }
    for subset, figures in expected.items():
        assert_figures(result, figures, prefix=f'{subset}/')
        # the empty image is in no subset
        assert result[f'{subset}/num_images'] == 1
    # Overall, the empty image's two predictions are false positives:
    # class 0: gt in 6 images, predicted in S, M, M+S, L, L+M, empty
    #          -> tp 4, fp 2, fn 2 -> P = R = F = 66.67
    # class 1: gt in M, M+S, L+S, L+M+S; predicted in M+S, L, L+S, empty
    #          -> tp 2, fp 2, fn 2 -> P = R = F = 50
    mean = (200 / 3 + 50) / 2
    assert_figures(result,
                   dict(CP=mean, CR=mean, CF1=mean, OP=60, OR=60, OF1=60))
    # (class, size) pairs recalled when the class is predicted:
    # small:  S(0) yes, M+S(0) yes, L+S(1) yes, L+M+S(1) no   -> 3/4
    # medium: M(1) no, M+S(1) yes, L+M(0) yes, L+M+S(0) no    -> 2/4
    # large:  L(0) yes, L+S(0) no, L+M(0) yes, L+M+S(0, 1) no -> 2/5
    assert result['recall_small'] == pytest.approx(75)
    assert result['recall_medium'] == pytest.approx(50)
    assert result['recall_large'] == pytest.approx(40)


def test_subset_counts_are_summed_over_its_images():
    case = [
        ('S', [[0], [], []], [0.9, 0.1]),  # tp for class 0
        ('S', [[1], [], []], [0.1, 0.2]),  # fn for class 1
    ]
    scores, target, sizes = _subset_inputs(case)
    result = elastic_multilabel_metrics(
        scores, target, gt_size_label=sizes, subsets=True, overall=False)
    assert 'CF1' not in result
    # class 0 F 100, class 1 F 0; overall tp 1, fn 1
    assert_figures(
        result, dict(CF1=50, OP=100, OR=50, OF1=200 / 3), prefix='S/')
    assert result['S/num_images'] == 2
    # empty subsets are undefined, not 0
    assert result['M/num_images'] == 0
    assert np.isnan(result['M/CF1'])


def test_size_recall_without_objects_of_a_size_is_nan():
    scores, target, sizes = _subset_inputs(SUBSET_CASE[:1])
    result = elastic_multilabel_metrics(
        scores, target, gt_size_label=sizes, size_recall=True)
    assert result['recall_small'] == 100
    assert np.isnan(result['recall_large'])


def test_size_label_must_match_the_classes():
    with pytest.raises(ValueError, match='disagree on the number'):
        elastic_multilabel_metrics(
            np.zeros((1, 2)),
            np.zeros((1, 2)),
            gt_size_label=[[[5], [], []]],
            subsets=True)
    with pytest.raises(ValueError, match='need gt_size_label'):
        elastic_multilabel_metrics(
            np.zeros((1, 2)), np.zeros((1, 2)), subsets=True)


# ----------------------------------------------------------------------------
# Metric classes
# ----------------------------------------------------------------------------
def _samples(case=SUBSET_CASE, with_sizes=True):
    from mmpretrain.structures import DataSample
    samples = []
    for _, sizes, scores in case:
        labels = sorted(set().union(*map(set, sizes)))
        sample = DataSample().set_gt_label(labels).set_pred_score(
            torch.tensor(scores))
        if with_sizes:
            sample.set_metainfo(dict(gt_size_label=sizes))
        samples.append(sample.to_dict())
    return samples


def test_metric_keys_and_values():
    metric = ElasticMultiLabelMetric(subsets=True, size_recall=True)
    metric.process(None, _samples())
    result = metric.evaluate(len(SUBSET_CASE))
    assert result['multi-label/OF1'] == pytest.approx(60)
    assert result['multi-label/L/OF1'] == pytest.approx(200 / 3)
    assert result['multi-label/L+M+S/num_images'] == 1
    assert result['multi-label/recall_large'] == pytest.approx(40)
    expected_keys = {f'multi-label/{k}' for k in FIGURES}
    for subset in ('S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S'):
        expected_keys |= {f'multi-label/{subset}/{k}' for k in FIGURES}
        expected_keys.add(f'multi-label/{subset}/num_images')
    expected_keys |= {
        f'multi-label/recall_{s}'
        for s in ('small', 'medium', 'large')
    }
    assert set(result) == expected_keys

    plain = ElasticMultiLabelMetric(prefix='coco')
    plain.process(None, _samples(with_sizes=False))  # needs no sizes
    assert set(plain.evaluate(8)) == {f'coco/{k}' for k in FIGURES}


def test_both_metrics_share_one_evaluator():
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator([
        dict(type='mmelastic.ElasticMultiLabelMetric'),
        dict(type='mmelastic.ScaleStratifiedMultiLabelMetric'),
    ])
    assert isinstance(evaluator.metrics[1], ScaleStratifiedMultiLabelMetric)
    evaluator.dataset_meta = dict(classes=('a', 'b'))
    evaluator.process(_samples())
    result = evaluator.evaluate(len(SUBSET_CASE))
    assert result['multi-label/CF1'] == pytest.approx((200 / 3 + 50) / 2)
    assert result['multi-label/M+S/CF1'] == pytest.approx(100)
    assert result['multi-label/recall_small'] == pytest.approx(75)


def test_metric_errors_name_the_fix():
    metric = ScaleStratifiedMultiLabelMetric()
    with pytest.raises(KeyError, match="meta_keys=.*'gt_size_label'"):
        metric.process(None, _samples(with_sizes=False))
    metric = ElasticMultiLabelMetric()
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    with pytest.raises(
            ValueError, match='gives 2 scores.*3 classes.*'
            'num_classes=3'):
        metric.process(None, _samples())
    metric = ElasticMultiLabelMetric()
    bad = _samples(with_sizes=False)[:1]
    bad[0]['gt_label'] = torch.tensor([4])
    with pytest.raises(ValueError, match='class 4 is outside'):
        metric.process(None, bad)
    with pytest.raises(ValueError, match='class_average'):
        ElasticMultiLabelMetric(class_average='some')


# ----------------------------------------------------------------------------
# Through a real Runner test loop
# ----------------------------------------------------------------------------
def test_runner_test_loop_carries_the_sizes(demo_shapes, tmp_path):
    """COCOMultiLabel -> PackInputs(meta_keys) -> model -> metrics + dump."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from pycocotools.coco import COCO

    from mmelastic.datasets import SIZE_META_KEYS, subset_name

    meta_keys = ('sample_idx', 'img_path', 'ori_shape', 'img_shape') + \
        SIZE_META_KEYS
    dump = tmp_path / 'result.pkl'
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            custom_imports=dict(imports=['mmelastic']),
            work_dir=str(tmp_path),
            log_level='WARNING',
            randomness=dict(seed=0),
            model=dict(
                type='ImageClassifier',
                data_preprocessor=dict(
                    num_classes=10,
                    mean=[128.0] * 3,
                    std=[64.0] * 3,
                    to_onehot=True),
                backbone=dict(type='ResNet', depth=18, out_indices=(3, )),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='MultiLabelLinearClsHead',
                    num_classes=10,
                    in_channels=512)),
            test_dataloader=dict(
                batch_size=8,
                num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='default_collate'),
                dataset=dict(
                    type='COCOMultiLabel',
                    data_root=str(demo_shapes / 'coco'),
                    split='val',
                    pipeline=[
                        dict(type='LoadImageFromFile'),
                        dict(type='Resize', scale=(64, 64)),
                        dict(type='PackInputs', meta_keys=meta_keys),
                    ])),
            test_evaluator=[
                dict(type='ElasticMultiLabelMetric'),
                dict(type='ScaleStratifiedMultiLabelMetric'),
                dict(type='DumpResults', out_file_path=str(dump)),
            ],
            test_cfg=dict()))
    metrics = Runner.from_cfg(cfg).test()

    # The subsets hold the images pycocotools says they should.
    coco = COCO(str(demo_shapes / 'coco/annotations/instances_val.json'))
    expected_counts = {}
    for img_id in coco.getImgIds():
        sizes = set()
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            area = ann['area']
            sizes.add('small' if area < 32**2 else 'medium' if area <
                      96**2 else 'large')
        name = subset_name(sizes)
        expected_counts[name] = expected_counts.get(name, 0) + 1
    for subset in ('S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S'):
        assert metrics[f'multi-label/{subset}/num_images'] == \
            expected_counts[subset] > 0

    # The dump carries what the metric saw; recomputing from it agrees.
    with open(dump, 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == len(coco.getImgIds())
    assert all('gt_size_label' in s and 'img_id' in s for s in samples)
    scores = np.stack([s['pred_score'].numpy() for s in samples])
    target = np.stack([s['gt_score'].numpy() for s in samples])
    again = elastic_multilabel_metrics(
        scores,
        target,
        gt_size_label=[s['gt_size_label'] for s in samples],
        subsets=True,
        size_recall=True)
    for key, value in again.items():
        assert metrics[f'multi-label/{key}'] == pytest.approx(
            value, nan_ok=True), key

    # and compare_results reads it: a model against itself gains nothing
    compare = load_tool('tools/analysis/compare_results.py')
    table = compare.compare(samples, samples)
    assert table['all']['CF1']['elastic'] == pytest.approx(
        metrics['multi-label/CF1'])
    for row in table.values():
        for figure in ('CF1', 'OF1'):
            assert row[figure]['gain'] in (None, 0.0)
