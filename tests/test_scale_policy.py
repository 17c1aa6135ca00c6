# Copyright (c) mmelastic contributors. All rights reserved.
"""The scale-policy score (ELASTIC Sec. 4.1.1): hooks, reports and the
tools/analysis/scale_policy.py command line."""
import base64
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from mmelastic.analysis import (NoElasticBlocksError, ScalePolicyRecorder,
                                ScalePolicyResults, find_scale_policy_blocks,
                                load_classifier, run_scale_policy_analysis,
                                write_scale_policy_report)
from mmelastic.analysis.scale_policy_report import (csv_columns, embed_scores,
                                                    tsne_numpy)
from mmelastic.models import ElasticBottleneck, ElasticResNeXt

sys.path.insert(0, str(Path(__file__).parent))
import _data_fixtures as fixtures  # noqa: E402

REPO_ROOT = fixtures.REPO_ROOT
TOOL = 'tools/analysis/scale_policy.py'


def tiny_resnext(arch='resnext50_elastic'):
    """ResNeXt50+Elastic's layout (17 elastic blocks) at a tiny width."""
    model = ElasticResNeXt(
        arch=arch,
        base_channels=8,
        stem_channels=8,
        groups=4,
        width_per_group=2)
    model.eval()  # (ResNet.train returns None)
    return model


