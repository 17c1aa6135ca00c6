# Copyright (c) mmelastic contributors. All rights reserved.
r"""Export a classifier or segmentor config (and checkpoint) to ONNX.

Examples:
    python tools/deployment/pytorch2onnx.py \
        configs/imagenet/resnext50_elastic.py --checkpoint r50e.pth \
        --output-file work_dirs/resnext50_elastic.onnx --verify
    python tools/deployment/pytorch2onnx.py \
        configs/voc/deeplabv3_resnext50_elastic.py --checkpoint voc.pth \
        --shape 512 512 --verify
    python tools/deployment/pytorch2onnx.py configs/coco/resnext50_elastic.py \
        --checkpoint coco.pth --output logits --static-batch
    python tools/deployment/pytorch2onnx.py \
        configs/voc/deeplabv3_resnext50_elastic.py --checkpoint voc.pth \
        --shape 512 --dynamic-size --verify
    python tools/deployment/pytorch2onnx.py \
        configs/imagenet/resnext50_elastic.py --verify --runtime openvino

The graph takes the normalized image batch (the config's data
preprocessor's mean/std and channel order, printed at the end) as
``input``, with a free batch size unless --static-batch, a fixed height
and width unless --dynamic-size (then any size, odd ones too, or with
--dynamic-size 32 any multiples of 32, which runs faster), and returns
``scores`` (softmax, or sigmoid for multi-label heads; ``--output logits``
for the raw logits) or, for segmentors, ``seg_logits`` at the input size.
``--verify`` runs it in ONNX Runtime (``--runtime openvino``: in OpenVINO,
float32) and compares with PyTorch on random batches of 1 and 2 images
(the --batch size with --static-batch; with --dynamic-size also at a
second size). Needs the deploy extra:
``pip install -r requirements/deploy.txt``.
"""
import os
import os.path as osp
import sys
import time

import torch


def parse_args(argv=None):
    from mmengine.config import DictAction
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--checkpoint', help='checkpoint to load (default: none; the '
        "graph then has the config's initial weights)")
    parser.add_argument(
        '--output-file', help='default: work_dirs/CONFIG_STEM.onnx')
    parser.add_argument(
        '--shape', type=int, nargs='+', metavar='SIZE',
        help="input size: one value (square) or H W; default: the config's "
        'crop_size (or data preprocessor size) for segmentors, 224 for '
        'classifiers')
    parser.add_argument(
        '--output', choices=('scores', 'logits'), default='scores',
        help='what a classifier graph returns (default: scores)')
    parser.add_argument(
        '--static-batch', action='store_true',
        help='fix the batch size to --batch (default: free)')
    parser.add_argument(
        '--dynamic-size', nargs='?', type=int, const=1, default=None,
        metavar='MULTIPLE',
        help='leave height and width free: any size (no MULTIPLE), or any '
        'multiples of MULTIPLE (--shape must be multiples of it; 32 runs '
        'faster: no padding or cropping for odd sizes)')
    parser.add_argument(
        '--batch', type=int, default=1,
        help='batch size of the example input (default: 1)')
    parser.add_argument(
        '--opset-version', type=int, default=None,
        help="ONNX opset (default: torch's exporter's, 20 with torch "
        '2.14.1)')
    parser.add_argument(
        '--verify', action='store_true',
        help='compare the runtime (--runtime) with PyTorch on random '
        'batches')
    parser.add_argument(
        '--runtime', choices=('onnxruntime', 'openvino'),
        help='--verify: run the graph in ONNX Runtime (default) or '
        'OpenVINO (float32)')
    parser.add_argument(
        '--atol', type=float, default=1e-4,
        help='--verify: largest allowed absolute difference (1e-4)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes one or two integers')
    if args.shape is not None and min(args.shape) < 1:
        parser.error('--shape sizes must be at least 1')
    if args.batch < 1:
        parser.error('--batch must be at least 1')
    if args.dynamic_size is not None and args.dynamic_size < 1:
        parser.error('--dynamic-size takes a positive multiple')
    if args.opset_version is not None and args.opset_version < 1:
        parser.error('--opset-version must be a positive opset number')
    if args.atol < 0:
        parser.error('--atol must be 0 or more')
    if args.runtime and not args.verify:
        parser.error(f'--runtime {args.runtime} only chooses where --verify '
                     'runs the graph; add --verify')
    args.runtime = args.runtime or 'onnxruntime'
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        parser.error(f'--checkpoint {args.checkpoint!r} is not a file')
    return args


def input_size(args, cfg, segmentor):
    """(H, W) from --shape, else a segmentor config's ``crop_size`` (or its
    data preprocessor's pad ``size``), else 224."""
    if args.shape:
        return tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    crop = None
    if segmentor:
        pre = cfg.model.get('data_preprocessor') or {}
        crop = cfg.get('crop_size') or pre.get('size')
    if crop:
        crop = [crop] * 2 if isinstance(crop, int) else list(crop)
        return tuple(int(s) for s in crop)
    return (224, 224)


