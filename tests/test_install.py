# Copyright (c) mmelastic contributors. All rights reserved.
"""Installation: tools/install_mmcv.py's decisions (no real build here),
packaging with setup.py, the pinned stack, and the shell entry points."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TAGS_311 = {('cp311', 'cp311', 'linux_x86_64'),
            ('cp311', 'cp311', 'manylinux_2_28_x86_64'),
            ('py3', 'none', 'any')}


@pytest.fixture(scope='module')
def im():
    """tools/install_mmcv.py as a module."""
    spec = importlib.util.spec_from_file_location(
        'install_mmcv', REPO_ROOT / 'tools' / 'install_mmcv.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Wheel selection
# ---------------------------------------------------------------------------
def test_parse_wheel_filename(im):
    info = im.parse_wheel_filename('mmcv-2.1.0-cp311-cp311-linux_x86_64.whl')
    assert info == dict(
        name='mmcv',
        version='2.1.0',
        python={'cp311'},
        abi={'cp311'},
        platform={'linux_x86_64'})
    info = im.parse_wheel_filename(
        'mmcv_full-2.1.0-1-py2.py3-none-any.whl')
    assert info['name'] == 'mmcv-full' and info['python'] == {'py2', 'py3'}
    assert im.parse_wheel_filename('mmcv-2.1.0.tar.gz') is None
    assert im.parse_wheel_filename('README.md') is None


def _wheelhouse(tmp_path, names, readme=None, sidecars=None):
    for name in names:
        (tmp_path / name).write_bytes(b'')
    for name, torch_version in (sidecars or {}).items():
        (tmp_path / (name + '.torch')).write_text(torch_version + '\n')
    if readme is not None:
        (tmp_path / 'README.md').write_text(readme)
    return str(tmp_path)


GOOD = 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
# The wording of /work/shared/wheels/README.md.
README = f'''# Prebuilt wheels

- `{GOOD}` — mmcv 2.1.0 with its compiled CPU ops, for CPython 3.11 on
  x86_64, built against torch 2.14.1 (it works only beside that torch).

- `other-1.0-py3-none-any.whl` — built against torch 1.0.
'''


def test_select_wheel_from_readme(im, tmp_path):
    house = _wheelhouse(tmp_path, [GOOD], readme=README)
    assert im.read_wheel_torch_version(str(tmp_path / GOOD)) == '2.14.1'
    chosen, reasons = im.select_wheel(house, '2.14.1+cu130', TAGS_311)
    assert chosen == str(tmp_path / GOOD)
    assert any(r.startswith('fits') for r in reasons)
    # The same wheel beside another torch: its _ext would not load.
    chosen, reasons = im.select_wheel(house, '2.13.0+cpu', TAGS_311)
    assert chosen is None
    assert 'built against torch 2.14.1, installed torch is 2.13.0' in \
        reasons[0]


def test_select_wheel_filters_tags_and_versions(im, tmp_path):
    names = [
        'mmcv-2.1.0-cp310-cp310-linux_x86_64.whl',  # other python
        'mmcv-2.1.0-cp311-cp311-win_amd64.whl',  # other platform
        'mmcv-2.2.0-cp311-cp311-linux_x86_64.whl',  # other mmcv
        'mmengine-0.10.7-py3-none-any.whl',  # not mmcv
    ]
    house = _wheelhouse(
        tmp_path, names, sidecars={n: '2.14.1' for n in names})
    chosen, reasons = im.select_wheel(house, '2.14.1', TAGS_311)
    assert chosen is None
    assert len(reasons) == 3  # mmengine is not even considered
    assert sum('tags do not fit' in r for r in reasons) == 2
    assert sum('need 2.1.0' in r for r in reasons) == 1


def test_select_wheel_prefers_recorded_torch(im, tmp_path):
    unknown = 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    known = 'mmcv-2.1.0-1-cp311-cp311-manylinux_2_28_x86_64.whl'
    house = _wheelhouse(tmp_path, [unknown, known],
                        sidecars={known: '2.14.1+cu130'})
    chosen, _ = im.select_wheel(house, '2.14.1+cpu', TAGS_311)
    assert chosen == str(tmp_path / known)
    # Only an unrecorded wheel: tried, and verified after installing.
    (tmp_path / known).unlink()
    chosen, reasons = im.select_wheel(house, '2.14.1', TAGS_311)
    assert chosen == str(tmp_path / unknown)
    assert 'verify after installing' in reasons[0]


def test_select_wheel_without_wheelhouse(im, tmp_path):
    assert im.select_wheel(None, '2.14.1') == (None, [])
    chosen, reasons = im.select_wheel(str(tmp_path / 'nope'), '2.14.1')
    assert chosen is None and 'does not exist' in reasons[0]


# ---------------------------------------------------------------------------
# C++ standard and setup.py patching
# ---------------------------------------------------------------------------
HEADER = '''#if !defined(TORCH_STABLE_ONLY) && !defined(TORCH_TARGET_VERSION)
#pragma once

#if !defined(_MSC_VER) && __cplusplus < {value}L
#error C++{std} or later compatible compiler is required to use PyTorch.
#endif
'''


@pytest.mark.parametrize('value,std', [('201703', 17), ('202002', 20),
                                       ('201402', 14)])
def test_parse_cxx_requirement(im, value, std):
    assert im.parse_cxx_requirement(HEADER.format(value=value, std=std)) == \
        std
    assert im.parse_cxx_requirement('#pragma once\n') is None


def test_cxx_standard_from_headers_and_fallback(im, tmp_path):
    header = tmp_path / 'include/torch/csrc/api/include/torch/all.h'
    header.parent.mkdir(parents=True)
    header.write_text(HEADER.format(value='202002', std=20))
    std, why = im.cxx_standard_for_torch('2.99.0', str(tmp_path))
    assert std == 20 and 'headers' in why
    # Without headers: the versions checked by hand.
    empty = str(tmp_path / 'empty')
    assert im.cxx_standard_for_torch('1.12.1', empty)[0] == 14
    assert im.cxx_standard_for_torch('2.13.0+cpu', empty)[0] == 17
    assert im.cxx_standard_for_torch('2.14.1+cu130', empty)[0] == 20


def test_cxx_standard_of_installed_torch(im):
    import torch
    std, why = im.cxx_standard_for_torch(torch.__version__,
                                         os.path.dirname(torch.__file__))
    assert 'headers' in why  # a torch wheel ships its headers
    if torch.__version__.startswith('2.14.'):
        assert std == 20


# The flag lines of mmcv 2.1.0's setup.py, verbatim.
FAKE_SETUP = """
        extra_compile_args = {
            'nvcc': [cuda_args, '-std=c++14'] if cuda_args else ['-std=c++14'],
            'cxx': ['-std=c++14'],
        }
        if platform.system() != 'Windows':
            if parse_version(torch.__version__) <= parse_version('1.12.1'):
                extra_compile_args['cxx'] = ['-std=c++14']
            else:
                extra_compile_args['cxx'] = ['-std=c++17']
        else:
            if parse_version(torch.__version__) <= parse_version('1.12.1'):
                extra_compile_args['cxx'] = ['/std:c++14']
            else:
                extra_compile_args['cxx'] = ['/std:c++17']
            extra_compile_args['cxx'] = ['-Wall', '-std=c++17']
        # c++14 features, the argument ['std=c++14'] must be added here.
                extra_compile_args['nvcc'] += ['-std=c++17']
