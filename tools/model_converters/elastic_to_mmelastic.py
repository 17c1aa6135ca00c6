# Copyright (c) mmelastic contributors. All rights reserved.
r"""Convert an official ELASTIC checkpoint (allenai/elastic) to mmelastic.

Examples:
    python tools/model_converters/elastic_to_mmelastic.py \
        resnext50_elastic.pth.tar checkpoints/imagenet/resnext50_elastic.pth
    python tools/model_converters/elastic_to_mmelastic.py \
        deeplab_resnext101_elastic_pascal_v3_original_epoch50.pth \
        checkpoints/voc/deeplabv3_resnext101_elastic.pth

The architecture is read from the file's ``arch`` entry, else from its keys;
``--arch``/``--task`` override. The conversion is strict: it stops with the
list of unused, unfilled and mis-shaped keys rather than write a partial
model. Single-branch ResNeXt-50/101 32x4d weights (torchvision or
mmpretrain layout) convert into the two-branch baselines too.
"""
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from mmelastic.converters import ConversionError, convert_checkpoint  # noqa


def main(argv=None):
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('src', help='official checkpoint (.pth.tar / .pth)')
    parser.add_argument('dst', help='output mmengine checkpoint')
    parser.add_argument('--arch', help='force the architecture, e.g. '
                        'resnext50_elastic')
    parser.add_argument(
        '--task', choices=('imagenet', 'coco', 'voc'), help='force the task')
    parser.add_argument(
        '--trust-pickle', action='store_true',
        help='allow a full unpickle of the source (only for trusted files)')
    args = parser.parse_args(argv)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    try:
        meta = convert_checkpoint(args.src, args.dst, args.arch, args.task,
                                  args.trust_pickle)
    except ConversionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f"converted {meta['source']} ({meta['arch']}, {meta['task']}) -> "
          f'{args.dst}')
    print(f"config: {meta['config']}")
    if meta['task'] == 'imagenet':
        print('test:   python tools/test.py '
              f"{meta['config']} {args.dst}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
