# Copyright (c) mmelastic contributors. All rights reserved.
"""Multi-label classification on COCO, as in ELASTIC's COCO experiment.

mmpretrain 1.2.0 ships no multi-label COCO dataset. This one follows the
reference script of ELASTIC (``allenai/elastic/multilabel_classify.py``):
every image of the annotation file is a sample, images without objects
included (their target is all zeros), the classes are the file's categories
in the order of their ids, and every annotation counts (``iscrowd`` ones
too). It also records which object sizes each class has in each image, so
that :class:`~mmelastic.evaluation.ElasticMultiLabelMetric` can report the
paper's size-stratified figures (Table 4).
"""
import contextlib
import io
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

from mmengine import fileio
from mmengine.logging import MMLogger
from mmpretrain.datasets import MultiLabelDataset

from mmelastic.registry import register
from .object_sizes import (COCO_AREA_THRESHOLDS, SIZE_NAMES, size_index,
                           subset_name)

#: The 80 COCO 2014/2017 category names, in the order of their ids.
COCO_CATEGORIES = ('person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus',
                   'train', 'truck', 'boat', 'traffic light', 'fire hydrant',
                   'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
                   'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra',
                   'giraffe', 'backpack', 'umbrella', 'handbag', 'tie',
                   'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
                   'kite', 'baseball bat', 'baseball glove', 'skateboard',
                   'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup',
                   'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
                   'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog',
                   'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
                   'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
                   'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
                   'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase',
                   'scissors', 'teddy bear', 'hair drier', 'toothbrush')

#: The per-sample keys that carry the size information to the metrics. Add
#: them to ``PackInputs(meta_keys=...)`` in the test pipeline.
SIZE_META_KEYS = ('img_id', 'gt_size_label', 'size_subset')


