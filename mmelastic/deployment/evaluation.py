# Copyright (c) mmelastic contributors. All rights reserved.
"""Test an exported graph on a config's test set, as ``tools/test.py`` does.

:func:`route_predictions` makes a built mmpretrain classifier or mmseg
segmentor take its predictions from an ONNX Runtime or OpenVINO model
(:func:`~mmelastic.deployment.onnx.load_runtime`) instead of its own
layers. Everything around the network stays OpenMMLab's: the data
preprocessor normalizes the batch in PyTorch, the runtime runs the graph,
and the classifier's head (softmax or the multi-label threshold) or the
segmentor's post-processing (padding cropped, logits resized to the
original image, argmax) turns its output into predictions, so the config's
evaluator, test-time augmentation and result dumps work unchanged.

The graph is what ``tools/deployment/pytorch2onnx.py`` writes: input
``input``; output ``scores`` or ``logits`` (classifiers) or ``seg_logits``
(segmentors, at the input size).
"""
import time

import torch

from .onnx import RUNTIME_NAMES, DeploymentError, is_segmentor


class RuntimeTimer:
    """Counts the images a runtime model ran and the seconds it took.

    It runs like the model it wraps, and reads like it too (``runtime``,
    ``precision``, ``input_shape``, ``output_name``).

    Args:
        model (OnnxRuntimeModel | OpenVinoModel): The model to time.
    """

    def __init__(self, model):
        self.model = model
        self.images = 0
        self.seconds = 0.0

    def __getattr__(self, name):
        # Only called for what the timer itself does not have.
        return getattr(self.__dict__['model'], name)

    def __call__(self, inputs):
        start = time.perf_counter()
        out = self.model(inputs)
        self.seconds += time.perf_counter() - start
        self.images += len(out)
        return out

    def summary(self):
        """str: ``'<runtime> (<precision>): N images in S s (R img/s in the
        runtime)'``."""
        name = RUNTIME_NAMES.get(self.runtime, self.runtime)
        rate = self.images / self.seconds if self.seconds else 0.0
        return (f'{name} ({self.precision}): {self.images} images in '
                f'{self.seconds:.2f} s ({rate:.2f} img/s in the runtime)')


def logits_from_scores(scores, head):
    """Logits that the head's own activation turns back into ``scores``.

    ``pytorch2onnx.py`` exports classifiers with their scores by default
    (softmax, or sigmoid for multi-label heads); the head's
    ``_get_predictions`` applies that activation itself, so it is undone
    here: ``log(s)`` for softmax (``softmax(log s) = s`` as the scores sum
    to 1), ``log(s) - log(1 - s)`` for sigmoid.
    """
    from mmpretrain.models.heads import ClsHead, MultiLabelClsHead
    if isinstance(head, MultiLabelClsHead):
        return torch.log(scores) - torch.log1p(-scores)
    if isinstance(head, ClsHead):
        return torch.log(scores)
    raise DeploymentError(
        f'cannot tell how {type(head).__name__} turns logits into scores; '
        'export the graph with --output logits')


def _check_size(graph_shape, inputs, name):
    """Refuse a batch whose size the graph does not take."""
    for axis, what in ((2, 'height'), (3, 'width')):
        fixed = graph_shape[axis] if len(graph_shape) == 4 else None
        if fixed is not None and inputs.shape[axis] != fixed:
            raise DeploymentError(
                f'the graph takes {graph_shape[2]}x{graph_shape[3]} inputs '
                f'but the test pipeline gives '
                f'{inputs.shape[2]}x{inputs.shape[3]} ({what} differs); '
                'export it with free sizes (pytorch2onnx.py --dynamic-size)'
                f', or test at its size (for segmentors: model.test_cfg='
                f"dict(mode='slide', crop_size=({graph_shape[2]}, "
                f'{graph_shape[3]}), stride=...))')
    batch = graph_shape[0] if graph_shape else None
    if batch is not None and inputs.shape[0] != batch:
        raise DeploymentError(
            f'{name} graph takes batches of {batch}, not {inputs.shape[0]}; '
            f'set test_dataloader.batch_size={batch} or export without '
            '--static-batch')


def route_predictions(model, runtime):
    """Make ``model`` predict with ``runtime`` (changed in place).

    Args:
        model (nn.Module): The config's classifier or segmentor (built,
            not wrapped; no weights needed, its layers are not run).
        runtime (OnnxRuntimeModel | OpenVinoModel | RuntimeTimer): The
            exported graph.

    Returns:
        nn.Module: ``model``, whose ``predict`` (classifiers) or
        ``encode_decode`` (segmentors) now runs the graph.

    Raises:
        DeploymentError: When the graph's output does not fit the model
            (checked here), or a batch's size does not fit the graph
            (checked per batch).
    """
    name = RUNTIME_NAMES.get(runtime.runtime, runtime.runtime)
    output = runtime.output_name
    segmentor = is_segmentor(model)
    expected = ('seg_logits', ) if segmentor else ('scores', 'logits')
    if output not in expected:
        kind = 'segmentor' if segmentor else 'classifier'
        raise DeploymentError(
            f'the graph returns {output!r}, but a {kind} config needs '
            f'{" or ".join(map(repr, expected))}; export the graph from '
            'this config with tools/deployment/pytorch2onnx.py')

    def run(inputs):
        _check_size(runtime.input_shape, inputs, name)
        out = torch.from_numpy(runtime(inputs))
        return out.to(inputs.device)

    if segmentor:
        # mmseg's inference (whole image, or each crop in slide mode) calls
        # encode_decode for logits at the input size: what the graph
        # returns. Cropping the padding, resizing to the original image and
        # the argmax stay mmseg's.
        def encode_decode(inputs, batch_img_metas):
            return run(inputs)

        model.encode_decode = encode_decode
    else:
        def predict(inputs, data_samples=None, **kwargs):
            out = run(inputs)
            logits = out if output == 'logits' else \
                logits_from_scores(out, model.head)
            return model.head._get_predictions(logits, data_samples)

        model.predict = predict
    return model
