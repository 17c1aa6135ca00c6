# Copyright (c) mmelastic contributors. All rights reserved.
"""The demo data of tools/data/make_demo_data.py and the labelme photos."""
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import _data_fixtures as fixtures  # noqa: E402
from mmelastic.datasets import COCOMultiLabel, subset_name  # noqa: E402

# fixtures
demo_shapes = fixtures.demo_shapes
demo_fashion = fixtures.demo_fashion
labelme_data = fixtures.labelme_data
# helpers
BUILD_SECONDS, build_demo = fixtures.BUILD_SECONDS, fixtures.build_demo
file_hashes, load_tool = fixtures.file_hashes, fixtures.load_tool
read_rgb, saturation = fixtures.read_rgb, fixtures.saturation
require_fashion_mnist = fixtures.require_fashion_mnist

make_demo_data = load_tool('tools/data/make_demo_data.py')
SPLITS = ('train', 'val')
SUBSETS = ('S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S')
SOURCES = ['demo_shapes', 'demo_fashion']
#: Saturation above which a pixel belongs to an object (backgrounds are
#: grey, below ~0.25; objects are saturated colours).
SATURATED = 0.3


def _bucket(area):
    # COCO's definition, written out independently of the code under test
    return 'small' if area < 32 * 32 else 'medium' if area < 96 * 96 \
        else 'large'


def _coco(root, split):
    from pycocotools.coco import COCO
    return COCO(str(root / 'coco' / 'annotations' / f'instances_{split}.json'))


# ----------------------------------------------------------------------------
# Determinism and speed
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('source', ['shapes', 'fashion-mnist'])
def test_same_seed_same_bytes(source):
    if source == 'fashion-mnist':
        require_fashion_mnist()
    first = file_hashes(build_demo(source, 0, 8, 8, tag='-a'))
    again = file_hashes(build_demo(source, 0, 8, 8, tag='-b'))
    other = file_hashes(build_demo(source, 1, 8, 8, tag='-c'))
    assert len(first) > 50 and first == again
    assert set(other) == set(first)  # same files...
    images = [name for name in first if name.endswith(('.png', '.jpg'))]
    changed = [name for name in images if first[name] != other[name]]
    assert len(changed) == len(images)  # ...with other content
    meta = json.loads(
        (build_demo(source, 1, 8, 8, tag='-c') / 'meta.json').read_text())
    assert meta['seed'] == 1 and meta['source'] == source


def test_default_build_is_fast():
    # the default set (200 train / 100 val images per set) of the source
    # that `--source auto` picks here
    source = 'fashion-mnist' if fixtures.fashion_mnist_dir() else 'shapes'
    build_demo(source, 0, 200, 100)
    seconds = BUILD_SECONDS[(source, 0, 200, 100, '')]
    assert seconds < 30, f'the default demo set took {seconds:.1f} s'


def test_command_line(tmp_path, capsys):
    out = tmp_path / 'demo'
    make_demo_data.main([
        '--out',
        str(out), '--source', 'shapes', '--num-train', '8', '--num-val', '8',
        '--seed', '3', '--size', '64'
    ])
    assert 'written to' in capsys.readouterr().out
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['source'] == 'shapes' and meta['seed'] == 3
    assert Image.open(next((out / 'cls' / 'val').rglob('*.png'))).size == \
        (64, 64)
    assert 'shapes' in (out / 'README.txt').read_text()
    with pytest.raises(SystemExit, match='apt-get install'):
        make_demo_data.main([
            '--out',
            str(out), '--source', 'fashion-mnist', '--fashion-mnist-dir',
            str(tmp_path / 'nothing')
        ])


