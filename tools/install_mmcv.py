# Copyright (c) mmelastic contributors. All rights reserved.
"""Install mmcv 2.1.0 *with its compiled ops* into the current interpreter.

mmsegmentation 1.2.2 needs the full mmcv build (``mmcv.ops``); mmcv-lite
fails with ``No module named 'mmcv._ext'``. OpenMMLab publishes prebuilt
mmcv 2.1.0 wheels only for torch <= 2.1, so with the pinned torch 2.14.1 the
ops must come from a wheel built against that very torch, or be compiled.

Order of preference:

1. A working mmcv 2.1.0 is already installed (``import mmcv.ops`` and one op
   run): nothing to do (unless ``--reinstall`` or ``--force-build``).
2. A fitting wheel in a wheelhouse (``--wheelhouse DIR`` or
   ``$MMCV_WHEELHOUSE``): same mmcv version, a Python tag and platform this
   interpreter accepts, and built for the installed torch. The torch a wheel
   was built against is not in the wheel's name or metadata, so it is read
   from a sidecar file ``<wheel>.torch`` (one line: the torch version), or
   from a ``README*`` in the wheelhouse that names the wheel file and says
   ``built against torch X.Y.Z``. A wheel whose torch is unknown is still
   tried, and kept only if the verification below passes.
3. A source build of the mmcv 2.1.0 sdist from PyPI, with its ``-std=c++NN``
   flags raised to the C++ standard the installed torch's headers require.

Every install is verified in a fresh interpreter by importing ``mmcv.ops``
and running ``mmcv.ops.nms`` on a tiny input; a wheel that fails the check is
removed and the source build is used instead.

Environment variables honoured by the source build: ``FORCE_CUDA``,
``TORCH_CUDA_ARCH_LIST``, ``MAX_JOBS`` (default: the number of CPUs, since
mmcv's own default of at least 4 jobs overloads small machines),
``MMCV_CUDA_ARGS``.

Examples:
    python tools/install_mmcv.py --wheelhouse ../shared/wheels
    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;9.0" python tools/install_mmcv.py
    python tools/install_mmcv.py --dry-run
"""
import argparse
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time

MMCV_VERSION = '2.1.0'
PREFIX = '[install_mmcv]'

# mmcv 2.1.0's setup.py does ``from pkg_resources import ...``, which
# setuptools 82 removed; ninja makes the build parallel.
BUILD_REQUIREMENTS = ['setuptools<82', 'wheel', 'ninja']

# Runs in a fresh interpreter after installing: proves the compiled ``_ext``
# loads beside this torch (an ABI mismatch shows up as an undefined symbol
# here) and that an op computes the right answer.
VERIFY_SNIPPET = r'''
import torch, mmcv
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                      [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
dets, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep.tolist()
print('mmcv', mmcv.__version__, 'ops OK with torch', torch.__version__)
'''


