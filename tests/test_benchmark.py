# Copyright (c) mmelastic contributors. All rights reserved.
"""tools/analysis/benchmark.py and mmelastic.analysis.benchmark: the ABBA
schedule, model resolution, clear errors and one tiny end-to-end run (two
CPU-sized classifiers derived from tests/data/configs/tiny_cls.py)."""
import importlib.util
import json
import os.path as osp
import re
from pathlib import Path

import pytest
import torch

from mmelastic.analysis import benchmark as bm

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / 'tools' / 'analysis' / 'benchmark.py'


def load_tool():
    spec = importlib.util.spec_from_file_location('mmelastic_tool_benchmark',
                                                  TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_configs(folder):
    base = REPO_ROOT / 'tests' / 'data' / 'configs' / 'tiny_cls.py'
    folder = Path(folder)
    plain = folder / 'tiny_plain.py'
    elastic = folder / 'tiny_elastic.py'
    plain.write_text(f"_base_ = ['{base}']\n"
                     "model = dict(backbone=dict(arch='resnext50'))\n")
    elastic.write_text(f"_base_ = ['{base}']\n")
    return [str(plain), str(elastic)]


def test_interleaved_schedule_alternates():
    assert bm.interleaved_schedule(2, 4) == [[0, 1], [1, 0], [0, 1], [1, 0]]
    sched = bm.interleaved_schedule(3, 5)
    assert len(sched) == 5
    for r, order in enumerate(sched):
        assert order == ([0, 1, 2] if r % 2 == 0 else [2, 1, 0])
    assert bm.interleaved_schedule(1, 3) == [[0], [0], [0]]
    assert bm.interleaved_schedule(2, 0) == []


def test_summarize():
    s = bm.summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s == dict(median=3.0, q1=2.0, q3=4.0, min=1.0, max=5.0)
    assert bm.summarize([7.0]) == dict(
        median=7.0, q1=7.0, q3=7.0, min=7.0, max=7.0)


def test_resolve_models(tmp_path):
    models = bm.resolve_models(names=['resnext50', 'resnext50_elastic'])
    assert [n for n, _ in models] == ['resnext50', 'resnext50_elastic']
    for name, path in models:
        assert osp.isfile(path) and path.endswith(f'imagenet/{name}.py')
    assert 'dla60x_elastic' in bm.available_models()
    with pytest.raises(bm.BenchmarkError, match="unknown model 'nope'.*"
                       'resnext50_elastic'):
        bm.resolve_models(names=['resnext50', 'nope'])
    with pytest.raises(bm.BenchmarkError, match='does not exist'):
        bm.resolve_models(configs=[str(tmp_path / 'missing.py')])
    with pytest.raises(bm.BenchmarkError, match='--models'):
        bm.resolve_models()


def test_unknown_model_is_a_clear_cli_error(capsys):
    tool = load_tool()
    with pytest.raises(SystemExit) as exc:
        tool.main(['--models', 'resnext50', 'resnext5O'])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnext5O'" in err
    assert 'resnext50_elastic' in err  # lists the known names


def test_cuda_without_cuda_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(bm.BenchmarkError, match='CUDA is not available'):
        bm.check_device('cuda')
    with pytest.raises(bm.BenchmarkError, match='cpu or cuda'):
        bm.check_device('tpu')
    configs = write_tiny_configs(tmp_path)
    tool = load_tool()
    assert tool.main(configs + ['--device', 'cuda', '--no-memory']) == 2
    err = capsys.readouterr().err
    assert 'CUDA is not available' in err and 'use --device cpu' in err
    assert 'M params' not in err  # failed before building anything


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, run_cmd):
    """One CLI run of two tiny models, with memory probes and --json."""
    tmp = tmp_path_factory.mktemp('bench')
    configs = write_tiny_configs(tmp)
    out = tmp / 'bench.json'
    proc = run_cmd([
        'python', TOOL, *configs, '--size', '64', '--batch', '2', '--reps',
        '3', '--warmup', '1', '--mode', 'both', '--threads', '1', '--json',
        out, '--plot', tmp / 'figures' / 'bench.png'
    ], timeout=300)
    return proc.stdout, json.loads(out.read_text())


