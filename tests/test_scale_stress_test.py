# Copyright (c) mmelastic contributors. All rights reserved.
"""tools/analysis/scale_stress_test.py: the scale stress test of ELASTIC
(Fig. 7) on the tiny demo COCO set with randomly initialised models."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / 'tools' / 'analysis' / 'scale_stress_test.py'
BASELINE_CFG = REPO_ROOT / 'configs' / 'demo' / 'resnext_tiny_coco.py'
ELASTIC_CFG = REPO_ROOT / 'configs' / 'demo' / 'resnext_tiny_elastic_coco.py'
MULTI_LABEL_FIGURES = ('CF1', 'OF1', 'CP', 'CR', 'OP', 'OR')


def load_tool():
    name = '_tool_scale_stress_test'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TOOL)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def save_random_checkpoint(config, path, seed=0):
    """A randomly initialised model of ``config``, saved as a checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmelastic  # noqa: F401
    cfg = Config.fromfile(str(config))
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(path))
    return str(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Demo data (16 train / 12 val) and random checkpoints of both demo
    models."""
    tmp = tmp_path_factory.mktemp('stress')
    sys.path.insert(0, str(REPO_ROOT / 'tools' / 'data'))
    try:
        import make_demo_data
    finally:
        sys.path.remove(str(REPO_ROOT / 'tools' / 'data'))
    make_demo_data.build(out=str(tmp / 'demo'), num_train=16, num_val=12)
    return dict(
        tmp=tmp,
        data=tmp / 'demo',
        coco=str(tmp / 'demo' / 'coco'),
        baseline=save_random_checkpoint(BASELINE_CFG, tmp / 'baseline.pth'),
        elastic=save_random_checkpoint(ELASTIC_CFG, tmp / 'elastic.pth', 1))


def run_cli(*args):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)],
                          cwd=str(REPO_ROOT),
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=300)


def check_png(path):
    with Image.open(path) as img:
        img.load()
        assert img.width >= 300 and img.height >= 200
        colors = img.convert('RGB').getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 20  # not a blank image


def test_cli_with_baseline(setup):
    out = setup['tmp'] / 'out'
    proc = run_cli(ELASTIC_CFG, setup['elastic'], '--baseline-config',
                   BASELINE_CFG, '--baseline-checkpoint', setup['baseline'],
                   '--sizes', 64, 96, '--data-root', setup['coco'],
                   '--out-dir', out, '--num-workers', 0)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Progress: one line per model x size, then the table.
    progress = [
        line for line in proc.stdout.splitlines()
        if line.startswith('[stress-test]') and ' @ ' in line
    ]
    assert len(progress) == 4
    assert ('| size | CF1 | OF1 | baseline CF1 | baseline OF1 | rel. CF1 % '
            '| rel. OF1 % |') in proc.stdout
    assert '| 64x64 |' in proc.stdout and '| 96x96 |' in proc.stdout

    report = json.loads((out / 'stress_test.json').read_text())
    assert report['task'] == 'multi-label'
    assert report['sizes'] == [64, 96]
    assert report['primary_figures'] == ['CF1', 'OF1']
    assert report['num_images'] == 12
    from mmengine.config import Config
    # The demo configs' own Resize.
    assert report['trained_size'] == Config.fromfile(
        str(ELASTIC_CFG)).input_size
    assert report['baseline'] == dict(
        config=str(BASELINE_CFG), checkpoint=setup['baseline'])
    assert [row['size'] for row in report['results']] == [64, 96]
    for row in report['results']:
        for part in ('model', 'baseline'):
            assert set(row[part]) == set(MULTI_LABEL_FIGURES)
            for value in row[part].values():
                assert 0.0 <= value <= 100.0
            # The evaluator's full output (both configured metrics).
            metrics = row[f'{part}_metrics']
            assert metrics['multi-label/CF1'] == pytest.approx(
                row[part]['CF1'])
            assert 'multi-label/S/OF1' in metrics
            assert 'multi-label/recall_small' in metrics
        assert set(row['relative']) == set(MULTI_LABEL_FIGURES)
        for key, rel in row['relative'].items():
            e, b = row['model'][key], row['baseline'][key]
            if b == 0:
                assert rel is None
            else:
                assert rel == pytest.approx(100.0 * (e - b) / b)
    check_png(out / 'stress_test.png')
    assert (out / 'stress_test.md').read_text().startswith('| size | CF1 |')


def test_resized_pipeline_and_no_baseline(setup):
    """In-process: the Resize is replaced, and without a baseline the
    report has absolute values only."""
    tool = load_tool()
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(224, 224), backend='pillow'),
        dict(type='PackInputs')
    ]
    new = tool.resized_pipeline(pipeline, [1], 448)
    assert new[1] == dict(type='Resize', scale=(448, 448), backend='pillow',
                          keep_ratio=False)
    assert pipeline[1]['scale'] == (224, 224)  # the original is untouched

    out = setup['tmp'] / 'out_single_model'
    report = tool.main([
        str(ELASTIC_CFG), setup['elastic'], '--sizes', '48', '--data-root',
        setup['coco'], '--out-dir', str(out), '--num-workers', '0',
        '--max-images', '5'
    ])
    assert report['num_images'] == 5 and report['baseline'] is None
    row, = report['results']
    assert row['size'] == 48 and row['relative'] is None
    assert row['baseline'] is None and set(row['model']) == set(
        MULTI_LABEL_FIGURES)
    saved = json.loads((out / 'stress_test.json').read_text())
    assert saved['results'][0]['model'] == pytest.approx(row['model'])
    check_png(out / 'stress_test.png')


def test_single_label_config(setup):
    """An Accuracy config is tested on top-1/top-5."""
    cls = setup['data'] / 'cls'
    config = setup['tmp'] / 'single_label.py'
    config.write_text(f"""
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['mmelastic'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ElasticResNeXt',
                  arch=dict(stage_blocks=(1, 1, 1, 1), elastic=True),
                  base_channels=16, stem_channels=16, groups=8,
                  width_per_group=4),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=512))
