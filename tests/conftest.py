# Copyright (c) mmelastic contributors. All rights reserved.
"""Shared fixtures: repository paths, tiny generated datasets and a helper
to run the tools in a subprocess.

There is deliberately no ``tests/__init__.py`` (the mmsegmentation wheel
installs a top-level ``tests`` package); setup.cfg runs pytest with
``--import-mode=importlib``. Nothing here imports mmelastic, so tests that
check lazy imports start from a clean interpreter.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo_root():
    """The repository root (a :class:`pathlib.Path`)."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def config_path():
    """Return the path of a config in ``tests/data/configs`` by file name."""

    def _path(name):
        path = REPO_ROOT / 'tests' / 'data' / 'configs' / name
        assert path.is_file(), f'missing test config {path}'
        return str(path)

    return _path


def _write_png(path, array):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope='session')
def cls_data_root(tmp_path_factory):
    """An ImageNet-layout folder (``{train,val}/<class>/*.png``) of 32x32
    random RGB images, 2 classes, 16 train and 4 val images per class.

    The classes differ in mean brightness so that a model can learn them.
    """
    root = tmp_path_factory.mktemp('tiny_cls')
    rng = np.random.default_rng(0)
    for split, per_class in (('train', 16), ('val', 4)):
        for label, (low, high) in enumerate(((0, 128), (128, 256))):
            for i in range(per_class):
                img = rng.integers(low, high, (32, 32, 3), dtype=np.uint8)
                _write_png(root / split / f'class_{label}' / f'{i:03d}.png',
                           img)
    return str(root)


@pytest.fixture(scope='session')
def seg_data_root(tmp_path_factory):
    """An mmseg ``BaseSegDataset`` folder: ``img_dir/{train,val}/*.png`` (32x32
    RGB) and ``ann_dir/{train,val}/*.png`` (label masks with values 0/1: a
    bright square on a dark background)."""
    root = tmp_path_factory.mktemp('tiny_seg')
    rng = np.random.default_rng(1)
    for split, count in (('train', 4), ('val', 2)):
        for i in range(count):
            img = rng.integers(0, 100, (32, 32, 3), dtype=np.uint8)
            mask = np.zeros((32, 32), dtype=np.uint8)
            y, x = rng.integers(0, 16, 2)
            mask[y:y + 16, x:x + 16] = 1
            img[mask == 1] += 150
            _write_png(root / 'img_dir' / split / f'{i:03d}.png', img)
            _write_png(root / 'ann_dir' / split / f'{i:03d}.png', mask)
    return str(root)


@pytest.fixture(scope='session')
def data_options():
    """``--cfg-options`` items pointing every dataloader at ``root``."""

    def _options(root):
        return [
            f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')
        ]

    return _options


@pytest.fixture(scope='session')
def run_cmd():
    """Run a command with the repository on PYTHONPATH; return the
    :class:`subprocess.CompletedProcess` (stdout and stderr merged).

    ``python`` as the first word means this interpreter. With ``check``
    (default), a non-zero exit fails the test showing the output's tail.
    Subprocesses get one BLAS/OpenMP thread each unless the caller says
    otherwise, to stay light on shared machines.
    """

    def _run(cmd, cwd=None, env=None, timeout=600, check=True):
        cmd = [str(c) for c in cmd]
        if cmd[0] == 'python':
            cmd[0] = sys.executable
        full_env = dict(os.environ)
        full_env['PYTHONPATH'] = os.pathsep.join(
            [str(REPO_ROOT)] +
            ([full_env['PYTHONPATH']] if full_env.get('PYTHONPATH') else []))
        full_env.setdefault('OMP_NUM_THREADS', '1')
        full_env.setdefault('MKL_NUM_THREADS', '1')
        full_env['PYTHONUNBUFFERED'] = '1'
        full_env.update(env or {})
        proc = subprocess.run(
            cmd,
            cwd=str(cwd or REPO_ROOT),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f'command failed with exit code {proc.returncode}: '
                        f'{" ".join(cmd)}\n--- output (tail) ---\n'
                        f'{proc.stdout[-6000:]}')
        return proc

    return _run


@pytest.fixture
def free_port():
    """A TCP port that was free a moment ago (for torchrun's master)."""
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
