# Copyright (c) mmelastic contributors. All rights reserved.
"""Interleaved throughput and peak-memory benchmark of models from configs.

The logic behind ``tools/analysis/benchmark.py``. Models are timed in one
process, interleaved in ABBA rounds (round 0 in the given order, round 1
reversed, ...), so that slow drift of a shared machine (other jobs, thermal
throttling) hits every model alike and the ratios between models hold even
when the absolute numbers do not. Peak memory is measured separately, one
fresh subprocess per model (process-wide high-water marks cannot be split
between models living in one process).

Import it as ``mmelastic.analysis.benchmark`` (it is not re-exported by
``mmelastic.analysis``).
"""
import json
import math
import os
import os.path as osp
import statistics
import subprocess
import sys
import textwrap
import time
from glob import glob

import torch
import torch.nn.functional as F

from mmelastic.models.utils import fast_path
from .complexity import TensorForward
from .conv_time import (record_convolutions, summarize_conv_time,
                        time_convolutions)

#: Where ``--models NAME`` looks for ``NAME.py``.
CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'imagenet')

MODES = ('infer', 'train')
#: ``--backend`` choices: PyTorch eager (or compiled), or the model exported
#: to ONNX and run by ONNX Runtime or OpenVINO (inference, CPU).
BACKENDS = ('pytorch', 'onnxruntime', 'openvino')
#: The backends that run an exported graph (:class:`ExportedGraphRunner`).
EXPORTED_BACKENDS = ('onnxruntime', 'openvino')
#: Packages each exported backend needs (all in the ``deploy`` extra).
BACKEND_PACKAGES = dict(onnxruntime=('onnx', 'onnxscript', 'onnxruntime'),
                        openvino=('onnx', 'onnxscript', 'openvino'))


class BenchmarkError(RuntimeError):
    """A benchmark request that cannot run (unknown model, no CUDA ...)."""


# --------------------------------------------------------------------------
# Requests: models, device, schedule
# --------------------------------------------------------------------------
def available_models(config_dir=CONFIG_DIR):
    """Config stems usable with ``--models`` (sorted)."""
    return sorted(
        osp.splitext(osp.basename(p))[0]
        for p in glob(osp.join(config_dir, '*.py'))
        if not osp.basename(p).startswith('_'))


def resolve_models(configs=(), names=(), config_dir=CONFIG_DIR):
    """Turn config paths and ``--models`` names into ``(name, path)`` pairs.

    Raises:
        BenchmarkError: For a missing config file or an unknown name (the
            message lists the known names), or for no model at all.
    """
    models = []
    for config in configs:
        if not osp.isfile(config):
            raise BenchmarkError(f'config file {config!r} does not exist')
        models.append((osp.splitext(osp.basename(config))[0], config))
    known = available_models(config_dir)
    for name in names:
        if name not in known:
            raise BenchmarkError(
                f'unknown model {name!r}; --models takes the name of a '
                f'config in {config_dir}: {", ".join(known)}')
        models.append((name, osp.join(config_dir, f'{name}.py')))
    if not models:
        raise BenchmarkError('give config files or --models NAME ...')
    # The same stem twice (e.g. two folders): keep the rows apart.
    seen = {}
    out = []
    for name, path in models:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f'{name}#{seen[name]}',
                    path))
    return out


def check_device_name(device):
    """Raise a clear error unless ``device`` names a CPU or CUDA device."""
    if device not in ('cpu', 'cuda') and not device.startswith('cuda:'):
        raise BenchmarkError(f'--device must be cpu or cuda, not {device!r}')


def check_device(device):
    """Return a :class:`torch.device` or raise a clear error."""
    check_device_name(device)
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise BenchmarkError(
            f'--device {device} was asked for, but CUDA is not available '
            f'(torch {torch.__version__}, built with CUDA '
            f'{torch.version.cuda or "none"}); use --device cpu')
    return torch.device(device)


AMP_DTYPES = ('float16', 'bfloat16')


def autocast_dtype(amp, device):
    """The autocast dtype ``amp`` asks for on ``device``.

    Args:
        amp (bool | str): False: none (float32). True: the device's usual
            one, float16 on CUDA (what CUDA AMP trains in) and bfloat16 on a
            CPU (what CPU autocast is fast in). Or a name in
            :data:`AMP_DTYPES`, e.g. bfloat16 on a GPU that has it.
        device (str | torch.device): Where the models run.

    Returns:
        torch.dtype | None

    >>> autocast_dtype(True, 'cpu'), autocast_dtype('float16', 'cpu')
    (torch.bfloat16, torch.float16)
    """
    if amp is False or amp is None:
        return None
    if amp is True:
        return torch.float16 if torch.device(device).type == 'cuda' \
            else torch.bfloat16
    if amp not in AMP_DTYPES:
        raise BenchmarkError(f'--amp-dtype must be one of '
                             f'{", ".join(AMP_DTYPES)}, not {amp!r}')
    return getattr(torch, amp)