data_preprocessor = dict(num_classes=10, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
test_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(type='ImageNet', data_root={str(cls)!r}, split='val',
                 classes={str(cls / 'meta' / 'classes.txt')!r},
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='Resize', scale=(96, 96)),
                           dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
""")
    ckpt = save_random_checkpoint(config, setup['tmp'] / 'single.pth')
    report = load_tool().main([
        str(config), ckpt, '--baseline-config', str(config),
        '--baseline-checkpoint', ckpt, '--sizes', '32', '64', '--out-dir',
        str(setup['tmp'] / 'out_cls')
    ])
    assert report['task'] == 'single-label'
    assert report['primary_figures'] == ['top1', 'top5']
    for row in report['results']:
        assert set(row['model']) == {'top1', 'top5'}
        # The same model as its own baseline: no change.
        assert row['model'] == row['baseline']
        assert all(v in (0.0, None) for v in row['relative'].values())


def expect_error(argv, *fragments):
    with pytest.raises(SystemExit) as exc:
        load_tool().cli([str(a) for a in argv])
    message = str(exc.value.code)
    assert message.startswith('scale_stress_test.py: error:'), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_errors(setup):
    coco = ['--data-root', setup['coco'], '--sizes', '32']
    # Missing checkpoint: names the file and how to get one.
    expect_error([ELASTIC_CFG, setup['tmp'] / 'nope.pth', *coco],
                 'nope.pth', 'does not exist', 'tools/train.py')
    expect_error([ELASTIC_CFG, setup['elastic'], '--baseline-config',
                  BASELINE_CFG, '--baseline-checkpoint',
                  setup['tmp'] / 'nope.pth', *coco],
                 'baseline checkpoint', 'nope.pth', 'does not exist')
    # Half of the baseline arguments.
    expect_error([ELASTIC_CFG, setup['elastic'], '--baseline-config',
                  BASELINE_CFG, *coco],
                 '--baseline-config was given without --baseline-checkpoint',
                 'give both')
    expect_error([ELASTIC_CFG, setup['elastic'], '--baseline-checkpoint',
                  setup['baseline'], *coco],
                 '--baseline-checkpoint was given without --baseline-config')
    # A missing config and a bad data root.
    expect_error([setup['tmp'] / 'nope.py', setup['elastic'], *coco],
                 'nope.py', 'does not exist')
    expect_error([ELASTIC_CFG, setup['elastic'], '--data-root',
                  setup['tmp'] / 'nowhere'], '--data-root', 'not a folder')
    expect_error([ELASTIC_CFG, setup['elastic'], '--sizes', '0'], '--sizes')
    # A checkpoint of another model (strict loading).
    expect_error([BASELINE_CFG, setup['elastic'], *coco], 'does not fit')
    # A test pipeline without Resize.
    no_resize = setup['tmp'] / 'no_resize.py'
    no_resize.write_text(
        f"_base_ = [{str(BASELINE_CFG)!r}]\n"
        "test_dataloader = dict(dataset=dict(pipeline=["
        "dict(type='LoadImageFromFile'), dict(type='PackInputs')]))\n")
    expect_error([no_resize, setup['baseline'], *coco], 'has no Resize',
                 'LoadImageFromFile -> PackInputs', "type='Resize'")


def test_cli_error_exit_code(setup):
    proc = run_cli(ELASTIC_CFG, setup['elastic'], '--baseline-config',
                   BASELINE_CFG)
    assert proc.returncode != 0
    assert ('scale_stress_test.py: error: --baseline-config was given '
            'without --baseline-checkpoint') in proc.stderr
    assert 'Traceback' not in proc.stderr
