# Copyright (c) mmelastic contributors. All rights reserved.
__version__ = '0.1.0'


def _parse_version_info(version_str):
    parts = []
    for x in version_str.split('.'):
        parts.append(int(x) if x.isdigit() else x)
    return tuple(parts)


version_info = _parse_version_info(__version__)
