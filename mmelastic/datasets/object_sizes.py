# Copyright (c) mmelastic contributors. All rights reserved.
"""COCO object-size buckets and the paper's seven image subsets.

COCO calls an object *small* when its ``area`` is below 32², *medium* below
96² and *large* otherwise; the areas are in pixels of the original image
(the annotation's ``area`` field, never the resized network input).

ELASTIC (Wang et al., CVPR 2019, Table 4) groups the validation images by
the set of object sizes present in them, which gives seven subsets. We name a
subset by the initials of its sizes from large to small, joined by ``+``, in
the order of the rows of Table 4::

    S, M, M+S, L, L+S, L+M, L+M+S

An image without objects has no size and belongs to none of them (its subset
name is the empty string).

Example:
    >>> from mmelastic.datasets.object_sizes import (size_index,
    ...                                              subset_name)
    >>> [size_index(area) for area in (100, 1024, 9215, 9216)]
    [0, 1, 1, 2]
    >>> subset_name({'small', 'large'})
    'L+S'
    >>> subset_name([[3], [], [0, 7]])  # a gt_size_label
    'L+S'
    >>> subset_name(set())
    ''
"""
from typing import Iterable, Sequence, Tuple, Union

#: The three object sizes, indexed 0, 1, 2 in every size-indexed structure
#: (``gt_size_label``, per-size recall).
SIZE_NAMES: Tuple[str, ...] = ('small', 'medium', 'large')

#: COCO's area thresholds in pixels: small < 32², medium < 96², else large.
COCO_AREA_THRESHOLDS: Tuple[float, float] = (32.0**2, 96.0**2)

#: The seven image subsets of the paper's Table 4, in its row order.
SIZE_SUBSETS: Tuple[str, ...] = ('S', 'M', 'M+S', 'L', 'L+S', 'L+M', 'L+M+S')

_INITIALS = {'small': 'S', 'medium': 'M', 'large': 'L'}


def size_index(area: float,
               thresholds: Sequence[float] = COCO_AREA_THRESHOLDS) -> int:
    """Return the size bucket (0 small, 1 medium, 2 large) of an object area.

    Args:
        area (float): The object's area in pixels of the original image (the
            ``area`` field of a COCO annotation).
        thresholds (Sequence[float]): The two area limits ``(small, medium)``;
            an area below the first is small, below the second medium, else
            large. Defaults to COCO's ``(32**2, 96**2)``.

    Returns:
        int: 0, 1 or 2, an index into :data:`SIZE_NAMES`.
    """
    small_limit, medium_limit = thresholds
    if area < small_limit:
        return 0
    if area < medium_limit:
        return 1
    return 2


def subset_name(sizes: Union[Iterable[str], Sequence[Sequence[int]]]) -> str:
    """Name the Table-4 subset that an image with the given sizes is in.

    Args:
        sizes: Either the set of size names present in the image (a subset of
            :data:`SIZE_NAMES`), or a ``gt_size_label`` (three sequences of
            class indices: the classes with small, medium and large objects),
            in which case a size is present when its sequence is not empty.

    Returns:
        str: One of :data:`SIZE_SUBSETS`, or ``''`` for an image without
        objects.
    """
    sizes = list(sizes)
    if len(sizes) == 3 and all(not isinstance(s, str) for s in sizes):
        present = {
            SIZE_NAMES[i]
            for i, labels in enumerate(sizes) if len(labels) > 0
        }
    else:
        present = set(sizes)
        unknown = present - set(SIZE_NAMES)
        if unknown:
            raise ValueError(f'unknown object size(s) {sorted(unknown)}; '
                             f'expected names from {SIZE_NAMES}')
    return '+'.join(_INITIALS[name] for name in reversed(SIZE_NAMES)
                    if name in present)
