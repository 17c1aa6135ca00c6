# Copyright (c) mmelastic contributors. All rights reserved.
"""ONNX export (mmelastic.deployment.onnx, tools/deployment/pytorch2onnx.py)
and the ONNX Runtime and OpenVINO backends of the benchmark: exported graphs
equal PyTorch's outputs in both runtimes for every architecture family and
task, the fast path is off while exporting, the runtimes' profiles add up,
and bad requests fail with one clear error."""
import importlib
import importlib.util
import os
import os.path as osp
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mmelastic.analysis import benchmark as bm
from mmelastic.deployment import onnx as dep
from mmelastic.models.utils import fast_path_enabled

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CLS = REPO_ROOT / 'tests' / 'data' / 'configs' / 'tiny_cls.py'
TINY_SEG = REPO_ROOT / 'tests' / 'data' / 'configs' / 'tiny_seg.py'


def load_tool(path='tools/deployment/pytorch2onnx.py'):
    """Import a tool script as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'mmelastic_tool_' + Path(path).stem, REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_norms(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so that a graph
    that dropped or misplaced a norm could not pass for the model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def tiny_classifier(backbone, head='LinearClsHead', num_classes=5):
    """An ImageClassifier around ``backbone`` (a config dict)."""
    from mmpretrain.registry import MODELS

    import mmelastic  # noqa: F401
    net = MODELS.build(backbone).eval()
    with torch.no_grad():
        channels = net(torch.zeros(1, 3, 32, 32))[-1].shape[1]
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type=head, num_classes=num_classes, in_channels=channels)))
    torch.manual_seed(0)
    model.init_weights()
    return randomize_norms(model)


def tiny_cls_backbone(**overrides):
    """The backbone of tests/data/configs/tiny_cls.py, with overrides."""
    from mmengine.config import Config
    backbone = Config.fromfile(str(TINY_CLS)).model.backbone.to_dict()
    return dict(backbone, **overrides)


# Two blocks in stage 2: one non-elastic (stride 2), one elastic.
TINY_RESNEXT = tiny_cls_backbone(stage_blocks=(1, 2, 1, 1))
TINY_DLA = dict(
    type='ElasticDLA',
    arch='dla60x_elastic',
    channels=(8, 16, 32, 64, 96, 128),
    cardinality=4)
TINY_DENSENET = dict(
    type='ElasticDenseNet',
    arch=dict(
        growth_rate=8, depths=(2, 3, 2, 2), init_channels=16, elastic=True))
BACKBONES = dict(
    resnext=TINY_RESNEXT, dla=TINY_DLA, densenet=TINY_DENSENET)


def tiny_segmentor():
    from mmengine.config import Config
    cfg = Config.fromfile(str(TINY_SEG))
    model = bm.build_model(cfg)
    torch.manual_seed(0)
    model.init_weights()
    return randomize_norms(model)


def run_onnx(path, x, runtime='onnxruntime'):
    return torch.from_numpy(dep.load_runtime(path, runtime, threads=1)(x))


@pytest.mark.parametrize('runtime', dep.RUNTIMES)
@pytest.mark.parametrize('family', sorted(BACKBONES))
def test_classifier_graph_equals_pytorch(family, runtime, tmp_path):
    model = tiny_classifier(BACKBONES[family])
    path = str(tmp_path / f'{family}.onnx')
    # Odd sizes: the Elastic blocks pad before pooling and crop after the
    # upsampling; the batch is free (exported with 2, run with 1 and 3).
    assert dep.export_onnx(model, path, (2, 3, 33, 47)) == 'scores'
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 33, 47, generator=gen)
        with torch.no_grad():
            logits = model(x, mode='tensor')
        got = run_onnx(path, x, runtime)
        assert got.shape == (batch, 5)
        torch.testing.assert_close(
            got, logits.softmax(1), rtol=0, atol=1e-5)
        # The scores are the ones the model's own predict gives.
        preds = model.predict(x)
        torch.testing.assert_close(
            got, torch.stack([p.pred_score for p in preds]), rtol=0,
            atol=1e-5)


def test_multi_label_scores_and_logits(tmp_path):
    model = tiny_classifier(TINY_RESNEXT, head='MultiLabelLinearClsHead')
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x, mode='tensor')
    scores = str(tmp_path / 'scores.onnx')
    raw = str(tmp_path / 'logits.onnx')
    dep.export_onnx(model, scores, (2, 3, 32, 32))
    assert dep.export_onnx(model, raw, (2, 3, 32, 32),
                           output='logits') == 'logits'
    torch.testing.assert_close(
        run_onnx(scores, x), logits.sigmoid(), rtol=0, atol=1e-5)
    torch.testing.assert_close(run_onnx(raw, x), logits, rtol=1e-5, atol=1e-5)
    assert [o.name for o in onnx.load(raw).graph.output] == ['logits']


@pytest.mark.parametrize('runtime', dep.RUNTIMES)
def test_segmentor_graph_equals_mmseg_inference(runtime, tmp_path):
    model = tiny_segmentor()
    path = str(tmp_path / 'seg.onnx')
    assert dep.export_onnx(model, path, (1, 3, 40, 36)) == 'seg_logits'
    x = torch.randn(2, 3, 40, 36)
    got = run_onnx(path, x, runtime)
    assert got.shape == (2, 2, 40, 36)
    # mmseg's whole-image inference of the same batch (no data samples:
    # the image is its own original shape).
    with torch.no_grad():
        preds = model.predict(x)
    expected = torch.stack([p.seg_logits.data for p in preds])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def assert_graph_matches(model, path, runtime, shapes):
    """The graph at ``path`` equals ``model`` (through :class:`ExportWrapper`)
    in ``runtime`` on seeded random inputs of ``shapes``."""
    wrapper = dep.ExportWrapper(model)
    runner = dep.load_runtime(path, runtime, threads=1)
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            expected = wrapper(x)
        got = torch.from_numpy(runner(x))
        if dep.is_segmentor(model):
            assert got.shape == (shape[0], 2) + shape[2:]
        # The runtimes' kernels round differently from PyTorch's, more so
        # on the larger maps (up to 1.8e-5 seen at 160x224).
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('runtime', dep.RUNTIMES)
@pytest.mark.parametrize('family', sorted(BACKBONES) + ['segmentor'])
def test_free_height_and_width(family, runtime, tmp_path):
    model = tiny_segmentor() if family == 'segmentor' else \
        tiny_classifier(BACKBONES[family])
    path = str(tmp_path / 'free.onnx')
    dep.export_onnx(model, path, (1, 3, 64, 96), dynamic_size=True)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField('dim_param') for d in dims] == [True, False, True,
                                                        True]
    # Odd and even sizes at every stride, maps of 1x1 at the last ones,
    # and sizes that are not multiples of anything.
    assert_graph_matches(model, path, runtime,
                         ((2, 3, 32, 32), (1, 3, 33, 47), (1, 3, 160, 224),
                          (1, 3, 97, 161), (1, 3, 36, 30), (1, 3, 75, 64)))


@pytest.mark.parametrize('runtime', dep.RUNTIMES)
@pytest.mark.parametrize('family', ['resnext', 'segmentor'])
def test_free_sizes_in_multiples_of_32(family, runtime, tmp_path):
    """In multiples of 32 every Elastic block sees even maps: the graph has
    no padding or cropping (what makes any-size graphs slow), and equals
    PyTorch at even and odd multiples (odd maps after stride 32)."""
    model = tiny_segmentor() if family == 'segmentor' else \
        tiny_classifier(BACKBONES[family])
    path = str(tmp_path / 'free.onnx')
    dep.export_onnx(model, path, (1, 3, 64, 96), dynamic_size=32)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert 'AveragePool' in ops and not ops & {'Pad', 'Slice'}
    assert_graph_matches(model, path, runtime,
                         ((2, 3, 32, 32), (1, 3, 160, 224), (1, 3, 96, 64)))


def test_free_size_needs_multiples(tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    with pytest.raises(dep.DeploymentError,
                       match='must be multiples of it, not 48x64'):
        dep.export_onnx(model, str(tmp_path / 'm.onnx'), (1, 3, 48, 64),
                        dynamic_size=32)
    with pytest.raises(dep.DeploymentError, match='positive multiple'):
        dep.export_onnx(model, str(tmp_path / 'm.onnx'), (1, 3, 48, 64),
                        dynamic_size=0)
    assert not list(tmp_path.iterdir())


def test_free_size_pools_without_a_parity_branch(tmp_path):
    """Traced for free sizes, an Elastic block's pool is one ceil-mode pool
    (no branch on the parity, no padded copy of the map): the same as the
    replicate pad and pool of PyTorch and fixed-size exports."""
    from mmelastic.models.utils.resample import pad_to_even
    for size in ((6, 8), (7, 9), (1, 1), (1, 4), (5, 2)):
        x = torch.randn(1, 2, *size)
        low = torch.nn.functional.avg_pool2d(pad_to_even(x), 2, 2)
        ceil = torch.nn.functional.avg_pool2d(
            x, 2, 2, ceil_mode=True, count_include_pad=False)
        torch.testing.assert_close(ceil, low, rtol=1e-6, atol=1e-6)
    from mmelastic.models.utils.resample import Resample2x
    path = str(tmp_path / 'free.onnx')
    model = tiny_classifier(TINY_RESNEXT)
    dep.export_onnx(model, path, (1, 3, 64, 64), dynamic_size=True)
    nodes = onnx.load(path).graph.node
    pools = [n for n in nodes if n.op_type == 'AveragePool']
    elastic = [m for m in model.modules() if isinstance(m, Resample2x)]
    assert len(pools) == len(elastic) > 0
    for pool in pools:
        attrs = {a.name: onnx.helper.get_attribute_value(a)
                 for a in pool.attribute}
        assert attrs['ceil_mode'] == 1 and attrs['count_include_pad'] == 0
    assert not [n for n in nodes if n.op_type == 'Pad']


def test_free_size_trained_filters_pad_every_map(tmp_path):
    """The trained-filter ablation (a learned 2x2 stride-2 conv down) pads
    every map by one pixel under free sizes, which its windows never reach
    on even sizes: the graph equals PyTorch at odd and even sizes."""
    model = tiny_classifier(tiny_cls_backbone(resample='trained'))
    path = str(tmp_path / 'free.onnx')
    dep.export_onnx(model, path, (1, 3, 64, 64), dynamic_size=True)
    assert [n for n in onnx.load(path).graph.node if n.op_type == 'Pad']
    assert_graph_matches(model, path, 'onnxruntime',
                         ((1, 3, 64, 64), (1, 3, 33, 47), (2, 3, 40, 30)))


@pytest.mark.parametrize('reads_size', [
    lambda x: x.mean((2, 3)) * float(x.shape[-1]),
    lambda x: x.mean((2, 3)) * (2.0 if x.shape[-1] > 2 else 1.0),
    lambda x: x.mean((2, 3)) + float(np.arange(int(x.shape[-1])).sum()),
], ids=['float', 'branch', 'int'])
def test_free_size_of_a_size_dependent_model_is_refused(reads_size,
                                                        tmp_path):
    """A model that reads its size as a Python number is traced at that
    size; torch.export keeps the input's dims free anyway and ONNX drops
    its checks, so the graph would run at every size and compute the
    traced size's result. The export traces a second size and refuses."""

    class SizeReadingNeck(torch.nn.Module):

        def forward(self, inputs):
            return (reads_size(inputs[-1]), )

    model = tiny_classifier(TINY_RESNEXT)
    model.neck = SizeReadingNeck()
    path = tmp_path / 'free.onnx'
    with pytest.raises(dep.DeploymentError,
                       match=r'cannot be exported with free sizes: its graph '
                       r'traced at 64x64 differs from the one traced at '
                       r'97x97.*export a fixed size instead'):
        dep.export_onnx(model, str(path), (1, 3, 64, 64), dynamic_size=True)
    assert not list(tmp_path.iterdir())
    # At a fixed size the same model exports.
    dep.export_onnx(model, str(path), (1, 3, 64, 64))
    assert path.exists()