def png_size(path):
    """(width, height) of a PNG file, from its IHDR chunk."""
    data = Path(path).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24],
                                                              'big')


def fake_result(memory=True):
    """A hand-made run_benchmark result of two models."""
    def model(name, scale):
        m = dict(name=name, config=f'{name}.py', params=10, fast_path=True)
        for mode, tput in (('infer', 10.0), ('train', 4.0)):
            t = dict(median=tput * scale, q1=tput * scale - 1,
                     q3=tput * scale + 1, min=tput * scale - 2,
                     max=tput * scale + 2)
            m[mode] = dict(times_s=[], throughput=t, ratio=scale)
        if memory:
            m['memory'] = dict(
                infer=dict(peak_mb=1000 * scale, delta_mb=1, how='VmHWM'),
                train=dict(peak_mb=2000 * scale, delta_mb=1, how='VmHWM'))
        return m

    settings = dict(device='cpu', batch=8, size=224, amp=False,
                    channels_last=False, compile=False, freeze=False,
                    threads=2, warmup=2, reps=5, modes=['infer', 'train'],
                    torch='x', cuda_device=None, straightforward=False)
    return dict(settings=settings, schedule=[],
                models=[model('base', 1.0), model('elastic', 0.5)])


def test_plot_rows_and_figure(tmp_path):
    rows = bm.plot_rows(fake_result())
    assert rows['infer'] == [('base', 10.0, 9.0, 11.0, 8.0, 12.0, 1.0),
                             ('elastic', 5.0, 4.0, 6.0, 3.0, 7.0, 0.5)]
    assert rows['train'][1] == ('elastic', 2.0, 1.0, 3.0, 0.0, 4.0, 0.5)
    assert rows['memory'] == [('base', dict(infer=1000.0, train=2000.0)),
                              ('elastic', dict(infer=500.0, train=1000.0))]
    # One 5.2-inch panel per mode plus one for memory, at 120 dpi.
    path = bm.plot_result(fake_result(), str(tmp_path / 'a' / 'bench.png'))
    assert png_size(path) == (round(3 * 5.2 * 120), round(2.1 * 120))
    no_memory = fake_result(memory=False)
    assert 'memory' not in bm.plot_rows(no_memory)
    path = bm.plot_result(no_memory, str(tmp_path / 'b.png'))
    assert png_size(path) == (round(2 * 5.2 * 120), round(2.1 * 120))
    with pytest.raises(bm.BenchmarkError, match=r'\.png, \.pdf, \.svg'):
        bm.plot_result(no_memory, str(tmp_path / 'c.jpeg'))
    assert not (tmp_path / 'c.jpeg').exists()


def test_plot_of_the_step_split(tmp_path):
    """With --conv-time the figure gets a panel splitting each step into
    its convolutions and the rest; a negative rest (noise) still plots."""
    result = fake_result()
    for i, m in enumerate(result['models']):
        for mode, (conv, rest) in (('infer', (80.0, 20.0 * (i + 1))),
                                   ('train', (300.0, -5.0 * i))):
            m[mode]['conv_time'] = dict(total_ms=conv, rest_ms=rest)
    rows = bm.plot_rows(result)
    assert rows['conv_time'] == [
        ('base', dict(infer=(80.0, 20.0), train=(300.0, 0.0))),
        ('elastic', dict(infer=(80.0, 40.0), train=(300.0, -5.0)))]
    path = bm.plot_result(result, str(tmp_path / 'split.png'))
    assert png_size(path) == (round(4 * 5.2 * 120), round(2.1 * 120))
    del result['models'][1]['train']['conv_time']
    assert 'conv_time' not in bm.plot_rows(result)


