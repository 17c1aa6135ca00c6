# Copyright (c) mmelastic contributors. All rights reserved.
"""tools/test.py on an exported graph (mmelastic.deployment.evaluation):
the config's pipeline, head or segmentor post-processing and evaluator run
around an ONNX Runtime or OpenVINO model, and give what the checkpoint
gives in PyTorch; graphs that do not fit the config or the batches are
refused with one clear error."""
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmelastic.deployment import evaluation as ev
from mmelastic.deployment import onnx as dep

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / 'tests'))
from _data_fixtures import load_tool  # noqa: E402

CONFIGS = REPO_ROOT / 'tests' / 'data' / 'configs'


def build(config, seed=0):
    """The config's model with seeded weights and non-trivial BN
    statistics, in eval mode."""
    from mmengine.config import Config

    from mmelastic.analysis import benchmark as bm
    model = bm.build_model(Config.fromfile(str(config)))
    torch.manual_seed(seed)
    model.init_weights()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


def checkpoint_and_graph(config, folder, *export_args):
    """Save a checkpoint of ``config``'s model and export it with
    tools/deployment/pytorch2onnx.py; return both paths."""
    from mmengine.runner import save_checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, graph = folder / 'model.pth', folder / 'model.onnx'
    save_checkpoint(build(config).state_dict(), str(ckpt))
    assert load_tool('tools/deployment/pytorch2onnx.py').main([
        str(config), '--checkpoint',
        str(ckpt), '--output-file',
        str(graph), '--shape', '32', *export_args
    ]) == str(graph)
    return ckpt, graph


def metric(out, name):
    """The value of ``name`` in a test log."""
    found = re.findall(rf'{re.escape(name)}: ([\d.]+)', out)
    assert found, f'{name} not in the log:\n{out[-2000:]}'
    return float(found[-1])


# --- tools/test.py, classifier ----------------------------------------------


@pytest.fixture(scope='module')
def cls_model(tmp_path_factory):
    return checkpoint_and_graph(CONFIGS / 'tiny_cls.py',
                                tmp_path_factory.mktemp('cls_graph'))


def run_test_tool(run_cmd, config, checkpoint, work_dir, options, *extra):
    return run_cmd([
        'python', 'tools/test.py',
        str(config),
        str(checkpoint), '--work-dir',
        str(work_dir), *extra, '--cfg-options', *options
    ]).stdout


@pytest.mark.parametrize('runtime', dep.RUNTIMES)
def test_classifier_graph_gives_the_checkpoints_results(
        runtime, cls_model, tmp_path, cls_data_root, data_options, run_cmd):
    ckpt, graph = cls_model
    config = CONFIGS / 'tiny_cls.py'
    options = data_options(cls_data_root)
    results = {}
    for name, path, extra in (('pytorch', ckpt, []),
                              ('graph', graph, ['--runtime', runtime])):
        preds = tmp_path / f'{name}.pkl'
        out = run_test_tool(run_cmd, config, path, tmp_path / name, options,
                            '--out', str(preds), *extra)
        with open(preds, 'rb') as f:
            results[name] = (out, pickle.load(f))
    out, graph_preds = results['graph']
    torch_out, torch_preds = results['pytorch']
    runtime_name = dep.RUNTIME_NAMES[runtime]
    # 2 classes x 4 val images, timed in the runtime.
    assert re.search(rf'{re.escape(runtime_name)} \(f32\): 8 images in '
                     r'[\d.]+ s \([\d.]+ img/s in the runtime\)', out)
    assert metric(out, 'accuracy/top1') == metric(torch_out,
                                                  'accuracy/top1')
    assert len(graph_preds) == len(torch_preds) == 8
    for got, expected in zip(graph_preds, torch_preds):
        assert got['img_path'] == expected['img_path']
        torch.testing.assert_close(
            got['pred_score'], expected['pred_score'], rtol=1e-5,
            atol=1e-5)
        assert got['pred_label'] == expected['pred_label']
    # The scores are not all alike (a graph that ignored its input would
    # give the same score to every image).
    scores = torch.stack([p['pred_score'] for p in torch_preds])
    assert (scores - scores.mean(0)).abs().max() > 1e-3


def test_classifier_graph_in_bf16(cls_model, tmp_path, cls_data_root,
                                  data_options, run_cmd):
    _, graph = cls_model
    out = run_test_tool(run_cmd, CONFIGS / 'tiny_cls.py', graph, tmp_path,
                        data_options(cls_data_root), '--runtime', 'openvino',
                        '--precision', 'bf16', '--threads', '1')
    # bf16 where the CPU has it, else OpenVINO's f32; the log says which.
    assert re.search(r'OpenVINO \((bf16|f32)\): 8 images in', out)
    assert 0 <= metric(out, 'accuracy/top1') <= 100


# --- tools/test.py, segmentor -----------------------------------------------


def test_segmentor_graph_gives_the_checkpoints_masks(tmp_path, seg_data_root,
                                                     data_options, run_cmd):
    from PIL import Image
    config = CONFIGS / 'tiny_seg.py'
    ckpt, graph = checkpoint_and_graph(config, tmp_path / 'graph')
    options = data_options(seg_data_root)
    outs, masks = {}, {}
    for name, path in (('pytorch', ckpt), ('graph', graph)):
        outs[name] = run_test_tool(run_cmd, config, path, tmp_path / name,
                                   options, '--out',
                                   str(tmp_path / f'{name}_masks'))
        masks[name] = {
            p.name: np.asarray(Image.open(p))
            for p in sorted((tmp_path / f'{name}_masks').glob('*.png'))
        }
    assert sorted(masks['graph']) == ['000.png', '001.png']
    assert sorted(masks['pytorch']) == sorted(masks['graph'])
    for name, mask in masks['pytorch'].items():
        np.testing.assert_array_equal(masks['graph'][name], mask)
    assert 'ONNX Runtime (f32): 2 images in' in outs['graph']
    assert metric(outs['graph'], 'mIoU') == metric(outs['pytorch'], 'mIoU')


