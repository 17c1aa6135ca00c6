# Copyright (c) mmelastic contributors. All rights reserved.
"""Converted ResNeXt weights compute what their source computes."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmpretrain.models import ImageClassifier

import mmelastic  # noqa: F401
from mmelastic.converters import (convert_official_resnext,
                                  convert_single_branch_resnext)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _official_state import bn, randomize  # noqa: E402


STAGES = {
    'resnext50': (3, 4, 6, 3),
    'resnext50_elastic': (6, 8, 5, 3),
    'se_resnext50_elastic': (6, 8, 5, 3),
    'resnext101': (3, 4, 23, 3),
    'resnext101_elastic': (12, 14, 20, 3),
}


def classifier(arch, num_classes=1000):
    model = ImageClassifier(
        backbone=dict(type='ElasticResNeXt', arch=arch),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=num_classes,
            in_channels=2048))
    return model.eval()


# --- an independent forward of the official model, from its specification ---


def official_block(sd, p, x, elastic, stride, se, dilation=1):
    groups = 16
    x_d = x
    h, w = x.shape[-2:]
    if elastic:
        if h % 2 or w % 2:
            x_d = F.pad(x_d, (0, w % 2, 0, h % 2), mode='replicate')
        x_d = F.avg_pool2d(x_d, 2, 2)

    def branch(t, s):
        t = F.relu(bn(sd, p + 'bn1' + s, F.conv2d(t, sd[p + f'conv1{s}.weight'])))
        t = F.relu(bn(sd, p + 'bn2' + s, F.conv2d(
            t, sd[p + f'conv2{s}.weight'], stride=stride, padding=dilation,
            dilation=dilation, groups=groups)))
        return F.conv2d(t, sd[p + f'conv3{s}.weight'])

    out_d = branch(x_d, '_d')
    if elastic:
        out_d = F.interpolate(out_d, scale_factor=2, mode='bilinear',
                              align_corners=False)[:, :, :h, :w]
    out = bn(sd, p + 'bn3', branch(x, '') + out_d)
    if se:
        s = out.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, sd[p + 'selayer.conv1.weight'],
                            sd[p + 'selayer.conv1.bias']))
        out = out * torch.sigmoid(F.conv2d(s, sd[p + 'selayer.conv2.weight'],
                                           sd[p + 'selayer.conv2.bias']))
    residual = x
    if p + 'downsample.0.weight' in sd:
        residual = bn(sd, p + 'downsample.1', F.conv2d(
            x, sd[p + 'downsample.0.weight'], stride=stride))
    return F.relu(out + residual)


def official_forward(sd, x, arch, seg=False, features=False):
    """Official ResNeXt classifier, or with ``seg`` the DeepLabV3 OS16 model
    (layer4: stride 1, dilations 2 x (1, 2, 4); ASPP) up to its logits at
    the head's resolution."""
    elastic = 'elastic' in arch
    se = arch.startswith('se_')
    x = F.relu(bn(sd, 'bn1', F.conv2d(x, sd['conv1.weight'], stride=2,
                                       padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for i, n in enumerate(STAGES[arch]):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            dilation = 1
            if seg and i == 3:
                stride, dilation = 1, 2 * (1, 2, 4)[j]
            x = official_block(sd, f'layer{i + 1}.{j}.', x,
                               elastic and stride == 1 and i < 3, stride, se,
                               dilation)
    if seg:
        return official_aspp(sd, x)
    if features:
        return x
    return F.linear(x.mean((2, 3)), sd['fc.weight'], sd['fc.bias'])


def official_aspp(sd, x):
    outs = []
    for i, rate in enumerate((None, 6, 12, 18), 1):
        w = sd[f'aspp.aspp{i}.weight']
        pad = 0 if rate is None else rate
        outs.append(F.relu(bn(sd, f'aspp.aspp{i}_bn', F.conv2d(
            x, w, padding=pad, dilation=rate or 1))))
    pooled = F.relu(bn(sd, 'aspp.aspp5_bn', F.conv2d(
        x.mean((2, 3), keepdim=True), sd['aspp.aspp5.weight'])))
    outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
    x = F.relu(bn(sd, 'aspp.bn2', F.conv2d(torch.cat(outs, 1),
                                           sd['aspp.conv2.weight'])))
    return F.conv2d(x, sd['aspp.conv3.weight'], sd['aspp.conv3.bias'])


def official_state_dict(arch, seed=0):
    """An official-layout state dict ('module.' keys) from the documented
    key scheme: our keys renamed back by the documented correspondence."""
    back = {
        'low.conv1': 'conv1_d', 'low.norm1': 'bn1_d', 'low.conv2': 'conv2_d',
        'low.norm2': 'bn2_d', 'low.conv3': 'conv3_d', 'high.conv1': 'conv1',
        'high.norm1': 'bn1', 'high.conv2': 'conv2', 'high.norm2': 'bn2',
        'high.conv3': 'conv3', 'norm3': 'bn3', 'se.conv1.conv':
        'selayer.conv1', 'se.conv2.conv': 'selayer.conv2'
    }
    sd = {}
    for k, v in classifier(arch).state_dict().items():
        k = k.replace('backbone.', '').replace('head.', '')
        for ours, theirs in back.items():
            k = k.replace(f'.{ours}.', f'.{theirs}.')
        sd['module.' + k] = v
    return randomize(sd, seed)


@pytest.mark.parametrize('arch', sorted(STAGES))
@pytest.mark.parametrize('size', [(224, 224), (97, 81)])
def test_official_resnext_logits(arch, size):
    official = official_state_dict(arch)
    assert 'module.layer1.0.conv1_d.weight' in official
    converted, unused = convert_official_resnext(official)
    assert unused == []
    model = classifier(arch)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, *size)
    plain = {k[len('module.'):]: v for k, v in official.items()}
    with torch.no_grad():
        ours = model(x, mode='tensor')
        ref = official_forward(plain, x, arch)
        # Logits average a lot away; the last feature map does not (a
        # swapped pair of branch weights moves logits by only ~4e-5).
        feats = model.backbone(x)[-1]
        ref_feats = official_forward(plain, x, arch, features=True)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(feats, ref_feats, atol=1e-4, rtol=1e-4)


def test_unknown_official_keys_are_reported():
    official = official_state_dict('resnext50')
    official['module.layer1.0.mystery.weight'] = torch.zeros(1)
    official['module.aux.weight'] = torch.zeros(1)
    _, unused = convert_official_resnext(official)
    assert sorted(unused) == ['aux.weight', 'layer1.0.mystery.weight']


def test_torchvision_resnext50_into_baseline():
    source = torchvision.models.resnext50_32x4d()
    source.load_state_dict(randomize(source.state_dict(), seed=1))
    source.eval()
    converted, unused = convert_single_branch_resnext(source.state_dict())
    assert unused == []
    model = classifier('resnext50')
    model.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 97, 120)
    with torch.no_grad():
        assert torch.allclose(
            model(x, mode='tensor'), source(x), atol=1e-4, rtol=1e-4)


def test_mmpretrain_resnext50_into_baseline():
    source = ImageClassifier(
        backbone=dict(type='ResNeXt', depth=50, groups=32,
                      width_per_group=4),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=2048))
    source.load_state_dict(randomize(source.state_dict(), seed=2))
    source.eval()
    converted, unused = convert_single_branch_resnext(source.state_dict())
    assert unused == []
    model = classifier('resnext50', num_classes=10)
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            model(x, mode='tensor'), source(x, mode='tensor'), atol=1e-4,
            rtol=1e-4)