def test_plot_of_the_profile_split(tmp_path):
    """With --profile the figure gets a panel splitting each profiled step
    into the ops named *conv* (any case, any runtime's names) and the
    rest."""
    result = fake_result()
    profiles = [
        {'aten::mkldnn_convolution': 50.0, 'aten::relu_': 5.0,
         'aten::convolution_backward': 100.0, 'aten::add_': 2.5},
        {'Convolution': 40.0, 'GroupConvolution': 10.0, 'Interpolate': 7.0,
         'Subgraph': 3.0},
    ]
    for m, profile in zip(result['models'], profiles):
        for mode in ('infer', 'train'):
            m[mode]['profile_ms'] = profile
    rows = bm.plot_rows(result)
    assert rows['profile'] == [
        ('base', dict(infer=(150.0, 7.5), train=(150.0, 7.5))),
        ('elastic', dict(infer=(50.0, 10.0), train=(50.0, 10.0)))]
    assert 'conv_time' not in rows
    path = bm.plot_result(result, str(tmp_path / 'profile.png'))
    assert png_size(path) == (round(4 * 5.2 * 120), round(2.1 * 120))
    table = bm.format_profile(result)
    assert table.count('ops named *conv*') == 2  # one table per mode
    del result['models'][0]['infer']['profile_ms']
    assert 'profile' not in bm.plot_rows(result)


def test_plot_suffix_is_checked_before_running(tmp_path, capsys):
    tool = load_tool()
    with pytest.raises(SystemExit) as exc:
        tool.main(write_tiny_configs(tmp_path) + ['--plot', 'bench.txt'])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert '--plot bench.txt: use a file ending in .png, .pdf, .svg' in err
    assert 'M params' not in err


def test_tiny_run_json_schema(tiny_run):
    _, result = tiny_run
    s = result['settings']
    assert (s['device'], s['batch'], s['size'], s['reps'], s['warmup'],
            s['threads'], s['modes']) == ('cpu', 2, 64, 3, 1, 1,
                                          ['infer', 'train'])
    assert result['schedule'] == [[0, 1], [1, 0], [0, 1]]
    assert [m['name'] for m in result['models']] == [
        'tiny_plain', 'tiny_elastic'
    ]
    for m in result['models']:
        assert m['params'] > 0
        for mode in ('infer', 'train'):
            r = m[mode]
            assert len(r['times_s']) == 3 and all(t > 0 for t in r['times_s'])
            t = r['throughput']
            # The summary is of batch / time of the recorded reps.
            assert t == pytest.approx(bm.summarize([2 / x
                                                    for x in r['times_s']]))
            assert t['min'] <= t['q1'] <= t['median'] <= t['q3'] <= t['max']
            mem = m['memory'][mode]
            assert mem['peak_mb'] > 0 and 0 <= mem['delta_mb'] <= \
                mem['peak_mb']


def test_tiny_run_ratios_are_from_the_same_numbers(tiny_run):
    _, result = tiny_run
    for mode in ('infer', 'train'):
        ref = result['models'][0][mode]['throughput']['median']
        for m in result['models']:
            assert m[mode]['ratio'] == pytest.approx(
                m[mode]['throughput']['median'] / ref, rel=1e-12)
            # Per round: the first model's time over this one's, paired by
            # round (not the ratio of sorted lists).
            paired = [t0 / t for t0, t in zip(
                result['models'][0][mode]['times_s'], m[mode]['times_s'])]
            assert m[mode]['round_ratios'] == pytest.approx(
                bm.summarize(paired))
        first = result['models'][0][mode]
        assert first['ratio'] == 1.0
        assert first['round_ratios']['min'] == first['round_ratios'][
            'max'] == 1.0


