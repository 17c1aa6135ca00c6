# Copyright (c) mmelastic contributors. All rights reserved.
r"""Turn the real photos shipped in the labelme 6.3.1 sdist into COCO and VOC.

The labelme 6.3.1 source distribution on PyPI carries three PASCAL VOC 2011
photos (2011_000003, 2011_000006, 2011_000025) annotated in COCO instance
format and in VOC segmentation format. They are the only real photos with
COCO-style annotations that a package registry ships, so mmelastic uses them
to check its COCO and VOC loaders on real data. The code of labelme is
GPL-3.0 and the photos are under the PASCAL VOC terms: the sdist is fetched
at test time into ``.cache/`` and never committed.

Fetch the sdist (once) with::

    pip download --no-deps --no-binary labelme -d .cache/labelme \
        labelme==6.3.1

(``--download`` below does exactly this) and convert it::

    python tools/data/prepare_labelme_examples.py \
        .cache/labelme/labelme-6.3.1.tar.gz --out data/labelme

which writes::

    data/labelme/coco/val/*.jpg
    data/labelme/coco/annotations/instances_val.json
    data/labelme/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}/...
    data/labelme/VOCdevkit/VOC2012/ImageSets/Segmentation/
        {train,val,trainval}.txt   (all three photos in each)

The COCO file is cleaned on the way: labelme numbers annotations (and
images) from 0, and pycocotools' evaluation treats a match with id 0 as no
match, so both are renumbered from 1; the ``_background_`` category (id 0)
is dropped, leaving the 20 VOC classes with their ids 1..20; ``file_name``
loses its ``JPEGImages/`` folder.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
from typing import Dict, Optional

LABELME_VERSION = '6.3.1'
SDIST_NAME = f'labelme-{LABELME_VERSION}.tar.gz'
_EXAMPLES = f'labelme-{LABELME_VERSION}/examples'
COCO_DIR = f'{_EXAMPLES}/instance_segmentation/data_dataset_coco'
VOC_DIR = f'{_EXAMPLES}/semantic_segmentation/data_dataset_voc'


def download_sdist(cache_dir: str) -> str:
    """Download the labelme sdist into ``cache_dir`` (once) with pip.

    Returns:
        str: The path of the ``.tar.gz``.

    Raises:
        RuntimeError: pip failed (no network, PyPI unreachable...); the
            message holds pip's output.
    """
    path = osp.join(cache_dir, SDIST_NAME)
    if osp.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    # Download into a private folder, then rename: two test runs at once
    # never see a half-written archive.
    tmp_dir = osp.join(cache_dir, f'.download-{os.getpid()}')
    cmd = [
        sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary',
        'labelme', '--disable-pip-version-check', '-d', tmp_dir,
        f'labelme=={LABELME_VERSION}'
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        downloaded = osp.join(tmp_dir, SDIST_NAME)
        if proc.returncode != 0 or not osp.isfile(downloaded):
            raise RuntimeError(
                f'could not download {SDIST_NAME} from PyPI with `'
                f'{" ".join(cmd)}` (exit {proc.returncode}):\n'
                f'{proc.stdout[-2000:]}{proc.stderr[-2000:]}')
        os.replace(downloaded, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _read_members(sdist: str, prefixes) -> Dict[str, bytes]:
    """The regular files of the archive under ``prefixes`` (path to bytes).

    Members are read, never extracted, so no path from the archive touches
    the file system.
    """
    files = {}
    with tarfile.open(sdist, 'r:gz') as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(tuple(prefixes)):
                files[member.name] = tar.extractfile(member).read()
    return files


def clean_coco(coco: dict) -> dict:
    """Renumber images and annotations from 1 and drop ``_background_``.

    Args:
        coco (dict): labelme's ``annotations.json``.

    Returns:
        dict: A COCO instances dict that pycocotools evaluates correctly.
    """
    background = {
        c['id']
        for c in coco['categories'] if c['name'] == '_background_'
    }
    categories = [c for c in coco['categories'] if c['id'] not in background]
    image_ids = {img['id']: i + 1 for i, img in enumerate(coco['images'])}
    images = []
    for img in coco['images']:
        images.append(
            dict(
                id=image_ids[img['id']],
                file_name=osp.basename(img['file_name']),
                width=img['width'],
                height=img['height']))
    annotations = []
    for ann in coco['annotations']:
        if ann['category_id'] in background:
            continue
        ann = dict(ann)
        ann['id'] = len(annotations) + 1
        ann['image_id'] = image_ids[ann['image_id']]
        annotations.append(ann)
    return dict(
        info=dict(
            description=f'labelme {LABELME_VERSION} examples (PASCAL VOC '
            '2011 photos), cleaned by mmelastic'),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=categories)


def prepare(sdist: str, out: str) -> dict:
    """Write the COCO and VOC versions of the labelme examples to ``out``.

    Returns:
        dict: ``coco_ann_file``, ``coco_root``, ``voc_root`` and the image
        names.
    """
    if not osp.isfile(sdist):
        raise FileNotFoundError(
            f'{sdist} does not exist; fetch it with `pip download --no-deps '
            f'--no-binary labelme -d .cache/labelme '
            f'labelme=={LABELME_VERSION}` or pass --download.')
    files = _read_members(sdist, (COCO_DIR, VOC_DIR))
    ann_key = f'{COCO_DIR}/annotations.json'
    if ann_key not in files:
        raise ValueError(f'{sdist} has no {ann_key}; is it labelme '
                         f'{LABELME_VERSION}?')
    coco = clean_coco(json.loads(files[ann_key]))

    coco_root = osp.join(out, 'coco')
    os.makedirs(osp.join(coco_root, 'val'), exist_ok=True)
    os.makedirs(osp.join(coco_root, 'annotations'), exist_ok=True)
    for img in coco['images']:
        data = files[f'{COCO_DIR}/JPEGImages/{img["file_name"]}']
        with open(osp.join(coco_root, 'val', img['file_name']), 'wb') as f:
            f.write(data)
    coco_ann_file = osp.join(coco_root, 'annotations', 'instances_val.json')
    with open(coco_ann_file, 'w') as f:
        json.dump(coco, f, indent=1)

    voc_root = osp.join(out, 'VOCdevkit', 'VOC2012')
    names = []
    for sub, suffix in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png')):
        os.makedirs(osp.join(voc_root, sub), exist_ok=True)
        for key, data in sorted(files.items()):
            if key.startswith(f'{VOC_DIR}/{sub}/') and key.endswith(suffix):
                name = osp.basename(key)
                with open(osp.join(voc_root, sub, name), 'wb') as f:
                    f.write(data)
                if sub == 'JPEGImages':
                    names.append(name[:-len(suffix)])
    with open(osp.join(voc_root, 'class_names.txt'), 'wb') as f:
        f.write(files[f'{VOC_DIR}/class_names.txt'])
    # Three photos are too few to split; every list holds all of them.
    sets = osp.join(voc_root, 'ImageSets', 'Segmentation')
    os.makedirs(sets, exist_ok=True)
    for split in ('train', 'val', 'trainval'):
        with open(osp.join(sets, f'{split}.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')
    return dict(
        coco_root=coco_root,
        coco_ann_file=coco_ann_file,
        voc_root=voc_root,
        images=names)


def main(argv: Optional[list] = None):
    parser = argparse.ArgumentParser(
        description='Convert the labelme 6.3.1 example photos to COCO and '
        'VOC layouts for mmelastic.')
    parser.add_argument(
        'sdist',
        nargs='?',
        default=osp.join('.cache', 'labelme', SDIST_NAME),
        help=f'the {SDIST_NAME} sdist (default: .cache/labelme/)')
    parser.add_argument('--out', default='data/labelme', help='output folder')
    parser.add_argument(
        '--download',
        action='store_true',
        help='download the sdist with pip first if it is missing')
    args = parser.parse_args(argv)
    sdist = args.sdist
    if args.download and not osp.isfile(sdist):
        sdist = download_sdist(osp.dirname(sdist) or '.')
    result = prepare(sdist, args.out)
    print(f'COCO: {result["coco_ann_file"]} ({len(result["images"])} '
          f'images)\nVOC: {result["voc_root"]}')


if __name__ == '__main__':
    main()