"""


def test_patch_setup_py(im):
    text, count = im.patch_setup_py(FAKE_SETUP, 20)
    assert count == 9
    assert '-std=c++14' not in text and '-std=c++17' not in text
    assert '/std:c++17' not in text and "['/std:c++20']" in text
    assert text.count('-std=c++20') == 7 and text.count('/std:c++20') == 2
    assert "['std=c++14'] must be added" in text  # the comment is kept
    # Already at (or above) the standard: nothing to change.
    again, count = im.patch_setup_py(text, 20)
    assert again == text and count == 0
    text17, count = im.patch_setup_py(FAKE_SETUP, 17)
    assert count == 5 and '-std=c++14' not in text17
    with pytest.raises(ValueError, match='not the mmcv'):
        im.patch_setup_py('from setuptools import setup\nsetup()\n', 20)


def test_build_env(im):
    env = im.build_env({'PATH': '/bin', 'FORCE_CUDA': '1',
                        'TORCH_CUDA_ARCH_LIST': '8.0;9.0'}, 20, 2)
    assert env['MMCV_WITH_OPS'] == '1'
    assert env['MAX_JOBS'] == '2'
    assert env['FORCE_CUDA'] == '1'
    assert env['TORCH_CUDA_ARCH_LIST'] == '8.0;9.0'
    env = im.build_env({'MAX_JOBS': '7', 'MMCV_WITH_OPS': '0'}, 20, 2)
    assert env['MAX_JOBS'] == '7' and env['MMCV_WITH_OPS'] == '1'


def test_install_mmcv_dry_run(tmp_path):
    import torch
    public = torch.__version__.split('+')[0]
    tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
    import sysconfig
    plat = sysconfig.get_platform().replace('-', '_').replace('.', '_')
    wheel = tmp_path / f'mmcv-2.1.0-{tag}-{tag}-{plat}.whl'
    wheel.write_bytes(b'')
    (tmp_path / (wheel.name + '.torch')).write_text(public)

    def dry(*extra):
        proc = subprocess.run(
            [sys.executable, 'tools/install_mmcv.py', '--dry-run', *extra],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    out = dry('--reinstall', '--wheelhouse', str(tmp_path))
    assert f'DRY RUN: would install {wheel}' in out
    out = dry('--force-build', '--wheelhouse', str(tmp_path))
    assert 'would install' not in out
    assert re.search(r'DRY RUN: would build mmcv 2\.1\.0 .* -std=c\+\+\d\d',
                     out)
    assert 'MMCV_WITH_OPS=1' in out


# ---------------------------------------------------------------------------
# Packaging and the pinned stack
# ---------------------------------------------------------------------------
def test_version():
    import mmelastic
    text = (REPO_ROOT / 'mmelastic' / 'version.py').read_text()
    assert f"__version__ = '{mmelastic.__version__}'" in text
    assert mmelastic.version_info[:3] == tuple(
        int(x) for x in mmelastic.__version__.split('.')[:3])


def test_pip_install_non_editable(tmp_path):
    """``pip install .`` of a copy of the sources (so the build leaves
    nothing in the checkout): the installed package imports from the
    target, has the right version, and declares mmseg only as an extra."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md'):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, src / name)
    for folder in ('requirements', 'mmelastic'):
        shutil.copytree(REPO_ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns('__pycache__'))
    target = tmp_path / 'site'
    proc = subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps',
        '--no-build-isolation', '--no-index', '--target',
        str(target), str(src)
    ], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    env = dict(os.environ, PYTHONPATH=str(target))
    proc = subprocess.run([
        sys.executable, '-c', 'import mmelastic, mmelastic.models.backbones;'
        'print(mmelastic.__file__); print(mmelastic.__version__)'
    ], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    file, version = proc.stdout.split()[-2:]
    assert file.startswith(str(target))
    import mmelastic
    assert version == mmelastic.__version__

    dist_info = next(target.glob('mmelastic-*.dist-info'))
    requires = [
        line.split(':', 1)[1].strip()
        for line in (dist_info / 'METADATA').read_text().splitlines()
        if line.startswith('Requires-Dist:')
    ]
    plain = [r for r in requires if 'extra ==' not in r]
    names = {re.split(r'[<>=!; \[]', r)[0].lower() for r in plain}
    assert {'mmengine', 'mmpretrain', 'pycocotools', 'setuptools'} <= names
    assert 'mmsegmentation' not in names and 'mmcv' not in names
    seg = [r for r in requires if 'extra == "seg"' in r]
    assert {re.split(r'[<>=!; ]', r)[0].lower()
            for r in seg} == {'mmsegmentation', 'ftfy', 'regex'}
    deploy = [r for r in requires if 'extra == "deploy"' in r]
    assert {re.split(r'[<>=!; ]', r)[0].lower()
            for r in deploy} == {'onnx', 'onnxruntime', 'onnxscript',
                                 'openvino'}
    assert 'onnx' not in names  # optional, like mmseg
    assert any(r.startswith('setuptools<82') for r in plain)


def _pins():
    pins = {}
    for line in (REPO_ROOT / 'requirements' / 'pinned.txt').read_text(
    ).splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            name, version = line.split('==')
            pins[name.lower()] = version
    return pins


def test_environment_matches_pins():
    """The stack the tests run on is the pinned one (torch compared without
    its local +cuXXX/+cpu tag). Run tools/setup_env.sh to get it."""
    pins = _pins()
    assert set(pins) >= {
        'torch', 'torchvision', 'mmengine', 'mmcv', 'mmpretrain',
        'mmsegmentation', 'numpy', 'setuptools'
    }
    wrong = {}
    for name, wanted in pins.items():
        installed = metadata.version(name).split('+')[0]
        if installed != wanted:
            wrong[name] = f'{installed} (pinned {wanted})'
    assert not wrong, wrong
    assert int(pins['numpy'].split('.')[0]) >= 2  # numpy 2.x works
    assert int(pins['setuptools'].split('.')[0]) < 82


def test_constraints_keep_setuptools_below_82():
    text = (REPO_ROOT / 'requirements' / 'constraints.txt').read_text()
    assert re.search(r'^setuptools<82$', text, re.MULTILINE)
    # mmengine 0.10.7 resolves mmpretrain::/mmseg:: bases with it.
    import pkg_resources  # noqa: F401


# ---------------------------------------------------------------------------
# Shell entry points
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('script', [
    'tools/setup_env.sh', 'tools/run_tests.sh', 'tools/demo.sh',
    'tools/dist_train.sh', 'tools/dist_test.sh', 'tools/dist_launch.sh',
    '.ci/run'
])
def test_shell_syntax(script):
    proc = subprocess.run(['bash', '-n', str(REPO_ROOT / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_run_tests_fails_when_no_test_runs():
    """pytest's exit code 5 (nothing collected) must not pass silently."""
    env = dict(os.environ, MMELASTIC_SKIP_SETUP='1',
               MMELASTIC_PYTHON=sys.executable)
    proc = subprocess.run([
        'bash', 'tools/run_tests.sh', 'tests/test_install.py', '-k',
        'no_test_has_this_name'
    ], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 5, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'no tests ran' in proc.stderr


@pytest.mark.parametrize('script,argv', [
    ('tools/dist_train.sh', []), ('tools/dist_train.sh', ['cfg.py']),
    ('tools/dist_test.sh', ['cfg.py', 'ckpt.pth']),
    ('tools/dist_launch.sh', ['2'])
])
def test_dist_scripts_usage_error(script, argv):
    proc = subprocess.run(['bash', script, *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'usage:' in proc.stderr


def test_dist_scripts_torchrun_command(tmp_path):
    # PYTHON is a stand-in that prints the command line it was given.
    fake_python = tmp_path / 'python'
    fake_python.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n'
                           'echo "PYTHONPATH=$PYTHONPATH"\n')
    fake_python.chmod(0o755)
    tools = REPO_ROOT / 'tools'

    def command(script, *argv, **env):
        proc = subprocess.run(
            ['bash', f'tools/{script}', *argv], cwd=REPO_ROOT,
            env=dict(os.environ, PYTHON=str(fake_python), PYTHONPATH='x',
                     **env),
            capture_output=True, text=True, check=True)
        return proc.stdout.splitlines()

    assert command('dist_train.sh', 'cfg.py', '3', '--amp') == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
        '--master_addr=127.0.0.1', '--nproc_per_node=3',
        '--master_port=29500', f'{tools}/train.py', 'cfg.py', '--launcher',
        'pytorch', '--amp', f'PYTHONPATH={REPO_ROOT}:x'
    ]
    assert command('dist_test.sh', 'cfg.py', 'ckpt.pth', '2', '--out',
                   'r.pkl', PORT='1234', NNODES='2', NODE_RANK='1',
                   MASTER_ADDR='10.0.0.1') == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
        '--master_addr=10.0.0.1', '--nproc_per_node=2',
        '--master_port=1234', f'{tools}/test.py', 'cfg.py', 'ckpt.pth',
        '--launcher', 'pytorch', '--out', 'r.pkl', f'PYTHONPATH={REPO_ROOT}:x'
    ]