def count_forward_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def fill_known(module, seed=0):
    """Deterministic, non-trivial weights and BN statistics."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * 0.4
        elif isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=gen)
            m.bias.data = torch.randn(n, generator=gen) * 0.3
            m.running_mean = torch.randn(n, generator=gen) * 0.2
            m.running_var = 0.5 + torch.rand(n, generator=gen)
    return module


# ----------------------------------------------------------------------------
# The score
# ----------------------------------------------------------------------------
def test_scores_match_hand_computation():
    block = fill_known(ElasticBottleneck(8, 8, mid_channels=8,
                                         groups=4)).eval()
    # Each branch: 4 channels in 2 groups, 3x3 dilation 1, bilinear/AP.
    assert block.elastic and block.high.conv2.groups == 2
    assert block.low.conv2.groups == 2 and block.low.conv2.dilation == (1, 1)
    x = torch.randn(3, 8, 7, 9, generator=torch.Generator().manual_seed(1))

    def bn(y, norm):
        return F.batch_norm(y, norm.running_mean, norm.running_var,
                            norm.weight, norm.bias, False, 0.0, norm.eps)

    def after_3x3_relu(branch, inp):
        y = F.relu(bn(F.conv2d(inp, branch.conv1.weight), branch.norm1))
        y = F.conv2d(y, branch.conv2.weight, padding=1, groups=2)
        return F.relu(bn(y, branch.norm2))

    a_high = after_3x3_relu(block.high, x).mean(dim=(1, 2, 3))
    # Low branch input: replicate-pad odd sizes to 8x10, 2x2 average pool.
    low_in = F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode='replicate'), 2)
    a_low = after_3x3_relu(block.low, low_in).mean(dim=(1, 2, 3))

    with ScalePolicyRecorder(block) as recorder, torch.no_grad():
        block(x)
        scores, high, low = recorder.pop_scores(with_branches=True)
    assert recorder.block_names == ['']
    assert scores.shape == (3, 1)
    torch.testing.assert_close(high[:, 0], a_high, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(low[:, 0], a_low, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        scores[:, 0], a_high - a_low, rtol=1e-5, atol=1e-6)
    assert (a_high - a_low).abs().min() > 1e-3  # a non-trivial check


class DenseStyleLayer(nn.Module):
    """Like the elastic DenseNet layer: scale_policy_modules() returns the
    two 3x3 convs, which have no ReLU after them."""

    def __init__(self):
        super().__init__()
        self.high_conv = nn.Conv2d(3, 4, 3, padding=1)
        self.low_conv = nn.Conv2d(3, 4, 3, padding=1)

    def scale_policy_modules(self):
        return self.high_conv, self.low_conv

    def forward(self, x):
        high = self.high_conv(x)
        low = self.low_conv(F.avg_pool2d(x, 2))
        return high + F.interpolate(low, size=high.shape[-2:])


def test_conv_modules_get_relu_before_the_mean():
    torch.manual_seed(0)
    layer = DenseStyleLayer().eval()
    x = torch.randn(2, 3, 8, 8)
    with ScalePolicyRecorder(layer) as recorder, torch.no_grad():
        layer(x)
        scores = recorder.pop_scores()
    with torch.no_grad():
        high = layer.high_conv(x)
        low = layer.low_conv(F.avg_pool2d(x, 2))
    expected = F.relu(high).mean((1, 2, 3)) - F.relu(low).mean((1, 2, 3))
    torch.testing.assert_close(scores[:, 0], expected)
    raw = high.mean((1, 2, 3)) - low.mean((1, 2, 3))
    assert not torch.allclose(scores[:, 0], raw)


def test_resnext50_elastic_has_17_blocks():
    model = tiny_resnext()
    blocks = find_scale_policy_blocks(model)
    names = [name for name, _, _ in blocks]
    assert len(names) == 17
    assert names == model.elastic_blocks()
    for name, high, low in blocks:
        block = model.get_submodule(name)
        assert high is block.high.act2 and low is block.low.act2
    with ScalePolicyRecorder(model) as recorder, torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
        assert recorder.pop_scores().shape == (2, 17)
    assert recorder.block_names == names


@pytest.mark.parametrize('name', ['ElasticDLA', 'ElasticDenseNet'])
def test_other_elastic_backbones(name):
    """DLA reuses ElasticBottleneck (ReLU hook points); the elastic DenseNet
    layer returns its two 3x3 convs (relu applied by the recorder)."""
    import mmelastic.models as models
    if name == 'ElasticDLA':
        model = models.ElasticDLA(arch='dla60x_elastic')
    else:
        model = models.ElasticDenseNet(
            arch=dict(
                depths=(2, 2, 2, 2),
                growth_rate=8,
                init_channels=16,
                elastic=True))
    model.eval()
    blocks = find_scale_policy_blocks(model)
    elastic = [
        n for n, m in model.named_modules()
        if getattr(m, 'elastic', False) and hasattr(m, 'scale_policy_modules')
    ]
    assert blocks and [n for n, _, _ in blocks] == elastic
    with ScalePolicyRecorder(model) as recorder, torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
        scores = recorder.pop_scores()
    assert scores.shape == (2, len(blocks)) and torch.isfinite(scores).all()


def test_model_without_elastic_blocks_is_an_error():
    with pytest.raises(NoElasticBlocksError) as err:
        ScalePolicyRecorder(tiny_resnext('resnext50'))
    assert str(err.value).startswith(
        'no Elastic blocks found in ElasticResNeXt: the scale-policy score '
        'needs a model with elastic blocks')


def test_recorder_leaves_no_hooks_and_output_unchanged():
    torch.manual_seed(0)
    model = tiny_resnext()
    x = torch.rand(2, 3, 32, 32)
    hooks_before = count_forward_hooks(model)
    with torch.no_grad():
        before = model(x)
        with ScalePolicyRecorder(model) as recorder:
            assert count_forward_hooks(model) == hooks_before + 2 * 17
            during = model(x)
        after = model(x)
    assert not recorder.active
    assert count_forward_hooks(model) == hooks_before
    for b, d, a in zip(before, during, after):
        assert torch.equal(b, d) and torch.equal(b, a)
    # Hooks go away on errors too.
    with pytest.raises(ZeroDivisionError):
        with ScalePolicyRecorder(model):
            1 / 0
    assert count_forward_hooks(model) == hooks_before


def test_scores_accumulate_per_image_and_check_whole_passes():
    torch.manual_seed(0)
    model = tiny_resnext()
    x = torch.rand(5, 3, 32, 32)
    with ScalePolicyRecorder(model) as recorder, torch.no_grad():
        model(x)
        whole = recorder.pop_scores()
        model(x[:2])
        model(x[2:])
        parts = recorder.pop_scores()
        assert recorder.pop_scores().shape == (0, 17)
        # Per image: the batch it is in does not matter (eval mode).
        torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-6)
        # A pass through part of the model only is refused.
        model.layer1(model.maxpool(model.relu(model.norm1(model.conv1(x)))))
        with pytest.raises(RuntimeError, match='different numbers'):
            recorder.pop_scores()


def test_thumbnail_from_the_input_tensor_without_a_file():
    from mmelastic.analysis.scale_policy import _thumbnail
    bgr = torch.zeros(3, 40, 20, dtype=torch.uint8)
    bgr[0] = 255  # blue in BGR order
    uri = _thumbnail('', 16, bgr, bgr=True)
    assert uri.startswith('data:image/jpeg;base64,')
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(',')[1])))
    assert image.size == (8, 16)
    r, g, b = image.convert('RGB').getpixel((4, 8))
    assert b > 200 and r < 50
    assert _thumbnail('missing.png', 16) is None


# ----------------------------------------------------------------------------
# Embedding
# ----------------------------------------------------------------------------
def clustered_points(per_cluster=20, dims=17, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, dims))
    points = np.concatenate(
        [c + rng.normal(0, 0.5, (per_cluster, dims)) for c in centres])
    labels = np.repeat(np.arange(3), per_cluster)
    return points, labels


def nearest_neighbour_accuracy(coords, labels):
    d = ((coords[:, None] - coords[None])**2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def test_numpy_tsne_separates_clusters():
    points, labels = clustered_points()
    coords = tsne_numpy(points, perplexity=10, n_iter=400)
    assert coords.shape == (60, 2) and np.isfinite(coords).all()
    assert nearest_neighbour_accuracy(coords, labels) > 0.95


def test_embed_scores_methods():
    points, labels = clustered_points(per_cluster=10)
    coords, label = embed_scores(points)  # scikit-learn is a requirement
    assert label == 't-SNE (scikit-learn)' and coords.shape == (30, 2)
    assert nearest_neighbour_accuracy(coords, labels) > 0.9
    assert embed_scores(points, 'numpy')[1] == 't-SNE (numpy, exact)'
    coords, label = embed_scores(points, 'pca')
    assert label == 'PCA' and coords.shape == (30, 2)
    assert embed_scores(points[:3])[1].startswith('PCA (t-SNE needs')
    with pytest.raises(ValueError, match='unknown embedding'):
        embed_scores(points, 'umap')


# ----------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------
CLASSES = ['cat', 'dog', 'bird', 'fish']


def synthetic_results(num_images=40,
                      num_blocks=5,
                      multi_label=True,
                      baseline=True,
                      seed=0):
    """Results as collect_scale_policy makes them, without a model."""
    rng = np.random.default_rng(seed)
    results = ScalePolicyResults(
        [f'backbone.layer{i}' for i in range(num_blocks)],
        CLASSES,
        multi_label,
        has_baseline=baseline,
        model_name='ImageClassifier')
    records = []
    for i in range(num_images):
        if multi_label:
            gt = sorted(rng.choice(4, rng.integers(0, 3), replace=False))
            pred = gt if rng.random() < 0.5 else [int(rng.integers(4))]
        else:
            gt = [i % 4]
            pred = gt if rng.random() < 0.5 else [(i + 1) % 4]
        gt, pred = [int(g) for g in gt], [int(p) for p in pred]
        record = dict(
            index=i,
            img_path=f'val/{i:03d}.png',
            gt=gt,
            pred=pred,
            categories=[CLASSES[g] for g in gt],
            prediction=[CLASSES[p] for p in pred],
            correct=set(gt) == set(pred),
            f1=1.0 if set(gt) == set(pred) else 0.0)
        if baseline:
            base = [] if i % 3 else gt
            record.update(
                baseline_pred=base,
                baseline_prediction=[CLASSES[p] for p in base],
                baseline_correct=set(base) == set(gt),
                baseline_f1=float(set(base) == set(gt)))
        records.append(record)
    means = np.array([(r['gt'] or [0])[0] for r in records])[:, None]
    scores = torch.tensor(
        rng.normal(0, 0.05, (num_images, num_blocks)) + 0.02 * means -
        0.01 * np.arange(num_blocks))
    results.add_batch(records, scores, scores + 1, torch.ones_like(scores),
                      [None] * num_images)
    return results


def assert_real_image(path):
    path = Path(path)
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.size[0] > 0 and image.size[1] > 0
        pixels = np.asarray(image.convert('RGB')).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 10, f'{path} is (nearly) blank'


@pytest.mark.parametrize('multi_label,baseline', [(True, True),
                                                  (False, False)])
def test_report_files_and_schema(tmp_path, multi_label, baseline):
    results = synthetic_results(multi_label=multi_label, baseline=baseline)
    notes = []
    paths = write_scale_policy_report(results, str(tmp_path), log=notes.append)
    expected = {
        'csv', 'json', 'category_scores', 'score_matrix', 'tsne', 'html'
    } | ({'tsne_density'} if baseline else set())
    assert set(paths) == expected
    for kind in expected - {'csv', 'json', 'html'}:
        assert_real_image(paths[kind])
    if not baseline:
        assert not (tmp_path / 'tsne_density.png').exists()
        assert any('skipped tsne_density.png' in n for n in notes)

    # CSV
    with open(paths['csv'], newline='') as f:
        rows = list(csv.reader(f))
    header = rows[0]
    base_cols = ['baseline_prediction', 'baseline_correct', 'baseline_f1']
    assert header == (
        ['index', 'img_path', 'categories', 'prediction', 'correct', 'f1'] +
        (base_cols if baseline else []) + ['mean_score'] +
        [f'layer_{i}' for i in range(5)])
    assert header == csv_columns(results)
    assert len(rows) == 41
    first = dict(zip(header, rows[1]))
    record = results.records[0]
    assert first['categories'] == '|'.join(record['categories'])
    assert first['prediction'] == '|'.join(record['prediction'])
    assert first['correct'] == str(int(record['correct']))
    np.testing.assert_allclose([float(first[f'layer_{i}']) for i in range(5)],
                               results.scores[0],
                               rtol=1e-5)

    # JSON
    data = json.loads(Path(paths['json']).read_text())
    assert data['task'] == ('multi-label' if multi_label else 'single-label')
    assert data['blocks'] == [f'backbone.layer{i}' for i in range(5)]
    assert data['layers'] == [f'layer_{i}' for i in range(5)]
    assert data['classes'] == CLASSES
    assert data['has_baseline'] is baseline
    assert data['embedding'] == 't-SNE (scikit-learn)'
    assert len(data['images']) == 40
    image = data['images'][0]
    keys = {
        'index', 'img_path', 'categories', 'prediction', 'correct', 'f1',
        'mean_score', 'scores', 'tsne'
    }
    assert set(image) == keys | (set(base_cols) if baseline else set())
    np.testing.assert_allclose(image['scores'], results.scores[0])
    assert image['mean_score'] == pytest.approx(results.scores[0].mean())

    page = Path(paths['html']).read_text()
    assert 'http://' not in page and 'https://' not in page


# ----------------------------------------------------------------------------
# The command line and the Python entry point, end to end
# ----------------------------------------------------------------------------
CONFIG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ElasticResNeXt',
        arch=dict(stage_blocks=(1, 2, 2, 1), elastic={elastic}),
        base_channels=8, stem_channels=8, groups=2, width_per_group=2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='{head}', num_classes=10, in_channels=256))
data_preprocessor = dict(
    num_classes=10, mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], to_rgb=True, to_onehot={multi_label})
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32), backend='pillow'),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict({dataset}, pipeline=test_pipeline))
"""


