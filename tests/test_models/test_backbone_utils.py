# Copyright (c) mmelastic contributors. All rights reserved.
import pytest

from mmelastic.models.utils import stage_flags


def test_one_bool_for_every_stage():
    assert stage_flags(True, 4, 'with_cp') == (True, ) * 4
    assert stage_flags(False, 3, 'with_cp') == (False, ) * 3
    # The official models' rule for ``elastic``: never in the last stage.
    assert stage_flags(True, 4, 'elastic', last=False) == \
        (True, True, True, False)
    assert stage_flags(False, 4, 'elastic', last=False) == (False, ) * 4


def test_one_flag_per_stage():
    flags = stage_flags([True, False, 1, 0], 4, 'with_cp')
    assert flags == (True, False, True, False)
    assert all(type(f) is bool for f in flags)
    # A sequence is taken as given, also for the last stage.
    assert stage_flags((False, False, True), 3, 'elastic', last=False) == \
        (False, False, True)


def test_bad_flags_name_the_argument_and_the_fix():
    with pytest.raises(ValueError,
                       match=r'with_cp needs one flag per stage \(4\), got '
                       r'\(True, False\)'):
        stage_flags((True, False), 4, 'with_cp')
    with pytest.raises(ValueError, match='one flag per dense block'):
        stage_flags([True], 4, 'memory_efficient', 'dense block')
    # A string is a sequence of the right length here, not a flag.
    for bad in ('true', (True, None, False, False), (2, 0, 0, 0), 2, None):
        with pytest.raises(TypeError,
                           match='with_cp must be a bool or a sequence of '
                           'bools, one per stage'):
            stage_flags(bad, 4, 'with_cp')