# ----------------------------------------------------------------------------
# COCO set
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('fixture', SOURCES)
def test_coco_json_is_valid_coco(fixture, request):
    root = request.getfixturevalue(fixture)
    meta = json.loads((root / 'meta.json').read_text())
    for split in SPLITS:
        coco = _coco(root, split)
        stats = meta['sets']['coco'][split]
        assert sorted(coco.getImgIds()) == list(range(1, stats['images'] + 1))
        assert sorted(coco.getAnnIds()) == list(
            range(1,
                  len(coco.getAnnIds()) + 1))
        assert [coco.cats[i]['name'] for i in sorted(coco.cats)] == \
            meta['classes'] and sorted(coco.cats) == list(range(1, 11))
        buckets = Counter()
        for ann in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = ann['bbox']
            assert ann['area'] == w * h and ann['iscrowd'] == 0
            assert ann['segmentation'] == [[
                x, y, x + w, y, x + w, y + h, x, y + h
            ]]
            assert 0 <= x and x + w <= 224 and 0 <= y and y + h <= 224
            buckets[_bucket(ann['area'])] += 1
        assert all(buckets[size] > 0 for size in ('small', 'medium', 'large'))
        assert dict(buckets) == stats['objects']
        empty = [i for i in coco.getImgIds() if not coco.getAnnIds(imgIds=i)]
        assert len(empty) == stats['empty_images'] > 0


@pytest.mark.parametrize('fixture', SOURCES)
def test_coco_multilabel_loads_the_demo(fixture, request):
    root = request.getfixturevalue(fixture)
    meta = json.loads((root / 'meta.json').read_text())
    for split in SPLITS:
        coco = _coco(root, split)
        dataset = COCOMultiLabel(data_root=str(root / 'coco'), split=split)
        assert dataset.metainfo['classes'] == tuple(meta['classes'])
        assert len(dataset) == len(coco.getImgIds())
        subsets = Counter()
        for idx in range(len(dataset)):
            info = dataset.get_data_info(idx)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info['img_id']))
            assert info['gt_label'] == sorted(
                {a['category_id'] - 1
                 for a in anns})
            sizes = {_bucket(a['area']) for a in anns}
            assert info['size_subset'] == subset_name(sizes)
            subsets[info['size_subset'] or 'none'] += 1
        assert dict(subsets) == meta['sets']['coco'][split]['subsets']
        assert all(subsets[name] > 0 for name in SUBSETS + ('none', ))


def _mask_shape(mask):
    """A mask cut to its box, resized to 16x16, plus its log aspect."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((16, 16),
                                                                Image.BILINEAR)
    return np.append(
        np.asarray(small, np.float32).ravel() / 255,
        4 * np.log(mask.shape[1] / mask.shape[0]))


@pytest.mark.parametrize('fixture', SOURCES)
def test_coco_images_hold_the_annotated_objects(fixture, request):
    """Every annotated box holds a saturated object whose own box matches
    within 2 px, nothing saturated lies elsewhere, and the objects' shapes
    match their labels (nearest class mean of the cls set's shapes)."""
    root = request.getfixturevalue(fixture)
    # Class means of the object shapes in the classification set.
    shapes, labels = [], []
    for line in (root / 'cls' / 'meta' / 'train.txt').read_text().split('\n'):
        if line:
            rel, label = line.split()
            image = read_rgb(root / 'cls' / 'train' / rel)
            shapes.append(_mask_shape(saturation(image) > SATURATED))
            labels.append(int(label))
    shapes, labels = np.array(shapes), np.array(labels)
    means = np.stack([shapes[labels == c].mean(0) for c in range(10)])

    hits = total = 0
    for split in SPLITS:
        coco = _coco(root, split)
        for img in coco.loadImgs(coco.getImgIds()):
            objects = saturation(
                read_rgb(root / 'coco' / split / img['file_name'])) > \
                SATURATED
            near_boxes = np.zeros_like(objects)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
                x, y, w, h = map(int, ann['bbox'])
                x0, y0 = max(x - 3, 0), max(y - 3, 0)
                window = objects[y0:y + h + 3, x0:x + w + 3]
                rows = np.flatnonzero(window.any(1))
                cols = np.flatnonzero(window.any(0))
                found = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1,
                         y0 + rows[-1] + 1)
                assert np.abs(np.subtract(
                    found,
                    (x, y, x + w, y + h))).max() <= 2, (img['file_name'],
                                                        ann['bbox'], found)
                near_boxes[y0:y + h + 3, x0:x + w + 3] = True
                shape = _mask_shape(objects[y:y + h, x:x + w])
                guess = np.argmin(((means - shape)**2).sum(1))
                hits += int(guess == ann['category_id'] - 1)
                total += 1
            assert not (objects & ~near_boxes).any(), img['file_name']
    # chance is 10%; a wrong label mapping would land near it
    assert hits / total > 0.5, f'{hits}/{total} objects look like labels'