def log(msg):
    """Print a progress message to stderr with the tool's prefix."""
    print(f'{PREFIX} {msg}', file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Decision logic (pure functions, unit-tested in tests/test_install.py)
# --------------------------------------------------------------------------
def public_version(version):
    """Strip the local part of a version: ``'2.14.1+cu130'`` -> ``'2.14.1'``.

    A CPU-ops mmcv wheel built beside ``torch 2.14.1+cu130`` works beside
    ``2.14.1+cpu`` too: the C++ ABI is tied to the torch release, while the
    local tag only says which CUDA runtime torch itself was linked with.
    """
    return version.split('+', 1)[0].strip()


def parse_wheel_filename(filename):
    """Split a wheel file name into its PEP 427 parts.

    Args:
        filename (str): e.g. ``'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'``.

    Returns:
        dict | None: ``name``, ``version``, ``python``, ``abi`` and
        ``platform`` (the last three are sets, since compressed tag sets like
        ``py2.py3`` are allowed), or None if the name is not a wheel's.
    """
    base = osp.basename(filename)
    if not base.endswith('.whl'):
        return None
    parts = base[:-len('.whl')].split('-')
    if len(parts) == 6:  # with a build tag
        name, version, _build, py, abi, plat = parts
    elif len(parts) == 5:
        name, version, py, abi, plat = parts
    else:
        return None
    return dict(
        name=name.lower().replace('_', '-'),
        version=version,
        python=set(py.split('.')),
        abi=set(abi.split('.')),
        platform=set(plat.split('.')))


def supported_tags():
    """Return the (python, abi, platform) triples this interpreter accepts.

    Uses :mod:`packaging.tags` when installed; otherwise (a bare venv with
    only torch) a conservative CPython-only answer.
    """
    try:
        from packaging import tags
        return {(t.interpreter, t.abi, t.platform) for t in tags.sys_tags()}
    except ImportError:
        pyver = f'cp{sys.version_info.major}{sys.version_info.minor}'
        plat = sysconfig.get_platform().replace('-', '_').replace('.', '_')
        return {(pyver, pyver, plat), (pyver, 'abi3', plat),
                (pyver, 'none', plat), (pyver, 'none', 'any'),
                ('py3', 'none', 'any')}


def wheel_matches_tags(info, tag_set):
    """Whether any tag combination of a parsed wheel name is in ``tag_set``."""
    return any((py, abi, plat) in tag_set for py in info['python']
               for abi in info['abi'] for plat in info['platform'])


def read_wheel_torch_version(wheel_path):
    """Find the torch version a wheel was built against, if recorded.

    Looks, in order, at a sidecar file ``<wheel>.torch`` containing the
    version, then at ``README*`` files beside the wheel: a paragraph (lines
    up to a blank line) that names the wheel's file name and says
    ``built against torch X.Y.Z``.

    Args:
        wheel_path (str): Path of the wheel.

    Returns:
        str | None: The torch version, or None when nothing records it.
    """
    sidecar = wheel_path + '.torch'
    if osp.isfile(sidecar):
        with open(sidecar, encoding='utf-8') as f:
            text = f.read().strip()
        if text:
            return public_version(text.split()[0])
    folder = osp.dirname(osp.abspath(wheel_path))
    name = osp.basename(wheel_path)
    for readme in sorted(os.listdir(folder)):
        if not readme.lower().startswith('readme'):
            continue
        try:
            with open(osp.join(folder, readme), encoding='utf-8') as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        for paragraph in re.split(r'\n\s*\n', text):
            if name not in paragraph:
                continue
            found = re.search(
                r'built\s+(?:against|for|with)\s+torch\s*(?:==\s*)?'
                r'v?(\d+\.\d+(?:\.\d+)?)', paragraph, re.IGNORECASE)
            if found:
                return found.group(1)
    return None


def select_wheel(wheelhouse, torch_version, tag_set=None,
                 mmcv_version=MMCV_VERSION):
    """Choose the mmcv wheel to install from a wheelhouse.

    Args:
        wheelhouse (str | None): Directory with wheels; None or a missing
            directory gives no wheel.
        torch_version (str): Installed torch version (``torch.__version__``).
        tag_set (set | None): Accepted (python, abi, platform) triples.
            Default: those of this interpreter.
        mmcv_version (str): Wanted mmcv version.

    Returns:
        tuple[str | None, list[str]]: The chosen wheel path (or None) and one
        line per wheel explaining why it was taken or skipped. A wheel built
        for the installed torch wins over one whose torch is unknown; a wheel
        built for another torch is never taken (its ``_ext`` would fail to
        load with undefined symbols).
    """
    reasons = []
    if not wheelhouse or not osp.isdir(wheelhouse):
        if wheelhouse:
            reasons.append(f'wheelhouse {wheelhouse} does not exist')
        return None, reasons
    tag_set = supported_tags() if tag_set is None else tag_set
    wanted_torch = public_version(torch_version)
    verified, unknown = [], []
    for fname in sorted(os.listdir(wheelhouse)):
        info = parse_wheel_filename(fname)
        if info is None or info['name'] not in ('mmcv', 'mmcv-full'):
            continue
        path = osp.join(wheelhouse, fname)
        if public_version(info['version']) != mmcv_version:
            reasons.append(f'skip {fname}: mmcv {info["version"]}, '
                           f'need {mmcv_version}')
            continue
        if not wheel_matches_tags(info, tag_set):
            reasons.append(f'skip {fname}: python/platform tags do not fit '
                           'this interpreter')
            continue
        built_for = read_wheel_torch_version(path)
        if built_for is None:
            reasons.append(f'maybe {fname}: the torch it was built against is '
                           'not recorded; will verify after installing')
            unknown.append(path)
        elif built_for != wanted_torch:
            reasons.append(f'skip {fname}: built against torch {built_for}, '
                           f'installed torch is {wanted_torch}')
        else:
            reasons.append(f'fits {fname}: built against torch {built_for}')
            verified.append(path)
    chosen = (verified + unknown + [None])[0]
    return chosen, reasons


def parse_cxx_requirement(header_text):
    """Read the minimum C++ standard from torch's ``all.h`` guard.

    torch's ``torch/csrc/api/include/torch/all.h`` starts with e.g.
    ``#if !defined(_MSC_VER) && __cplusplus < 202002L`` followed by
    ``#error C++20 or later compatible compiler is required``. torch 2.13
    has ``201703L`` (C++17), torch 2.14 ``202002L`` (C++20).

    Args:
        header_text (str): Contents of the header.

    Returns:
        int | None: 14, 17, 20, 23 ... or None if no guard is found.
    """
    found = re.search(r'__cplusplus\s*<\s*(\d{4})(\d{2})L', header_text)
    if not found:
        return None
    year = int(found.group(1))
    return {2011: 11, 2014: 14, 2017: 17, 2020: 20, 2023: 23}.get(
        year, year % 100)


def cxx_standard_for_torch(torch_version, torch_dir=None):
    """Return the C++ standard (e.g. 20) extensions for this torch must use.

    The exact answer is the guard in torch's own headers (see
    :func:`parse_cxx_requirement`): compiling against torch 2.14 with mmcv's
    hard-coded ``-std=c++17`` stops at ``#error C++20 or later compatible
    compiler is required to use PyTorch``. When the headers are not there
    (a torch without them cannot build extensions anyway, but ``--dry-run``
    should still answer), fall back to the versions checked by hand: torch
    <= 1.12.1 builds with C++14 (mmcv's own rule), up to 2.13 with C++17,
    and from 2.14 on with C++20.

    Args:
        torch_version (str): ``torch.__version__``.
        torch_dir (str | None): torch's package directory.

    Returns:
        tuple[int, str]: The standard and a sentence saying where it came
        from.
    """
    if torch_dir is not None:
        header = osp.join(torch_dir, 'include', 'torch', 'csrc', 'api',
                          'include', 'torch', 'all.h')
        if osp.isfile(header):
            with open(header, encoding='utf-8', errors='replace') as f:
                std = parse_cxx_requirement(f.read())
            if std is not None:
                return std, f'torch {torch_version} headers ({header}) ' \
                            f'require C++{std}'
    nums = [int(x) for x in re.findall(r'\d+', public_version(torch_version))
            [:3]]
    nums += [0] * (3 - len(nums))
    if tuple(nums) <= (1, 12, 1):
        std = 14
    elif tuple(nums) < (2, 14, 0):
        std = 17
    else:
        std = 20
    return std, f'torch {torch_version} (by version; headers not found) ' \
                f'needs C++{std}'


_STD_FLAG = re.compile(r'(-std=|/std:)c\+\+(\d\d)')


def patch_setup_py(text, std):
    """Set every ``-std=c++NN`` / ``/std:c++NN`` flag in mmcv's setup.py.

    mmcv 2.1.0 hard-codes ``-std=c++14`` (parrots, nvcc for old torch) and
    ``-std=c++17`` (cxx and nvcc for torch > 1.12.1, MPS); a later flag wins
    on the compiler command line, so torch's own default cannot override
    them. Only flags below ``std`` are raised; comments without a dash or
    slash (``['std=c++14']``) are left alone.

    Args:
        text (str): Contents of setup.py.
        std (int): Wanted standard, e.g. 20.

    Returns:
        tuple[str, int]: The patched text and the number of flags changed.

    Raises:
        ValueError: If the text has no such flag at all, which means this is
            not the setup.py the patch was written for.
    """
    if not _STD_FLAG.search(text):
        raise ValueError(
            'no -std=c++NN flag found in setup.py; this is not the mmcv '
            f'{MMCV_VERSION} setup.py this tool knows how to patch. Pass '
            'the mmcv 2.1.0 sdist (--sdist) or build mmcv by hand.')
    count = 0

    def _raise(match):
        nonlocal count
        if int(match.group(2)) >= std:
            return match.group(0)
        count += 1
        return f'{match.group(1)}c++{std}'

    return _STD_FLAG.sub(_raise, text), count


def build_env(base_env, std, cpu_count):
    """Environment for the source build.

    Args:
        base_env (dict): The caller's environment (FORCE_CUDA,
            TORCH_CUDA_ARCH_LIST, MAX_JOBS and MMCV_CUDA_ARGS pass through).
        std (int): The C++ standard (only reported, the flag is patched into
            setup.py).
        cpu_count (int): CPUs available, the default for MAX_JOBS.

    Returns:
        dict: The environment, with MMCV_WITH_OPS=1 (the full build) and
        MAX_JOBS defaulting to ``cpu_count``.
    """
    env = dict(base_env)
    env['MMCV_WITH_OPS'] = '1'
    env.setdefault('MAX_JOBS', str(max(1, cpu_count)))
    return env


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------
def run(cmd, env=None):
    """Run a command, echoing it; return its exit status."""
    log('$ ' + ' '.join(cmd))
    return subprocess.call(cmd, env=env)


def pip(*args, env=None):
    return run([sys.executable, '-m', 'pip', *args], env=env)


def verify(quiet=False):
    """Import mmcv.ops and run nms in a fresh interpreter.

    Returns:
        tuple[bool, str]: Success and the interpreter's output.
    """
    proc = subprocess.run([sys.executable, '-c', VERIFY_SNIPPET],
                          capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0, out


def installed_mmcv_dists():
    """Names of installed mmcv distributions (mmcv, mmcv-lite, mmcv-full)."""
    from importlib import metadata
    names = []
    for name in ('mmcv', 'mmcv-lite', 'mmcv-full'):
        try:
            metadata.version(name)
            names.append(name)
        except metadata.PackageNotFoundError:
            pass
    return names


def write_constraints(folder):
    """A pip constraints file keeping setuptools below 82 (see above)."""
    path = osp.join(folder, 'constraints.txt')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('setuptools<82\n')
    return path


def install_wheel(wheel, constraints):
    dists = installed_mmcv_dists()
    if dists and pip('uninstall', '-y', *dists) != 0:
        return False
    return pip('install', '-c', constraints, wheel) == 0


def fetch_sdist(workdir, constraints, sdist=None):
    """Return a path to the mmcv sdist, downloading it from PyPI if needed.

    ``--no-build-isolation`` matters here too: pip prepares the sdist's
    metadata by running its setup.py, which imports pkg_resources; in an
    isolated build environment pip would pick the newest setuptools (82+,
    without pkg_resources).
    """
    if sdist:
        if not osp.isfile(sdist):
            raise FileNotFoundError(
                f'--sdist {sdist} does not exist; pass the path of '
                f'mmcv-{MMCV_VERSION}.tar.gz or leave --sdist out to '
                'download it from PyPI.')
        return sdist
    if pip('download', '--no-deps', '--no-binary', 'mmcv',
           '--no-build-isolation', '-c', constraints, '-d', workdir,
           f'mmcv=={MMCV_VERSION}') != 0:
        raise RuntimeError(
            f'could not download the mmcv {MMCV_VERSION} sdist from the '
            'package index; check network access or pass --sdist PATH.')
    for fname in os.listdir(workdir):
        if fname.startswith(f'mmcv-{MMCV_VERSION}') and \
                fname.endswith(('.tar.gz', '.zip')):
            return osp.join(workdir, fname)
    raise RuntimeError(f'pip download left no mmcv sdist in {workdir}')


def unpack(sdist, workdir):
    with tarfile.open(sdist) as tar:
        try:
            tar.extractall(workdir, filter='data')
        except TypeError:  # Python without extraction filters
            tar.extractall(workdir)
    src = osp.join(workdir, f'mmcv-{MMCV_VERSION}')
    if not osp.isfile(osp.join(src, 'setup.py')):
        raise RuntimeError(f'{sdist} did not unpack to {src}/setup.py')
    return src


def build_from_source(args, torch_version, std, reason, workdir,
                      constraints):
    """Download, patch, compile and install mmcv; return success."""
    log(f'C++ standard: C++{std} ({reason})')
    if pip('install', '-c', constraints, *BUILD_REQUIREMENTS) != 0:
        log('FAILED to install the build requirements '
            f'{BUILD_REQUIREMENTS}.')
        return False
    src = unpack(fetch_sdist(workdir, constraints, args.sdist), workdir)
    setup_py = osp.join(src, 'setup.py')
    with open(setup_py, encoding='utf-8') as f:
        text, count = patch_setup_py(f.read(), std)
    with open(setup_py, 'w', encoding='utf-8') as f:
        f.write(text)
    log(f'patched {count} -std flag(s) in {setup_py} to C++{std}')
    env = build_env(os.environ, std, os.cpu_count() or 1)
    log('building with MMCV_WITH_OPS=1 MAX_JOBS={} FORCE_CUDA={} '
        'TORCH_CUDA_ARCH_LIST={} (this takes 10-20 minutes on 2 CPU '
        'cores)'.format(env['MAX_JOBS'], env.get('FORCE_CUDA', '<unset>'),
                        env.get('TORCH_CUDA_ARCH_LIST', '<unset>')))
    dists = installed_mmcv_dists()
    if dists and pip('uninstall', '-y', *dists) != 0:
        return False
    build_log = osp.join(workdir, 'pip-build.log')
    start = time.time()
    status = pip('install', '--no-build-isolation', '-c', constraints,
                 '--log', build_log, src, env=env)
    log(f'build took {(time.time() - start) / 60:.1f} min; full log: '
        f'{build_log}')
    if status != 0:
        log(f'FAILED: pip could not build mmcv {MMCV_VERSION}; the compiler '
            f'output is in {build_log}.')
        return False
    return True


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=f'Install mmcv {MMCV_VERSION} with compiled ops for the '
        'installed torch (a fitting prebuilt wheel, else a source build).')
    parser.add_argument(
        '--wheelhouse',
        default=os.environ.get('MMCV_WHEELHOUSE'),
        help='directory with prebuilt mmcv wheels (default: '
        '$MMCV_WHEELHOUSE)')
    parser.add_argument(
        '--force-build',
        action='store_true',
        help='build from source even if a working mmcv or a fitting wheel '
        'exists')
    parser.add_argument(
        '--reinstall',
        action='store_true',
        help='install even if a working mmcv is installed (still preferring '
        'a fitting wheel to a build)')
    parser.add_argument(
        '--keep-build-dir',
        action='store_true',
        help='keep the unpacked sources and build log (kept anyway when the '
        'build fails)')
    parser.add_argument(
        '--sdist', help=f'use this mmcv-{MMCV_VERSION}.tar.gz instead of '
        'downloading it')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='print which wheel would be installed or which build flags '
        'would be used, and change nothing')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        log('FAILED: torch is not installed in this interpreter '
            f'({sys.executable}); install torch first (e.g. pip install '
            'torch==2.14.1), since mmcv ops are compiled against it.')
        return 2
    torch_version = torch.__version__
    torch_dir = osp.dirname(torch.__file__)
    std, reason = cxx_standard_for_torch(torch_version, torch_dir)
    log(f'python {sys.version.split()[0]} ({sys.executable}), torch '
        f'{torch_version}')

    if not (args.force_build or args.reinstall):
        ok, out = verify()
        if ok and f'mmcv {MMCV_VERSION} ' in out + ' ':
            log(('DRY RUN: nothing to do, ' if args.dry_run else '') +
                f'already installed and working: {out}')
            return 0

    wheel, reasons = (None, ['--force-build given'])
    if not args.force_build:
        wheel, reasons = select_wheel(args.wheelhouse, torch_version)
        if not args.wheelhouse:
            reasons.append('no wheelhouse given (--wheelhouse or '
                           '$MMCV_WHEELHOUSE)')
    for line in reasons:
        log(line)

    if args.dry_run:
        if wheel:
            log(f'DRY RUN: would install {wheel}, then verify mmcv.ops '
                '(and build from source if that fails)')
        env = build_env(os.environ, std, os.cpu_count() or 1)
        arch_list = env.get('TORCH_CUDA_ARCH_LIST', '<unset>')
        log(('DRY RUN: fallback ' if wheel else 'DRY RUN: would ') +
            f'build mmcv {MMCV_VERSION} from the PyPI sdist with '
            f'-std=c++{std} ({reason}), MMCV_WITH_OPS=1, '
            f'MAX_JOBS={env["MAX_JOBS"]}, '
            f'FORCE_CUDA={env.get("FORCE_CUDA", "<unset>")}, '
            f'TORCH_CUDA_ARCH_LIST={arch_list}, pip install '
            f'--no-build-isolation with {BUILD_REQUIREMENTS}')
        return 0

    workdir = tempfile.mkdtemp(prefix='mmcv-build-')
    constraints = write_constraints(workdir)
    success = False
    try:
        if wheel:
            log(f'installing {wheel}')
            if install_wheel(wheel, constraints):
                ok, out = verify()
                if ok:
                    log(f'SUCCESS: {out}')
                    success = True
                    return 0
                log('the wheel installed but mmcv.ops does not work beside '
                    f'torch {torch_version}:\n{out}\nfalling back to a source '
                    'build')
            else:
                log('installing the wheel failed; falling back to a source '
                    'build')
        if not build_from_source(args, torch_version, std, reason, workdir,
                                 constraints):
            return 1
        ok, out = verify()
        if ok:
            log(f'SUCCESS: built from source: {out}')
            success = True
            return 0
        log(f'FAILED: mmcv built and installed, but the check failed:\n{out}')
        return 1
    except (RuntimeError, ValueError, OSError) as err:
        log(f'FAILED: {err}')
        return 1
    finally:
        if success and not args.keep_build_dir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f'build directory kept: {workdir}')


if __name__ == '__main__':
    sys.exit(main())