# --- the conversion tool: detection, strictness, VOC, checkpoint files -------


def official_voc_state_dict(arch, seed=0):
    """Official DeepLabV3 layout: backbone keys as for classification (no
    fc) plus ``aspp.*``."""
    from mmelastic.converters.resnext import _OFFICIAL_ASPP
    sd = {
        k: v
        for k, v in official_state_dict(arch, seed).items()
        if not k.startswith('module.fc.')
    }
    model = voc_model(arch)
    ours = model.decode_head.state_dict()
    back = {v: k for k, v in _OFFICIAL_ASPP.items()}
    for key, value in ours.items():
        layer, _, param = key.rpartition('.')
        sd[f'module.aspp.{back[layer]}.{param}'] = value
    return randomize(sd, seed + 1)


def voc_model(arch):
    from mmelastic.converters.official import build_target_model
    return build_target_model(f'configs/voc/deeplabv3_{arch}.py').eval()


def test_voc_deeplab_logits():
    from mmelastic.converters import convert_official_deeplab_resnext
    official = official_voc_state_dict('resnext50_elastic')
    converted, unused = convert_official_deeplab_resnext(official)
    assert unused == []
    model = voc_model('resnext50_elastic')
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 129, 97)
    plain = {k[len('module.'):]: v for k, v in official.items()}
    with torch.no_grad():
        ours = model(x, mode='tensor')  # logits at the head's resolution
        ref = official_forward(plain, x, 'resnext50_elastic', seg=True)
    assert ours.shape == ref.shape == (1, 21, 9, 7)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)


