# Copyright (c) mmelastic contributors. All rights reserved.
"""The README's main job end to end, at smoke-test size."""
import json
import os.path as osp
import subprocess
import sys

from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_demo_smoke(tmp_path):
    work, data = tmp_path / 'work', tmp_path / 'data'
    out = subprocess.run(
        [sys.executable, 'tools/demo.py', '--work-dir', str(work),
         '--data-root', str(data), '--num-train', '48', '--num-val', '24',
         '--seeds', '0', '--max-iters', '1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert '| ResNeXt (baseline) |' in out.stdout
    assert '| ResNeXt+Elastic |' in out.stdout
    assert f'Outputs in {work}' in out.stdout
    summary = json.loads((work / 'summary.json').read_text())
    base, elastic = summary['models']
    # Equal-FLOPs twins: within 5% in params and FLOPs.
    assert abs(elastic['flops'] / base['flops'] - 1) < 0.05
    assert abs(elastic['params'] / base['params'] - 1) < 0.05
    for model in (base, elastic):
        for key in ('mAP', 'CF1', 'OF1', 'L+M+S/OF1', 'recall_small'):
            assert key in model['metrics']
    image = Image.open(work / 'demo_results.png')
    assert image.size[0] > 100 and len(set(image.getdata())) > 10
    assert (work / 'resnext_tiny_elastic_coco' / 'seed0' /
            'predictions.pkl').exists()
    # The scale-policy report of the Elastic model (17 blocks would be the
    # full ResNeXt50+Elastic; the demo model has its own count).
    policy = work / 'scale_policy'
    for name in ('index.html', 'scores.csv', 'scores.json',
                 'tsne_density.png'):
        assert (policy / name).stat().st_size > 0, name
    assert summary['scale_policy']['html'] == 'scale_policy/index.html'
    # The data was built as asked.
    meta = json.loads((data / 'meta.json').read_text())
    assert meta['sets']['coco']['train']['images'] == 48