def check_backends(backends, device, modes, pytorch_options=None,
                   eager_options=None, amp_dtype=None):
    """Return the backends as a list, or raise a clear error for backends
    and options that do not go together (ONNX Runtime and OpenVINO: CPU
    inference).

    Args:
        backends (str | sequence[str]): Names from :data:`BACKENDS`.
        device (str): ``--device``.
        modes (sequence[str]): The modes asked for.
        pytorch_options (dict, optional): Options that only PyTorch rows
            use, by name (``dict(channels_last=False, compile=True)``); a
            true one needs the pytorch backend too.
        eager_options (dict, optional): Options that work on PyTorch steps
            only (convolution timing); a true one rules out exported rows.
        amp_dtype (torch.dtype, optional): ``--amp``'s dtype. PyTorch rows
            autocast to it; OpenVINO rows take bfloat16 as their inference
            precision; ONNX Runtime rows stay float32, so ``--amp`` needs
            PyTorch or OpenVINO rows.
    """
    backends = [backends] if isinstance(backends, str) else list(backends)
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends or len(set(backends)) != len(backends):
        raise BenchmarkError(f'--backend takes distinct names from '
                             f'{", ".join(BACKENDS)}, not {backends}')
    exported = [b for b in backends if b in EXPORTED_BACKENDS]
    if not exported:
        return backends
    which = '/'.join(exported)
    if list(modes) != ['infer']:
        raise BenchmarkError(f'--backend {which} times inference only; '
                             'add --mode infer')
    if device != 'cpu':
        raise BenchmarkError(f'--backend {which} runs on the CPU (these '
                             'packages are their CPU builds); use --device '
                             'cpu')

    def flags(options):
        return ', '.join('--' + name.replace('_', '-')
                         for name, value in (options or {}).items() if value)

    if 'pytorch' not in backends and flags(pytorch_options):
        raise BenchmarkError(
            f'{flags(pytorch_options)} only apply to PyTorch rows; drop '
            f'them, or add them with --backend pytorch {" ".join(exported)}')
    if flags(eager_options):
        raise BenchmarkError(
            f'{flags(eager_options)} only work on PyTorch steps; drop '
            f'them, or drop --backend {" ".join(exported)}')
    if amp_dtype is not None:
        if 'pytorch' not in backends and 'openvino' not in backends:
            raise BenchmarkError(
                '--amp applies to PyTorch rows (autocast) and OpenVINO rows '
                '(bfloat16 inference); ONNX Runtime runs these graphs in '
                'float32 only. Drop --amp, or add --backend pytorch or '
                'openvino')
        if 'openvino' in backends and amp_dtype != torch.bfloat16:
            raise BenchmarkError(
                f'OpenVINO rows run in float32 or, with --amp, bfloat16 '
                f'(its CPU inference precision), not '
                f'{str(amp_dtype).replace("torch.", "")}; drop --amp-dtype')
    from mmelastic.deployment.onnx import DeploymentError, require
    try:
        require(*dict.fromkeys(
            pkg for b in exported for pkg in BACKEND_PACKAGES[b]))
    except DeploymentError as err:
        raise BenchmarkError(str(err)) from err
    return backends


def interleaved_schedule(num_models, rounds):
    """Model order of each round: given order in even rounds, reversed in
    odd ones (ABBA), so every model runs as often first as last.

    >>> interleaved_schedule(2, 4)
    [[0, 1], [1, 0], [0, 1], [1, 0]]
    """
    order = list(range(num_models))
    return [order if r % 2 == 0 else order[::-1] for r in range(rounds)]


