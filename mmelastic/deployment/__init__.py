# Copyright (c) mmelastic contributors. All rights reserved.
"""Deployment: ONNX export and ONNX Runtime inference (:mod:`.onnx`).

Not imported by ``import mmelastic``: it needs the optional ``deploy``
extra (requirements/deploy.txt).
"""