@register('dataset')
class COCOMultiLabel(MultiLabelDataset):
    """`COCO <https://cocodataset.org>`_ multi-label classification dataset.

    The directory layout of COCO 2014 is::

        data/coco
        ├── annotations
        │   ├── instances_train2014.json
        │   └── instances_val2014.json
        ├── train2014
        │   ├── COCO_train2014_000000000009.jpg
        │   └── ...
        └── val2014
            └── ...

    Any COCO-format file works (for example the demo set written by
    ``tools/data/make_demo_data.py``): the classes are the file's own
    categories, sorted by id, which for COCO gives the 80 names of
    :data:`COCO_CATEGORIES` (ELASTIC maps them in ``coco.cats`` key order,
    which is the same sorted order). Each sample is::

        dict(img_path=..., img_id=<COCO image id>,
             gt_label=[class indices of the objects, sorted, no repeats],
             gt_size_label=[[classes with a small object],
                            [classes with a medium object],
                            [classes with a large object]],
             size_subset='L+S')  # Table-4 subset, '' without objects

    Sizes use the annotation's ``area`` (pixels of the original image) with
    COCO's thresholds 32² and 96². ``gt_size_label`` and ``size_subset`` reach
    the metrics only when the test pipeline packs them:
    ``dict(type='PackInputs', meta_keys=PackInputs.DEFAULT_META_KEYS +
    SIZE_META_KEYS)`` (see :data:`SIZE_META_KEYS`).

    Crowd annotations (``iscrowd=1``) count like the others by default, as
    in ELASTIC's reference script; set ``include_crowd=False`` to skip them.

    Args:
        data_root (str): The root of the dataset; ``ann_file`` and
            ``data_prefix`` are relative to it. Defaults to ''.
        split (str): A shortcut for COCO's layout: ``'train'`` or ``'val'``
            sets ``ann_file='annotations/instances_{split}2014.json'`` and
            ``data_prefix='{split}2014'`` where those exist under
            ``data_root``, else ``annotations/instances_{split}.json`` and
            ``{split}`` (the demo's layout). Ignored for whichever of
            ``ann_file`` and ``data_prefix`` is given. Defaults to ''.
        ann_file (str): The COCO instances JSON file. Defaults to ''.
        data_prefix (str | dict): The folder the images' ``file_name`` is
            relative to. Defaults to ''.
        area_thresholds (Sequence[float]): The ``(small, medium)`` area limits
            in pixels. Defaults to ``(32**2, 96**2)``.
        include_crowd (bool): Whether ``iscrowd=1`` annotations give labels.
            Defaults to True (as ELASTIC).
        check_image_files (bool): Whether to check at load time that every
            image file exists, so that a missing file fails at once with its
            name instead of in a data loader worker hours later. Defaults to
            True.
        metainfo (dict, optional): Meta information; ``classes`` given here
            (or with ``classes``) must equal the annotation file's category
            names. Defaults to None.
        **kwargs: Other arguments of
            :class:`~mmpretrain.datasets.MultiLabelDataset` (``pipeline``,
            ``test_mode``, ``classes``, ``indices``, ``lazy_init``...).

    Example:
        >>> from mmelastic.datasets import COCOMultiLabel
        >>> dataset = COCOMultiLabel(
        ...     data_root='data/demo/coco',
        ...     ann_file='annotations/instances_val.json',
        ...     data_prefix='val')
        >>> len(dataset.metainfo['classes'])
        10
        >>> info = dataset.get_data_info(0)
        >>> sorted(info)
        ['gt_label', 'gt_size_label', 'img_id', 'img_path', 'sample_idx',
         'size_subset']
    """

    METAINFO = {'classes': COCO_CATEGORIES}

    def __init__(self,
                 data_root: str = '',
                 split: str = '',
                 ann_file: str = '',
                 data_prefix: Union[str, dict] = '',
                 area_thresholds: Sequence[float] = COCO_AREA_THRESHOLDS,
                 include_crowd: bool = True,
                 check_image_files: bool = True,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        # Only local folders can be checked cheaply; remote roots (s3://...)
        # fail later with the backend's own message.
        if data_root and '://' not in data_root and \
                not osp.isdir(osp.expanduser(data_root)):
            raise FileNotFoundError(
                f'COCOMultiLabel: data_root {data_root!r} does not exist. '
                'Point it at the COCO folder (with annotations/ and '
                'train2014/, val2014/), or build the demo set with '
                '`python tools/data/make_demo_data.py` and use '
                "data_root='data/demo/coco'.")
        if split:
            ann_file, data_prefix = self._resolve_split(
                data_root, split, ann_file, data_prefix)
        if not ann_file:
            raise ValueError(
                'COCOMultiLabel: no annotation file; set ann_file (e.g. '
                "'annotations/instances_val2014.json') or split='val'.")
        if len(area_thresholds) != 2 or \
                not area_thresholds[0] <= area_thresholds[1]:
            raise ValueError(
                'COCOMultiLabel: area_thresholds must be two increasing '
                f'areas (small, medium), got {area_thresholds!r}.')
        self.area_thresholds = tuple(float(t) for t in area_thresholds)
        self.include_crowd = include_crowd
        self.check_image_files = check_image_files
        # Remember whether the user chose the classes: then they must match
        # the file; otherwise the file's categories replace the 80 defaults.
        self._classes_given = kwargs.get('classes') is not None or bool(
            metainfo and 'classes' in metainfo)
        self.split = split
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            metainfo=metainfo,
            **kwargs)

    @staticmethod
    def _resolve_split(data_root, split, ann_file, data_prefix):
        """Fill in ``ann_file`` and ``data_prefix`` from ``split``."""
        if split not in ('train', 'val', 'test'):
            raise ValueError(f"COCOMultiLabel: split must be 'train', 'val' "
                             f"or 'test', got {split!r}.")
        candidates = [(f'annotations/instances_{split}2014.json',
                       f'{split}2014'),
                      (f'annotations/instances_{split}.json', split)]
        for cand_ann, cand_prefix in candidates:
            if osp.exists(osp.join(data_root, cand_ann)):
                break
        else:
            if not ann_file:
                tried = ', '.join(
                    osp.join(data_root, a) for a, _ in candidates)
                raise FileNotFoundError(
                    f'COCOMultiLabel: no annotation file for split '
                    f'{split!r}; tried {tried}. Set ann_file explicitly.')
        return ann_file or cand_ann, data_prefix or cand_prefix

    # ------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------
    def _read_annotation_file(self) -> dict:
        """Read and parse the JSON file with errors that name the file."""
        if not fileio.exists(self.ann_file):
            raise FileNotFoundError(
                f'COCOMultiLabel: annotation file {self.ann_file!r} does '
                'not exist. Check data_root and ann_file (COCO 2014 has '
                "'annotations/instances_{train,val}2014.json').")
        text = fileio.get_text(self.ann_file)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            hint = ('; the file looks truncated, download or extract it '
                    'again' if err.pos >= len(text.rstrip()) - 1 else
                    '; the file is corrupt, download or extract it again')
            raise ValueError(
                f'COCOMultiLabel: annotation file {self.ann_file!r} is not '
                f'valid JSON ({err.msg} at line {err.lineno} column '
                f'{err.colno}){hint}.') from None
        if not isinstance(data, dict):
            raise ValueError(
                f'COCOMultiLabel: annotation file {self.ann_file!r} holds a '
                f'{type(data).__name__}, not a COCO dict with "images", '
                '"annotations" and "categories".')
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data.get(key), list):
                raise ValueError(
                    f'COCOMultiLabel: annotation file {self.ann_file!r} has '
                    f'no {key!r} list; a COCO instances file needs '
                    '"images", "annotations" and "categories".')
        return data

    def _check_record_keys(self, records, kind, keys):
        for i, record in enumerate(records):
            missing = [k for k in keys if k not in record]
            if missing:
                which = record.get('id', f'#{i}')
                raise ValueError(
                    f'COCOMultiLabel: {kind} {which} in {self.ann_file!r} '
                    f'has no {missing[0]!r} key; every {kind} needs '
                    f'{", ".join(keys)}.')

    def _load_coco(self, data: dict):
        """Build the pycocotools index after validating the references."""
        from pycocotools.coco import COCO

        ann_file = self.ann_file
        self._check_record_keys(data['images'], 'image', ('id', 'file_name'))
        self._check_record_keys(data['categories'], 'category', ('id', 'name'))
        self._check_record_keys(data['annotations'], 'annotation',
                                ('image_id', 'category_id', 'area'))
        image_ids = [img['id'] for img in data['images']]
        if len(set(image_ids)) != len(image_ids):
            dup = next(i for i in image_ids if image_ids.count(i) > 1)
            raise ValueError(f'COCOMultiLabel: image id {dup} appears more '
                             f'than once in {ann_file!r}.')
        cat_ids = [cat['id'] for cat in data['categories']]
        if len(set(cat_ids)) != len(cat_ids):
            dup = next(i for i in cat_ids if cat_ids.count(i) > 1)
            raise ValueError(f'COCOMultiLabel: category id {dup} appears '
                             f'more than once in {ann_file!r}.')
        image_id_set, cat_id_set = set(image_ids), set(cat_ids)
        for ann in data['annotations']:
            if ann['image_id'] not in image_id_set:
                raise ValueError(
                    f'COCOMultiLabel: annotation {ann.get("id")} in '
                    f'{ann_file!r} refers to image_id {ann["image_id"]}, '
                    'which is not in "images"; fix or remove the '
                    'annotation.')
            if ann['category_id'] not in cat_id_set:
                raise ValueError(
                    f'COCOMultiLabel: annotation {ann.get("id")} in '
                    f'{ann_file!r} refers to category_id '
                    f'{ann["category_id"]}, which is not in "categories".')
        coco = COCO()
        coco.dataset = data
        # pycocotools prints progress to stdout; keep test logs readable.
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def _check_classes(self, file_classes):
        """Make ``metainfo['classes']`` the file's categories, or fail when
        the user chose other classes."""
        if not self._classes_given:
            self._metainfo['classes'] = file_classes
            return
        given = tuple(self._metainfo['classes'])
        if given == file_classes:
            return
        only_given = [c for c in given if c not in file_classes]
        only_file = [c for c in file_classes if c not in given]
        detail = []
        if only_given:
            detail.append(f'not in the file: {only_given[:5]}')
        if only_file:
            detail.append(f'only in the file: {only_file[:5]}')
        if not detail:
            detail.append('same names in another order')
        raise ValueError(
            f'COCOMultiLabel: the {len(given)} classes given in '
            f'metainfo/classes do not match the {len(file_classes)} '
            f'categories of {self.ann_file!r} ({"; ".join(detail)}). '
            'Drop `classes`/`metainfo` to use the file\'s categories (and '
            f'set num_classes={len(file_classes)} in the head and the data '
            'preprocessor), or write an annotation file with the classes '
            'you want.')

    def load_data_list(self) -> List[dict]:
        """Load every image of the annotation file with its labels and the
        object sizes of each label."""
        data = self._read_annotation_file()
        coco = self._load_coco(data)

        sorted_cat_ids = sorted(coco.cats)
        file_classes = tuple(coco.cats[i]['name'] for i in sorted_cat_ids)
        self._check_classes(file_classes)
        cat_to_label = {cat_id: i for i, cat_id in enumerate(sorted_cat_ids)}

        backend = fileio.get_file_backend(self.img_prefix or '.')
        data_list, missing = [], []
        # Keep the file's image order (ELASTIC iterates coco.imgs.keys()).
        for img_id, img in coco.imgs.items():
            img_path = backend.join_path(self.img_prefix, img['file_name']) \
                if self.img_prefix else img['file_name']
            if self.check_image_files and not backend.exists(img_path):
                missing.append(img_path)
                continue
            labels_by_size: List[set] = [set(), set(), set()]
            for ann in coco.imgToAnns.get(img_id, []):
                if ann.get('iscrowd', 0) and not self.include_crowd:
                    continue
                size = size_index(ann['area'], self.area_thresholds)
                labels_by_size[size].add(cat_to_label[ann['category_id']])
            gt_size_label = [sorted(labels) for labels in labels_by_size]
            data_list.append(
                dict(
                    img_path=img_path,
                    img_id=img_id,
                    gt_label=sorted(set().union(*labels_by_size)),
                    gt_size_label=gt_size_label,
                    size_subset=subset_name(gt_size_label)))
        if missing:
            raise FileNotFoundError(
                f'COCOMultiLabel: {len(missing)} image file(s) listed in '
                f'{self.ann_file!r} do not exist, e.g. {missing[0]!r}. '
                'Check data_prefix (the folder that file_name is relative '
                'to), or pass check_image_files=False for a backend '
                'without a cheap exists().')
        logger = MMLogger.get_current_instance()
        num_empty = sum(1 for info in data_list if not info['gt_label'])
        logger.debug(f'COCOMultiLabel: {len(data_list)} images from '
                     f'{self.ann_file} ({num_empty} without objects).')
        return data_list

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------
    def get_size_label(self, idx: int) -> List[List[int]]:
        """The classes with a small, medium and large object in image
        ``idx``."""
        return self.get_data_info(idx)['gt_size_label']

    def size_statistics(self) -> Dict[str, int]:
        """Count the images per Table-4 subset (``''`` is no object)."""
        counts: Dict[str, int] = {}
        for idx in range(len(self)):
            name = self.get_data_info(idx)['size_subset']
            counts[name] = counts.get(name, 0) + 1
        return counts

    def extra_repr(self) -> List[str]:
        """The extra repr information of the dataset."""
        return [
            f'Annotation file: \t{self.ann_file}',
            f'Prefix of images: \t{self.img_prefix}',
            'Object sizes: \t' + ', '.join(
                f'{name} < {limit:g}'
                for name, limit in zip(SIZE_NAMES, self.area_thresholds)) +
            ', large otherwise',
        ]