# ----------------------------------------------------------------------------
# VOC and classification sets
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('fixture', SOURCES)
def test_voc_masks_match_the_images(fixture, request):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    root = request.getfixturevalue(fixture)
    voc = root / 'voc' / 'VOCdevkit' / 'VOC2012'
    objects = json.loads((voc / 'objects.json').read_text())
    class_names = (voc / 'class_names.txt').read_text().split()
    assert class_names[0] == 'background' and len(class_names) == 11
    palette = make_demo_data.voc_palette()
    ious = []
    for split in SPLITS:
        names = (voc / 'ImageSets' / 'Segmentation' /
                 f'{split}.txt').read_text().split()
        dataset = BaseSegDataset(
            data_root=str(voc),
            ann_file=f'ImageSets/Segmentation/{split}.txt',
            data_prefix=dict(
                img_path='JPEGImages', seg_map_path='SegmentationClass'),
            metainfo=dict(
                classes=class_names,
                palette=[palette[3 * i:3 * i + 3] for i in range(11)]),
            pipeline=[LoadImageFromFile(),
                      LoadAnnotations()])
        assert len(dataset) == len(names)
        for idx in range(len(dataset)):
            name = names[idx]
            png = Image.open(voc / 'SegmentationClass' / f'{name}.png')
            assert png.mode == 'P' and png.getpalette()[:33] == palette[:33]
            mask = np.asarray(png)
            loaded = dataset[idx]['gt_seg_map']
            assert np.array_equal(loaded, mask)
            values = set(np.unique(mask).tolist())
            assert values <= set(range(11)) | {255}
            assert values - {0, 255} == set(objects[name])
            object_pixels = saturation(
                read_rgb(voc / 'JPEGImages' / f'{name}.jpg')) > SATURATED
            known = mask != 255
            foreground = (mask > 0) & known
            inter = (object_pixels & foreground).sum()
            union = ((object_pixels | foreground) & known).sum()
            ious.append(inter / union)
    assert min(ious) > 0.75 and np.mean(ious) > 0.9


@pytest.mark.parametrize('fixture', SOURCES)
def test_classification_set_loads_in_mmpretrain(fixture, request):
    from mmpretrain.datasets import CustomDataset, ImageNet
    root = request.getfixturevalue(fixture)
    meta = json.loads((root / 'meta.json').read_text())
    classes = (root / 'cls' / 'meta' / 'classes.txt').read_text().split()
    assert classes == meta['classes']
    for split in SPLITS:
        # the meta lists, with the classes file: labels in the demo's order
        listed = ImageNet(
            data_root=str(root / 'cls'),
            split=split,
            classes=str(root / 'cls' / 'meta' / 'classes.txt'))
        # the folders alone: classes in sorted folder order
        scanned = CustomDataset(data_root=str(root / 'cls'), data_prefix=split)
        num = meta['sets']['cls'][split]['images']
        assert len(listed) == len(scanned) == num
        assert scanned.metainfo['classes'] == tuple(sorted(classes))
        per_class = Counter()
        for dataset in (listed, scanned):
            names = dataset.metainfo['classes']
            for idx in range(num):
                info = dataset.get_data_info(idx)
                folder = Path(info['img_path']).parent.name
                assert names[info['gt_label']] == folder
                if dataset is listed:
                    per_class[folder] += 1
        # balanced classes: every class within one image of the others
        assert max(per_class.values()) - min(per_class.values()) <= 1
        assert [per_class[c] for c in classes] == \
            meta['sets']['cls'][split]['per_class']


