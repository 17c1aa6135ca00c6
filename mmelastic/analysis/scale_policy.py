# Copyright (c) mmelastic contributors. All rights reserved.
"""The scale-policy score of ELASTIC (Sec. 4.1.1), read with forward hooks.

For every Elastic block and every image the paper defines

.. math::

    S = A_{high} - A_{low}

where ``A_high`` and ``A_low`` are the mean activations after the ReLU that
follows the 3x3 convolution of the high- and of the low-resolution branch.
``S > 0`` means the image is mostly processed at high resolution in that
block, ``S < 0`` at low resolution. ResNeXt50+Elastic has 17 elastic blocks,
so each image gets a 17-dimensional score vector (Figures 5 and 6).

How the blocks are found: any module with a ``scale_policy_modules()``
method that returns a ``(high, low)`` pair of modules (and not None) is a
scale-policy block; its score is read from the *outputs* of those two
modules. :class:`~mmelastic.models.utils.ElasticBottleneck` (ResNeXt and DLA)
returns the two ReLUs after its 3x3 convs; the elastic DenseNet layer returns
its two 3x3 convs, which have no ReLU after them. To serve both, the
activation is always taken as ``relu(output)``: for a ReLU's output this
changes nothing, for a conv's output it is the ReLU the score is defined on.
``A`` is the mean of that activation over channels and space, per image (the
low branch's smaller spatial size does not matter for a mean).

Nothing in the models changes: :class:`ScalePolicyRecorder` registers forward
hooks only while it is active (a ``with`` block or ``start()``/``stop()``)
and removes them afterwards, so a model that is not being analysed runs
exactly as before at no extra cost.

Example:
    >>> import torch
    >>> from mmelastic.models import ElasticResNeXt
    >>> from mmelastic.analysis import ScalePolicyRecorder
    >>> model = ElasticResNeXt(arch='resnext50_elastic', base_channels=8,
    ...                        stem_channels=8, groups=4, width_per_group=2)
    >>> model.eval()
    >>> with ScalePolicyRecorder(model) as recorder, torch.no_grad():
    ...     model(torch.rand(2, 3, 64, 64))
    ...     scores = recorder.pop_scores()
    >>> tuple(scores.shape)  # (images, elastic blocks)
    (2, 17)
"""
import os
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'ScalePolicyRecorder', 'find_scale_policy_blocks', 'mean_activation',
    'scale_policy_scores', 'NoElasticBlocksError', 'ScalePolicyResults',
    'collect_scale_policy', 'build_scale_policy_dataloader', 'load_classifier'
]


class NoElasticBlocksError(ValueError):
    """Raised for a model without any scale-policy (Elastic) block."""


def find_scale_policy_blocks(
        model: nn.Module) -> List[Tuple[str, nn.Module, nn.Module]]:
    """List the scale-policy blocks of a model, in module order.

    Args:
        model (nn.Module): Any model; wrappers (DDP ...) are fine.

    Returns:
        list[tuple[str, nn.Module, nn.Module]]: ``(block name, high module,
        low module)`` for every module whose ``scale_policy_modules()``
        returns a pair, in ``named_modules()`` order (the forward order of
        the usual sequential backbones).
    """
    blocks = []
    for name, module in model.named_modules():
        method = getattr(module, 'scale_policy_modules', None)
        if not callable(method):
            continue
        pair = method()
        if pair is None:
            continue
        if len(pair) != 2 or not all(isinstance(m, nn.Module) for m in pair):
            raise TypeError(
                f'{type(module).__name__}.scale_policy_modules() of '
                f'{name or "<model>"!r} must return (high, low) modules or '
                f'None, got {pair!r}')
        blocks.append((name, pair[0], pair[1]))
    return blocks


