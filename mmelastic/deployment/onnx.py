# Copyright (c) mmelastic contributors. All rights reserved.
"""Export classifiers and segmentors to ONNX; run them in ONNX Runtime or
OpenVINO.

The logic behind ``tools/deployment/pytorch2onnx.py`` and the
``--backend onnxruntime`` / ``openvino`` rows of
``tools/analysis/benchmark.py``.

The exported graph is the straightforward path of the Elastic blocks (the
fast path is off while exporting, see
:func:`mmelastic.models.utils.fast_path_enabled`): 2x2 average pooling,
bilinear ``Resize``, convolutions, batch norms, ReLUs and sums, all standard
ONNX ops that a runtime fuses in its own way. The fast path's rewrites
(merged branch weights, resampling written as convolutions or slices) are
for PyTorch's kernels; exported, they would be slower ops for the runtime.

What the graph takes and returns:

* input ``input``: a float32 ``(N, 3, H, W)`` batch, normalized as the
  config's ``data_preprocessor`` does (mean/std, BGR to RGB); ``N`` is
  dynamic unless ``dynamic_batch=False``; ``H`` and ``W`` are fixed, or
  free (any size) with ``dynamic_size=True``.
* classifiers, output ``scores`` (softmax for single-label heads, sigmoid
  for multi-label ones, as the head's ``predict`` scores) or ``logits``;
* segmentors, output ``seg_logits``: ``(N, classes, H, W)``, resized to the
  input size as mmseg's whole-image inference does; ``argmax(1)`` is the
  label map.

Import it as ``mmelastic.deployment.onnx``; it needs the ``deploy`` extra
(``pip install -r requirements/deploy.txt``: onnx, onnxscript, onnxruntime,
openvino).
"""
import contextlib
import importlib
import os
import os.path as osp
import time

import numpy as np
import torch
import torch.nn.functional as F

from mmelastic.models.utils.resample import even_free_sizes

OUTPUTS = ('scores', 'logits')
#: Default opset: None, torch's exporter's own (20 with torch 2.14.1).
OPSET_VERSION = None


class DeploymentError(RuntimeError):
    """A model or request that cannot be exported or checked."""


def require(*names):
    """Import the named ``deploy`` extra packages, or raise one clear error.

    Returns:
        list: The imported modules, in order.
    """
    modules, missing = [], []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise DeploymentError(
            f'{", ".join(missing)} {"is" if len(missing) == 1 else "are"} '
            'not installed (ONNX export and its runtimes need them); '
            'install the deploy extra: pip install -r '
            'requirements/deploy.txt (or pip install "mmelastic[deploy]")')
    return modules


def is_segmentor(model):
    """bool: Whether ``model`` is an mmseg segmentor (it has a decode
    head) rather than an mmpretrain classifier."""
    return hasattr(model, 'decode_head')


class ExportWrapper(torch.nn.Module):
    """A classifier or segmentor as ``tensor -> tensor`` for export.

    Args:
        model (nn.Module): An mmpretrain classifier or mmseg segmentor.
        output (str | None): For classifiers, ``'scores'`` (the head's
            prediction scores: softmax, or sigmoid for multi-label heads) or
            ``'logits'``; segmentors return ``seg_logits`` at the input
            size for either. None: ``model(inputs, mode='tensor')`` as it
            is, for any model (what the benchmark times in PyTorch).

    Example:
        >>> from mmelastic.analysis.benchmark import build_model
        >>> model = build_model('configs/imagenet/resnext50_elastic.py')
        >>> wrapper = ExportWrapper(model.eval())
        >>> tuple(wrapper(torch.rand(2, 3, 64, 64)).shape)
        (2, 1000)
    """

    def __init__(self, model, output='scores'):
        super().__init__()
        if output is not None and output not in OUTPUTS:
            raise DeploymentError(
                f'output must be one of {OUTPUTS}, not {output!r}')
        self.model = model
        self.raw = output is None
        self.segmentor = is_segmentor(model)
        self.output_name = 'output' if self.raw else \
            'seg_logits' if self.segmentor else output
        self.activation = None
        if not self.segmentor and output == 'scores':
            self.activation = _score_activation(model)

    def forward(self, inputs):
        out = self.model(inputs, mode='tensor')
        if self.raw:
            return out
        if self.segmentor:
            # mmseg's whole-image inference: logits resized to the input.
            return F.interpolate(
                out, size=inputs.shape[2:], mode='bilinear',
                align_corners=self.model.decode_head.align_corners)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out if self.activation is None else self.activation(out)


