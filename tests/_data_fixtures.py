# Copyright (c) mmelastic contributors. All rights reserved.
"""Shared helpers and fixtures of the data, metric and tool tests.

The root ``tests/conftest.py`` belongs to the model tests, so the test files
that need these import them explicitly::

    sys.path.insert(0, str(Path(__file__).parent))
    from _data_fixtures import demo_shapes  # noqa: E402  (a fixture)

Builds are cached per process (``functools.lru_cache``) so several test
files share one demo set of each kind.
"""
import atexit
import functools
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO_ROOT / '.cache'
LABELME_CACHE = CACHE_DIR / 'labelme'

if str(REPO_ROOT) not in sys.path:  # the mmelastic package of this checkout
    sys.path.insert(0, str(REPO_ROOT))

_TMP_ROOT = Path(tempfile.mkdtemp(prefix='mmelastic-data-tests-'))
atexit.register(shutil.rmtree, _TMP_ROOT, ignore_errors=True)


def load_tool(relative_path: str):
    """Import a script under ``tools/`` (not a package) as a module."""
    path = REPO_ROOT / relative_path
    name = '_tool_' + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fashion_mnist_dir():
    return load_tool('tools/data/make_demo_data.py').find_fashion_mnist()


#: Wall-clock seconds of each build_demo() call, by its arguments.
BUILD_SECONDS = {}


@functools.lru_cache(maxsize=None)
def build_demo(source: str,
               seed: int = 0,
               num_train: int = 200,
               num_val: int = 100,
               tag: str = '') -> Path:
    """Build a demo set once per process; returns its folder."""
    out = _TMP_ROOT / f'demo-{source}-{seed}-{num_train}-{num_val}{tag}'
    start = time.perf_counter()
    load_tool('tools/data/make_demo_data.py').build(
        out=str(out),
        seed=seed,
        num_train=num_train,
        num_val=num_val,
        source=source)
    BUILD_SECONDS[(source, seed, num_train, num_val, tag)] = \
        time.perf_counter() - start
    return out


def require_fashion_mnist():
    """Fail (with the fix) where Fashion-MNIST is not installed.

    tools/setup_env.sh installs it; the demo itself falls back to shapes
    where it cannot, and the shapes source is always tested too.
    """
    if fashion_mnist_dir() is None:
        # The setup (tools/setup_env.sh) installs it; a skip would hide a
        # broken setup, so this fails.
        pytest.fail(
            'Fashion-MNIST is not installed (/usr/share/datasets/'
            'fashion-mnist); install it with `apt-get install -y '
            'dataset-fashion-mnist` to test the Fashion-MNIST demo source.')


@pytest.fixture
def demo_shapes() -> Path:
    """A small demo set from the procedural shapes."""
    return build_demo('shapes', 0, 80, 40)


@pytest.fixture
def demo_fashion() -> Path:
    """The default-size demo set from Fashion-MNIST."""
    require_fashion_mnist()
    return build_demo('fashion-mnist', 0, 200, 100)


@functools.lru_cache(maxsize=None)
def _labelme_data() -> dict:
    """Fetch the labelme sdist into .cache/ (once) and convert it."""
    tool = load_tool('tools/data/prepare_labelme_examples.py')
    LABELME_CACHE.mkdir(parents=True, exist_ok=True)
    # The cache must never be committed: make it ignore itself.
    ignore = CACHE_DIR / '.gitignore'
    if not ignore.exists():
        ignore.write_text('*\n')
    try:
        sdist = tool.download_sdist(str(LABELME_CACHE))
    except RuntimeError as err:
        pytest.fail(
            'The labelme 6.3.1 sdist (real VOC photos for the COCO/VOC '
            'loader checks) is not in .cache/labelme and could not be '
            f'downloaded from PyPI: {err}\nFetch it by hand with `pip '
            'download --no-deps --no-binary labelme -d .cache/labelme '
            'labelme==6.3.1`.')
    return tool.prepare(sdist, str(_TMP_ROOT / 'labelme'))


@pytest.fixture
def labelme_data() -> dict:
    """The labelme example photos in COCO and VOC layouts."""
    return _labelme_data()


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------
def saturation(image: np.ndarray) -> np.ndarray:
    """HSV saturation of an RGB uint8 image (the demo's objects are
    saturated, its backgrounds are grey)."""
    rgb = image.astype(np.float32)
    high, low = rgb.max(-1), rgb.min(-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0)


def read_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'))


def write_coco(path: Path, images, annotations, categories, **extra):
    """Write a COCO instances JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(
        images=images, annotations=annotations, categories=categories, **extra)
    path.write_text(json.dumps(data))
    return path


def write_images(folder: Path, names, size=(8, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new('RGB', size, (128, 128, 128)).save(folder / name)


def file_hashes(root: Path) -> dict:
    """SHA-256 of every file under ``root`` by relative path."""
    import hashlib
    hashes = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            hashes[str(path.relative_to(root))] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return hashes