def mean_activation(output: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``relu(output)`` over all but the batch dim.

    Args:
        output (Tensor): A ``(N, C, H, W)`` (or ``(N, ...)``) activation.

    Returns:
        Tensor: ``(N,)`` float32 means, detached, on the output's device.
    """
    act = F.relu(output.detach().float())
    return act.flatten(1).mean(dim=1)


class ScalePolicyRecorder:
    """Record the scale-policy score ``S = A_high - A_low`` of every block.

    The recorder finds the blocks with :func:`find_scale_policy_blocks` when
    it is created and hooks them only while active. Every forward pass of
    the model appends one value per image to each block; :meth:`pop_scores`
    returns the ``(images, blocks)`` matrix of everything recorded since the
    last call and clears it.

    Args:
        model (nn.Module): The model to analyse.

    Attributes:
        block_names (list[str]): Module names of the blocks, one per score
            column, in module order.

    Raises:
        NoElasticBlocksError: If the model has no block whose
            ``scale_policy_modules()`` returns a pair.

    Note:
        Record in eval mode with gradients off (``torch.no_grad()``): with
        gradient checkpointing (``with_cp``) a training step recomputes the
        blocks in the backward pass, which would fire the hooks twice.

    Example:
        >>> recorder = ScalePolicyRecorder(model)
        >>> recorder.start()
        >>> for batch in loader:
        ...     model(batch)
        ...     scores = recorder.pop_scores()  # (batch size, blocks)
        >>> recorder.stop()  # the model has no hooks any more
    """

    def __init__(self, model: nn.Module):
        self.model = model
        blocks = find_scale_policy_blocks(model)
        if not blocks:
            raise NoElasticBlocksError(
                f'no Elastic blocks found in {type(model).__name__}: the '
                'scale-policy score needs a model with elastic blocks (a '
                'module whose scale_policy_modules() returns its (high, '
                'low) branch modules), e.g. an ElasticResNeXt with an '
                "'*_elastic' arch")
        self.block_names = [name for name, _, _ in blocks]
        self._modules = [(high, low) for _, high, low in blocks]
        self._handles = []
        # _values[branch][block] -> list of (N,) tensors, one per forward.
        self._values: Dict[str, List[List[torch.Tensor]]] = {}
        self.reset()

    @property
    def num_blocks(self) -> int:
        """int: Number of scale-policy blocks (score vector length)."""
        return len(self.block_names)

    @property
    def active(self) -> bool:
        """bool: Whether the hooks are registered."""
        return bool(self._handles)

    def reset(self) -> None:
        """Forget every recorded value."""
        self._values = {
            branch: [[] for _ in self.block_names]
            for branch in ('high', 'low')
        }

    def _make_hook(self, branch: str, index: int):

        def _hook(module, inputs, output):
            self._values[branch][index].append(mean_activation(output))

        return _hook

    def start(self) -> 'ScalePolicyRecorder':
        """Register the forward hooks (idempotent)."""
        if self.active:
            return self
        for index, (high, low) in enumerate(self._modules):
            self._handles.append(
                high.register_forward_hook(self._make_hook('high', index)))
            self._handles.append(
                low.register_forward_hook(self._make_hook('low', index)))
        return self

    def stop(self) -> None:
        """Remove the hooks; recorded values stay until :meth:`reset`."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> 'ScalePolicyRecorder':
        self.reset()
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _stacked(self, branch: str) -> List[torch.Tensor]:
        return [
            torch.cat(values) if values else torch.zeros(0)
            for values in self._values[branch]
        ]

    def pop_scores(self, with_branches: bool = False):
        """Return the scores recorded since the last call and clear them.

        Args:
            with_branches (bool): Also return ``A_high`` and ``A_low``.

        Returns:
            Tensor | tuple[Tensor, Tensor, Tensor]: The ``(images, blocks)``
            float32 CPU matrix of ``S = A_high - A_low`` (and, with
            ``with_branches``, the two matrices it is the difference of).

        Raises:
            RuntimeError: If the blocks saw different numbers of images
                (a forward pass that stopped early or skipped blocks).
        """
        high, low = self._stacked('high'), self._stacked('low')
        self.reset()
        counts = {len(v) for v in high + low}
        if len(counts) > 1:
            detail = ', '.join(
                f'{name}: {len(h)}/{len(lo)}'
                for name, h, lo in zip(self.block_names, high, low))
            raise RuntimeError(
                'the scale-policy blocks recorded different numbers of '
                f'images (high/low per block: {detail}); run whole forward '
                'passes of the model between pop_scores() calls')
        num_images = counts.pop() if counts else 0
        if num_images == 0:
            empty = torch.zeros(0, self.num_blocks)
            return (empty, empty, empty) if with_branches else empty
        high_mat = torch.stack(high, dim=1).cpu()
        low_mat = torch.stack(low, dim=1).cpu()
        scores = high_mat - low_mat
        if with_branches:
            return scores, high_mat, low_mat
        return scores


def scale_policy_scores(model: nn.Module,
                        inputs: torch.Tensor,
                        forward: Optional[callable] = None) -> torch.Tensor:
    """Scores of one batch: run ``model`` on ``inputs`` under a recorder.

    Args:
        model (nn.Module): The model (put it in eval mode first).
        inputs (Tensor): A batch of images, ``(N, 3, H, W)``.
        forward (callable, optional): How to run the model; defaults to
            ``model(inputs)``.

    Returns:
        Tensor: ``(N, blocks)`` scores.
    """
    with ScalePolicyRecorder(model) as recorder, torch.no_grad():
        (forward or model)(inputs)
        return recorder.pop_scores()


# ----------------------------------------------------------------------------
# Running a classifier over a dataset
# ----------------------------------------------------------------------------
class ScalePolicyResults:
    """Scores and predictions of one pass over a dataset.

    Attributes:
        block_names (list[str]): Module names of the Elastic blocks; score
            column ``i`` (``layer_i`` in the reports) is ``block_names[i]``.
        class_names (list[str]): Category names by class index.
        multi_label (bool): Whether the task is multi-label (categories are
            sets; a prediction is every class with score > ``thr``).
        thr (float): The multi-label score threshold.
        has_baseline (bool): Whether a baseline model was run too.
        model_name (str): The analysed model's class name.
        records (list[dict]): One dict per image, in dataset order::

            dict(index=0,                  # position in the dataset
                 img_path='val/x.png',     # '' when unknown
                 gt=[3], pred=[3],         # class indices
                 categories=['dress'],     # gt names
                 prediction=['dress'],     # predicted names
                 correct=True,             # exact (set) match
                 f1=1.0,                   # per-image F1 of the sets
                 # only with a baseline:
                 baseline_pred=[...], baseline_prediction=[...],
                 baseline_correct=False, baseline_f1=0.0)

        scores (np.ndarray): ``(images, blocks)`` float array of ``S``.
        high (np.ndarray): ``(images, blocks)`` ``A_high``.
        low (np.ndarray): ``(images, blocks)`` ``A_low``.
        thumbnails (list[str | None]): Small JPEG data URIs, or None.
    """

    def __init__(self,
                 block_names,
                 class_names,
                 multi_label,
                 thr=0.5,
                 has_baseline=False,
                 model_name=''):
        self.block_names = list(block_names)
        self.class_names = list(class_names)
        self.multi_label = bool(multi_label)
        self.thr = thr
        self.has_baseline = has_baseline
        self.model_name = model_name
        self.records = []
        self.thumbnails = []
        self._scores, self._high, self._low = [], [], []

    def __len__(self):
        return len(self.records)

    @property
    def layer_names(self) -> List[str]:
        """list[str]: ``layer_0 ... layer_{n-1}``, as in the paper's demo."""
        return [f'layer_{i}' for i in range(len(self.block_names))]

    @staticmethod
    def _matrix(chunks, width):
        import numpy as np
        if not chunks:
            return np.zeros((0, width), dtype=np.float64)
        return np.concatenate(chunks).astype(np.float64)

    @property
    def scores(self):
        return self._matrix(self._scores, len(self.block_names))

    @property
    def high(self):
        return self._matrix(self._high, len(self.block_names))

    @property
    def low(self):
        return self._matrix(self._low, len(self.block_names))

    def add_batch(self, records, scores, high, low, thumbnails):
        """Append one batch (used by :func:`collect_scale_policy`)."""
        self.records.extend(records)
        self.thumbnails.extend(thumbnails)
        self._scores.append(scores.numpy())
        self._high.append(high.numpy())
        self._low.append(low.numpy())

    def primary_categories(self) -> List[str]:
        """One category per image for colouring: its first gt category
        (lowest class index), ``'(none)'`` for an image without labels."""
        return [
            r['categories'][0] if r['categories'] else '(none)'
            for r in self.records
        ]


def set_f1(pred, gt) -> float:
    """F1 of a predicted label set against the gt set (1.0 if both are
    empty)."""
    pred, gt = set(pred), set(gt)
    if not pred and not gt:
        return 1.0
    return 2.0 * len(pred & gt) / (len(pred) + len(gt))


def _is_multi_label(model, dataset) -> bool:
    from mmpretrain.datasets import MultiLabelDataset
    from mmpretrain.models.heads import MultiLabelClsHead
    head = getattr(model, 'head', None)
    if isinstance(head, MultiLabelClsHead):
        return True
    return isinstance(dataset, MultiLabelDataset)


def _predicted(sample, multi_label, thr) -> List[int]:
    if 'pred_score' not in sample:
        raise KeyError(
            'the model returned data samples without pred_score: the '
            'scale-policy analysis needs an mmpretrain classifier '
            '(ImageClassifier) whose predict mode gives class scores')
    score = sample.pred_score.detach().float().cpu()
    if multi_label:
        return [int(i) for i in torch.nonzero(score > thr).flatten()]
    return [int(score.argmax())]


def _gt(sample) -> List[int]:
    if 'gt_label' in sample:
        return sorted({int(i) for i in sample.gt_label.flatten()})
    if 'gt_score' in sample:
        return [int(i) for i in torch.nonzero(sample.gt_score > 0).flatten()]
    return []


def _thumbnail(img_path, size, tensor=None, bgr=True) -> Optional[str]:
    """A JPEG data URI of the image, at most ``size`` px on each side."""
    import base64
    import io

    import numpy as np
    from PIL import Image
    image = None
    if img_path:
        try:
            with Image.open(img_path) as img:
                image = img.convert('RGB')
                image.thumbnail((size, size))
        except (OSError, ValueError):
            image = None
    if image is None and isinstance(tensor, torch.Tensor) and \
            tensor.dim() == 3 and tensor.shape[0] in (1, 3):
        array = tensor.detach().cpu()
        if array.dtype != torch.uint8:
            array = array.float().clamp(0, 255).to(torch.uint8)
        array = array.permute(1, 2, 0).numpy()
        if array.shape[2] == 3 and bgr:
            array = array[..., ::-1]
        image = Image.fromarray(np.ascontiguousarray(array.squeeze()))
        image = image.convert('RGB')
        image.thumbnail((size, size))
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format='JPEG', quality=80)
    return 'data:image/jpeg;base64,' + base64.b64encode(
        buffer.getvalue()).decode('ascii')