def test_meta_and_readme_record_the_build(demo_fashion):
    meta = json.loads((demo_fashion / 'meta.json').read_text())
    assert meta['source'] == 'fashion-mnist' and meta['seed'] == 0
    assert meta['classes'][:2] == ['tshirt_top', 'trouser']
    readme = (demo_fashion / 'README.txt').read_text()
    assert 'object source: fashion-mnist  seed: 0' in readme
    for split in SPLITS:
        pngs = list((demo_fashion / 'coco' / split).glob('*.png'))
        assert len(pngs) == meta['sets']['coco'][split]['images']
        assert Image.open(pngs[0]).size == (224, 224)
    assert meta['sets']['coco']['train']['images'] == 200


# ----------------------------------------------------------------------------
# The labelme 6.3.1 photos (real PASCAL VOC 2011 images)
# ----------------------------------------------------------------------------
LABELME_LABELS = {
    '2011_000003.jpg': ({'person', 'bottle'}, 'L+S'),
    '2011_000025.jpg': ({'bus', 'car'}, 'L+M'),
    '2011_000006.jpg': ({'person', 'chair', 'sofa'}, 'L+M+S'),
}


def test_labelme_coco_is_clean(labelme_data):
    from pycocotools.coco import COCO
    coco = COCO(labelme_data['coco_ann_file'])
    # ids from 1 (pycocotools' evaluation ignores a match with id 0) and no
    # _background_ category
    assert min(coco.getAnnIds()) == 1 and min(coco.getImgIds()) == 1
    assert len(coco.getAnnIds()) == 12
    assert len(coco.cats) == 20 and 0 not in coco.cats
    assert coco.cats[15]['name'] == 'person'
    sizes = Counter(
        _bucket(ann['area']) for ann in coco.loadAnns(coco.getAnnIds()))
    assert sizes == {'small': 2, 'medium': 2, 'large': 8}


def test_labelme_photos_load_in_coco_multilabel(labelme_data):
    dataset = COCOMultiLabel(data_root=labelme_data['coco_root'], split='val')
    classes = dataset.metainfo['classes']
    assert len(classes) == 20 and classes[0] == 'aeroplane'
    assert len(dataset) == 3
    for idx in range(3):
        info = dataset.get_data_info(idx)
        labels, subset = LABELME_LABELS[Path(info['img_path']).name]
        assert {classes[i] for i in info['gt_label']} == labels
        assert info['size_subset'] == subset
        assert Image.open(info['img_path']).size[0] == 500


def test_labelme_voc_loads_in_pascal_voc_dataset(labelme_data):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import PascalVOCDataset
    from mmseg.datasets.transforms import LoadAnnotations
    dataset = PascalVOCDataset(
        data_root=labelme_data['voc_root'],
        ann_file='ImageSets/Segmentation/val.txt',
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        pipeline=[LoadImageFromFile(), LoadAnnotations()])
    classes = dataset.metainfo['classes']
    assert len(dataset) == 3
    for idx in range(3):
        sample = dataset[idx]
        name = Path(sample['img_path']).name
        labels, _ = LABELME_LABELS[name]
        present = set(np.unique(sample['gt_seg_map']).tolist()) - {0, 255}
        # the VOC names of these classes are the same as in COCO's JSON
        assert {classes[i] for i in present} == labels
        assert sample['img'].shape[:2] == sample['gt_seg_map'].shape


def test_labelme_download_failure_is_explained(tmp_path, monkeypatch):
    # No package index: pip must fail, and the error must say what to run.
    monkeypatch.setenv('PIP_NO_INDEX', '1')
    monkeypatch.setenv('PIP_FIND_LINKS', '')
    tool = load_tool('tools/data/prepare_labelme_examples.py')
    with pytest.raises(
            RuntimeError,
            match='could not download labelme-6.3.1'
            r'.tar.gz .*pip download'):
        tool.download_sdist(str(tmp_path / 'cache'))
    assert not list((tmp_path / 'cache').iterdir())  # nothing half-written
    with pytest.raises(FileNotFoundError, match='--no-binary labelme'):
        tool.prepare(str(tmp_path / 'none.tar.gz'), str(tmp_path / 'out'))
