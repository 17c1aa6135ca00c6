# Copyright (c) mmelastic contributors. All rights reserved.
"""Packaging of mmelastic.

``pip install -e .`` (development) and ``pip install .`` both work. The
dependencies are read from ``requirements/*.txt``:

* ``runtime.txt``: install_requires (classification with mmpretrain);
* ``seg.txt``: the ``seg`` extra (mmsegmentation, ftfy, regex), so that
  classification users need neither mmseg nor the full mmcv build;
* ``deploy.txt``: the ``deploy`` extra (ONNX export, ONNX Runtime,
  OpenVINO);
* ``tests.txt``: the ``tests`` extra;
* ``mminstall.txt``: the ``mim`` extra (mmcv; see tools/install_mmcv.py).
"""
import os.path as osp
import re
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version():
    """Read ``__version__`` from mmelastic/version.py without importing it
    (importing mmelastic needs torch and mmengine, absent at build time)."""
    with open(osp.join(HERE, 'mmelastic', 'version.py'),
              encoding='utf-8') as f:
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]",
                          f.read(), re.MULTILINE)
    if found is None:
        raise RuntimeError('mmelastic/version.py defines no __version__')
    return found.group(1)


def parse_requirements(fname):
    """Requirement lines of ``requirements/<fname>``, without comments.

    Args:
        fname (str): File name inside ``requirements/``.

    Returns:
        list[str]: PEP 508 requirement strings.
    """
    reqs = []
    with open(osp.join(HERE, 'requirements', fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def readme():
    path = osp.join(HERE, 'README.md')
    if not osp.isfile(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


setup(
    name='mmelastic',
    version=get_version(),
    description='ELASTIC (CVPR 2019) instance-specific scale policies for '
    'OpenMMLab 2.x (mmpretrain and mmsegmentation)',
    long_description=readme(),
    long_description_content_type='text/markdown',
    keywords='computer vision, elastic, resnext, openmmlab',
    packages=find_packages(exclude=('tests', 'tests.*', 'tools', 'configs',
                                    'docs')),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=parse_requirements('runtime.txt'),
    extras_require={
        'seg': parse_requirements('seg.txt'),
        'deploy': parse_requirements('deploy.txt'),
        'tests': parse_requirements('tests.txt'),
        'mim': parse_requirements('mminstall.txt'),
        'all': parse_requirements('seg.txt') +
        parse_requirements('deploy.txt') + parse_requirements('tests.txt'),
    },
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False)