def test_tiny_run_table_and_progress(tiny_run):
    stdout, result = tiny_run
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines)
                  if line.startswith('mode'))
    assert lines[header].split() == [
        'mode', 'model', 'img/s', '(median)', 'IQR', 'min-max', 'vs',
        'tiny_plain', 'per', 'round', '(IQR)', 'peak', 'MB', 'step', '+MB'
    ]
    rows = [line.split() for line in lines[header + 1:header + 5]]
    for row, (mode, m) in zip(rows, [(mode, m)
                                     for mode in ('infer', 'train')
                                     for m in result['models']]):
        t = m[mode]['throughput']
        assert row[:3] == [mode, m['name'], f"{t['median']:.2f}"]
        assert row[5] == f"{m[mode]['ratio']:.3f}x"
        q = m[mode]['round_ratios']
        assert row[6] == f"{q['q1']:.3f}-{q['q3']:.3f}"
        assert row[7] == f"{m['memory'][mode]['peak_mb']:.0f}"
    assert 'interleaved (ABBA)' in stdout
    figure = [line for line in lines if line.startswith('wrote ')][-1]
    assert figure.endswith(osp.join('figures', 'bench.png'))
    assert png_size(figure[len('wrote '):])[0] == round(3 * 5.2 * 120)
    # One progress line per round; the order alternates.
    rounds = re.findall(r'\[train\] round \d/3 \((\w+) [\d.]+ img/s, (\w+)',
                        stdout)
    assert rounds == [('tiny_plain', 'tiny_elastic'),
                      ('tiny_elastic', 'tiny_plain'),
                      ('tiny_plain', 'tiny_elastic')]


def test_runner_fast_path_switch(tmp_path, monkeypatch):
    """``fast_path=False`` really runs the straightforward path."""
    from mmelastic.models.utils import fast_ops
    _, elastic = write_tiny_configs(tmp_path)

    def forbidden(x):
        raise AssertionError('fast kernel called')

    monkeypatch.setattr(fast_ops, 'bilinear_up_2x', forbidden)
    monkeypatch.setattr(fast_ops, 'avg_pool_2x', forbidden)
    straightforward = bm.ModelRunner('s', elastic, 'cpu', 2, 32,
                                     fast_path=False)
    for mode in bm.MODES:
        straightforward.set_mode(mode)
        straightforward.timed_step(mode)
    fast = bm.ModelRunner('f', elastic, 'cpu', 2, 32)
    with pytest.raises(AssertionError, match='fast kernel called'):
        fast.timed_step('infer')


