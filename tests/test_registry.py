# Copyright (c) mmelastic contributors. All rights reserved.
"""mmelastic's backbone is reachable from mmpretrain and mmseg configs.

Each case runs in a fresh interpreter, so that what triggers the import of
mmelastic (``custom_imports``, or the ``mmelastic.`` scope prefix) is really
what is tested, not an import left behind by another test.
"""
import textwrap

import pytest

# Build the config's model in the config's default scope (as the Runner
# does), then report what was built.
BUILD = '''
import sys
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

cfg = Config.fromfile({config!r})
{edit}
imported_by_config = 'mmelastic' in sys.modules
init_default_scope(cfg.default_scope)
model = MODELS.build(cfg.model)
from mmelastic.models.backbones import ElasticResNeXt
assert type(model.backbone) is ElasticResNeXt, type(model.backbone)
feats = model.extract_feat(torch.rand(2, 3, 32, 32))
print('scope', cfg.default_scope)
print('imported_by_config', imported_by_config)
print('model', type(model).__module__, type(model).__name__)
print('channels', [f.shape[1] for f in feats])
'''


def _build(run_cmd, config, edit=''):
    script = BUILD.format(config=config, edit=edit)
    out = run_cmd(['python', '-c', script]).stdout
    return dict(
        line.split(' ', 1) for line in out.splitlines()
        if line.split(' ', 1)[0] in ('scope', 'imported_by_config', 'model',
                                     'channels'))


@pytest.mark.parametrize(
    'config,scope,model,channels',
    [('registry_cls.py', 'mmpretrain', 'mmpretrain.models.classifiers',
      '[256]'),
     ('registry_seg.py', 'mmseg', 'mmseg.models.segmentors',
      '[32, 64, 128, 256]')])
def test_plain_names_with_custom_imports(run_cmd, config_path, config, scope,
                                         model, channels):
    """type='ElasticResNeXt' (no prefix) inside the library's own model,
    mmelastic imported by custom_imports, default_scope inherited."""
    found = _build(run_cmd, config_path(config))
    assert found['scope'] == scope
    assert found['imported_by_config'] == 'True'
    assert found['model'].startswith(model)
    assert found['model'].endswith(
        'ImageClassifier' if scope == 'mmpretrain' else 'EncoderDecoder')
    assert found['channels'] == channels


@pytest.mark.parametrize('config,channels',
                         [('tiny_cls.py', '[256]'),
                          ('tiny_seg.py', '[32, 64, 128, 256]')])
def test_scoped_name_imports_lazily(run_cmd, config_path, config, channels):
    """type='mmelastic.ElasticResNeXt' with no custom_imports: mmengine
    imports mmelastic on first lookup (through mmelastic.registry)."""
    found = _build(
        run_cmd,
        config_path(config),
        edit="cfg.model.backbone.type = 'mmelastic.ElasticResNeXt'\n"
        "assert 'custom_imports' not in cfg")
    assert found['imported_by_config'] == 'False'
    assert found['channels'] == channels


def test_classification_without_mmseg(run_cmd, config_path):
    """With mmseg absent, ``import mmelastic`` and an mmpretrain model work
    and nothing tries to import mmseg."""
    script = textwrap.dedent(f'''
        import importlib.abc
        import sys
        import warnings

        attempts = []

        class BlockMmseg(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == 'mmseg' or name.startswith('mmseg.'):
                    attempts.append(name)
                    raise ModuleNotFoundError(
                        f'No module named {{name!r}}', name=name)
                return None

        sys.meta_path.insert(0, BlockMmseg())
        try:
            import mmseg  # noqa: F401
        except ModuleNotFoundError:
            pass
        else:
            raise AssertionError('mmseg was not blocked')
        attempts.clear()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import mmelastic  # noqa: F401
        mmseg_warnings = [str(w.message) for w in caught
                          if 'mmseg' in str(w.message)]
        assert not mmseg_warnings, mmseg_warnings

        import torch
        from mmengine.config import Config
        from mmengine.registry import MODELS, init_default_scope
        cfg = Config.fromfile({config_path('tiny_cls.py')!r})
        init_default_scope(cfg.default_scope)
        model = MODELS.build(cfg.model)
        logits = model(torch.rand(2, 3, 32, 32), mode='tensor')
        assert tuple(logits.shape) == (2, 2), logits.shape
        assert not [m for m in sys.modules if m.split('.')[0] == 'mmseg']
        # mmelastic may ask whether mmseg exists, but never imports it.
        assert all(name == 'mmseg' for name in attempts), attempts
        print('OK', type(model).__name__)
        ''')
    out = run_cmd(['python', '-c', script]).stdout
    assert 'OK ImageClassifier' in out
