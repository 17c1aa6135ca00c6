# Copyright (c) mmelastic contributors. All rights reserved.
r"""Inference / training throughput and peak memory of models, interleaved.

Examples:
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50 resnext50_elastic
    python tools/analysis/benchmark.py --models resnext50_elastic \
        --straightforward --mode infer
    python tools/analysis/benchmark.py configs/imagenet/dla60x.py \
        configs/imagenet/dla60x_elastic.py --mode infer --reps 10
    python tools/analysis/benchmark.py --models resnext50 resnext50_elastic \
        --device cuda --batch 64 --amp --channels-last --json bench.json
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --device cuda --amp-dtype bfloat16 --channels-last
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --compile --freeze --mode infer
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --plot work_dirs/bench.png
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --mode train --no-memory --profile 3
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --mode train --no-memory --conv-time
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --backend onnxruntime --reps 20
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --backend pytorch onnxruntime --channels-last
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --backend onnxruntime openvino --profile 3
    python tools/analysis/benchmark.py --models resnext50_mmpretrain \
        resnext50_elastic --backend openvino --amp

Every model is timed in this one process, in ABBA rounds (the given order,
then reversed, ...; one step of every model per round) after warm-up
rounds, so the ratios to the first model hold on a busy machine. A
training step is forward (``mode='tensor'``) + cross entropy on the logits
against random labels + backward + SGD step; throughput is batch / step
time, in images/s (median, quartiles and range over the reps). Peak memory
is one step per mode in a fresh subprocess per model (skip: --no-memory).
With --backend onnxruntime or openvino every model is exported to ONNX
(the straightforward path of the Elastic blocks) and timed in ONNX Runtime
or OpenVINO (float32; OpenVINO in bfloat16 with --amp).
"""
import json
import logging
import sys
import warnings

from mmelastic.analysis.benchmark import (AMP_DTYPES, BACKENDS,
                                          EXPORTED_BACKENDS, BenchmarkError,
                                          finite_json,
                                          format_conv_time, format_profile,
                                          format_table, plot_result,
                                          plot_suffix_problem,
                                          resolve_models, run_benchmark)


def parse_args(argv=None):
    from mmelastic.utils.runner_tool import docstring_parser
    parser = docstring_parser(__doc__)
    parser.add_argument('configs', nargs='*', help='config files')
    parser.add_argument(
        '--models', nargs='+', default=[], metavar='NAME',
        help='config stems under configs/imagenet (e.g. resnext50 '
        'resnext50_elastic); after any CONFIG files')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--batch', type=int, default=8, help='default: 8')
    parser.add_argument(
        '--size', type=int, default=224, help='square input size; 224')
    parser.add_argument(
        '--amp', action='store_true',
        help='autocast (float16 on CUDA with a GradScaler, bfloat16 on '
        'CPU); OpenVINO rows compute in bfloat16')
    parser.add_argument(
        '--amp-dtype', choices=AMP_DTYPES,
        help='autocast in this dtype instead of the device\'s usual one '
        '(implies --amp; float16 trains with a GradScaler)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument(
        '--compile', action='store_true', help='torch.compile the models')
    parser.add_argument(
        '--freeze', action='store_true',
        help='with --compile --mode infer: compile with Inductor freezing '
        '(weights as constants, BN folded into the convs, ReLUs and sums '
        'fused into them), for every model')
    parser.add_argument(
        '--threads', type=int, help='torch.set_num_threads (default: '
        "torch's)")
    parser.add_argument(
        '--warmup', type=int, default=2, help='warm-up rounds; default: 2')
    parser.add_argument(
        '--reps', type=int, default=5, help='timed rounds; default: 5')
    parser.add_argument(
        '--mode', choices=['infer', 'train', 'both'],
        help='default: both (infer with --backend onnxruntime/openvino)')
    parser.add_argument(
        '--backend', nargs='+', choices=BACKENDS, default=['pytorch'],
        help='pytorch (default), onnxruntime and/or openvino: the last two '
        'export every model to ONNX and run it in that runtime on the CPU, '
        'inference only (needs requirements/deploy.txt); with several, '
        'rows NAME:BACKEND follow the first backend\'s, in the given order')
    parser.add_argument(
        '--straightforward', action='store_true',
        help='also time every model with the fast path off (rows '
        'NAME:straightforward), in the same interleaved rounds')
    parser.add_argument(
        '--no-memory', action='store_true',
        help='skip the peak-memory subprocesses (never run with '
        'onnxruntime or openvino rows)')
    parser.add_argument(
        '--profile', type=int, default=0, metavar='STEPS',
        help='after the timed rounds, profile STEPS steps of every model '
        'per mode (torch.profiler; exported rows: their runtime\'s '
        'profiler, by op type) and print the self time per op, ms per '
        'step, side by side')
    parser.add_argument(
        '--conv-time', action='store_true',
        help='after the timed rounds, record the convolutions of one step '
        'of every model per mode, time each alone (interleaved rounds, as '
        'many as --reps) and print their sum next to the step time: how '
        'much of a step is convolutions and how much is the rest (not with '
        '--compile)')
    parser.add_argument('--json', metavar='FILE', help='also write JSON')
    parser.add_argument(
        '--plot', metavar='FILE',
        help='also draw the table as a bar chart (.png, .pdf or .svg)')
    parser.add_argument(
        '--quiet', action='store_true', help='no progress lines')
    args = parser.parse_args(argv)
    try:
        args.model_list = resolve_models(args.configs, args.models)
    except BenchmarkError as e:
        parser.error(str(e))
    problem = args.plot and plot_suffix_problem(args.plot)
    if problem:
        parser.error(f'--plot {args.plot}: {problem}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')

    def log(line):
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    mode = args.mode or ('infer' if set(args.backend) & set(EXPORTED_BACKENDS)
                         else 'both')
    modes = ('infer', 'train') if mode == 'both' else (mode, )
    try:
        result = run_benchmark(
            args.model_list,
            device=args.device,
            batch=args.batch,
            size=args.size,
            amp=args.amp_dtype or args.amp,
            channels_last=args.channels_last,
            compile=args.compile,
            threads=args.threads,
            warmup=args.warmup,
            reps=args.reps,
            modes=modes,
            memory=not args.no_memory,
            straightforward=args.straightforward,
            freeze=args.freeze,
            profile=args.profile,
            conv_time=args.conv_time,
            backend=args.backend,
            log=log)
    except BenchmarkError as e:
        print(f'benchmark.py: error: {e}', file=sys.stderr)
        return 2
    print(format_table(result))
    if args.profile:
        print('\n' + format_profile(result))
    if args.conv_time:
        print('\n' + format_conv_time(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(finite_json(result), f, indent=2)
        log(f'wrote {args.json}')
    if args.plot:
        log(f'wrote {plot_result(result, args.plot)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