def _score_activation(model):
    """The head's score function: sigmoid (multi-label) or softmax."""
    from mmpretrain.models.heads import ClsHead, MultiLabelClsHead
    head = getattr(model, 'head', None)
    if isinstance(head, MultiLabelClsHead):
        return torch.sigmoid
    if isinstance(head, ClsHead):
        return lambda logits: F.softmax(logits, dim=1)
    raise DeploymentError(
        f'cannot tell how {type(head).__name__} turns logits into scores; '
        "export output='logits' (--output logits) instead")


def _check_shape(shape):
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise DeploymentError(
            f'input shape must be (batch, 3, height, width) with sizes >= 1, '
            f'not {tuple(shape)}')
    return tuple(int(s) for s in shape)


#: With free sizes the graph is traced at least this large, so that no map
#: of the example is 1x1 (torch.export treats sizes of 1 as special).
MIN_TRACED_SIZE = 64


def export_onnx(model, path, shape=(1, 3, 224, 224), output='scores',
                dynamic_batch=True, dynamic_size=False,
                opset_version=OPSET_VERSION):
    """Export an eval-mode classifier or segmentor to an ONNX file.

    Args:
        model (nn.Module): An mmpretrain classifier or mmseg segmentor
            (put in eval mode here).
        path (str): The ``.onnx`` file to write (its folder is created).
        shape (tuple): Example input ``(N, 3, H, W)``; ``H`` and ``W`` are
            fixed in the graph unless ``dynamic_size``.
        output (str | None): ``'scores'`` or ``'logits'`` (classifiers), or
            None (:class:`ExportWrapper`).
        dynamic_batch (bool): Leave the batch size free. Default: True.
        dynamic_size (bool | int): Leave the height and width free.
            ``True`` (or 1): any size, odd ones included; the graph computes
            what the model computes at that size (the Elastic blocks pad
            and crop for odd sizes without a branch on the parity, see
            :func:`mmelastic.models.utils.resample.pad_to_even`), traced at
            ``H``, ``W`` or :data:`MIN_TRACED_SIZE`, whichever is larger.
            A multiple of 32, ``k``: any multiples of ``k`` (``H`` and ``W``
            must be multiples too), traced at ``H``, ``W`` or ``2k``; every
            Elastic block then sees even maps, so the graph has no padding
            or cropping, which ONNX Runtime runs much faster (see the
            README's Deployment section). Either way the model is traced once more
            at a second size to check that the graph does not depend on
            the traced size, so the export takes twice as long.
            Default: False.
        opset_version (int, optional): ONNX opset. Default:
            :data:`OPSET_VERSION`.

    Returns:
        str: The output name of the graph.

    Raises:
        DeploymentError: For a bad shape or output, a missing package, an
            export that fails, or, with ``dynamic_size``, a model whose graph
            depends on the size it was traced at (no file is left behind).
    """
    onnx, _ = require('onnx', 'onnxscript')
    shape = _check_shape(shape)
    dims = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim('batch')
    multiple = _size_multiple(dynamic_size, shape)
    if multiple == 1:
        # DYNAMIC, not a named Dim: the stages' sizes are floor divisions
        # of the input's, and torch.export cannot prove the (always true)
        # relations between them that a named Dim would need; it keeps
        # them as checks of the traced program instead.
        dims[2] = dims[3] = torch.export.Dim.DYNAMIC
        shape = shape[:2] + tuple(
            max(size, MIN_TRACED_SIZE) for size in shape[2:])
        step = SECOND_TRACE_OFFSET
    elif multiple:
        # The sizes are multiple * k: torch.export can then prove the
        # strides and 2x pools exact instead of guarding on parities.
        dims[2] = multiple * torch.export.Dim('height_blocks')
        dims[3] = multiple * torch.export.Dim('width_blocks')
        # torch.export would fix a size of one multiple (k = 1) as a
        # constant; the example's values do not matter, only its shape.
        shape = shape[:2] + tuple(
            max(size, 2 * multiple) for size in shape[2:])
        step = multiple
    dynamic_shapes = {'inputs': dims} if dims else None
    wrapper = ExportWrapper(model.eval(), output).eval()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp, second = path + '.part', path + '.check.part'
    try:
        # In multiples of 32 every Elastic block sees even maps.
        tracing = even_free_sizes if multiple > 1 else contextlib.nullcontext
        with tracing():
            _export_once(wrapper, tmp, shape, dynamic_shapes, opset_version)
        if multiple:
            # A model that reads its size as a Python number (int(),
            # float(), a branch on it) is traced at the example's size:
            # torch.export keeps that as a check of the traced program,
            # which the ONNX graph drops, so the graph would run at every
            # size but compute the traced size's result. Tracing a second
            # size shows it: the two graphs differ.
            other = shape[:2] + tuple(size + step for size in shape[2:])
            with tracing():
                _export_once(wrapper, second, other, dynamic_shapes,
                             opset_version)
            if _graph_signature(onnx, tmp) != _graph_signature(
                    onnx, second):
                raise DeploymentError(
                    f'{type(model).__name__} cannot be exported with free '
                    f'sizes: its graph traced at {shape[2]}x{shape[3]} '
                    f'differs from the one traced at {other[2]}x{other[3]},'
                    ' so it reads its input size as a Python number '
                    '(int(), float(), or a branch on it) and a free-size '
                    'graph would compute the traced size\'s result at every'
                    ' size; export a fixed size instead (no --dynamic-size)')
        os.replace(tmp, path)
    finally:
        for part in (tmp, second):
            if osp.exists(part):
                os.remove(part)
    return wrapper.output_name


