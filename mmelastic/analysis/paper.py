# Copyright (c) mmelastic contributors. All rights reserved.
"""Figures reported in the ELASTIC paper, keyed by our config names.

Only what the paper prints (Tables 2 and 8 for ImageNet): parameters in
millions, FLOPs in billions (the paper counts a multiply-add as one FLOP, as
mmengine's counter does), top-1/top-5 error in %. ``None`` where the paper
gives no figure. Used by the complexity and model-zoo tools to put our
measurements side by side with the paper's.
"""

# name: (params M, FLOPs B, top-1 err, top-5 err, table)
IMAGENET = {
    'resnext50': (25.0, 4.2, 22.23, 6.25, 'Table 2 (ResNeXt50*)'),
    'resnext50_elastic': (25.2, 4.2, 21.56, 5.83, 'Table 2'),
    'resnext50_selastic': (25.0, 3.4, 22.03, 6.07, 'Table 8'),
    'se_resnext50': (27.6, 4.2, 21.87, 5.93, 'Table 2 (SE-ResNeXt50*)'),
    'se_resnext50_elastic': (27.8, 4.2, 21.38, 5.86, 'Table 2'),
    'resnext101': (44.2, 8.0, 21.18, 5.83, 'Table 2 (ResNeXt101*)'),
    'resnext101_elastic': (44.3, 7.9, 20.83, 5.41, 'Table 2'),
    'resnext50x2_elastic': (45.6, 7.9, 20.86, 5.52, 'Table 2'),
    'dla60x': (17.6, 3.6, 21.92, 6.03, 'Table 2 (DLA-X60*)'),
    'dla60x_elastic': (17.6, 3.2, 21.25, 5.71, 'Table 2'),
    'dla102x': (26.8, 6.0, 21.5, None, 'Table 2'),
    'dla102x_selastic': (26.8, 5.0, 21.0, 5.66, 'Table 8'),
    'dla102x_elastic': (25.0, 6.0, 20.71, 5.38, 'Table 2'),
    'densenet201': (20.0, 4.4, None, None, 'Table 11'),
    'densenet201_elastic': (19.5, 4.2, None, None, 'Table 11'),
}
