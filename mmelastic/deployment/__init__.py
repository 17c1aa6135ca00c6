# Copyright (c) mmelastic contributors. All rights reserved.
"""Deployment: ONNX export, ONNX Runtime and OpenVINO inference
(:mod:`.onnx`).

Not imported by ``import mmelastic``: it needs the optional ``deploy``
extra (requirements/deploy.txt).
"""