#: With free sizes of any value the model is traced a second time at its
#: height and width plus this (odd, so every map up to stride 32 changes
#: its parity); in multiples of ``k``, plus ``k``.
SECOND_TRACE_OFFSET = 33


def _size_multiple(dynamic_size, shape):
    """int: What free sizes are multiples of (1: any size; 0: fixed)."""
    if dynamic_size is False or dynamic_size is None:
        return 0
    multiple = 1 if dynamic_size is True else dynamic_size
    if not isinstance(multiple, int) or multiple < 1:
        raise DeploymentError(
            'dynamic_size must be True, False or a positive multiple, not '
            f'{dynamic_size!r}')
    if multiple > 1 and multiple % 32:
        raise DeploymentError(
            f'dynamic_size={multiple}: free sizes must be any (True) or '
            'multiples of 32, so that every Elastic block sees even maps')
    if shape[2] % multiple or shape[3] % multiple:
        raise DeploymentError(
            f'with dynamic_size={multiple} the example height and width '
            f'must be multiples of it, not {shape[2]}x{shape[3]}')
    return multiple


def _export_once(wrapper, path, shape, dynamic_shapes, opset_version):
    """Trace ``wrapper`` at ``shape`` and write the ONNX file ``path``."""
    param = next(wrapper.parameters(), None)
    device = param.device if param is not None else 'cpu'
    example = torch.randn(shape, device=device)
    try:
        with torch.no_grad():
            torch.onnx.export(
                wrapper, (example, ),
                path,
                dynamo=True,
                input_names=['input'],
                output_names=[wrapper.output_name],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset_version,
                external_data=False,
                verbose=False)
    except Exception as err:
        raise DeploymentError(f'exporting {type(wrapper.model).__name__} '
                              f'to ONNX failed: {err}') from err