def test_fixed_size_graph_refuses_other_sizes(tmp_path, seg_data_root,
                                              data_options, run_cmd):
    """A graph exported at 32x32 tested with 48x48 crops: one clear error
    naming both fixes."""
    config = CONFIGS / 'tiny_seg.py'
    _, graph = checkpoint_and_graph(config, tmp_path / 'graph')
    out = run_cmd([
        'python', 'tools/test.py',
        str(config),
        str(graph), '--work-dir',
        str(tmp_path), '--cfg-options', *data_options(seg_data_root),
        'model.data_preprocessor.test_cfg.size=(48,48)'
    ],
                  check=False).stdout
    assert 'the graph takes 32x32 inputs but the test pipeline gives ' \
        '48x48' in out
    assert 'pytorch2onnx.py --dynamic-size' in out


# --- route_predictions -------------------------------------------------------


class FakeRuntime:
    """Stands in for a runtime model: returns what it was given."""

    runtime, precision = 'onnxruntime', 'f32'

    def __init__(self, output, input_shape, result):
        self.output_name, self.input_shape = output, input_shape
        self.result = result

    def __call__(self, inputs):
        return self.result(inputs)


@pytest.mark.parametrize('output', ['scores', 'logits'])
def test_routed_classifier_predicts_what_pytorch_predicts(output, tmp_path):
    """Routed to the graph, a classifier with other weights (seed 1)
    predicts what the exported one (seed 0) does in PyTorch: the graph
    runs, not the routed model's layers."""
    model = build(CONFIGS / 'tiny_cls.py')
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.predict(x)
    path = str(tmp_path / 'm.onnx')
    dep.export_onnx(model, path, (1, 3, 32, 32), output=output)
    other = build(CONFIGS / 'tiny_cls.py', seed=1)
    with torch.no_grad():
        assert not torch.allclose(other.predict(x)[0].pred_score,
                                  expected[0].pred_score, atol=1e-4)
    routed = ev.route_predictions(other, dep.load_runtime(path,
                                                          'onnxruntime'))
    assert routed is other
    got = routed.predict(x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.pred_score, e.pred_score, rtol=1e-5,
                                   atol=1e-5)
        assert g.pred_label == e.pred_label


def test_route_predictions_checks_the_graphs_output():
    seg = build(CONFIGS / 'tiny_seg.py')
    with pytest.raises(dep.DeploymentError,
                       match="the graph returns 'scores', but a segmentor "
                       "config needs 'seg_logits'; export the graph from "
                       'this config'):
        ev.route_predictions(seg, FakeRuntime('scores', (None, 3, 32, 32),
                                              None))
    cls = build(CONFIGS / 'tiny_cls.py')
    with pytest.raises(dep.DeploymentError,
                       match="a classifier config needs 'scores' or "
                       "'logits'"):
        ev.route_predictions(cls, FakeRuntime('seg_logits', (None, 3, 32, 32),
                                              None))


def test_route_predictions_checks_the_batch_size():
    cls = build(CONFIGS / 'tiny_cls.py')
    fake = FakeRuntime('logits', (2, 3, 32, 32),
                       lambda x: np.zeros((x.shape[0], 2), np.float32))
    ev.route_predictions(cls, fake)
    assert len(cls.predict(torch.zeros(2, 3, 32, 32))) == 2
    with pytest.raises(dep.DeploymentError,
                       match='graph takes batches of 2, not 4; set '
                       'test_dataloader.batch_size=2 or export without '
                       '--static-batch'):
        cls.predict(torch.zeros(4, 3, 32, 32))


@pytest.mark.parametrize('head', [
    dict(type='LinearClsHead', num_classes=4, in_channels=8),
    dict(type='MultiLabelLinearClsHead', num_classes=4, in_channels=8),
    dict(type='MultiLabelLinearClsHead', num_classes=4, in_channels=8,
         thr=None, topk=2),
])
def test_scores_graph_predicts_what_the_head_predicts(head):
    """A graph exporting scores (softmax or sigmoid) gives the head's own
    scores and labels once they are turned back into logits."""
    from mmpretrain.registry import MODELS

    import mmelastic  # noqa: F401
    head = MODELS.build(head)
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    expected = head._get_predictions(logits, None)
    scores = torch.stack([p.pred_score for p in expected])
    got = head._get_predictions(ev.logits_from_scores(scores, head), None)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.pred_score, e.pred_score, rtol=1e-6,
                                   atol=1e-6)
        torch.testing.assert_close(g.pred_label, e.pred_label)


def test_scores_of_an_unknown_head_are_refused():
    with pytest.raises(dep.DeploymentError,
                       match='export the graph with --output logits'):
        ev.logits_from_scores(torch.rand(2, 3), torch.nn.Linear(3, 3))


# --- tools/test.py arguments ---------------------------------------------


@pytest.mark.parametrize('argv, message', [
    (['model.pth', '--runtime', 'openvino'],
     '--runtime: only for an exported .onnx graph, not a checkpoint'),
    (['model.pth', '--threads', '2', '--precision', 'f32'],
     '--precision, --threads: only for an exported .onnx graph'),
    (['model.onnx', '--precision', 'bf16'],
     '--precision bf16 needs --runtime openvino'),
])
def test_test_tool_rejects_runtime_options(argv, message, capsys):
    tool = load_tool('tools/test.py')
    with pytest.raises(SystemExit):
        tool.parse_args([str(CONFIGS / 'tiny_cls.py')] + argv)
    assert message in capsys.readouterr().err