def build_scale_policy_dataloader(data,
                                  batch_size=None,
                                  num_workers=None,
                                  max_images=None):
    """Turn what the caller has into a dataloader over at most
    ``max_images`` images, in dataset order.

    Args:
        data: A ``torch.utils.data.DataLoader`` (used as is; ``max_images``
            is applied while iterating), a dataloader config (a dict with
            ``dataset``, as ``cfg.test_dataloader``), a dataset config (a
            dict with ``type``) or a dataset.
        batch_size (int, optional): Overrides the config's batch size
            (default: the config's, else 16).
        num_workers (int, optional): Overrides the config's workers
            (default: the config's, else 0).
        max_images (int, optional): Use only the first ``max_images``.

    Returns:
        tuple[DataLoader, Dataset | None]: The loader and its dataset (the
        full one, for its ``metainfo``).
    """
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader, Dataset, Subset
    if isinstance(data, DataLoader):
        return data, data.dataset
    loader_cfg = {}
    if isinstance(data, dict) and 'dataset' in data:
        loader_cfg = dict(data)
        data = loader_cfg['dataset']
    if isinstance(data, dict):
        if 'type' not in data:
            raise ValueError(
                'the dataset config has no type: pass a dataset config such '
                "as dict(type='ImageNet', data_root=..., pipeline=...) or "
                "a dataloader config with 'dataset'")
        from mmpretrain.registry import DATASETS

        import mmelastic  # noqa: F401  (registers COCOMultiLabel)
        dataset = DATASETS.build(data)
    elif isinstance(data, Dataset):
        dataset = data
    else:
        raise TypeError(
            'data must be a DataLoader, a dataloader or dataset config '
            f'(dict) or a Dataset, got {type(data).__name__}')
    subset = dataset
    if max_images is not None and max_images < len(dataset):
        subset = Subset(dataset, range(max_images))
    batch_size = batch_size or loader_cfg.get('batch_size') or 16
    if num_workers is None:
        num_workers = loader_cfg.get('num_workers', 0)
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pseudo_collate)
    return loader, dataset


