# Copyright (c) mmelastic contributors. All rights reserved.
"""Make ``--launcher pytorch`` work on machines without CUDA.

mmengine 0.10.7 assumes a GPU per process in distributed runs:

* ``mmengine.dist.init_dist('pytorch')`` calls ``torch.cuda.set_device`` before
  ``init_process_group``, which fails with ``RuntimeError: Found no NVIDIA
  driver on your system`` on a CPU machine, whatever the backend;
* ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to
  ``DistributedDataParallel``, which rejects device ids for a CPU module;
* the OpenMMLab runtimes default to the ``nccl`` backend, which needs CUDA;
* ``SyncBatchNorm`` refuses CPU tensors ("SyncBatchNorm expected input tensor
  to be on GPU"), and the Runner reverts it to BN only in non-distributed
  runs.

:func:`setup_cpu_distributed` fixes all three in the config before the
Runner is built. It changes nothing where CUDA is available.
"""
import datetime
import logging
import os
import sys
from contextlib import contextmanager

import torch
import torch.distributed as torch_dist


def setup_cpu_distributed(cfg, launcher):
    """Prepare a config for distributed training or testing on CPUs.

    Where CUDA is absent and ``launcher`` is not ``'none'``: sets
    ``env_cfg.dist_cfg.backend='gloo'``; for the ``pytorch`` launcher
    (torchrun), initialises the process group itself from the ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` environment (the
    Runner then skips its own, CUDA-only, initialisation); and makes the
    model wrapper a ``MMDistributedDataParallel`` without ``device_ids``; and
    turns SyncBN norm configs of the model into BN.

    Args:
        cfg (mmengine.Config): The config; changed in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        bool: Whether the config was changed for CPU distributed use.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg

    if launcher == 'pytorch' and not torch_dist.is_initialized():
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                               'MASTER_PORT') if k not in os.environ]
        if missing:
            raise RuntimeError(
                f'--launcher pytorch needs the environment variables '
                f'{missing}, which torchrun sets; start the tool with '
                'tools/dist_train.sh / tools/dist_test.sh (or python -m '
                'torch.distributed.run), or use --launcher none.')
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(
                seconds=dist_cfg['timeout'])
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)

    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    if wrapper['type'] in ('MMDistributedDataParallel',
                           'DistributedDataParallel'):
        # An explicit None wins over the Runner's default_args device_ids.
        wrapper['device_ids'] = None
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters',
                           cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    if _sync_bn_to_bn(cfg.model):
        print('[mmelastic] no CUDA: SyncBN layers run as per-process BN in '
              'this distributed CPU run')
    return True


def _sync_bn_to_bn(node):
    """Replace every ``type='SyncBN'`` norm config under ``node`` by BN."""
    changed = False
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            changed = True
        for value in node.values():
            changed |= _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed |= _sync_bn_to_bn(value)
    return changed


def destroy_distributed():
    """Destroy the default process group, if one was initialised.

    Call it when a distributed tool is done (also after an error). A gloo
    process group left for the interpreter's exit to tear down can abort
    the process with ``terminate called without an active exception``
    (SIGABRT), after the work has finished: in a two-process torchrun of a
    script that only all-reduces, 3 of 30 runs ended that way, and none of
    40 with this call. mmengine's Runner never destroys the group. The
    tools call it through :func:`distributed_run`.

    Returns:
        bool: Whether a process group was destroyed.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return False
    torch_dist.destroy_process_group()
    return True


def finish_distributed(launcher):
    """End a tool's successful run: leave a distributed CPU run's process
    without interpreter teardown; elsewhere destroy the process group.

    In a distributed run on CPUs (``launcher`` other than ``'none'``, no
    CUDA) it waits for the other ranks (a barrier), flushes the standard
    streams and the logging handlers and leaves with ``os._exit(0)``. A
    rank of a two-process gloo run with ``tools/dist_train.sh``
    occasionally aborted after all of its work was done, while the process
    group or the interpreter shut down (``terminate called without an
    active exception``, SIGABRT), which fails the whole launch; destroying
    the group first (:func:`destroy_distributed`) did not prevent it in
    CI. Leaving this way runs no C++ destructors and no ``atexit``
    handlers; the Runner has closed its hooks, visualizer and loggers by
    then. Elsewhere it calls :func:`destroy_distributed` and returns.

    Args:
        launcher (str): The tool's ``--launcher``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        destroy_distributed()
        return
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(0)


@contextmanager
def distributed_run(launcher):
    """Wrap a tool's run: after an error, destroy the process group and
    re-raise; after success, :func:`finish_distributed` (which leaves the
    process in a distributed CPU run).

    Args:
        launcher (str): The tool's ``--launcher``.
    """
    try:
        yield
    except BaseException:
        destroy_distributed()
        raise
    finish_distributed(launcher)