def save_official(tmp_path, name, state_dict, arch=None):
    ckpt = dict(epoch=120, state_dict=state_dict, optimizer={'state': {}})
    if arch:
        ckpt.update(arch=arch, best_err1=21.56)
    path = tmp_path / name
    torch.save(ckpt, path)
    return str(path)


def test_convert_checkpoint_file_and_load(tmp_path):
    from mmengine.runner import load_checkpoint

    from mmelastic.converters import convert_checkpoint
    official = official_state_dict('resnext50_elastic')
    src = save_official(tmp_path, 'resnext50_elastic.pth.tar', official,
                        arch='resnext50_elastic')
    dst = str(tmp_path / 'out' / 'converted.pth')
    import os
    os.makedirs(tmp_path / 'out')
    meta = convert_checkpoint(src, dst)
    assert meta['arch'] == 'resnext50_elastic' and meta['task'] == 'imagenet'
    assert meta['config'] == 'configs/imagenet/resnext50_elastic.py'
    import hashlib
    assert meta['source_sha256'] == hashlib.sha256(
        open(src, 'rb').read()).hexdigest()
    saved = torch.load(dst, weights_only=True)
    assert 'optimizer' not in saved and saved['meta'] == meta
    model = classifier('resnext50_elastic')
    load_checkpoint(model, dst, strict=True)
    x = torch.randn(1, 3, 64, 64)
    plain = {k[len('module.'):]: v for k, v in official.items()}
    with torch.no_grad():
        assert torch.allclose(
            model(x, mode='tensor'),
            official_forward(plain, x, 'resnext50_elastic'), atol=1e-4)


def test_detection_from_keys():
    from mmelastic.converters import detect_release
    assert detect_release({'state_dict': official_state_dict('resnext50')
                           }) == ('resnext', 'resnext50', 'imagenet')
    se = official_state_dict('se_resnext50_elastic')
    assert detect_release(se) == ('resnext', 'se_resnext50_elastic',
                                  'imagenet')
    coco = dict(official_state_dict('resnext50_elastic'))
    coco['module.fc.weight'] = torch.zeros(80, 2048)
    coco['module.fc.bias'] = torch.zeros(80)
    assert detect_release(coco)[1:] == ('resnext50_elastic', 'coco')
    tv = torchvision.models.resnext50_32x4d().state_dict()
    assert detect_release(tv)[0] == 'resnext-single-branch'


def test_wrong_architecture_is_refused(tmp_path):
    from mmelastic.converters import ConversionError, convert_checkpoint
    src = save_official(tmp_path, 'x.pth.tar',
                        official_state_dict('resnext50'), arch='resnext50')
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(src, str(tmp_path / 'y.pth'),
                           arch='resnext50_elastic')
    text = str(err.value)
    assert 'target keys not filled' in text
    assert 'backbone.layer1.3.high.conv1.weight' in text
    assert not (tmp_path / 'y.pth').exists()
    with pytest.raises(ConversionError, match='no such checkpoint'):
        convert_checkpoint(str(tmp_path / 'missing.pth'), 'x.pth')