def write_config(folder, name, multi_label, elastic, dataset, test_set=True):
    text = CONFIG.format(
        elastic=elastic,
        head='MultiLabelLinearClsHead' if multi_label else 'LinearClsHead',
        multi_label=multi_label,
        dataset=dataset)
    if not test_set:
        text = text[:text.index('test_dataloader')]
    path = Path(folder) / name
    path.write_text(text)
    return str(path)


def random_checkpoint(config, path, seed):
    """Save a randomly initialised model of ``config`` as a checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model_cfg = cfg.model.copy()
    model_cfg['data_preprocessor'] = cfg.data_preprocessor
    model = MODELS.build(model_cfg)
    torch.save({
        'state_dict': model.state_dict(),
        'meta': {
            'seed': seed
        }
    }, path)
    return str(path)


@pytest.fixture(scope='module')
def tiny_setup(tmp_path_factory):
    """A demo data build (shapes, 12 val images) and tiny configs with
    random checkpoints: multi-label COCO (Elastic + baseline) and
    single-label ImageNet layout (Elastic)."""
    root = tmp_path_factory.mktemp('scale_policy')
    data = root / 'demo'
    fixtures.load_tool('tools/data/make_demo_data.py').build(
        out=str(data), num_train=2, num_val=12, source='shapes')
    coco = (f"type='COCOMultiLabel', data_root='{data / 'coco'}', "
            "split='val', test_mode=True")
    # The ImageNet config points elsewhere: the CLI's --data-root fixes it.
    cls = (f"type='ImageNet', data_root='{root / 'missing'}', split='val', "
           f"classes='{data / 'cls' / 'meta' / 'classes.txt'}'")
    setup = dict(root=root, data=data)
    for key, multi, elastic, dataset in (('coco', True, True, coco),
                                         ('coco_base', True, False,
                                          coco), ('cls', False, True, cls)):
        config = write_config(root, f'{key}.py', multi, elastic, dataset)
        setup[key] = (config,
                      random_checkpoint(
                          config, root / f'{key}.pth', seed=len(setup)))
    setup['no_test'] = write_config(
        root, 'no_test.py', True, True, coco, test_set=False)
    return setup


def read_json(path):
    return json.loads(Path(path).read_text())


@pytest.mark.slow  # a fresh interpreter imports mmelastic
def test_cli_multi_label_coco_with_baseline(tiny_setup, run_cmd):
    out = tiny_setup['root'] / 'out_coco'
    config, checkpoint = tiny_setup['coco']
    base_config, base_checkpoint = tiny_setup['coco_base']
    proc = run_cmd([
        'python', TOOL, config, checkpoint, '--baseline-config', base_config,
        '--baseline-checkpoint', base_checkpoint, '--out-dir', out,
        '--max-images', 10, '--device', 'cpu'
    ],
                   timeout=300)
    assert '10/10' in proc.stdout  # the progress bar
    for name in ('category_scores', 'score_matrix', 'tsne', 'tsne_density'):
        assert_real_image(out / f'{name}.png')
    data = read_json(out / 'scores.json')
    assert data['task'] == 'multi-label' and data['has_baseline']
    # (1, 2, 2, 1) blocks: stride-1 blocks of the first three stages.
    assert data['blocks'] == [
        'backbone.layer1.0', 'backbone.layer2.1', 'backbone.layer3.1'
    ]
    assert len(data['images']) == 10
    classes = set(data['classes'])
    assert len(classes) == 10
    for image in data['images']:
        assert set(image['categories']) <= classes
        assert set(image['prediction']) <= classes
        assert image['correct'] == (
            set(image['prediction']) == set(image['categories']))
        assert image['baseline_correct'] == (
            set(image['baseline_prediction']) == set(image['categories']))
        assert Path(image['img_path']).is_file()
    with open(out / 'scores.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and 'baseline_correct' in rows[0]
    page = (out / 'index.html').read_text()
    assert 'http://' not in page and 'https://' not in page
    assert page.count('data:image/jpeg;base64,') == 10

    # The Python entry point (what tools/demo.py calls) on the same models
    # gives the same numbers.
    from mmengine.config import Config
    model = load_classifier(config, checkpoint)
    baseline = load_classifier(base_config, base_checkpoint)
    api_out = tiny_setup['root'] / 'out_api'
    paths = run_scale_policy_analysis(
        model,
        Config.fromfile(config).test_dataloader,
        str(api_out),
        baseline_model=baseline,
        max_images=10,
        progress=False,
        log=None)
    assert paths['html'] == str(api_out / 'index.html')
    assert all(Path(p).is_file() for p in paths.values())
    api = read_json(paths['json'])
    for a, b in zip(api['images'], data['images']):
        np.testing.assert_allclose(
            a['scores'], b['scores'], rtol=1e-5, atol=1e-7)
        assert a['prediction'] == b['prediction']
        assert a['baseline_prediction'] == b['baseline_prediction']


def test_cli_single_label_imagenet_layout(tiny_setup, capsys):
    # In-process (the multi-label test runs the script as a subprocess).
    out = tiny_setup['root'] / 'out_cls'
    config, checkpoint = tiny_setup['cls']
    tool = fixtures.load_tool(TOOL)
    paths = tool.main([
        config, checkpoint, '--data-root',
        str(tiny_setup['data'] / 'cls'), '--out-dir',
        str(out), '--batch-size', '5'
    ])
    assert paths['html'] == str(out / 'index.html')
    assert 'skipped tsne_density.png' in capsys.readouterr().out
    assert not (out / 'tsne_density.png').exists()
    for name in ('category_scores', 'score_matrix', 'tsne'):
        assert_real_image(out / f'{name}.png')
    data = read_json(out / 'scores.json')
    assert data['task'] == 'single-label' and not data['has_baseline']
    assert len(data['blocks']) == 3
    assert len(data['images']) == 12  # the whole val split
    names = (tiny_setup['data'] / 'cls' / 'meta' /
             'classes.txt').read_text().split()
    assert data['classes'] == names
    for image in data['images']:
        assert len(image['categories']) == 1 and len(image['prediction']) == 1
        # ImageNet layout: the category is the image's folder.
        assert Path(image['img_path']).parent.name == image['categories'][0]
        assert image['correct'] == (image['prediction'] == image['categories'])
        assert image['f1'] == float(image['correct'])
    with open(out / 'scores.csv', newline='') as f:
        header = next(csv.reader(f))
    assert header[:6] == [
        'index', 'img_path', 'categories', 'prediction', 'correct', 'f1'
    ]
    assert 'baseline_correct' not in header


def run_tool_error(argv):
    tool = fixtures.load_tool(TOOL)
    with pytest.raises(SystemExit) as exc:
        tool.cli([str(a) for a in argv])
    return str(exc.value.code)


def test_cli_bad_input_errors(tiny_setup, tmp_path):
    config, checkpoint = tiny_setup['coco']
    base_config, base_checkpoint = tiny_setup['coco_base']
    out = ['--out-dir', tmp_path]
    message = run_tool_error([config, tmp_path / 'missing.pth'] + out)
    assert 'missing.pth' in message and 'does not exist' in message
    message = run_tool_error([tiny_setup['no_test'], checkpoint] + out)
    assert 'has no test set' in message
    message = run_tool_error([base_config, base_checkpoint] + out)
    assert ('no Elastic blocks found in ImageClassifier: the scale-policy '
            'score needs a model with elastic blocks') in message
    bogus = tmp_path / 'bogus.pth'
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(1)}}, bogus)
    message = run_tool_error([config, bogus] + out)
    assert 'does not fit the model' in message
    message = run_tool_error(
        [config, checkpoint, '--baseline-config', base_config] + out)
    assert '--baseline-checkpoint' in message
    message = run_tool_error(
        [config, checkpoint, '--data-root', tmp_path / 'nowhere'] + out)
    assert 'is not a folder' in message
    # The options shared with the stress test are checked alike.
    message = run_tool_error([config, checkpoint, '--batch-size', 0] + out)
    assert '--batch-size must be at least 1' in message
    message = run_tool_error([config, checkpoint, '--num-workers', -1] + out)
    assert '--num-workers must be 0 or more' in message
    # The ImageNet config's own data_root does not exist.
    message = run_tool_error(list(tiny_setup['cls']) + out)
    assert 'cannot read the test set' in message and '--data-root' in message
