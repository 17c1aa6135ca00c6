# Copyright (c) mmelastic contributors. All rights reserved.
"""Let torch >= 2.6 load mmengine checkpoints with ``weights_only=True``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only
tensors, containers and explicitly allowlisted globals may be unpickled.
mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without
``weights_only``, and its full checkpoints (``--resume``, ``load_from`` of a
checkpoint written by the Runner) hold a pickled ``MessageHub`` state, so
resuming stops with::

    _pickle.UnpicklingError: Weights only load failed ... Unsupported global:
    GLOBAL mmengine.logging.history_buffer.HistoryBuffer ...

There are three ways out. Setting ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` or
patching mmengine to pass ``weights_only=False`` (what mmengine main did in
#1670, unreleased) re-enables full pickle for *every* checkpoint, so loading
a downloaded file could run arbitrary code. We take the third way: keep
``weights_only=True`` and allowlist exactly the classes an mmengine
checkpoint contains. Found by saving checkpoints with the Runner (training
with validation, ``save_best`` and numpy metrics, for mmpretrain and mmseg
configs) and listing them with
``torch.serialization.get_unsafe_globals_in_checkpoint``:

* ``mmengine.logging.history_buffer.HistoryBuffer`` (the log scalars in the
  message hub). Its ``__setstate__`` only updates ``__dict__``.
* ``builtins.getattr``: ``HistoryBuffer`` pickles its statistics methods
  (``HistoryBuffer.min`` ...) as ``getattr(HistoryBuffer, 'min')``. The real
  ``getattr`` would let a crafted file read any attribute of any allowlisted
  object, so we map that global to :func:`_history_buffer_getattr`, which
  only returns public functions defined on ``HistoryBuffer`` itself.
* numpy's ``ndarray`` reconstructor, ``ndarray``, ``dtype`` and the numeric
  ``numpy.dtypes.*DType`` classes, and the scalar reconstructor (history
  arrays; ``eta`` and ``best_score`` are numpy scalars). Their numpy 1.x
  names (``numpy.core.multiarray``) are mapped too, so checkpoints saved
  under numpy 1.x load under numpy 2.x. Object and structured (void) dtypes
  are left out.

Importing :mod:`mmelastic` calls :func:`register_checkpoint_safe_globals`, so
``tools/train.py --resume`` and ``load_from`` work with the pinned torch and
no environment variables; loading a file that needs anything else still
fails with torch's error.
"""
import numpy as np
import torch

_DONE = False


def _numpy_safe_globals():
    """(callable, pickled name) pairs for the numpy objects in checkpoints."""
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # numpy 1.x
        multiarray = np.core.multiarray
    pairs = []
    for func in (multiarray._reconstruct, multiarray.scalar):
        name = func.__name__
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            pairs.append((func, f'{module}.{name}'))
    pairs += [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    # ``numpy.dtype('f8')`` is an instance of ``numpy.dtypes.Float64DType``;
    # unpickling builds it, and torch only builds allowlisted types.
    for code in np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?':
        cls = type(np.dtype(code))
        pairs.append((cls, f'{cls.__module__}.{cls.__qualname__}'))
    return pairs


def _history_buffer_getattr(obj, name):
    """Restricted stand-in for ``getattr`` while unpickling checkpoints.

    Args:
        obj: The object the pickle asks an attribute of.
        name (str): The attribute name.

    Returns:
        The attribute, when ``obj`` is ``HistoryBuffer`` and ``name`` is a
        public function defined in its class body (``min``, ``max``,
        ``current``, ``mean`` ...).

    Raises:
        pickle.UnpicklingError: For anything else.
    """
    import pickle

    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and isinstance(name, str) \
            and not name.startswith('_') \
            and callable(vars(HistoryBuffer).get(name)):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'mmelastic only allows the HistoryBuffer statistics methods. Load '
        'the file with torch.load(..., weights_only=False) only if you trust '
        'it.')


def checkpoint_safe_globals():
    """Everything :func:`register_checkpoint_safe_globals` allowlists.

    Returns:
        list: Items for :func:`torch.serialization.add_safe_globals`, each a
        class/function or a ``(callable, 'pickled.name')`` pair.
    """
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer,
            (_history_buffer_getattr, 'builtins.getattr')] + \
        _numpy_safe_globals()


def register_checkpoint_safe_globals():
    """Allowlist the globals mmengine checkpoints need (idempotent).

    A no-op on torch < 2.6, where ``torch.load`` does not default to
    ``weights_only=True`` (and ``add_safe_globals`` does not take the
    ``(callable, name)`` pairs used here).

    Returns:
        bool: Whether anything is registered.
    """
    global _DONE
    if _DONE:
        return True
    from mmengine.utils import digit_version
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        return False
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    _DONE = True
    return True