def _graph_signature(onnx, path):
    """What an ONNX graph computes, without its names: each node's op type
    and attributes (constants included), in order, and the initializers'
    values."""
    graph = onnx.load(path).graph

    def value(attr):
        got = onnx.helper.get_attribute_value(attr)
        if isinstance(got, onnx.TensorProto):
            return onnx.numpy_helper.to_array(got).tobytes()
        return repr(got)

    nodes = [(node.op_type, node.domain,
              sorted((attr.name, value(attr)) for attr in node.attribute))
             for node in graph.node]
    weights = sorted(
        onnx.numpy_helper.to_array(init).tobytes()
        for init in graph.initializer)
    return nodes, weights


#: Runtimes that run exported graphs here (both on the CPU).
RUNTIMES = ('onnxruntime', 'openvino')
#: Their names in messages and tables.
RUNTIME_NAMES = dict(onnxruntime='ONNX Runtime', openvino='OpenVINO')
#: Inference precisions OpenVINO's CPU plugin can be asked for. Its own
#: default is bf16 on CPUs with bfloat16 instructions, f32 elsewhere; the
#: models here always ask, so that a row says what it computed in.
OPENVINO_PRECISIONS = ('f32', 'bf16')


def _as_input(inputs):
    """A float32, C-contiguous array of a tensor or array batch."""
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    return np.ascontiguousarray(inputs, dtype=np.float32)


def _sorted_ms(times, steps):
    """``{op: total ms}`` as ms per step, largest first, zeros left out."""
    return dict(sorted(((op, ms / steps) for op, ms in times.items()
                        if ms > 0), key=lambda item: -item[1]))


def _check_steps(steps):
    if steps < 1:
        raise DeploymentError(f'profile at least 1 step, not {steps}')


def onnxruntime_kernel_times(events, steps):
    """Kernel time per op type in an ONNX Runtime profile trace.

    Args:
        events (list[dict]): The trace (``end_profiling()``'s JSON) of
            ``steps + 1`` runs, the first of them untimed.
        steps (int): The timed runs.

    Returns:
        dict: ``op type -> ms per run`` over the timed runs, largest first.
    """
    runs = sorted(e['ts'] for e in events if e.get('name') == 'model_run')
    if len(runs) != steps + 1:
        raise DeploymentError(
            f'ONNX Runtime\'s profile has {len(runs)} runs, not '
            f'{steps + 1}; cannot tell the untimed run apart')
    times = {}
    for e in events:
        # Node events of the untimed first run start before the second run
        # does.
        if e.get('cat') == 'Node' and e['name'].endswith(
                '_kernel_time') and e['ts'] >= runs[1]:
            op = e['args']['op_name']
            times[op] = times.get(op, 0.0) + e['dur'] / 1000
    return _sorted_ms(times, steps)


