# Copyright (c) mmelastic contributors. All rights reserved.
"""Utilities. Importing this package makes mmengine checkpoints loadable
under torch's ``weights_only=True`` default (see :mod:`.checkpoint`)."""
from .checkpoint import (checkpoint_safe_globals,
                         register_checkpoint_safe_globals)
from .dist import (destroy_distributed, distributed_run, finish_distributed,
                   setup_cpu_distributed)

register_checkpoint_safe_globals()

__all__ = [
    'checkpoint_safe_globals', 'destroy_distributed', 'distributed_run',
    'finish_distributed',
    'register_checkpoint_safe_globals', 'setup_cpu_distributed'
]