def collect_scale_policy(model,
                         data,
                         class_names=None,
                         baseline_model=None,
                         max_images=None,
                         device='cpu',
                         batch_size=None,
                         num_workers=None,
                         multi_label=None,
                         thr=0.5,
                         thumbnail_size=64,
                         progress=True) -> ScalePolicyResults:
    """Run an mmpretrain classifier over a dataset and record, per image,
    the scale-policy scores, its prediction and (optionally) a baseline's.

    Args:
        model (BaseModel): An mmpretrain classifier with Elastic blocks.
        data: What :func:`build_scale_policy_dataloader` accepts: a
            dataloader, a dataloader or dataset config, or a dataset.
        class_names (Sequence[str], optional): Category names; default: the
            dataset's ``metainfo['classes']``, else the model's
            ``dataset_meta``, else ``class_<i>``.
        baseline_model (BaseModel, optional): A classifier of the same
            classes whose correctness is recorded too (Fig. 6 right).
        max_images (int, optional): Analyse only the first N images.
        device (str): ``'cpu'``, ``'cuda'``, ``'cuda:1'`` ...
        batch_size (int, optional): Images per forward pass.
        num_workers (int, optional): Dataloader workers.
        multi_label (bool, optional): Default: from the model's head
            (``MultiLabelClsHead``) or the dataset (``MultiLabelDataset``).
        thr (float): Multi-label threshold: a class is predicted when its
            score is > ``thr``. Default: 0.5.
        thumbnail_size (int): Side of the thumbnails kept for the HTML
            demo; 0 keeps none. Default: 64.
        progress (bool): Show mmengine's progress bar.

    Returns:
        ScalePolicyResults: Everything the reports need.
    """
    import numpy as np
    loader, dataset = build_scale_policy_dataloader(
        data,
        batch_size=batch_size,
        num_workers=num_workers,
        max_images=max_images)
    if class_names is None:
        metainfo = getattr(dataset, 'metainfo', None) or \
            getattr(model, 'dataset_meta', None) or {}
        class_names = metainfo.get('classes')
    if multi_label is None:
        multi_label = _is_multi_label(model, dataset)
    total = len(loader.dataset)
    if max_images is not None:
        total = min(total, max_images)
    models = [model] + ([baseline_model] if baseline_model is not None else [])
    training = [m.training for m in models]
    for m in models:
        m.to(device)
        m.eval()
    bgr = bool(
        getattr(
            getattr(model, 'data_preprocessor', None), '_channel_conversion',
            True))
    recorder = ScalePolicyRecorder(model)
    results = None
    bar = None
    if progress and total:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(total)
    index = 0
    try:
        with recorder, torch.no_grad():
            for batch in loader:
                samples = model.test_step(batch)
                scores, high, low = recorder.pop_scores(with_branches=True)
                # Read everything now: mmpretrain's predict writes into the
                # batch's data samples, which the baseline's pass reuses.
                preds = [_predicted(s, multi_label, thr) for s in samples]
                gts = [_gt(s) for s in samples]
                paths = [s.metainfo.get('img_path', '') or '' for s in samples]
                base_preds = None
                if baseline_model is not None:
                    base_preds = [
                        _predicted(s, multi_label, thr)
                        for s in baseline_model.test_step(batch)
                    ]
                if results is None:
                    num_classes = samples[0].pred_score.numel()
                    if class_names is None:
                        class_names = [
                            f'class_{i}' for i in range(num_classes)
                        ]
                    results = ScalePolicyResults(
                        recorder.block_names,
                        class_names,
                        multi_label,
                        thr,
                        has_baseline=baseline_model is not None,
                        model_name=type(model).__name__)
                n = len(samples)
                if max_images is not None:
                    n = min(n, max_images - index)
                records, thumbs = [], []
                inputs = batch.get('inputs') if isinstance(batch, dict) \
                    else None
                for k in range(n):
                    gt, pred, img_path = gts[k], preds[k], paths[k]
                    record = dict(
                        index=index + k,
                        img_path=str(img_path),
                        gt=gt,
                        pred=pred,
                        categories=[_name(class_names, i) for i in gt],
                        prediction=[_name(class_names, i) for i in pred],
                        correct=set(pred) == set(gt),
                        f1=set_f1(pred, gt))
                    if base_preds is not None:
                        base_pred = base_preds[k]
                        record.update(
                            baseline_pred=base_pred,
                            baseline_prediction=[
                                _name(class_names, i) for i in base_pred
                            ],
                            baseline_correct=set(base_pred) == set(gt),
                            baseline_f1=set_f1(base_pred, gt))
                    records.append(record)
                    thumbs.append(
                        _thumbnail(
                            img_path, thumbnail_size, inputs[k] if isinstance(
                                inputs, (list, tuple)) else None, bgr
                        ) if thumbnail_size else None)
                results.add_batch(records, scores[:n], high[:n], low[:n],
                                  thumbs)
                index += n
                if bar is not None:
                    bar.update(n)
                if max_images is not None and index >= max_images:
                    break
    finally:
        for m, was_training in zip(models, training):
            m.train(was_training)
        if bar is not None:
            bar.file.write('\n')
            bar.file.flush()
    if results is None:
        raise ValueError('the dataset is empty: no image to analyse')
    assert results.scores.shape == (len(results), len(
        results.block_names)), np.shape(results.scores)
    return results