class OnnxRuntimeModel:
    """An exported graph in an ONNX Runtime CPU session.

    Args:
        path (str): The ``.onnx`` file.
        threads (int, optional): Intra-op threads; default: ONNX Runtime's
            (one per core).
        spinning (bool): Let idle worker threads spin-wait for the next op
            (ONNX Runtime's default, lowest latency for one session).
            Default: True. The benchmark turns it off: a session's threads
            keep spinning after its run returns and take cores from the
            next model's run (the same ResNeXt50+Elastic graph measured
            0.79x-0.83x or 0.85x-0.88x of ResNeXt50 depending only on its
            place in the round; 0.83x-0.84x in both places without).
    """

    runtime = 'onnxruntime'
    precision = 'f32'

    def __init__(self, path, threads=None, spinning=True):
        ort, = require('onnxruntime')
        self.path, self.threads, self.spinning = path, threads, spinning
        self.session = ort.InferenceSession(
            path, self._options(), providers=['CPUExecutionProvider'])
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        #: The graph's input shape, None where a size is free.
        self.input_shape = tuple(
            dim if isinstance(dim, int) else None
            for dim in graph_input.shape)
        self.output_name = self.session.get_outputs()[0].name
        self.version = ort.__version__

    def _options(self):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        options.add_session_config_entry(
            'session.intra_op.allow_spinning',
            '1' if self.spinning else '0')
        return options

    def __call__(self, inputs):
        """Run a batch (tensor or array); returns a float32 array."""
        return self.session.run(None,
                                {self.input_name: _as_input(inputs)})[0]

    def op_times(self, inputs, steps=3):
        """Kernel time per op type of ``steps`` runs, ms per run.

        A second session with ONNX Runtime's profiler on (same options) runs
        ``inputs`` once untimed, then ``steps`` times; its trace gives each
        node's kernel time, summed by op type as the optimized graph names
        them (``FusedConv``, ``NchwcConv``, ``Resize``, ...).

        Returns:
            dict: ``op type -> ms per run``, largest first.
        """
        import json
        import tempfile

        import onnxruntime as ort
        _check_steps(steps)
        feed = {self.input_name: _as_input(inputs)}
        with tempfile.TemporaryDirectory(prefix='mmelastic_ort_') as tmp:
            options = self._options()
            options.enable_profiling = True
            options.profile_file_prefix = osp.join(tmp, 'profile')
            session = ort.InferenceSession(
                self.path, options, providers=['CPUExecutionProvider'])
            for _ in range(steps + 1):
                session.run(None, feed)
            with open(session.end_profiling()) as f:
                events = json.load(f)
        return onnxruntime_kernel_times(events, steps)


class OpenVinoModel:
    """An exported graph compiled by OpenVINO for its CPU plugin.

    OpenVINO reads the ``.onnx`` file directly (no conversion step) and,
    like ONNX Runtime, folds the batch norms into the convolutions and fuses
    ReLUs and sums with them in its own way.

    Args:
        path (str): The ``.onnx`` file.
        threads (int, optional): Inference threads; default: OpenVINO's.
        precision (str): ``'f32'`` (default) or ``'bf16'``
            (:data:`OPENVINO_PRECISIONS`), OpenVINO's inference precision
            hint. Asked for always, because OpenVINO's own default on CPUs
            with bfloat16 instructions is bf16. On a CPU without them bf16
            falls back to f32; :attr:`precision` says which one runs.
    """

    runtime = 'openvino'

    def __init__(self, path, threads=None, precision='f32'):
        ov, = require('openvino')
        if precision not in OPENVINO_PRECISIONS:
            raise DeploymentError(
                f'OpenVINO precision must be one of '
                f'{", ".join(OPENVINO_PRECISIONS)}, not {precision!r}')
        self.path, self.version = path, ov.get_version().split('-')[0]
        self.core = ov.Core()
        # One synchronous request at a time, as the other backends run.
        self.config = {'PERFORMANCE_HINT': 'LATENCY',
                       'INFERENCE_PRECISION_HINT': precision}
        if threads:
            self.config['INFERENCE_NUM_THREADS'] = int(threads)
        self.compiled = self.core.compile_model(path, 'CPU', self.config)
        self.request = self.compiled.create_infer_request()
        self.precision = self._precision(self.compiled)
        #: The graph's input shape, None where a size is free.
        self.input_shape = tuple(
            dim.get_length() if dim.is_static else None
            for dim in self.compiled.input(0).get_partial_shape())
        self.output_name = self.compiled.output(0).get_any_name()

    @staticmethod
    def _precision(compiled):
        """'f32' or 'bf16': what the compiled model computes in."""
        return compiled.get_property(
            'INFERENCE_PRECISION_HINT').get_type_name()

    def __call__(self, inputs):
        """Run a batch (tensor or array); returns a float32 array."""
        # infer() copies its outputs (share_outputs=False): the array stays
        # valid after the next run.
        result = self.request.infer([_as_input(inputs)])
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)

    def op_times(self, inputs, steps=3):
        """Execution time per node type of ``steps`` runs, ms per run.

        A second compilation of the graph with OpenVINO's performance
        counters on (same settings) runs ``inputs`` once untimed, then
        ``steps`` times; the counters of executed nodes are summed by node
        type as the compiled graph names them (``Convolution``,
        ``GroupConvolution``, ``Interpolate``, ...).

        Returns:
            dict: ``node type -> ms per run``, largest first.
        """
        _check_steps(steps)
        compiled = self.core.compile_model(
            self.path, 'CPU', dict(self.config, PERF_COUNT=True))
        request = compiled.create_infer_request()
        feed = [_as_input(inputs)]
        request.infer(feed)
        times = {}
        for _ in range(steps):
            request.infer(feed)
            # The counters are those of the last run only.
            for info in request.get_profiling_info():
                if info.status.name == 'EXECUTED':
                    times[info.node_type] = times.get(
                        info.node_type, 0.0) + \
                        info.real_time.total_seconds() * 1000
        return _sorted_ms(times, steps)