def summarize(values):
    """Median, quartiles (``statistics.quantiles``, inclusive) and range."""
    values = sorted(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    else:
        q1 = q3 = values[0]
    return dict(
        median=statistics.median(values),
        q1=q1,
        q3=q3,
        min=values[0],
        max=values[-1])


# --------------------------------------------------------------------------
# Models and steps
# --------------------------------------------------------------------------
def build_model(config):
    """Build a config's model (mmpretrain classifier or mmseg segmentor).

    Args:
        config (str | mmengine.Config): A config file or a loaded config.
    """
    import copy

    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import mmelastic  # noqa: F401  (registers the models)
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('type') == 'EncoderDecoder':
        model_cfg.pop('auxiliary_head', None)
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    if scope == 'mmseg':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    return model


def _logits(output):
    while isinstance(output, (list, tuple)):
        output = output[-1]
    return output


class ModelRunner:
    """One model on one device with its optimizer and fixed random batch.

    A training step is forward (``mode='tensor'``), cross entropy against
    random labels on the logits (per pixel for segmentors), backward and an
    SGD step; an inference step is a forward in ``torch.inference_mode``.
    """

    def __init__(self, name, config, device, batch, size, amp=False,
                 channels_last=False, compile=False, seed=0,
                 fast_path=True, freeze=False):
        self.name, self.config, self.batch = name, config, batch
        self.fast_path = fast_path
        self.device = torch.device(device)
        torch.manual_seed(seed)
        model = build_model(config).to(self.device)
        self.fmt = torch.channels_last if channels_last else \
            torch.contiguous_format
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.fn = TensorForward(model)
        if compile:
            # Freezing (inference graphs only) treats the weights as
            # constants: BN folds into the convs, ReLUs and sums fuse into
            # oneDNN convs.
            self.fn = torch.compile(
                self.fn, options=dict(freezing=True) if freeze else None)
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
        self.amp_dtype = autocast_dtype(amp, self.device)
        self.amp = self.amp_dtype is not None
        # float16 gradients underflow without loss scaling; bfloat16 has
        # float32's range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type) \
            if self.amp_dtype == torch.float16 else None
        self.inputs = torch.randn(batch, 3, size, size, device=self.device)
        self.inputs = self.inputs.contiguous(memory_format=self.fmt)
        self.labels = None
        self.params = sum(p.numel() for p in model.parameters())

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def set_mode(self, mode):
        self.model.train(mode == 'train')

    def infer_step(self):
        with torch.inference_mode(), self._autocast():
            return self.fn(self.inputs)

    def train_step(self):
        with self._autocast():
            logits = _logits(self.fn(self.inputs)).float()
            if self.labels is None:
                shape = (logits.shape[0], ) + tuple(logits.shape[2:])
                gen = torch.Generator().manual_seed(0)
                self.labels = torch.randint(
                    logits.shape[1], shape, generator=gen).to(self.device)
            loss = F.cross_entropy(logits, self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss

    def step(self, mode):
        with fast_path(self.fast_path):
            return self.infer_step() if mode == 'infer' else \
                self.train_step()

    def timed_step(self, mode):
        """Seconds one step of ``mode`` takes (device synchronized)."""
        self.sync()
        start = time.perf_counter()
        out = self.step(mode)
        if mode == 'train':
            out.item()  # the loss; keeps lazy backends honest
        self.sync()
        return time.perf_counter() - start


class ExportedGraphRunner:
    """One model exported to ONNX and run by ONNX Runtime or OpenVINO (CPU,
    inference).

    The graph is what :class:`ModelRunner` times in inference,
    ``model(x, mode='tensor')``, exported by
    :func:`mmelastic.deployment.onnx.export_onnx` for the benchmark's fixed
    batch and size (the straightforward path of the Elastic blocks: the
    runtimes fuse their pooling, ``Resize``, norms and sums their own way),
    and run with the benchmark's thread count
    (:func:`~mmelastic.deployment.onnx.load_runtime`: ONNX Runtime without
    spin-waiting, OpenVINO in ``precision``).
    """

    fast_path = True  # not applicable; keeps the result rows uniform

    def __init__(self, name, config, batch, size, backend='onnxruntime',
                 threads=None, precision='f32', seed=0):
        import tempfile

        from mmelastic.deployment.onnx import export_onnx, load_runtime
        self.name, self.config, self.batch = name, config, batch
        self.backend = backend
        torch.manual_seed(seed)
        model = build_model(config).eval()
        self.params = sum(p.numel() for p in model.parameters())
        self._dir = tempfile.TemporaryDirectory(prefix='mmelastic_onnx_')
        path = osp.join(self._dir.name, 'model.onnx')
        export_onnx(model, path, (batch, 3, size, size), output=None,
                    dynamic_batch=False)
        del model
        self.runtime = load_runtime(path, backend, threads=threads,
                                    precision=precision, spinning=False)
        self.inputs = torch.randn(batch, 3, size, size).numpy()

    def set_mode(self, mode):
        if mode != 'infer':
            raise BenchmarkError(f'{self.backend} runs inference only')

    def step(self, mode):
        self.set_mode(mode)
        return self.runtime(self.inputs)

    def timed_step(self, mode):
        """Seconds one inference takes."""
        start = time.perf_counter()
        self.step(mode)
        return time.perf_counter() - start

    def op_times(self, mode, steps=3):
        """The runtime's own profile: ms per step by op type."""
        self.set_mode(mode)
        return self.runtime.op_times(self.inputs, steps)


# --------------------------------------------------------------------------
# Memory probe (one fresh process per model)
# --------------------------------------------------------------------------
def _proc_status_mb(key):
    """``VmRSS`` / ``VmHWM`` of this process in MB (None off Linux)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _ru_maxrss_mb():
    import resource
    scale = 1 if sys.platform == 'darwin' else 1024  # bytes vs KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def memory_probe(config, modes=MODES, device='cpu', batch=8, size=224,
                 amp=False, channels_last=False, compile=False,
                 threads=None, fast_path=True, freeze=False):
    """Peak memory of one step per mode; run it in a fresh process.

    On CPU, ``peak_mb`` is the process's peak resident set size during the
    step (``VmHWM`` after resetting it through ``/proc/self/clear_refs``;
    where that is not possible, ``ru_maxrss`` since process start, an upper
    bound) and ``delta_mb`` is that peak minus the RSS just before the step
    (the model and optimizer are already built; the first step also
    allocates gradients and momentum buffers). On CUDA both come from
    ``torch.cuda.max_memory_allocated`` (tensors only, no caching overhead).
    """
    if threads:
        torch.set_num_threads(threads)
    runner = ModelRunner('probe', config, device, batch, size, amp,
                         channels_last, compile, fast_path=fast_path,
                         freeze=freeze)
    out = dict(params=runner.params)
    for mode in modes:
        runner.set_mode(mode)
        if runner.device.type == 'cuda':
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
            runner.timed_step(mode)
            peak = torch.cuda.max_memory_allocated() / 2**20
            how = 'torch.cuda.max_memory_allocated'
        else:
            before = _proc_status_mb('VmRSS')
            exact = _reset_peak_rss() and before is not None
            runner.timed_step(mode)
            if exact:
                peak = _proc_status_mb('VmHWM')
                how = 'VmHWM (reset before the step)'
            else:
                peak = _ru_maxrss_mb()
                how = 'ru_maxrss (since process start)'
                before = before if before is not None else peak
        out[mode] = dict(
            peak_mb=peak, delta_mb=max(peak - before, 0.0), how=how)
    return out


_PROBE_CODE = ('import json, sys\n'
               'from mmelastic.analysis.benchmark import memory_probe\n'
               'res = memory_probe(**json.loads(sys.argv[1]))\n'
               'print("MMELASTIC_MEMORY_PROBE " + json.dumps(res))\n')


def run_memory_probe(config, timeout=900, **kwargs):
    """Run :func:`memory_probe` in a fresh Python process; return its dict.

    Raises:
        BenchmarkError: If the subprocess fails (its output tail is shown).
    """
    kwargs = dict(kwargs, config=osp.abspath(config))
    kwargs['modes'] = list(kwargs.get('modes', MODES))
    env = dict(os.environ)
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env['PYTHONPATH'] = os.pathsep.join(
        [root] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    proc = subprocess.run(
        [sys.executable, '-c', _PROBE_CODE,
         json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith('MMELASTIC_MEMORY_PROBE '):
            return json.loads(line.split(' ', 1)[1])
    raise BenchmarkError(
        f'memory probe of {config} failed (exit code {proc.returncode}):\n'
        f'{proc.stdout[-3000:]}')


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------
def run_benchmark(models, device='cpu', batch=8, size=224, amp=False,
                  channels_last=False, compile=False, threads=None,
                  warmup=2, reps=5, modes=MODES, memory=True,
                  straightforward=False, freeze=False, profile=0,
                  conv_time=False, backend='pytorch', log=None):
    """Time every model, interleaved, and probe its peak memory.

    Args:
        models (list[tuple[str, str]]): ``(name, config path)`` pairs; the
            first is the reference of the ratios.
        modes (sequence[str]): ``'infer'`` and/or ``'train'``.
        amp (bool | str): Autocast: False, True (the device's usual dtype)
            or a dtype name (:func:`autocast_dtype`); float16 trains with a
            ``GradScaler``.
        warmup (int): Untimed interleaved rounds per mode.
        reps (int): Timed interleaved rounds per mode (one step of every
            model per round).
        memory (bool): Also run one memory probe subprocess per model
            (not when ``backend`` includes ONNX Runtime or OpenVINO: then no
            row, PyTorch ones included, is probed).
        straightforward (bool): Also time every model with mmelastic's fast
            path off (:func:`mmelastic.models.utils.fast_path`), as a row
            ``NAME:straightforward`` right after it, in the same rounds.
        freeze (bool): With ``compile`` and inference only: compile with
            Inductor's freezing, for every model.
        profile (int): After the timed rounds, profile this many steps of
            every model per mode with ``torch.profiler``, or the runtime's
            own profiler for exported rows (:func:`profile_ops`); 0: none.
        conv_time (bool): After the timed rounds, record every model's
            convolutions of one step per mode and time them alone, next to
            one whole step, in interleaved rounds as many as ``reps``
            (:mod:`mmelastic.analysis.conv_time`). Eager models only.
        backend (str | sequence[str]): Any of ``'pytorch'``,
            ``'onnxruntime'`` and ``'openvino'``: the last two export every
            model to ONNX and run it in that runtime on the CPU
            (:class:`ExportedGraphRunner`; inference only). With several,
            every model gets a row per backend, in the given order, the
            rows after the first named ``NAME:BACKEND``. The PyTorch
            options above apply to the PyTorch rows; ``amp`` also makes
            OpenVINO compute in bfloat16 (ONNX Runtime stays float32);
            ``conv_time`` is not available with exported rows.
        log (callable, optional): Called with one progress line at a time.

    Returns:
        dict: ``settings``, ``schedule`` (model indices per round),
        ``models`` (name, config, params, per mode ``times_s`` of every
        rep, ``throughput`` = batch / time summarized as ``median``,
        ``q1``, ``q3``, ``min``, ``max`` in images/s, ``ratio`` =
        median throughput / the first model's, ``round_ratios`` = the
        first model's step time over this model's in each round (the two
        steps ran next to each other, so the machine's drift between
        rounds cancels; their spread says how far one round's ratio
        moves) summarized like ``throughput``, and with ``profile``
        ``profile_ms``, with ``conv_time`` ``conv_time``) and, with
        ``memory``, ``memory`` per model.
    """
    log = log or (lambda line: None)
    if warmup < 0 or reps < 1 or batch < 1 or size < 1 or profile < 0:
        raise BenchmarkError('need --reps >= 1, --warmup >= 0, --batch >= 1, '
                             '--size >= 1 and --profile >= 0')
    modes = [m for m in MODES if m in modes]
    if freeze and not compile:
        raise BenchmarkError('--freeze is an option of --compile; add '
                             '--compile')
    if freeze and modes != ['infer']:
        raise BenchmarkError(
            '--freeze times inference only (a frozen graph keeps the '
            'weights it was compiled with, and freezing does not apply to '
            'training graphs); add --mode infer')
    if conv_time and compile:
        raise BenchmarkError(
            '--conv-time records the convolutions of an eager step; '
            'torch.compile\'d code runs them inside its own kernels, where '
            'they cannot be recorded. Drop --compile (or --conv-time)')
    check_device_name(device)  # before torch.device() sees it
    dtype = autocast_dtype(amp, device)
    backends = check_backends(
        backend, device, modes,
        pytorch_options=dict(channels_last=channels_last, compile=compile,
                             straightforward=straightforward),
        eager_options=dict(conv_time=conv_time), amp_dtype=dtype)
    dev = check_device(device)
    if threads:
        torch.set_num_threads(threads)
    settings = dict(
        device=str(dev), batch=batch, size=size,
        amp=str(dtype).replace('torch.', '') if dtype else False,
        channels_last=channels_last, compile=compile, freeze=freeze,
        straightforward=straightforward, profile_steps=profile,
        conv_time=conv_time,
        threads=torch.get_num_threads(), warmup=warmup, reps=reps,
        modes=modes, torch=torch.__version__, backends=backends,
        # Filled in from the runtimes below.
        onnxruntime=None, openvino=None, openvino_precision=None,
        cuda_device=torch.cuda.get_device_name(dev)
        if dev.type == 'cuda' else None)
    variants = []  # (row name, config, fast path, backend)
    for name, config in models:
        for b in backends:
            row = name if b == backends[0] else f'{name}:{b}'
            variants.append((row, config, True, b))
            if straightforward and b == 'pytorch':
                variants.append((f'{row}:straightforward', config, False, b))
    runners = []
    for name, config, fast, runner_backend in variants:
        start = time.perf_counter()
        if runner_backend in EXPORTED_BACKENDS:
            runner = ExportedGraphRunner(
                name, config, batch, size, runner_backend,
                settings['threads'],
                # --amp: OpenVINO in bf16; ONNX Runtime stays float32.
                precision='bf16' if dtype is not None
                and runner_backend == 'openvino' else 'f32')
            settings[runner_backend] = runner.runtime.version
            if runner_backend == 'openvino':
                # What OpenVINO computes in (bf16 falls back to f32 on CPUs
                # without bfloat16 instructions).
                settings['openvino_precision'] = runner.runtime.precision
        else:
            runner = ModelRunner(name, config, dev, batch, size, amp,
                                 channels_last, compile, fast_path=fast,
                                 freeze=freeze)
        runners.append(runner)
        log(f'built {name} ({runners[-1].params / 1e6:.2f}M params) in '
            f'{time.perf_counter() - start:.1f}s')

    names = [r.name for r in runners]
    results = [
        dict(name=r.name, config=r.config, params=r.params,
             fast_path=r.fast_path) for r in runners
    ]
    schedule = interleaved_schedule(len(runners), reps)
    for mode in modes:
        for r in runners:
            r.set_mode(mode)
        for w, order in enumerate(interleaved_schedule(len(runners), warmup)):
            for i in order:
                runners[i].timed_step(mode)
            log(f'[{mode}] warm-up {w + 1}/{warmup}')
        times = [[] for _ in runners]
        for rnd, order in enumerate(schedule):
            for i in order:
                times[i].append(runners[i].timed_step(mode))
            log(f'[{mode}] round {rnd + 1}/{reps} (' + ', '.join(
                f'{names[i]} {batch / times[i][-1]:.1f} img/s'
                for i in order) + ')')
        ref = None
        for i, res in enumerate(results):
            tput = summarize([batch / t for t in times[i]])
            ref = ref if ref is not None else tput['median']
            res[mode] = dict(
                times_s=times[i], throughput=tput,
                ratio=tput['median'] / ref,
                round_ratios=summarize(
                    [t0 / t for t0, t in zip(times[0], times[i])]))
        if profile:
            for res, runner in zip(results, runners):
                res[mode]['profile_ms'] = profile_ops(runner, mode, profile)
            log(f'[{mode}] profiled {profile} steps per model')
        if conv_time:
            _time_convolutions(runners, results, mode, schedule, log)
    del runners
    if dev.type == 'cuda':
        torch.cuda.empty_cache()

    exported = [b for b in backends if b in EXPORTED_BACKENDS]
    if memory and exported:
        # A probe process would hold the export's PyTorch allocations too,
        # which the glibc heap keeps and the runtime's allocator then
        # reuses: its peak would say little about the runtime.
        log(f'memory: not probed with --backend {" ".join(exported)}')
        memory = False
    if memory:
        for res, (name, config, fast, _) in zip(results, variants):
            start = time.perf_counter()
            res['memory'] = run_memory_probe(
                config, modes=modes, device=str(dev), batch=batch, size=size,
                amp=amp, channels_last=channels_last, compile=compile,
                threads=settings['threads'], fast_path=fast, freeze=freeze)
            res['memory'].pop('params', None)
            log(f'memory probe {name}: ' + ', '.join(
                f'{m} peak {res["memory"][m]["peak_mb"]:.0f} MB'
                for m in modes) + f' ({time.perf_counter() - start:.0f}s)')
    return dict(settings=settings, schedule=schedule, models=results)


def _time_convolutions(runners, results, mode, schedule, log):
    """``conv_time`` of every model for one mode (see :func:`run_benchmark`).
    """
    calls = [record_convolutions(lambda r=r: r.step(mode)) for r in runners]
    rounds = [[] for _ in runners]
    for rnd, order in enumerate(schedule):
        for i in order:
            # A whole step next to the convolutions alone, in the same
            # round: their difference is not skewed by the machine's drift.
            step = runners[i].timed_step(mode)
            rounds[i].append(time_convolutions(calls[i], runners[i].sync))
            rounds[i][-1]['step'] = step
        log(f'[{mode}] convolutions timed alone, round {rnd + 1}/'
            f'{len(schedule)}')
    for i, res in enumerate(results):
        res[mode]['conv_time'] = summarize_conv_time(calls[i], rounds[i])


def profile_ops(runner, mode, steps=3):
    """Self time per op of one model's ``mode`` steps, ms per step.

    ``torch.profiler`` over ``steps`` steps (after the timed rounds, so
    warm): on CPU the ops' self CPU time, on CUDA their self device time.
    Op names are ATen's (``aten::mkldnn_convolution``, ...); ops whose
    time is zero are left out. An exported row
    (:class:`ExportedGraphRunner`) is profiled by its runtime instead, by
    op type of the optimized graph (ONNX Runtime: ``FusedConv``,
    ``Resize`` ...; OpenVINO: ``Convolution``, ``Interpolate`` ...).

    Returns:
        dict: ``op name -> ms per step``, largest first.
    """
    if isinstance(runner, ExportedGraphRunner):
        return runner.op_times(mode, steps)
    from torch.profiler import ProfilerActivity, profile
    cuda = runner.device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if cuda else [])
    runner.sync()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            runner.step(mode)
        runner.sync()
    times = {}
    for event in prof.key_averages():
        us = event.self_device_time_total if cuda else \
            event.self_cpu_time_total
        if us > 0:
            times[event.key] = us / 1000 / steps
    return dict(sorted(times.items(), key=lambda item: -item[1]))


def format_profile(result, top=15):
    """Plain-text tables of the ``profile_ms`` of a :func:`run_benchmark`
    result: per mode, the ``top`` ops by their largest time in any model,
    one column per model, the sum of the ops whose name contains "conv"
    (any case: ATen's convolutions, the fast path's resampling convolutions
    among them, ONNX Runtime's ``Conv``/``FusedConv``/``NchwcConv``,
    OpenVINO's ``Convolution``/``GroupConvolution``) and the sum over all
    ops."""

    def table(mode, profiles, names):
        ops = sorted({op for p in profiles for op in p},
                     key=lambda op: -max(p.get(op, 0.0) for p in profiles))
        rows = [[op] + [f'{p.get(op, 0.0):.1f}' for p in profiles]
                for op in ops[:top]]
        rows.append(['ops named *conv*'] +
                    [f'{conv_share(p)[0]:.1f}' for p in profiles])
        rows.append([f'all {len(ops)} ops'] +
                    [f'{sum(p.values()):.1f}' for p in profiles])
        return [f'{mode}: ms per step'] + names, rows

    return _mode_tables(result, 'profile_ms', table)


def _mode_tables(result, key, table):
    """One side-by-side text table per mode in which every model has
    ``key``: ``table(mode, values, names) -> (header, rows)`` with the
    models' ``[mode][key]`` values and names."""
    models = result['models']
    names = [m['name'] for m in models]
    blocks = []
    for mode in result['settings']['modes']:
        if all(key in m[mode] for m in models):
            blocks.append(_side_by_side(
                *table(mode, [m[mode][key] for m in models], names)))
    return '\n\n'.join(blocks)


def _side_by_side(header, rows):
    """Text columns: the first left-aligned (labels), the rest right."""
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return '\n'.join(
        '  '.join(x.ljust(w) if i == 0 else x.rjust(w)
                  for i, (x, w) in enumerate(zip(line, widths)))
        for line in [header] + rows)


def format_conv_time(result):
    """Plain-text tables of the ``conv_time`` of a benchmark result: per
    mode, one column per model."""

    def table(mode, times, names):
        rows = [
            ['convolution calls (forward + backward)'] +
            [f'{t["calls"]["forward"]} + {t["calls"]["backward"]}'
             for t in times],
            ['convolutions, forward'] +
            [f'{t["forward_ms"]:.1f}' for t in times],
            ['convolutions, backward'] +
            [f'{t["backward_ms"]:.1f}' for t in times],
            ['convolutions, all'] + [f'{t["total_ms"]:.1f}' for t in times],
            ['step (timed in the same rounds)'] +
            [f'{t["step_ms"]:.1f}' for t in times],
            ['rest of the step (step - convolutions)'] +
            [f'{t["rest_ms"]:.1f}' for t in times],
            ['convolutions, share of the step'] +
            [f'{100 * t["total_ms"] / t["step_ms"]:.0f}%' for t in times],
        ]
        ref = times[0]
        if len(times) > 1:
            for key, label in (('total_ms', 'convolutions'),
                               ('rest_ms', 'rest')):
                rows.append([f'{label}, ratio to {names[0]}'] + [
                    f'{t[key] / ref[key]:.2f}x' if ref[key] > 0 else '-'
                    for t in times
                ])
        header = [f'{mode}: convolutions timed alone (ms per step)'] + names
        return header, rows

    return _mode_tables(result, 'conv_time', table)


def describe_run(settings):
    """One line saying how a benchmark ran (device, batch, backend ...)."""
    s = settings
    run = f"device {s['device']}" + (
        f" ({s['cuda_device']})" if s.get('cuda_device') else '') + \
        f", batch {s['batch']}, {s['size']}x{s['size']}, " \
        f"{s['threads']} threads"
    backends = s.get('backends', ['pytorch'])
    pytorch = (f"amp {s['amp']}, channels_last {s['channels_last']}, "
               f"compile {s['compile']}" +
               (' (freezing)' if s.get('freeze') else '') +
               f", torch {s['torch']}")
    if backends[0] == 'pytorch':
        run += ', ' + pytorch
    if not any(b in EXPORTED_BACKENDS for b in backends):
        return run
    from mmelastic.deployment.onnx import RUNTIME_NAMES

    def runtime(backend):
        name = f'{RUNTIME_NAMES[backend]} {s[backend]}'
        if backend == 'openvino':
            name += f" in {s.get('openvino_precision') or 'f32'}"
        return name

    exported_by = f"graphs exported by torch {s['torch']}"
    rows = '; '.join(
        f'rows NAME:{b}: ' + (runtime(b) if b in EXPORTED_BACKENDS else
                              pytorch) for b in backends[1:])
    if backends[0] == 'pytorch':
        return f'{run}; {rows} ({exported_by})'
    return f'{runtime(backends[0])} ({exported_by}), {run}' + (
        f'; {rows}' if rows else '')


def _quartiles(summary):
    """``q1-q3`` of a :func:`summarize` result ('-' for none: results
    written before round ratios were kept)."""
    if not summary:
        return '-'
    return f"{summary['q1']:.3f}-{summary['q3']:.3f}"


def format_table(result):
    """A plain-text table of a :func:`run_benchmark` result."""
    models = result['models']
    settings = result['settings']
    ref = models[0]['name']
    memory = all('memory' in m for m in models)
    header = ['mode', 'model', 'img/s (median)', 'IQR', 'min-max',
              f'vs {ref}', 'per round (IQR)']
    if memory:
        header += ['peak MB', 'step +MB']
    rows = []
    for mode in settings['modes']:
        for m in models:
            t = m[mode]['throughput']
            row = [
                mode, m['name'], f"{t['median']:.2f}",
                f"{t['q1']:.2f}-{t['q3']:.2f}",
                f"{t['min']:.2f}-{t['max']:.2f}", f"{m[mode]['ratio']:.3f}x",
                _quartiles(m[mode].get('round_ratios'))
            ]
            if memory:
                row += [
                    f"{m['memory'][mode]['peak_mb']:.0f}",
                    f"{m['memory'][mode]['delta_mb']:.0f}"
                ]
            rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [
        '  '.join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
        for line in [header] + rows
    ]
    mem_note = ''
    if memory:
        how = models[0]['memory'][settings['modes'][0]]['how']
        mem_note = (f'; memory: one step in a fresh process per model, '
                    f'{how}; peak = whole process, step +MB = peak minus '
                    'memory just before the step')
    notes = (
        describe_run(settings) + '; '
        f"median of {settings['reps']} interleaved (ABBA) reps after "
        f"{settings['warmup']} warm-up rounds; IQR = quartiles q1-q3; "
        f"ratio = median img/s / {ref}'s; per round = {ref}'s step time "
        "/ the model's in the same round, quartiles over the rounds"
        + mem_note)
    return '\n'.join(lines + ['', notes])


def finite_json(obj):
    """``obj`` with NaN/inf replaced by None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


# --------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------
#: File types ``--plot`` writes (matplotlib picks the format by suffix).
PLOT_SUFFIXES = ('.png', '.pdf', '.svg')
MODE_TITLES = dict(infer='inference', train='training step')


def plot_suffix_problem(path):
    """Why ``--plot`` cannot write ``path`` (its suffix), or None."""
    if osp.splitext(path)[1].lower() in PLOT_SUFFIXES:
        return None
    return f'use a file ending in {", ".join(PLOT_SUFFIXES)}'


def plot_rows(result):
    """What :func:`plot_result` draws, per mode, from a benchmark result.

    Returns:
        dict: ``mode -> list of (name, median, q1, q3, min, max, ratio)``
        in images/s, in the order of ``result['models']``; with memory
        probes also ``'memory' -> list of (name, {mode: peak MB})``; with
        ``conv_time`` in every mode also ``'conv_time' -> list of (name,
        {mode: (convolutions ms, rest ms)})``; with ``profile_ms`` in every
        mode also ``'profile' -> list of (name, {mode: (ms of the ops named
        *conv*, ms of all other ops)})`` (:func:`conv_share`).
    """
    rows = {}
    for mode in result['settings']['modes']:
        rows[mode] = [
            (m['name'], ) + tuple(m[mode]['throughput'][k]
                                  for k in ('median', 'q1', 'q3', 'min',
                                            'max')) + (m[mode]['ratio'], )
            for m in result['models']
        ]
    if all('memory' in m for m in result['models']):
        rows['memory'] = [(m['name'], {
            mode: m['memory'][mode]['peak_mb']
            for mode in result['settings']['modes']
        }) for m in result['models']]
    modes = result['settings']['modes']
    if all('conv_time' in m[mode] for m in result['models'] for mode in modes):
        rows['conv_time'] = [(m['name'], {
            mode: (m[mode]['conv_time']['total_ms'],
                   m[mode]['conv_time']['rest_ms'])
            for mode in modes
        }) for m in result['models']]
    if all('profile_ms' in m[mode] for m in result['models']
           for mode in modes):
        rows['profile'] = [(m['name'], {
            mode: conv_share(m[mode]['profile_ms'])
            for mode in modes
        }) for m in result['models']]
    return rows


def conv_share(profile_ms):
    """``(convolutions, rest)`` in ms of a profile (``op -> ms``): the ops
    whose name contains "conv" (any case), and all other ops."""
    conv = sum(t for op, t in profile_ms.items() if 'conv' in op.lower())
    return conv, sum(profile_ms.values()) - conv


def _plot_step_split(ax, rows, modes, y,
                     xlabel='ms per step: convolutions timed alone + the '
                     'rest'):
    """The ``conv_time`` (or ``profile``) panel: per model and mode, a
    bar of the step's convolutions and one of the rest after it, labelled
    with both ratios to the first model."""
    width = 0.8 / len(modes)
    for k, mode in enumerate(modes):
        conv, rest = zip(*[split[mode] for _, split in rows])
        offsets = [i - 0.4 + width * (k + 0.5) for i in y]
        drawn_rest = [max(r, 0.0) for r in rest]  # noise can make it < 0
        ax.barh(offsets, conv, height=width * 0.9, color=f'C{k}')
        ax.barh(offsets, drawn_rest, left=conv, height=width * 0.9,
                color=f'C{k}', alpha=0.35)
        for offset, c, r, d in zip(offsets, conv, rest, drawn_rest):
            # No ratio to a zero (a profile without convolutions, or a
            # first row without rest).
            ratios = ' + '.join(
                f'{a / b:.2f}x' if b > 0 else '-'
                for a, b in ((c, conv[0]), (r, rest[0])))
            ax.text(c + d, offset, f' {ratios} {MODE_TITLES[mode]}',
                    va='center', fontsize=7)
    ax.set_xlim(0, max(c + max(r, 0.0) for _, split in rows
                       for c, r in split.values()) * 2.1)
    ax.set_xlabel(xlabel)


def plot_result(result, path):
    """Bar chart of a :func:`run_benchmark` result, written to ``path``.

    One panel per mode: the median images/s of every model as a bar, its
    quartiles as a thick whisker and its range as a thin one, labelled with
    the ratio to the first model (dashed line); with memory probes, one more
    panel with the peak memory per mode; with ``conv_time``, one more with
    each step split into its convolutions (dark) and the rest (light); with
    ``profile``, one more with the profiled step split the same way (the
    ops named *conv* and all other ops).

    Returns:
        str: ``path``.
    """
    problem = plot_suffix_problem(path)
    if problem:
        raise BenchmarkError(f'cannot plot to {path!r}: {problem}')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = plot_rows(result)
    modes = result['settings']['modes']
    panels = modes + [p for p in ('memory', 'conv_time', 'profile')
                      if p in rows]
    names = [m['name'] for m in result['models']]
    height = 1.2 + 0.45 * len(names)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), height), squeeze=False)
    y = list(range(len(names)))
    for ax, panel in zip(axes[0], panels):
        if panel == 'memory':
            width = 0.8 / len(modes)
            for k, mode in enumerate(modes):
                peaks = [peak[mode] for _, peak in rows['memory']]
                offsets = [i - 0.4 + width * (k + 0.5) for i in y]
                ax.barh(offsets, peaks, height=width * 0.9, color=f'C{k}')
                for offset, peak in zip(offsets, peaks):
                    ax.text(peak, offset,
                            f' {peak / peaks[0]:.2f}x {MODE_TITLES[mode]}',
                            va='center', fontsize=7)
            ax.set_xlim(0, max(max(peak.values())
                               for _, peak in rows['memory']) * 1.5)
            ax.set_xlabel('peak memory (MB); ratio to the first model')
        elif panel == 'conv_time':
            _plot_step_split(ax, rows['conv_time'], modes, y)
        elif panel == 'profile':
            _plot_step_split(ax, rows['profile'], modes, y,
                             xlabel='profiled ms per step: *conv* ops + '
                             'the rest')
        else:
            median, q1, q3, low, high, ratio = zip(
                *[row[1:] for row in rows[panel]])
            ax.barh(y, median, color='0.78', edgecolor='0.35')
            ax.hlines(y, low, high, color='0.2', linewidth=0.8)
            ax.hlines(y, q1, q3, color='0.2', linewidth=3.5)
            ax.axvline(median[0], color='C3', linestyle='--', linewidth=0.8)
            for i in y:
                ax.text(high[i], i, f' {ratio[i]:.3f}x', va='center',
                        fontsize=8)
            ax.set_xlim(0, max(high) * 1.22)
            ax.set_xlabel(f'{MODE_TITLES[panel]}: images/s (median, '
                          'quartiles, range)')
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis='x', alpha=0.3)
    s = result['settings']
    # Wrapped: a long settings line would be cut at the figure's edges.
    fig.suptitle(
        textwrap.fill(
            describe_run(s) + f"; median of {s['reps']} interleaved rounds",
            width=int(fig.get_figwidth() * 14)),
        fontsize=9)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