def test_static_batch(tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    path = str(tmp_path / 'static.onnx')
    dep.export_onnx(model, path, (2, 3, 32, 32), dynamic_batch=False)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 32, 32]
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        run_onnx(path, torch.randn(3, 3, 32, 32))


def test_fast_path_is_off_while_exporting(tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    seen = []
    block = model.backbone.layer1[0]
    handle = block.register_forward_pre_hook(
        lambda *args: seen.append(fast_path_enabled()))
    path = str(tmp_path / 'm.onnx')
    dep.export_onnx(model, path, (1, 3, 32, 32))
    handle.remove()
    assert seen and not any(seen)
    assert fast_path_enabled()  # and on again afterwards
    ops = {n.op_type for n in onnx.load(path).graph.node}
    # The straightforward path's standard ops, none of the fast path's
    # rewrites (resampling as strided slices and interleaving, merged
    # branches as concatenated weights).
    assert {'AveragePool', 'Resize', 'Conv'} <= ops
    assert not ops & {'Slice', 'Concat'}


@pytest.mark.parametrize('grad', [False, True], ids=['no_grad', 'grad'])
def test_torchscript_exporter_gets_the_straightforward_path(grad, tmp_path):
    # torch.onnx.export(dynamo=False), as mmdeploy calls it: with the fast
    # path traced, gradients on, the export failed (its autograd functions)
    # and without them the graph held its resampling convolutions.
    from mmelastic.analysis.complexity import TensorForward
    model = tiny_classifier(TINY_RESNEXT)
    seen = []
    handle = model.backbone.layer1[0].register_forward_pre_hook(
        lambda *args: seen.append(fast_path_enabled()))
    path = str(tmp_path / 'ts.onnx')
    x = torch.randn(2, 3, 33, 47)
    with torch.set_grad_enabled(grad):
        torch.onnx.export(TensorForward(model).eval(), (x, ), path,
                          dynamo=False, opset_version=17)
    handle.remove()
    assert seen and not any(seen)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {'AveragePool', 'Resize'} <= ops
    assert 'ConvTranspose' not in ops
    with torch.no_grad():
        expected = model(x, mode='tensor')
    torch.testing.assert_close(run_onnx(path, x), expected, rtol=1e-5,
                               atol=1e-5)


def test_export_errors_and_no_partial_file(tmp_path, monkeypatch):
    model = tiny_classifier(TINY_RESNEXT)
    path = str(tmp_path / 'out' / 'm.onnx')
    with pytest.raises(dep.DeploymentError, match=r'\(batch, 3, height'):
        dep.export_onnx(model, path, (1, 1, 32, 32))
    with pytest.raises(dep.DeploymentError, match='output must be one of'):
        dep.export_onnx(model, path, (1, 3, 32, 32), output='probs')

    def broken_export(module, args, f, **kwargs):
        Path(f).write_bytes(b'half a graph')
        raise RuntimeError('exporter exploded')

    monkeypatch.setattr(torch.onnx, 'export', broken_export)
    with pytest.raises(dep.DeploymentError, match='exporter exploded'):
        dep.export_onnx(model, path, (1, 3, 32, 32))
    assert os.listdir(tmp_path / 'out') == []


def test_unknown_head_asks_for_logits():
    model = tiny_classifier(TINY_RESNEXT)
    model.head = torch.nn.Identity()
    with pytest.raises(dep.DeploymentError, match="output='logits'"):
        dep.ExportWrapper(model)
    dep.ExportWrapper(model, output='logits')  # fine


@pytest.mark.parametrize('missing, other', [('onnxruntime', 'openvino'),
                                             ('openvino', 'onnxruntime')])
def test_missing_package_names_the_extra(missing, other, monkeypatch):
    real = importlib.import_module

    def without(name, *args):
        if name == missing:
            raise ImportError(f'No module named {missing}')
        return real(name, *args)

    monkeypatch.setattr(importlib, 'import_module', without)
    with pytest.raises(dep.DeploymentError,
                       match=f'{missing}.*requirements/deploy.txt'):
        dep.require('onnx', missing)
    with pytest.raises(bm.BenchmarkError,
                       match=f'{missing}.*requirements/deploy.txt'):
        bm.check_backends(['pytorch', missing], 'cpu', ['infer'])
    bm.check_backends(other, 'cpu', ['infer'])  # only what is asked for


def test_verify_catches_a_different_model(tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    path = str(tmp_path / 'm.onnx')
    dep.export_onnx(model, path, (1, 3, 32, 32), output='logits')
    gen = torch.Generator().manual_seed(0)
    x = [torch.randn(1, 3, 32, 32, generator=gen),
         torch.randn(2, 3, 32, 32, generator=gen)]
    res = dep.verify_onnx(model, path, x, output='logits', atol=1e-4)
    assert res['max_abs_diff'] <= 1e-4
    assert res['shapes'] == [(1, 5), (2, 5)]
    with torch.no_grad():
        model.backbone.layer2[0].high.conv2.weight.mul_(1.5)
    with pytest.raises(dep.DeploymentError, match='differ by up to'):
        dep.verify_onnx(model, path, x, output='logits', atol=1e-4)


# --- tools/deployment/pytorch2onnx.py ---------------------------------------


def test_tool_exports_a_checkpoint(tmp_path, capsys):
    from mmengine.config import Config
    from mmengine.runner import save_checkpoint
    model = bm.build_model(Config.fromfile(str(TINY_CLS)))
    torch.manual_seed(3)
    model.init_weights()
    randomize_norms(model, seed=3)
    ckpt = str(tmp_path / 'tiny.pth')
    save_checkpoint(model.state_dict(), ckpt)
    out = str(tmp_path / 'tiny.onnx')
    tool = load_tool()
    assert tool.main([
        str(TINY_CLS), '--checkpoint', ckpt, '--output-file', out,
        '--shape', '32', '--verify'
    ]) == out
    log = capsys.readouterr().out
    assert f'loaded {ckpt}' in log
    assert re.search(r'wrote .*tiny\.onnx \([0-9.]+ MB, opset 2\d\)', log)
    assert 'verified in ONNX Runtime on inputs (1, 3, 32, 32), ' \
        '(2, 3, 32, 32): max' in log
    assert 'graph: input (N, 3, 32, 32) float32 -> scores (N, classes)' \
        in log
    assert 'mean=[127.5, 127.5, 127.5]' in log
    # The graph holds the checkpoint's weights, not fresh ones.
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x, mode='tensor').softmax(1)
    torch.testing.assert_close(run_onnx(out, x), expected, rtol=0,
                               atol=1e-5)


def test_tool_segmentor_defaults_to_crop_size(tmp_path, capsys):
    out = str(tmp_path / 'seg.onnx')
    load_tool().main([str(TINY_SEG), '--output-file', out,
                      '--static-batch', '--batch', '2', '--opset-version',
                      '17', '--verify'])
    log = capsys.readouterr().out
    assert 'opset 17)' in log
    assert 'verified in ONNX Runtime on inputs (2, 3, 32, 32): max' in log
    assert 'no --checkpoint' in log
    assert 'graph: input (2, 3, 32, 32) float32 -> seg_logits ' \
        '(2, classes, 32, 32)' in log
    assert 'channels RGB (from BGR images)' in log
    assert osp.isfile(out)


def test_tool_dynamic_size(tmp_path, capsys):
    out = str(tmp_path / 'seg.onnx')
    load_tool().main([str(TINY_SEG), '--output-file', out, '--dynamic-size',
                      '--verify'])
    log = capsys.readouterr().out
    # Traced at 64x64 (the crop size, 32, is raised to 64).
    assert 'exporting with input (1, 3, 32, 32) (batch size, height and ' \
        'width free)' in log
    assert 'verified in ONNX Runtime on inputs (1, 3, 32, 32), ' \
        '(2, 3, 49, 65): max' in log
    assert 'graph: input (N, 3, H, W) float32 -> seg_logits ' \
        '(N, classes, H, W) (H, W: any size)' in log


def test_tool_dynamic_size_in_multiples(tmp_path, capsys):
    out = str(tmp_path / 'seg.onnx')
    load_tool().main([str(TINY_SEG), '--output-file', out, '--dynamic-size',
                      '32', '--verify'])
    log = capsys.readouterr().out
    assert '(batch size, height and width in multiples of 32 free)' in log
    assert 'verified in ONNX Runtime on inputs (1, 3, 32, 32), ' \
        '(2, 3, 64, 96): max' in log
    assert 'graph: input (N, 3, H, W) float32 -> seg_logits ' \
        '(N, classes, H, W) (H, W: multiples of 32)' in log
    with pytest.raises(SystemExit) as exc:
        load_tool().main([str(TINY_SEG), '--output-file', out,
                          '--dynamic-size', '32', '--shape', '40'])
    assert 'multiples of 32, not 40x40; pass --shape (e.g. --shape 32)' \
        in str(exc.value.code)


@pytest.mark.parametrize('argv, message', [
    (['--dynamic-size', '0'], '--dynamic-size takes a positive multiple'),
    (['--shape', '1', '2', '3'], '--shape takes one or two'),
    (['--checkpoint', 'missing.pth'], "'missing.pth' is not a file"),
    (['--batch', '0'], '--batch must be at least 1'),
    (['--opset-version', '0'], '--opset-version must be a positive'),
    (['--runtime', 'openvino'], 'add --verify'),
])
def test_tool_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_tool().main([str(TINY_CLS)] + argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# --- benchmark.py --backend onnxruntime ------------------------------------


def test_benchmark_onnxruntime_backend(tmp_path):
    plain = tmp_path / 'tiny_plain.py'
    plain.write_text(f"_base_ = ['{TINY_CLS}']\n"
                     "model = dict(backbone=dict(arch='resnext50'))\n")
    models = [('plain', str(plain)), ('elastic', str(TINY_CLS))]
    lines = []
    res = bm.run_benchmark(
        models, batch=2, size=32, warmup=1, reps=2, modes=['infer'],
        backend='onnxruntime', threads=1, log=lines.append)
    assert res['settings']['backends'] == ['onnxruntime']
    assert res['settings']['onnxruntime']
    assert [m['name'] for m in res['models']] == ['plain', 'elastic']
    for m in res['models']:
        assert len(m['infer']['times_s']) == 2
        assert m['infer']['throughput']['median'] > 0
        assert 'memory' not in m and 'train' not in m
    assert res['models'][0]['infer']['ratio'] == 1.0
    assert 'memory: not probed with --backend onnxruntime' in lines
    table = bm.format_table(res)
    assert 'ONNX Runtime' in table and 'amp' not in table
    plot = bm.plot_result(res, str(tmp_path / 'ort.png'))
    assert osp.getsize(plot) > 1000


def test_benchmark_pytorch_and_onnxruntime_rows(tmp_path):
    res = bm.run_benchmark(
        [('tiny', str(TINY_CLS))], batch=2, size=32, warmup=0, reps=2,
        modes=['infer'], backend=['pytorch', 'onnxruntime'],
        channels_last=True, straightforward=True, memory=False, threads=1)
    rows = [(m['name'], m['fast_path']) for m in res['models']]
    # The PyTorch options apply to the PyTorch rows only.
    assert rows == [('tiny', True), ('tiny:straightforward', False),
                    ('tiny:onnxruntime', True)]
    assert res['settings']['backends'] == ['pytorch', 'onnxruntime']
    note = bm.format_table(res).splitlines()[-1]
    assert 'channels_last True' in note
    assert 'rows NAME:onnxruntime: ONNX Runtime' in note


@pytest.mark.parametrize('kwargs, message', [
    (dict(modes=['infer', 'train']), 'inference only; add --mode infer'),
    (dict(device='cuda'), 'runs on the CPU'),
    (dict(backend='openvino', device='cuda'), 'openvino runs on the CPU'),
    (dict(channels_last=True, straightforward=True),
     '--channels-last, --straightforward only apply to PyTorch rows'),
    (dict(compile=True), '--compile only apply'),
    (dict(backend=['pytorch', 'onnxruntime'], conv_time=True),
     '--conv-time only work on PyTorch steps; drop them, or drop --backend '
     'onnxruntime'),
    (dict(device='gpu', amp=True), "--device must be cpu or cuda, not 'gpu'"),
    (dict(amp=True), 'ONNX Runtime runs these graphs in float32 only'),
    (dict(backend=['openvino', 'pytorch'], amp='float16'),
     'OpenVINO rows run in float32 or, with --amp, bfloat16'),
    (dict(backend='tensorrt'),
     'distinct names from pytorch, onnxruntime, openvino'),
    (dict(backend=['onnxruntime', 'onnxruntime']), 'distinct names'),
])
def test_benchmark_backend_errors(kwargs, message):
    kwargs = dict(dict(modes=['infer'], backend='onnxruntime'), **kwargs)
    with pytest.raises(bm.BenchmarkError, match=message):
        bm.run_benchmark([('m', str(TINY_CLS))], reps=1, **kwargs)


def test_benchmark_cli_backend_defaults_to_inference(capsys):
    tool = load_tool('tools/analysis/benchmark.py')
    args = tool.parse_args(['--models', 'resnext50', '--backend',
                            'onnxruntime'])
    assert args.backend == ['onnxruntime'] and args.mode is None
    assert tool.main(['--models', 'resnext50', '--backend', 'onnxruntime',
                      '--mode', 'train']) == 2
    assert 'add --mode infer' in capsys.readouterr().err
    assert tool.main(['--models', 'resnext50', '--backend', 'pytorch',
                      'openvino', '--mode', 'both']) == 2
    assert '--backend openvino times inference only' in \
        capsys.readouterr().err


def test_onnxruntime_model_accepts_tensors_and_arrays(tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    path = str(tmp_path / 'm.onnx')
    dep.export_onnx(model, path, (1, 3, 32, 32))
    runtime = dep.OnnxRuntimeModel(path, threads=1, spinning=False)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    a = runtime(x)
    b = runtime(x.numpy())
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


# --- OpenVINO, runtime profiles ---------------------------------------------


def test_openvino_precision_is_asked_for(tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    path = str(tmp_path / 'm.onnx')
    dep.export_onnx(model, path, (2, 3, 32, 32), output='logits')
    x = torch.randn(2, 3, 32, 32)
    f32 = dep.load_runtime(path, 'openvino', threads=1)
    # OpenVINO's own default is bf16 on CPUs with bfloat16 instructions;
    # the model asks for f32 unless told otherwise.
    assert f32.precision == 'f32'
    bf16 = dep.load_runtime(path, 'openvino', threads=1, precision='bf16')
    assert bf16.precision in ('bf16', 'f32')  # f32 without bf16 support
    with torch.no_grad():
        logits = model(x, mode='tensor')
    torch.testing.assert_close(torch.from_numpy(f32(x)), logits, rtol=1e-5,
                               atol=1e-5)
    # Each run returns its own array: the next run leaves it as it was.
    first = f32(x)
    f32(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(torch.from_numpy(first), logits, rtol=1e-5,
                               atol=1e-5)
    # bfloat16 keeps 8 bits of mantissa: close, not equal.
    scale = logits.abs().max().item()
    assert np.abs(bf16(x) - logits.numpy()).max() < 0.1 * scale
    with pytest.raises(dep.DeploymentError, match="not 'fp16'"):
        dep.load_runtime(path, 'openvino', precision='fp16')
    with pytest.raises(dep.DeploymentError, match='f32 only'):
        dep.load_runtime(path, 'onnxruntime', precision='bf16')
    with pytest.raises(dep.DeploymentError, match='onnxruntime, openvino'):
        dep.load_runtime(path, 'tensorrt')


@pytest.mark.parametrize('runtime, resampling', [
    ('onnxruntime', {'Resize', 'Upsample'}),
    ('openvino', {'Interpolate'}),
])
def test_runtime_op_times(runtime, resampling, tmp_path):
    model = tiny_classifier(TINY_RESNEXT)
    path = str(tmp_path / 'm.onnx')
    dep.export_onnx(model, path, (2, 3, 64, 64), dynamic_batch=False)
    runner = dep.load_runtime(path, runtime, threads=1)
    x = np.random.default_rng(0).standard_normal(
        (2, 3, 64, 64)).astype(np.float32)
    times = runner.op_times(x, steps=2)
    values = list(times.values())
    assert values == sorted(values, reverse=True) and min(values) > 0
    # The graph's convolutions and the elastic blocks' upsampling are
    # there, under the names the optimized graph gives them.
    assert any('conv' in op.lower() for op in times)
    assert set(times) & resampling, sorted(times)
    with pytest.raises(dep.DeploymentError, match='at least 1 step'):
        runner.op_times(x, steps=0)


def test_onnxruntime_trace_leaves_out_the_untimed_run():
    def run(ts):
        return dict(cat='Session', name='model_run', ts=ts, dur=90)

    def node(ts, op, dur_us):
        return dict(cat='Node', name=f'n{ts}_kernel_time', ts=ts,
                    dur=dur_us, args=dict(op_name=op))

    events = [
        run(0), node(1, 'Conv', 50_000), node(2, 'Resize', 9_000),  # untimed
        run(100), node(101, 'Conv', 4_000), node(102, 'Resize', 1_000),
        node(103, 'Conv', 2_000),
        dict(cat='Node', name='n104_fence_before', ts=104, dur=7_000,
             args=dict(op_name='Conv')),  # not a kernel time
        run(200), node(201, 'Conv', 6_000), node(202, 'Resize', 3_000),
    ]
    times = dep.onnxruntime_kernel_times(events, steps=2)
    assert times == {'Conv': 6.0, 'Resize': 2.0}  # ms per timed run
    assert list(times) == ['Conv', 'Resize']
    with pytest.raises(dep.DeploymentError, match='has 3 runs, not 4'):
        dep.onnxruntime_kernel_times(events, steps=3)


def test_benchmark_openvino_rows_and_profiles(tmp_path):
    lines = []
    res = bm.run_benchmark(
        [('tiny', str(TINY_CLS))], batch=2, size=32, warmup=0, reps=2,
        modes=['infer'], backend=['onnxruntime', 'openvino'], profile=1,
        threads=1, log=lines.append)
    assert [m['name'] for m in res['models']] == ['tiny', 'tiny:openvino']
    s = res['settings']
    assert s['openvino'] and s['onnxruntime']
    assert s['openvino_precision'] == 'f32'
    assert 'memory: not probed with --backend onnxruntime openvino' in lines
    ort, ov = (m['infer']['profile_ms'] for m in res['models'])
    assert 'Interpolate' in ov and not any(op.startswith('aten::')
                                           for op in ort)
    note = bm.format_table(res).splitlines()[-1]
    assert note.startswith('ONNX Runtime ') and \
        'rows NAME:openvino: OpenVINO ' in note and ' in f32' in note
    profile = bm.format_profile(res)
    conv = next(line for line in profile.splitlines()
                if line.startswith('ops named *conv*')).split()[-2:]
    assert [float(v) for v in conv] == pytest.approx(
        [sum(t for op, t in p.items() if 'conv' in op.lower())
         for p in (ort, ov)], abs=0.06)


def test_benchmark_amp_makes_openvino_bfloat16():
    res = bm.run_benchmark(
        [('tiny', str(TINY_CLS))], batch=2, size=32, warmup=0, reps=1,
        modes=['infer'], backend=['pytorch', 'openvino', 'onnxruntime'],
        amp=True, memory=False, threads=1)
    assert [m['name'] for m in res['models']] == [
        'tiny', 'tiny:openvino', 'tiny:onnxruntime']
    s = res['settings']
    assert s['amp'] == 'bfloat16'
    # bf16, or f32 where the CPU has no bfloat16 instructions.
    assert s['openvino_precision'] in ('bf16', 'f32')
    note = bm.format_table(res).splitlines()[-1]
    assert 'amp bfloat16' in note and \
        f"OpenVINO {s['openvino']} in {s['openvino_precision']}" in note


def test_describe_run_names_the_pytorch_rows_when_not_first():
    settings = dict(
        device='cpu', batch=8, size=224, threads=2, amp='bfloat16',
        channels_last=True, compile=False, torch='2.x', openvino='2026.4.1',
        openvino_precision='bf16', onnxruntime=None)
    first = bm.describe_run(dict(settings, backends=['pytorch', 'openvino']))
    assert first == ('device cpu, batch 8, 224x224, 2 threads, amp '
                     'bfloat16, channels_last True, compile False, torch '
                     '2.x; rows NAME:openvino: OpenVINO 2026.4.1 in bf16 '
                     '(graphs exported by torch 2.x)')
    later = bm.describe_run(dict(settings, backends=['openvino', 'pytorch']))
    assert later == ('OpenVINO 2026.4.1 in bf16 (graphs exported by torch '
                     '2.x), device cpu, batch 8, 224x224, 2 threads; rows '
                     'NAME:pytorch: amp bfloat16, channels_last True, '
                     'compile False, torch 2.x')


def test_tool_verifies_in_openvino(tmp_path, capsys):
    out = str(tmp_path / 'tiny.onnx')
    load_tool().main([str(TINY_CLS), '--output-file', out, '--shape', '32',
                      '--verify', '--runtime', 'openvino'])
    assert 'verified in OpenVINO on inputs (1, 3, 32, 32), ' \
        '(2, 3, 32, 32): max' in capsys.readouterr().out