def onnx_opset(path):
    """The default-domain opset version of an ONNX file."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in
                 ('', 'ai.onnx')), None)


def describe_preprocessing(cfg):
    """The normalization the graph expects, from the data preprocessor."""
    pre = cfg.model.get('data_preprocessor') or cfg.get(
        'data_preprocessor') or {}
    mean, std = pre.get('mean'), pre.get('std')
    rgb = pre.get('to_rgb', pre.get('bgr_to_rgb', False))
    order = 'RGB (from BGR images)' if rgb else 'as loaded'
    if mean is None:
        return f'input: channels {order}, not normalized'
    return f'input: (x - mean) / std with mean={list(mean)}, ' \
        f'std={list(std)}, channels {order}'


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from mmelastic.analysis.benchmark import build_model
    from mmelastic.deployment.onnx import (OPSET_VERSION, RUNTIME_NAMES,
                                           DeploymentError, export_onnx,
                                           is_segmentor, require,
                                           verify_onnx)

    def log(line):
        print(line, flush=True)

    try:
        # Before the model is built: a missing package is the first error.
        require('onnx', 'onnxscript', *((args.runtime, )
                                        if args.verify else ()))
    except DeploymentError as err:
        sys.exit(f'error: {err}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    output_file = args.output_file or osp.join(
        'work_dirs',
        osp.splitext(osp.basename(args.config))[0] + '.onnx')

    start = time.perf_counter()
    model = build_model(cfg).eval()
    log(f'built {type(model).__name__} from {args.config} in '
        f'{time.perf_counter() - start:.1f}s')
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu',
                        strict=True)
        log(f'loaded {args.checkpoint}')
    else:
        log('no --checkpoint: exporting the initial (untrained) weights')
    segmentor = is_segmentor(model)
    height, width = input_size(args, cfg, segmentor)
    shape = (args.batch, 3, height, width)

    step = args.dynamic_size
    if step and (height % step or width % step):
        sys.exit(f'error: --dynamic-size {step} needs an example size in '
                 f'multiples of {step}, not {height}x{width}; pass --shape '
                 f'(e.g. --shape {max(height // step, 1) * step})')

    start = time.perf_counter()
    free = [] if args.static_batch else ['batch size']
    if step == 1:
        free.append('height and width')
    elif step:
        free.append(f'height and width in multiples of {step}')
    log(f'exporting with input {shape}'
        + (f' ({", ".join(free)} free)' if free else '') + ' ...')
    try:
        output_name = export_onnx(
            model, output_file, shape, output=args.output,
            dynamic_batch=not args.static_batch,
            dynamic_size=args.dynamic_size,
            opset_version=args.opset_version or OPSET_VERSION)
    except DeploymentError as err:
        sys.exit(f'error: {err}')
    opset = onnx_opset(output_file)
    size_mb = os.path.getsize(output_file) / 2**20
    log(f'wrote {output_file} ({size_mb:.1f} MB, opset {opset}) in '
        f'{time.perf_counter() - start:.1f}s')

    if args.verify:
        batches = [args.batch] if args.static_batch else [1, 2]
        if step == 1:
            # A second size, larger and odd in both dimensions.
            shapes = [(batches[0], height, width),
                      (batches[-1], (height + 17) | 1, (width + 33) | 1)]
        elif step:
            shapes = [(batches[0], height, width),
                      (batches[-1], height + step, width + 2 * step)]
        else:
            shapes = [(b, height, width) for b in batches]
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(b, 3, h, w, generator=gen)
                  for b, h, w in shapes]
        try:
            res = verify_onnx(model, output_file, inputs, output=args.output,
                              atol=args.atol, runtime=args.runtime)
        except DeploymentError as err:
            sys.exit(f'error: {err}')
        shapes = ', '.join(str(tuple(x.shape)) for x in inputs)
        log(f'verified in {RUNTIME_NAMES[args.runtime]} on inputs '
            f'{shapes}: max |ONNX - PyTorch| = {res["max_abs_diff"]:.3g} '
            f'(atol {args.atol:g})')

    batch = 'N' if not args.static_batch else str(args.batch)
    hw = (f'{height}, {width}', '') if not step else (
        'H, W', ' (H, W: any size)' if step == 1 else
        f' (H, W: multiples of {step})')
    out_shape = f'({batch}, classes, {hw[0]})' if segmentor else \
        f'({batch}, classes)'
    log(f'graph: input ({batch}, 3, {hw[0]}) float32 -> '
        f'{output_name} {out_shape}{hw[1]}')
    log(describe_preprocessing(cfg))
    return output_file


if __name__ == '__main__':
    main()
