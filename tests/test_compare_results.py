# Copyright (c) mmelastic contributors. All rights reserved.
"""tools/analysis/compare_results.py on hand-made result dumps."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _data_fixtures as fixtures  # noqa: E402

REPO_ROOT = fixtures.REPO_ROOT
compare_results = fixtures.load_tool('tools/analysis/compare_results.py')

# Two classes. Images: A and B small only (subset S), C large only (L),
# D without objects. gt_size_label = [small, medium, large] class lists.
IMAGES = {
    'A': [[0], [], []],
    'B': [[1], [], []],
    'C': [[], [], [0]],
    'D': [[], [], []],
}
BASELINE_SCORES = {
    'A': [0.9, 0.1],  # {0}: right
    'B': [0.1, 0.1],  # {}: misses class 1
    'C': [0.8, 0.7],  # {0, 1}: a false class 1
    'D': [0.1, 0.1],  # {}
}
ELASTIC_SCORES = {
    'A': [0.9, 0.1],  # {0}
    'B': [0.1, 0.9],  # {1}
    'C': [0.8, 0.2],  # {0}
    'D': [0.1, 0.1],  # {}
}


def make_dump(path, scores, order):
    """A list of data-sample dicts as mmengine's DumpResults writes."""
    samples = []
    for index, name in enumerate(order):
        sizes = IMAGES[name]
        samples.append(
            dict(
                sample_idx=index,
                img_id=name,
                img_path=f'val/{name}.png',
                gt_size_label=sizes,
                gt_label=torch.tensor(
                    sorted(set().union(*map(set, sizes))), dtype=torch.long),
                pred_score=torch.tensor(scores[name]),
            ))
    with open(path, 'wb') as f:
        pickle.dump(samples, f)
    return str(path)


@pytest.fixture
def dumps(tmp_path):
    elastic = make_dump(tmp_path / 'elastic.pkl', ELASTIC_SCORES, 'ABCD')
    # another order: the tool matches the samples by img_id
    baseline = make_dump(tmp_path / 'baseline.pkl', BASELINE_SCORES, 'DCBA')
    return elastic, baseline


def test_table_by_hand(dumps, capsys, tmp_path):
    out = tmp_path / 'table.json'
    table = compare_results.main([*dumps, '--json', str(out)])
    # S (A, B). baseline: class 0 F 100, class 1 F 0 -> CF1 50;
    #   tp 1, fn 1 -> OP 100, OR 50, OF1 66.67.  elastic: all right -> 100.
    s_row = table['S']
    assert s_row['num_images'] == 2
    assert s_row['CF1']['baseline'] == pytest.approx(50)
    assert s_row['CF1']['elastic'] == pytest.approx(100)
    assert s_row['CF1']['gain'] == pytest.approx(100)  # (100 - 50) / 50
    assert s_row['OF1']['baseline'] == pytest.approx(200 / 3)
    assert s_row['OF1']['gain'] == pytest.approx(50)  # (100 - 66.7) / 66.7
    # L (C). baseline: class 0 F 100, class 1 false positive (0) -> CF1 50,
    #   tp 1, fp 1 -> OF1 66.67. elastic: class 1 has no gt -> CF1 50 too,
    #   OF1 100.
    l_row = table['L']
    assert l_row['CF1']['gain'] == pytest.approx(0)
    assert l_row['OF1']['gain'] == pytest.approx(50)
    # all four images (D is in no subset). baseline: class 0 tp 2 -> 100,
    #   class 1 tp 0 -> 0 -> CF1 50; tp 2, fp 1, fn 1 -> OF1 66.67.
    assert table['all']['num_images'] == 4
    assert table['all']['CF1']['baseline'] == pytest.approx(50)
    assert table['all']['CF1']['gain'] == pytest.approx(100)
    assert table['all']['OF1']['gain'] == pytest.approx(50)
    # subsets without images have no figures and no gain
    assert table['M+S']['num_images'] == 0
    assert table['M+S']['CF1']['gain'] is None

    printed = capsys.readouterr().out
    lines = printed.splitlines()
    s_line = next(line for line in lines if line.startswith('S '))
    assert s_line.split() == [
        'S', '2', '50.00', '100.00', '+100.00', '66.67', '100.00', '+50.00'
    ]
    m_line = next(line for line in lines if line.startswith('M '))
    assert m_line.split()[1:] == ['0'] + ['n/a'] * 6
    # Table 4's row order, then all images
    rows = [line.split()[0] for line in lines[3:]]
    assert rows == ['S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S', 'all']

    written = json.loads(out.read_text())  # valid JSON: NaN became null
    assert written['M']['CF1']['elastic'] is None
    assert written['S']['OF1']['gain'] == pytest.approx(50)


def test_class_average_present_gives_the_same_gains(dumps):
    table = compare_results.compare(
        compare_results.load_dump(dumps[0]),
        compare_results.load_dump(dumps[1]),
        class_average='present')
    # L: only class 0 has ground truth -> baseline CF1 100, elastic 100
    assert table['L']['CF1']['baseline'] == pytest.approx(100)
    assert table['L']['CF1']['gain'] == pytest.approx(0)
    assert table['S']['CF1']['gain'] == pytest.approx(100)


def test_bad_dumps(dumps, tmp_path):
    with pytest.raises(FileNotFoundError, match='tools/test.py'):
        compare_results.load_dump(str(tmp_path / 'none.pkl'))
    no_sizes = tmp_path / 'no_sizes.pkl'
    with open(no_sizes, 'wb') as f:
        pickle.dump([dict(pred_score=torch.zeros(2), gt_label=[0])], f)
    with pytest.raises(KeyError, match="meta_keys=.*'gt_size_label'"):
        compare_results.load_dump(str(no_sizes))
    fewer = make_dump(tmp_path / 'fewer.pkl', BASELINE_SCORES, 'ABC')
    with pytest.raises(ValueError, match='different images'):
        compare_results.compare(
            compare_results.load_dump(dumps[0]),
            compare_results.load_dump(fewer))


@pytest.mark.slow  # a fresh interpreter imports mmelastic (and mmseg)
def test_command_line(dumps):
    proc = subprocess.run([
        sys.executable, 'tools/analysis/compare_results.py', *dumps, '--json'
    ],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    table = json.loads(text[text.index('{'):])
    assert table['all']['OF1']['gain'] == pytest.approx(50)