@pytest.mark.parametrize('amp_dtype', ['bfloat16', 'float16'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_amp_training_step_fast_and_straightforward(tmp_path, channels_last,
                                                    amp_dtype):
    """--amp: a whole Elastic classifier trains under autocast (bfloat16 on
    CPU; float16, what it uses on CUDA, runs on a CPU too) on the fast path
    as on the straightforward one, every parameter getting a float32
    gradient, with a loss as close to the float32 loss as the
    straightforward path's (this tiny model's last batch norms see two
    values per channel, so half precision moves its loss by several
    percent)."""
    _, elastic = write_tiny_configs(tmp_path)
    losses = {}
    for amp, fast in ((False, False), (True, True), (True, False)):
        runner = bm.ModelRunner('amp', elastic, 'cpu', 2, 32,
                                amp=amp and amp_dtype,
                                channels_last=channels_last, fast_path=fast)
        assert runner.amp_dtype == (getattr(torch, amp_dtype) if amp
                                    else None)
        # float16 trains with loss scaling (GradScaler), bfloat16 without.
        assert (runner.scaler is not None) == (amp and amp_dtype == 'float16')
        if runner.scaler is not None:
            # At the default initial scale (2**16) this model's first
            # float16 gradients overflow and GradScaler skips the step, as
            # it should; at scale 1 the step runs and can be compared.
            runner.scaler = torch.amp.GradScaler('cpu', init_scale=1.0)
        runner.set_mode('train')
        losses[amp, fast] = runner.step('train').item()
        grads = [p.grad for p in runner.model.parameters()]
        assert all(g is not None and g.dtype == torch.float32 and
                   torch.isfinite(g).all() for g in grads)
    exact = losses[False, False]
    assert abs(losses[True, True] - exact) <= \
        3 * abs(losses[True, False] - exact) + 0.05 * exact


def test_autocast_dtype():
    assert bm.autocast_dtype(False, 'cpu') is None
    assert bm.autocast_dtype(True, 'cpu') == torch.bfloat16
    assert bm.autocast_dtype(True, torch.device('cuda')) == torch.float16
    assert bm.autocast_dtype('bfloat16', 'cuda') == torch.bfloat16
    assert bm.autocast_dtype('float16', 'cpu') == torch.float16
    with pytest.raises(bm.BenchmarkError, match='must be one of float16'):
        bm.autocast_dtype('float32', 'cpu')


def test_amp_dtype_option(tmp_path, capsys):
    """--amp-dtype picks the autocast dtype (and implies --amp); the table
    and the JSON name it."""
    configs = write_tiny_configs(tmp_path)
    tool = load_tool()
    out = tmp_path / 'bench.json'
    common = [configs[1], '--size', '32', '--batch', '2', '--reps', '1',
              '--warmup', '0', '--mode', 'train', '--no-memory', '--threads',
              '1', '--quiet', '--json', str(out)]
    for extra, name in (([], False), (['--amp'], 'bfloat16'),
                        (['--amp-dtype', 'float16'], 'float16')):
        assert tool.main(common + extra) == 0
        assert json.loads(out.read_text())['settings']['amp'] == name
        assert f'amp {name},' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main(common + ['--amp-dtype', 'float32'])
    assert 'invalid choice' in capsys.readouterr().err


def test_straightforward_rows(tmp_path, run_cmd):
    configs = write_tiny_configs(tmp_path)
    out = tmp_path / 'bench.json'
    proc = run_cmd([
        'python', TOOL, configs[1], '--straightforward', '--size', '32',
        '--batch', '1', '--reps', '2', '--warmup', '0', '--mode', 'infer',
        '--no-memory', '--threads', '1', '--json', out
    ], timeout=300)
    result = json.loads(out.read_text())
    assert result['settings']['straightforward'] is True
    assert [(m['name'], m['fast_path']) for m in result['models']] == [
        ('tiny_elastic', True), ('tiny_elastic:straightforward', False)
    ]
    assert 'tiny_elastic:straightforward' in proc.stdout


def test_freeze_needs_compiled_inference(tmp_path, capsys):
    configs = write_tiny_configs(tmp_path)
    models = [('tiny_plain', configs[0])]
    with pytest.raises(bm.BenchmarkError, match='add --compile'):
        bm.run_benchmark(models, freeze=True, modes=['infer'])
    with pytest.raises(bm.BenchmarkError, match='add --mode infer'):
        bm.run_benchmark(models, compile=True, freeze=True)
    tool = load_tool()
    assert tool.main(configs + ['--compile', '--freeze', '--no-memory']) == 2
    assert 'add --mode infer' in capsys.readouterr().err


def test_freeze_run(tmp_path, run_cmd):
    """--compile --freeze compiles with Inductor's freezing (an option
    name torch accepts) and says so in the table."""
    configs = write_tiny_configs(tmp_path)
    out = tmp_path / 'bench.json'
    proc = run_cmd([
        'python', TOOL, configs[0], '--compile', '--freeze', '--mode',
        'infer', '--size', '32', '--batch', '1', '--reps', '1', '--warmup',
        '0', '--no-memory', '--threads', '1', '--json', out
    ], timeout=600)
    result = json.loads(out.read_text())
    assert result['settings']['freeze'] is True
    assert 'compile True (freezing)' in proc.stdout


def test_profile_run(tmp_path, run_cmd):
    """--profile: self time per op of every model, in the JSON and as a
    side-by-side table whose total row is the sum over the ops."""
    configs = write_tiny_configs(tmp_path)
    out = tmp_path / 'bench.json'
    proc = run_cmd([
        'python', TOOL, *configs, '--size', '32', '--batch', '2', '--reps',
        '1', '--warmup', '0', '--mode', 'train', '--threads', '1',
        '--no-memory', '--profile', '2', '--json', out
    ], timeout=300)
    result = json.loads(out.read_text())
    assert result['settings']['profile_steps'] == 2
    lines = proc.stdout.splitlines()
    header = lines.index(next(line for line in lines
                              if line.startswith('train: ms per step')))
    assert lines[header].split()[-2:] == ['tiny_plain', 'tiny_elastic']
    profiles = [m['train']['profile_ms'] for m in result['models']]
    for profile in profiles:
        assert all(ms > 0 for ms in profile.values())
        assert list(profile.values()) == sorted(profile.values(),
                                                reverse=True)
        # A training step runs convolutions forward and backward.
        assert 'aten::convolution_backward' in profile
    total = next(line for line in lines[header:]
                 if line.startswith('all '))
    n_ops = len(set(profiles[0]) | set(profiles[1]))
    assert total.split() == ['all', str(n_ops), 'ops'] + [
        f'{sum(p.values()):.1f}' for p in profiles]
    assert '[train] profiled 2 steps per model' in proc.stdout
    with pytest.raises(bm.BenchmarkError, match='--profile >= 0'):
        bm.run_benchmark([], profile=-1)


def test_conv_time_run(tmp_path, run_cmd):
    """--conv-time: every model's convolutions of one step, timed alone in
    interleaved rounds next to a whole step, in the JSON and as a table
    whose rest row is the step minus the convolutions."""
    configs = write_tiny_configs(tmp_path)
    out = tmp_path / 'bench.json'
    proc = run_cmd([
        'python', TOOL, *configs, '--size', '32', '--batch', '2', '--reps',
        '2', '--warmup', '0', '--mode', 'both', '--threads', '1',
        '--no-memory', '--conv-time', '--json', out
    ], timeout=300)
    result = json.loads(out.read_text())
    assert result['settings']['conv_time'] is True
    lines = proc.stdout.splitlines()
    for mode in ('infer', 'train'):
        header = lines.index(next(
            line for line in lines
            if line.startswith(f'{mode}: convolutions timed alone')))
        assert lines[header].split()[-2:] == ['tiny_plain', 'tiny_elastic']
        rows = {}
        for line in lines[header + 1:header + 10]:
            label, *values = re.split(r'\s{2,}', line.strip())
            rows[label] = values
        for i, model in enumerate(result['models']):
            conv = model[mode]['conv_time']
            # Medians of two rounds: means of their values.
            rounds = conv['rounds_ms']
            assert len(rounds) == 2
            assert conv['step_ms'] == pytest.approx(
                sum(r['step'] for r in rounds) / 2)
            assert conv['total_ms'] == pytest.approx(
                sum(r['convolutions'] for r in rounds) / 2)
            assert conv['rest_ms'] == pytest.approx(
                conv['step_ms'] - conv['total_ms'])
            assert conv['total_ms'] > 0 and conv['top_calls']
            backward = conv['calls']['backward']
            assert (backward > 0) == (mode == 'train')
            assert rows['convolution calls (forward + backward)'][i] == \
                f'{conv["calls"]["forward"]} + {backward}'
            assert rows['convolutions, all'][i] == f'{conv["total_ms"]:.1f}'
            assert rows['rest of the step (step - convolutions)'][i] == \
                f'{conv["rest_ms"]:.1f}'
            assert rows['convolutions, share of the step'][i] == \
                f'{100 * conv["total_ms"] / conv["step_ms"]:.0f}%'
        ref = result['models'][0][mode]['conv_time']
        ela = result['models'][1][mode]['conv_time']
        assert rows['convolutions, ratio to tiny_plain'] == [
            '1.00x', f'{ela["total_ms"] / ref["total_ms"]:.2f}x']
        assert rows['rest, ratio to tiny_plain'] == [
            '1.00x', f'{ela["rest_ms"] / ref["rest_ms"]:.2f}x']
        assert all(len(values) == 2 for values in rows.values())
        assert f'[{mode}] convolutions timed alone, round 2/2' in proc.stdout
    with pytest.raises(bm.BenchmarkError, match='Drop --compile'):
        bm.run_benchmark([], compile=True, conv_time=True)
