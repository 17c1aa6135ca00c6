# Copyright (c) mmelastic contributors. All rights reserved.
"""tools/train.py, tools/test.py, resume / load_from with torch's
``weights_only=True`` default, and tools/dist_train.sh on CPU."""
import importlib.util
import math
import os
import os.path as osp
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# A hook (written next to a derived config) that pauses after the first
# epoch's checkpoint when MMELASTIC_TEST_PAUSE=1, so the test can kill the
# run in epoch 2 without racing a fast CPU epoch. It sleeps only; the
# weights are the same with and without it.
PAUSE_HOOK = '''
import os
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PauseAfterFirstEpoch(Hook):
    priority = 'LOWEST'  # after CheckpointHook has written epoch_1.pth

    def after_train_epoch(self, runner):
        if runner.epoch == 0 and os.environ.get('MMELASTIC_TEST_PAUSE'):
            time.sleep(120)
'''


def load_tool(name):
    """Import tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f'mmelastic_tool_{name}', REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def state_dict_of(path):
    # weights_only=True is torch's default; mmelastic (imported by the
    # tools) allowlists what mmengine checkpoints need.
    import mmelastic  # noqa: F401
    return torch.load(path, map_location='cpu')['state_dict']


def assert_same_weights(path_a, path_b):
    a, b = state_dict_of(path_a), state_dict_of(path_b)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f'tensors differ between {path_a} and {path_b}: ' \
                          f'{different[:5]}'


# ---------------------------------------------------------------------------
# Argument handling (in-process, fast)
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def train_tool():
    return load_tool('train')


@pytest.fixture(scope='module')
def test_tool():
    return load_tool('test')


def _train_cfg(train_tool, argv):
    from mmengine.config import Config
    args = train_tool.parse_args(argv)
    return train_tool.merge_args(Config.fromfile(args.config), args)


def test_train_work_dir_and_resume_args(train_tool, config_path, tmp_path):
    cfg_file = config_path('tiny_cls.py')
    cfg = _train_cfg(train_tool, [cfg_file])
    assert cfg.work_dir == osp.join('./work_dirs', 'tiny_cls')
    assert not cfg.get('resume', False)

    cfg = _train_cfg(train_tool,
                     [cfg_file, '--work-dir', str(tmp_path), '--resume'])
    assert cfg.work_dir == str(tmp_path)
    assert cfg.resume is True and cfg.load_from is None  # bare = auto

    ckpt = tmp_path / 'epoch_3.pth'
    ckpt.write_bytes(b'')
    cfg = _train_cfg(train_tool, [cfg_file, '--resume', str(ckpt)])
    assert cfg.resume is True and cfg.load_from == str(ckpt)

    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        _train_cfg(train_tool, [cfg_file, '--resume', str(tmp_path / 'x')])


def test_train_library_defaults(train_tool, config_path):
    # mmpretrain configs get the dataloader defaults of mmpretrain's tool;
    # persistent_workers only where there are workers.
    cfg = _train_cfg(train_tool, [
        config_path('tiny_cls.py'), '--cfg-options',
        'val_dataloader.num_workers=2'
    ])
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True
    cfg = _train_cfg(train_tool, [
        config_path('tiny_cls.py'), '--no-persistent-workers',
        '--cfg-options', 'val_dataloader.num_workers=2'
    ])
    assert cfg.val_dataloader.persistent_workers is False

    # mmseg configs are left as they are.
    cfg = _train_cfg(train_tool, [config_path('tiny_seg.py')])
    assert cfg.default_scope == 'mmseg'
    assert 'collate_fn' not in cfg.train_dataloader
    assert cfg.work_dir == osp.join('./work_dirs', 'tiny_seg')


def test_train_amp_and_cfg_options(train_tool, config_path):
    cfg = _train_cfg(train_tool, [
        config_path('tiny_cls.py'), '--amp', '--cfg-options',
        'train_cfg.max_epochs=7'
    ])
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.train_cfg.max_epochs == 7
    with pytest.raises(ValueError, match='--amp needs'):
        _train_cfg(train_tool, [
            config_path('tiny_cls.py'), '--amp', '--cfg-options',
            'optim_wrapper.type=ApexOptimWrapper'
        ])


def test_train_amp_needs_an_accelerator(train_tool, config_path,
                                        monkeypatch):
    """--amp where mmengine's AmpOptimWrapper cannot run (pretend no
    accelerator, also on GPU machines): one error with the fix, before
    anything is built; without --amp the check passes."""
    import mmengine.device as device
    for name in ('is_cuda_available', 'is_npu_available', 'is_mlu_available',
                 'is_musa_available'):
        monkeypatch.setattr(device, name, lambda: False)
    built = []
    monkeypatch.setattr(train_tool, 'build_runner',
                        lambda cfg: built.append(cfg))
    with pytest.raises(RuntimeError, match='needs a GPU.*without --amp'):
        train_tool.main([config_path('tiny_cls.py'), '--amp'])
    assert not built
    cfg = _train_cfg(train_tool, [config_path('tiny_cls.py')])
    train_tool.check_amp_device(cfg)  # plain OptimWrapper: no error
    monkeypatch.setattr(device, 'is_cuda_available', lambda: True)
    train_tool.check_amp_device(
        _train_cfg(train_tool, [config_path('tiny_cls.py'), '--amp']))


def test_local_rank_spellings(train_tool, config_path):
    for flag in ('--local-rank', '--local_rank'):
        args = train_tool.parse_args([config_path('tiny_cls.py'), flag, '3'])
        assert args.local_rank == 3


def test_distributed_config_without_cuda(train_tool, config_path,
                                         monkeypatch):
    # Also on GPU machines: pretend CUDA is absent. 'mpi' exercises the
    # config changes without initialising a process group.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = _train_cfg(train_tool,
                     [config_path('tiny_cls.py'), '--launcher', 'mpi'])
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert cfg.model_wrapper_cfg.device_ids is None
    cfg = _train_cfg(train_tool, [config_path('tiny_cls.py')])
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'  # untouched when 'none'
    assert 'model_wrapper_cfg' not in cfg


@pytest.mark.parametrize('tool_name,method', [('train', 'train'),
                                              ('test', 'test')])
@pytest.mark.parametrize('fails', [False, True])
def test_tools_destroy_the_process_group(tool_name, method, fails,
                                         config_path, free_port, tmp_path,
                                         monkeypatch):
    # A gloo group left to the interpreter's exit can abort the process
    # (SIGABRT) after the run; the tools destroy it, also after an error.
    import torch.distributed as dist

    import mmelastic.utils.dist as mm_dist
    tool = load_tool(tool_name)

    class FakeRunner:

        def run(self):
            assert dist.is_initialized()  # the group exists during the run
            if fails:
                raise RuntimeError('run failed')
            return {}

    from mmengine.runner import Runner
    monkeypatch.setattr(Runner, 'from_cfg',
                        staticmethod(lambda cfg: FakeRunner()))
    monkeypatch.setattr(FakeRunner, method, FakeRunner.run, raising=False)
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{free_port}', rank=0,
        world_size=1)
    try:
        argv = [config_path('tiny_cls.py')]
        if tool_name == 'test':
            (tmp_path / 'unused.pth').write_bytes(b'')  # never loaded
            argv.append(str(tmp_path / 'unused.pth'))
        if fails:
            with pytest.raises(RuntimeError, match='run failed'):
                tool.main(argv)
        else:
            tool.main(argv)
        assert not dist.is_initialized()
        assert mm_dist.destroy_distributed() is False  # nothing left
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_finish_distributed_on_cpu(tmp_path):
    """A finished CPU-distributed process leaves without interpreter
    teardown (no atexit handlers), its output and logs flushed; other
    runs return."""
    code = (
        'import atexit, logging, sys\n'
        'import torch\n'
        'torch.cuda.is_available = lambda: False\n'
        'from mmelastic.utils import finish_distributed\n'
        'atexit.register(lambda: print("atexit ran"))\n'
        'logger = logging.getLogger("exit_test")\n'
        'logger.addHandler(logging.FileHandler(sys.argv[1]))\n'
        'logger.warning("logged")\n'
        'print("before", end="")\n'
        'finish_distributed("none")\n'
        'print(" returned", end="")\n'
        'finish_distributed("pytorch")\n'
        'print("not reached")\n')
    log = tmp_path / 'exit.log'
    proc = subprocess.run([sys.executable, '-c', code, str(log)],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == 'before returned'  # flushed; no atexit output
    assert log.read_text() == 'logged\n'


def test_test_tool_args(test_tool, config_path, tmp_path):
    from mmengine.config import Config
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')

    def merged(config, *extra):
        args = test_tool.parse_args([config_path(config), str(ckpt), *extra])
        return test_tool.merge_args(Config.fromfile(args.config), args)

    cfg = merged('tiny_cls.py', '--show-dir', str(tmp_path / 'vis'))
    assert cfg.load_from == str(ckpt)
    assert cfg.default_hooks.visualization.enable is True
    assert cfg.default_hooks.visualization.out_dir == str(tmp_path / 'vis')
    assert cfg.test_dataloader.collate_fn == dict(type='default_collate')
    with pytest.raises(ValueError, match='.pkl'):
        merged('tiny_cls.py', '--out', str(tmp_path / 'preds.json'))

    cfg = merged('tiny_seg.py', '--out', str(tmp_path / 'masks'),
                 '--show-dir', str(tmp_path / 'vis'))
    assert cfg.test_evaluator.output_dir == str(tmp_path / 'masks')
    assert cfg.test_evaluator.keep_results is True
    assert cfg.visualizer.save_dir == str(tmp_path / 'vis')
    assert cfg.default_hooks.visualization.draw is True

    with pytest.raises(FileNotFoundError, match='does not exist'):
        args = test_tool.parse_args(
            [config_path('tiny_cls.py'),
             str(tmp_path / 'missing.pth')])
        test_tool.merge_args(Config.fromfile(args.config), args)


# ---------------------------------------------------------------------------
# Real runs (subprocesses)
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def resume_config(tmp_path_factory, config_path):
    """tiny_cls.py plus the PauseAfterFirstEpoch hook (a derived config)."""
    folder = tmp_path_factory.mktemp('resume_cfg')
    (folder / 'pause_hook.py').write_text(PAUSE_HOOK)
    cfg = folder / 'tiny_cls_pausable.py'
    cfg.write_text(f'_base_ = [{config_path("tiny_cls.py")!r}]\n'
                   f'custom_imports = dict(imports=["pause_hook"], '
                   'allow_failed_imports=False)\n'
                   'custom_hooks = [dict(type="PauseAfterFirstEpoch")]\n')
    return cfg


def _hook_env(resume_config):
    return {
        'PYTHONPATH':
        os.pathsep.join([str(REPO_ROOT),
                         str(resume_config.parent)])
    }


@pytest.fixture(scope='module')
def full_run(tmp_path_factory, resume_config, cls_data_root, data_options,
             run_cmd):
    """An uninterrupted 2-epoch run; returns its work dir."""
    work_dir = tmp_path_factory.mktemp('full_run')
    run_cmd(['python', 'tools/train.py', resume_config, '--work-dir',
             work_dir, '--cfg-options', *data_options(cls_data_root)],
            env=_hook_env(resume_config))
    return work_dir


def test_train_writes_checkpoints(full_run):
    assert (full_run / 'epoch_1.pth').is_file()
    assert (full_run / 'epoch_2.pth').is_file()
    logs = list(full_run.glob('*/*.log'))
    assert logs and 'Epoch(val) [2][2/2]' in logs[0].read_text()


def test_checkpoint_needs_mmelastic_safe_globals(full_run, run_cmd):
    """Without mmelastic, torch's weights_only default refuses mmengine's
    checkpoint (the bug mmelastic fixes); with it, it loads."""
    ckpt = full_run / 'epoch_1.pth'
    plain = run_cmd(
        ['python', '-c', f'import torch; torch.load({str(ckpt)!r})'],
        check=False)
    assert plain.returncode != 0
    assert 'HistoryBuffer' in plain.stdout
    fixed = run_cmd([
        'python', '-c', 'import mmelastic, torch; '
        f'ck = torch.load({str(ckpt)!r}); '
        "print(type(ck['message_hub']['log_scalars']['train/loss']).__name__)"
    ])
    assert fixed.stdout.strip().endswith('HistoryBuffer')


def test_safe_getattr_is_restricted():
    import pickle as pk

    from mmengine.logging import HistoryBuffer

    from mmelastic.utils.checkpoint import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (os, 'system'),
                      (HistoryBuffer, 'update_')):
        with pytest.raises(pk.UnpicklingError, match='refusing getattr'):
            _history_buffer_getattr(obj, name)


def _saved(obj, rename=None):
    """torch.save ``obj`` to bytes; ``rename`` (old, new) edits the global
    names in the pickle, e.g. to fake a checkpoint written under numpy 1.x.
    """
    import io
    import zipfile
    buf = io.BytesIO()
    torch.save(obj, buf)
    if rename is None:
        return buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):
                assert rename[0].encode() in data
                data = data.replace(rename[0].encode(), rename[1].encode())
            dst.writestr(info, data)
    return out.getvalue()


def test_safe_globals_cover_message_hub_contents():
    """What the Runner pickles (HistoryBuffer, numpy scalars and arrays)
    loads with weights_only=True, also from numpy 1.x; object arrays do
    not."""
    import io

    import numpy as np
    from mmengine.logging import HistoryBuffer

    import mmelastic  # noqa: F401
    buffer = HistoryBuffer()
    for value in (1.0, 2.0, 6.0):
        buffer.update(value)
    obj = dict(
        log_scalars={'train/loss': buffer},
        runtime_info=dict(
            eta=np.float64(1.5), best_score=np.float32(0.5),
            count=np.int64(3), flags=np.array([True, False])))
    for rename in (None, ('numpy._core.multiarray', 'numpy.core.multiarray')):
        loaded = torch.load(io.BytesIO(_saved(obj, rename)))
        assert loaded['log_scalars']['train/loss'].mean() == 3.0
        assert loaded['log_scalars']['train/loss'].max() == 6.0
        info = loaded['runtime_info']
        assert info['best_score'] == np.float32(0.5)
        assert info['best_score'].dtype == np.float32
        assert info['flags'].tolist() == [True, False]
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(_saved(np.array([None], dtype=object))))


def test_resume_after_kill_matches_uninterrupted(tmp_path, resume_config,
                                                 full_run, cls_data_root,
                                                 data_options, run_cmd):
    work_dir = tmp_path / 'interrupted'
    env = dict(os.environ)
    env.update(_hook_env(resume_config), MMELASTIC_TEST_PAUSE='1',
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    cmd = [
        sys.executable, 'tools/train.py',
        str(resume_config), '--work-dir',
        str(work_dir), '--cfg-options', *data_options(cls_data_root)
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True)
    # last_checkpoint is written after epoch_1.pth is complete.
    marker = work_dir / 'last_checkpoint'
    deadline = time.time() + 300
    try:
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail('training exited before writing epoch_1.pth:\n' +
                            proc.stdout.read().decode()[-4000:])
            if time.time() > deadline:
                pytest.fail('no checkpoint after 300 s')
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert (work_dir / 'epoch_1.pth').is_file()
    assert not (work_dir / 'epoch_2.pth').exists()

    out = run_cmd([
        'python', 'tools/train.py', resume_config, '--work-dir', work_dir,
        '--resume', '--cfg-options', *data_options(cls_data_root)
    ],
                  env=_hook_env(resume_config)).stdout
    assert 'resumed epoch: 1' in out
    assert_same_weights(work_dir / 'epoch_2.pth', full_run / 'epoch_2.pth')


def test_load_from(tmp_path, full_run, config_path, cls_data_root,
                   data_options, run_cmd):
    """load_from (weights only, fresh schedule): with lr=0 the parameters
    stay those of the loaded checkpoint."""
    work_dir = tmp_path / 'finetune'
    source = full_run / 'epoch_2.pth'
    out = run_cmd([
        'python', 'tools/train.py',
        config_path('tiny_cls.py'), '--work-dir', work_dir, '--cfg-options',
        f'load_from={source}', 'train_cfg.max_epochs=1',
        'optim_wrapper.optimizer.lr=0.0', *data_options(cls_data_root)
    ]).stdout
    assert f'Load checkpoint from {source}' in out
    assert 'Epoch(train) [1][8/8]' in out  # a new schedule, not a resume
    loaded = state_dict_of(source)
    trained = state_dict_of(work_dir / 'epoch_1.pth')
    params = [k for k in loaded if 'running_' not in k and
              'num_batches_tracked' not in k]
    assert params
    for key in params:
        assert torch.equal(loaded[key], trained[key]), key


def test_train_compiled(tmp_path, config_path, cls_data_root, data_options,
                        run_cmd):
    """mmengine's ``compile=True`` (torch.compile of the train step) trains
    an Elastic classifier end to end: the fast path's compiled form
    (element-wise resampling, the commuted conv3 in plain autograd)."""
    work_dir = tmp_path / 'compiled'
    out = run_cmd([
        'python', 'tools/train.py',
        config_path('tiny_cls.py'), '--work-dir', work_dir, '--cfg-options',
        'train_cfg.max_epochs=1', 'compile=True', *data_options(cls_data_root)
    ], timeout=900).stdout
    assert 'Model has been "compiled"' in out
    losses = [float(m) for m in re.findall(r'loss: ([0-9.]+)', out)]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert (work_dir / 'epoch_1.pth').is_file()


def test_test_tool_cls(tmp_path, full_run, config_path, cls_data_root,
                       data_options, run_cmd):
    preds = tmp_path / 'preds.pkl'
    out = run_cmd([
        'python', 'tools/test.py',
        config_path('tiny_cls.py'), full_run / 'epoch_2.pth', '--work-dir',
        tmp_path, '--out', preds, '--cfg-options',
        *data_options(cls_data_root)
    ]).stdout
    assert 'accuracy/top1' in out
    with open(preds, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 8  # 2 classes x 4 val images
    assert set(results[0]) >= {'pred_label', 'gt_label'}


def test_seg_train_and_test(tmp_path, config_path, seg_data_root,
                            data_options, run_cmd):
    work_dir = tmp_path / 'seg'
    out = run_cmd([
        'python', 'tools/train.py',
        config_path('tiny_seg.py'), '--work-dir', work_dir, '--cfg-options',
        *data_options(seg_data_root)
    ]).stdout
    assert 'Iter(train) [4/4]' in out
    ckpt = work_dir / 'iter_4.pth'
    assert ckpt.is_file()

    masks = tmp_path / 'masks'
    out = run_cmd([
        'python', 'tools/test.py',
        config_path('tiny_seg.py'), ckpt, '--work-dir', work_dir, '--out',
        masks, '--cfg-options', *data_options(seg_data_root)
    ]).stdout
    assert 'mIoU' in out
    assert sorted(p.name for p in masks.glob('*.png')) == \
        ['000.png', '001.png']


def test_dist_train_and_test_two_processes_on_cpu(tmp_path, config_path,
                                                  cls_data_root, data_options,
                                                  run_cmd, free_port):
    """Two torchrun processes train together: each rank's log shows half of
    the 8 iterations per epoch (4 each), and rank 0 writes the checkpoint;
    dist_test.sh then evaluates it with two processes."""
    work_dir = tmp_path / 'dist'
    cpu_env = {
        'PORT': str(free_port),
        'PYTHON': sys.executable,
        'CUDA_VISIBLE_DEVICES': '',  # CPU + gloo on any machine
    }
    run_cmd([
        'bash', 'tools/dist_train.sh',
        config_path('tiny_cls.py'), '2', '--work-dir', work_dir,
        '--cfg-options', 'train_cfg.max_epochs=1', 'log_level=DEBUG',
        *data_options(cls_data_root)
    ],
            env=cpu_env,
            timeout=300)
    rank_logs = sorted(work_dir.glob('*/*_rank*.log'))
    assert [log.name[-9:] for log in rank_logs] == ['rank0.log', 'rank1.log']
    first_losses = []
    for log in rank_logs:
        text = log.read_text()
        assert 'Distributed training: True' in text
        assert "dist_cfg: {'backend': 'gloo'}" in text  # chosen without CUDA
        assert 'Epoch(train) [1][4/4]' in text, log
        first = re.search(r'Epoch\(train\) \[1\]\[1/4\].*loss: ([\d.]+)',
                          text)
        first_losses.append(first.group(1))
    # Different samples per rank give different local losses.
    assert first_losses[0] != first_losses[1]
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']

    out = run_cmd([
        'bash', 'tools/dist_test.sh',
        config_path('tiny_cls.py'), work_dir / 'epoch_1.pth', '2',
        '--work-dir', tmp_path / 'dist_test', '--cfg-options',
        *data_options(cls_data_root)
    ],
                  env=cpu_env,
                  timeout=300).stdout
    # The 8 val images are split over the ranks (one batch of 4 each, two
    # in a single process) and gathered for the metric.
    assert 'Epoch(test) [1/1]' in out
    assert 'accuracy/top1' in out