def test_cli(tmp_path):
    import subprocess
    import sys
    src = save_official(tmp_path, 'coco_resnext50.pth.tar',
                        official_state_dict('resnext50'), arch='resnext50')
    # An 80-class classifier makes it a COCO model.
    ckpt = torch.load(src, weights_only=True)
    ckpt['state_dict']['module.fc.weight'] = torch.zeros(80, 2048)
    ckpt['state_dict']['module.fc.bias'] = torch.zeros(80)
    torch.save(ckpt, src)
    dst = tmp_path / 'coco.pth'
    out = subprocess.run(
        [sys.executable, 'tools/model_converters/elastic_to_mmelastic.py',
         src, str(dst)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'config: configs/coco/resnext50.py' in out.stdout
    assert dst.exists()


def test_resnext_v1d_by_configuration():
    """ResNeXt with mmpretrain's ResNetV1d stem and shortcut (deep_stem,
    avg_down), as a non-elastic ElasticResNeXt: same parameters, and the
    converted weights give the same logits."""
    source = ImageClassifier(
        backbone=dict(type='ResNeXt', depth=50, groups=32,
                      width_per_group=4, deep_stem=True, avg_down=True),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=2048))
    source.load_state_dict(randomize(source.state_dict(), seed=3))
    source.eval()
    model = ImageClassifier(
        backbone=dict(type='ElasticResNeXt', arch='resnext50', deep_stem=True,
                      avg_down=True),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=2048))
    model.eval()
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in source.parameters())
    converted, unused = convert_single_branch_resnext(source.state_dict())
    assert unused == []
    model.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 67, 64)
    with torch.no_grad():
        assert torch.allclose(
            model(x, mode='tensor'), source(x, mode='tensor'), atol=1e-4)


def test_converted_checkpoint_loads_through_init_cfg_pretrained(tmp_path):
    """What the COCO/VOC configs do: init_cfg=Pretrained with prefix
    'backbone.' on a converted ImageNet checkpoint."""
    from mmelastic.converters import convert_checkpoint
    from mmelastic.converters.official import build_target_model
    official = official_state_dict('resnext50_elastic')
    src = save_official(tmp_path, 'resnext50_elastic.pth.tar', official,
                        arch='resnext50_elastic')
    dst = tmp_path / 'in1k.pth'
    convert_checkpoint(src, str(dst))
    from mmengine.config import Config
    cfg = Config.fromfile('configs/coco/resnext50_elastic.py')
    backbone_cfg = cfg.model.backbone
    backbone_cfg.init_cfg.checkpoint = str(dst)
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    converted = torch.load(dst, weights_only=True)['state_dict']
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, converted['backbone.' + key]), key
    # The COCO head is not in the ImageNet checkpoint: build_target_model
    # gives the same backbone keys.
    assert set(backbone.state_dict()) == {
        k[len('backbone.'):]
        for k in build_target_model(
            'configs/coco/resnext50_elastic.py').state_dict()
        if k.startswith('backbone.')
    }


def test_converted_checkpoint_runs_in_tools_test(tmp_path, run_cmd):
    """tools/test.py evaluates a converted ImageNet checkpoint with its
    config (here on the 96 px demo classification images)."""
    import sys
    sys.path.insert(0, 'tools/data')
    import make_demo_data
    from mmelastic.converters import convert_checkpoint
    make_demo_data.build(out=str(tmp_path / 'demo'), num_train=2, num_val=1)
    src = save_official(tmp_path, 'resnext50.pth.tar',
                        official_state_dict('resnext50'), arch='resnext50')
    dst = tmp_path / 'resnext50_in1k.pth'
    convert_checkpoint(src, str(dst))
    data = tmp_path / 'demo' / 'cls'
    out = run_cmd([
        'python', 'tools/test.py', 'configs/imagenet/resnext50.py', dst,
        '--work-dir', tmp_path / 'test', '--cfg-options',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.ann_file=meta/val.txt',
        'test_dataloader.dataset.data_prefix=val',
        'test_dataloader.batch_size=4', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False'
    ]).stdout
    assert 'accuracy/top1' in out