def load_runtime(path, runtime='onnxruntime', threads=None,
                 precision='f32', spinning=True):
    """An exported graph in one of :data:`RUNTIMES`.

    Args:
        path (str): The ``.onnx`` file.
        runtime (str): ``'onnxruntime'`` or ``'openvino'``.
        threads (int, optional): Threads; default: the runtime's.
        precision (str): ``'f32'``, or ``'bf16'`` for OpenVINO.
        spinning (bool): ONNX Runtime's spin-waiting
            (:class:`OnnxRuntimeModel`); OpenVINO ignores it.

    Returns:
        OnnxRuntimeModel | OpenVinoModel: Called with a batch, it returns a
        float32 array; ``op_times`` profiles it.
    """
    if runtime == 'onnxruntime':
        if precision != 'f32':
            raise DeploymentError(
                f'ONNX Runtime runs these graphs in f32 only, not '
                f'{precision!r}; ask OpenVINO for bf16')
        return OnnxRuntimeModel(path, threads=threads, spinning=spinning)
    if runtime == 'openvino':
        return OpenVinoModel(path, threads=threads, precision=precision)
    raise DeploymentError(
        f'runtime must be one of {", ".join(RUNTIMES)}, not {runtime!r}')


def verify_onnx(model, path, inputs, output='scores', atol=1e-4,
                threads=None, runtime='onnxruntime'):
    """Compare a runtime's output with PyTorch's for ``inputs``.

    PyTorch runs the model as it usually does (fast path included), so
    this checks the export and the fast path against each other too.

    Args:
        model (nn.Module): The exported model.
        path (str): Its ``.onnx`` file.
        inputs (Tensor | list[Tensor]): Input batches.
        output (str): What was exported (``'scores'`` or ``'logits'``).
        atol (float): Largest allowed absolute difference.
        threads (int, optional): The runtime's threads.
        runtime (str): ``'onnxruntime'`` (default) or ``'openvino'`` (in
            f32), :func:`load_runtime`.

    Returns:
        dict: ``max_abs_diff`` (over all batches), ``shapes`` (output shape
        per batch), ``seconds`` (runtime time per batch).

    Raises:
        DeploymentError: Where the outputs differ by more than ``atol`` or
            their shapes differ.
    """
    runner = load_runtime(path, runtime, threads=threads)
    name = RUNTIME_NAMES[runtime]
    wrapper = ExportWrapper(model.eval(), output).eval()
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    worst, shapes, seconds = 0.0, [], []
    for batch in inputs:
        with torch.no_grad():
            expected = wrapper(batch).float().cpu().numpy()
        start = time.perf_counter()
        got = runner(batch)
        seconds.append(time.perf_counter() - start)
        if got.shape != expected.shape:
            raise DeploymentError(
                f'{name} returned shape {got.shape} for input '
                f'{tuple(batch.shape)}; PyTorch returned {expected.shape}')
        shapes.append(got.shape)
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= atol:
        raise DeploymentError(
            f'{name} and PyTorch outputs differ by up to {worst:.3g} '
            f'(> atol {atol:g}) for {path}')
    return dict(max_abs_diff=worst, shapes=shapes, seconds=seconds)