def _name(class_names, index) -> str:
    if 0 <= index < len(class_names):
        return str(class_names[index])
    return f'class_{index}'


def load_classifier(config,
                    checkpoint: str,
                    cfg_options=None,
                    what: str = 'model'):
    """Build a config's model and load a checkpoint into it, strictly.

    As mmengine's Runner does, the config's top-level ``data_preprocessor``
    (mean, std, ``to_rgb`` ...) goes into the model. The checkpoint is read
    with mmengine's ``load_checkpoint`` (a Runner checkpoint, or any file
    with a ``state_dict`` of this model).

    Args:
        config (str | Config): Config file or object.
        checkpoint (str): Checkpoint file.
        cfg_options (dict, optional): Overrides merged into the config.
        what (str): Its name in error messages ('model', 'baseline').

    Returns:
        BaseModel: The model in eval mode, on the CPU.

    Raises:
        FileNotFoundError: For a missing config or checkpoint.
        ValueError: For a checkpoint that does not fit the model.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    import mmelastic  # noqa: F401  (registers the models)
    if isinstance(config, str):
        if not os.path.isfile(config):
            raise FileNotFoundError(
                f'{what} config {config!r} does not exist; pass the path of '
                'an mmpretrain config such as '
                'configs/demo/resnext_tiny_elastic_coco.py')
        cfg = Config.fromfile(config)
        name = config
    else:
        cfg = config
        name = cfg.filename or '<config>'
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f'{what} checkpoint {checkpoint!r} does not exist; train one with '
            f'`python tools/train.py {name}` (or `python tools/demo.py`) and '
            'pass its work_dirs/.../epoch_N.pth')
    if cfg.get('model') is None:
        raise ValueError(f'{what} config {name!r} has no model')
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    try:
        load_checkpoint(
            model,
            checkpoint,
            map_location='cpu',
            strict=True,
            logger='silent')
    except RuntimeError as err:
        raise ValueError(
            f'{what} checkpoint {checkpoint!r} does not fit the model of '
            f'{name!r} ({str(err).splitlines()[0]}); pass the checkpoint '
            'trained with this config') from err
    model.eval()
    return model
