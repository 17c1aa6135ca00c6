# Copyright (c) mmelastic contributors. All rights reserved.
"""COCOMultiLabel: labels, object sizes, class handling and clear errors."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _data_fixtures as fixtures  # noqa: E402
from mmelastic.datasets import COCO_CATEGORIES  # noqa: E402
from mmelastic.datasets import (  # noqa: E402
    SIZE_META_KEYS, SIZE_SUBSETS, COCOMultiLabel, size_index, subset_name)

write_coco, write_images = fixtures.write_coco, fixtures.write_images

# Category ids out of order in the file: classes follow the sorted ids,
# so dog (2) is class 0, cat (7) class 1 and bird (11) class 2.
CATEGORIES = [
    dict(id=7, name='cat'),
    dict(id=2, name='dog'),
    dict(id=11, name='bird'),
]
IMAGES = [
    dict(id=10, file_name='a.png', width=8, height=8),
    dict(id=3, file_name='b.png', width=8, height=8),
    dict(id=5, file_name='c.png', width=8, height=8),  # no objects
    dict(id=8, file_name='d.png', width=8, height=8),
]


def _ann(ann_id, image_id, category_id, area, iscrowd=0):
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=category_id,
        area=area,
        bbox=[0, 0, 1, 1],
        iscrowd=iscrowd)


ANNOTATIONS = [
    _ann(1, 10, 7, 500),  # cat, small
    _ann(2, 10, 7, 5000),  # cat, medium
    _ann(3, 10, 2, 20000),  # dog, large
    _ann(4, 3, 11, 1023),  # bird, small (just below 32**2)
    _ann(5, 3, 11, 1024),  # bird, medium (exactly 32**2)
    _ann(6, 8, 2, 9215),  # dog, medium (just below 96**2)
    _ann(7, 8, 2, 9216, iscrowd=1),  # dog, large, crowd
]


@pytest.fixture
def toy_root(tmp_path):
    write_images(tmp_path / 'images', [img['file_name'] for img in IMAGES])
    write_coco(tmp_path / 'annotations' / 'instances_val.json', IMAGES,
               ANNOTATIONS, CATEGORIES)
    return tmp_path


def _toy(root, **kwargs):
    kwargs.setdefault('ann_file', 'annotations/instances_val.json')
    kwargs.setdefault('data_prefix', 'images')
    return COCOMultiLabel(data_root=str(root), **kwargs)


def test_size_buckets_and_subset_names():
    # COCO: small < 32**2 <= medium < 96**2 <= large
    assert [size_index(a) for a in (0, 1023, 1024, 9215, 9216)] == \
        [0, 0, 1, 1, 2]
    assert size_index(99, thresholds=(10, 100)) == 1
    assert SIZE_SUBSETS == ('S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S')
    assert subset_name({'large', 'small'}) == 'L+S'
    assert subset_name([[], [4], [1]]) == 'L+M'
    assert subset_name([[], [], []]) == ''
    with pytest.raises(ValueError, match='unknown object size'):
        subset_name({'huge'})


def test_labels_sizes_and_order(toy_root):
    dataset = _toy(toy_root)
    assert dataset.metainfo['classes'] == ('dog', 'cat', 'bird')
    assert len(dataset) == 4  # every image, the one without objects too
    infos = [dataset.get_data_info(i) for i in range(4)]
    # The file's image order is kept.
    assert [info['img_id'] for info in infos] == [10, 3, 5, 8]
    assert infos[0]['img_path'] == str(toy_root / 'images' / 'a.png')

    # image 10: cat small + cat medium + dog large
    assert infos[0]['gt_label'] == [0, 1]
    assert infos[0]['gt_size_label'] == [[1], [1], [0]]
    assert infos[0]['size_subset'] == 'L+M+S'
    # image 3: bird at area 1023 (small) and 1024 (medium)
    assert infos[1]['gt_label'] == [2]
    assert infos[1]['gt_size_label'] == [[2], [2], []]
    assert infos[1]['size_subset'] == 'M+S'
    # image 5: no objects, all-zero target, no subset
    assert infos[2]['gt_label'] == []
    assert infos[2]['gt_size_label'] == [[], [], []]
    assert infos[2]['size_subset'] == ''
    # image 8: dog 9215 (medium) and a crowd dog 9216 (large), counted as
    # ELASTIC counts every annotation
    assert infos[3]['gt_label'] == [0]
    assert infos[3]['gt_size_label'] == [[], [0], [0]]
    assert infos[3]['size_subset'] == 'L+M'
    assert dataset.size_statistics() == {'L+M+S': 1, 'M+S': 1, '': 1, 'L+M': 1}
    assert dataset.get_cat_ids(0) == [0, 1]


def test_crowd_can_be_left_out(toy_root):
    dataset = _toy(toy_root, include_crowd=False)
    info = dataset.get_data_info(3)
    assert info['gt_size_label'] == [[], [0], []]
    assert info['size_subset'] == 'M'


def test_area_thresholds_can_be_scaled(toy_root):
    # Thresholds halved in side (16**2, 48**2): 500 becomes medium, 5000
    # and 20000 large.
    dataset = _toy(toy_root, area_thresholds=(16**2, 48**2))
    assert dataset.get_data_info(0)['gt_size_label'] == [[], [1], [0, 1]]


def test_split_shortcut(toy_root, tmp_path):
    # the demo layout: annotations/instances_val.json + val/
    (toy_root / 'images').rename(toy_root / 'val')
    dataset = COCOMultiLabel(data_root=str(toy_root), split='val')
    assert len(dataset) == 4
    # COCO 2014 names win when they exist
    (toy_root / 'val').rename(toy_root / 'val2014')
    (toy_root / 'annotations' / 'instances_val.json').rename(
        toy_root / 'annotations' / 'instances_val2014.json')
    dataset = COCOMultiLabel(data_root=str(toy_root), split='val')
    assert dataset.get_data_info(0)['img_path'].endswith('val2014/a.png')
    with pytest.raises(FileNotFoundError, match='instances_train2014.json'):
        COCOMultiLabel(data_root=str(toy_root), split='train')


def test_coco_80_classes_follow_sorted_ids(tmp_path):
    # COCO's ids run 1..90 with ten gaps; the classes are the names sorted
    # by id, whatever the order of the categories in the file.
    gaps = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    ids = [i for i in range(1, 91) if i not in gaps]
    assert len(ids) == 80
    categories = [dict(id=i, name=n) for i, n in zip(ids, COCO_CATEGORIES)]
    categories = categories[::-1]
    images = [dict(id=1, file_name='x.png')]
    annotations = [_ann(1, 1, 90, 50), _ann(2, 1, 13, 2000)]
    write_images(tmp_path / 'img', ['x.png'])
    write_coco(tmp_path / 'ann.json', images, annotations, categories)
    dataset = COCOMultiLabel(
        data_root=str(tmp_path), ann_file='ann.json', data_prefix='img')
    assert dataset.metainfo['classes'] == COCO_CATEGORIES
    assert COCOMultiLabel.METAINFO['classes'] == COCO_CATEGORIES
    # id 90 is the 80th class (toothbrush), id 13 the 12th (stop sign)
    assert dataset.get_data_info(0)['gt_label'] == [11, 79]
    assert COCO_CATEGORIES[79] == 'toothbrush'
    assert COCO_CATEGORIES[11] == 'stop sign'


def test_given_classes_must_match_the_file(toy_root):
    dataset = _toy(toy_root, classes=['dog', 'cat', 'bird'])
    assert dataset.metainfo['classes'] == ('dog', 'cat', 'bird')
    with pytest.raises(ValueError, match=r'only in the file: \[.bird.\]'):
        _toy(toy_root, classes=['dog', 'cat'])
    with pytest.raises(ValueError, match='num_classes=3'):
        _toy(toy_root, metainfo=dict(classes=COCO_CATEGORIES))
    with pytest.raises(ValueError, match='another order'):
        _toy(toy_root, classes=['cat', 'dog', 'bird'])


def test_missing_data_root_and_ann_file(toy_root):
    with pytest.raises(FileNotFoundError, match='data_root .*nowhere'):
        COCOMultiLabel(data_root=str(toy_root / 'nowhere'), ann_file='x')
    with pytest.raises(FileNotFoundError, match='instances_missing.json'):
        _toy(toy_root, ann_file='annotations/instances_missing.json')
    with pytest.raises(ValueError, match='no annotation file'):
        COCOMultiLabel(data_root=str(toy_root))


def test_truncated_and_corrupt_json(toy_root):
    path = toy_root / 'annotations' / 'instances_val.json'
    text = path.read_text()
    path.write_text(text[:len(text) // 2])
    with pytest.raises(
            ValueError, match='instances_val.json.*not valid JSON.*truncated'):
        _toy(toy_root)
    path.write_text(text.replace('"images"', '"images" "oops"', 1))
    with pytest.raises(ValueError, match='not valid JSON.*corrupt'):
        _toy(toy_root)
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match='holds a list'):
        _toy(toy_root)
    path.write_text(json.dumps(dict(images=[], annotations=[])))
    with pytest.raises(ValueError, match="no 'categories' list"):
        _toy(toy_root)


@pytest.mark.parametrize(
    'change, error, pattern', [
        (lambda d: d['annotations'].append(_ann(99, 1234, 2, 10)), ValueError,
         'annotation 99 .*image_id 1234.*not in "images"'),
        (lambda d: d['annotations'].append(_ann(98, 10, 5, 10)), ValueError,
         'annotation 98 .*category_id 5'),
        (lambda d: d['annotations'][0].pop('area'), ValueError,
         "annotation 1 .*no 'area' key"),
        (lambda d: d['images'].append(dict(d['images'][0])), ValueError,
         'image id 10 appears more than once'),
        (lambda d: d['images'].append(dict(id=77, file_name='gone.png')),
         FileNotFoundError, r'1 image file\(s\).*gone.png'),
    ],
    ids=[
        'unknown-image', 'unknown-category', 'no-area', 'duplicate-image',
        'missing-file'
    ])
def test_bad_annotations_name_the_problem(toy_root, change, error, pattern):
    path = toy_root / 'annotations' / 'instances_val.json'
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(error, match=pattern):
        _toy(toy_root)


def test_missing_files_can_be_left_unchecked(toy_root):
    (toy_root / 'images' / 'c.png').unlink()
    with pytest.raises(FileNotFoundError, match='c.png'):
        _toy(toy_root)
    assert len(_toy(toy_root, check_image_files=False)) == 4


def test_pipeline_packs_the_size_keys(toy_root):
    from mmpretrain.datasets import PackInputs
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(
            type='PackInputs',
            meta_keys=PackInputs.DEFAULT_META_KEYS + SIZE_META_KEYS),
    ]
    dataset = _toy(toy_root, pipeline=pipeline)
    sample = dataset[0]['data_samples']
    assert sample.gt_label.tolist() == [0, 1]
    assert sample.gt_size_label == [[1], [1], [0]]
    assert sample.size_subset == 'L+M+S'
    assert sample.img_id == 10
    empty = dataset[2]['data_samples']
    assert empty.gt_label.tolist() == []


def test_registered_in_mmpretrain_and_mmelastic():
    from mmpretrain.registry import DATASETS as PRETRAIN_DATASETS

    from mmelastic.registry import DATASETS
    assert PRETRAIN_DATASETS.get('COCOMultiLabel') is COCOMultiLabel
    assert DATASETS.get('COCOMultiLabel') is COCOMultiLabel
