# Copyright (c) mmelastic contributors. All rights reserved.
"""The classification and segmentation demo configs on the demo data: two
processes with tools/dist_train.sh (gloo on CPU; SyncBN runs as BN), then a
single-process tools/test.py of the checkpoint."""
import re
import sys

import pytest

sys.path.insert(0, 'tools/data')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    import make_demo_data
    root = tmp_path_factory.mktemp('demo')
    make_demo_data.build(out=str(root), num_train=16, num_val=4)
    return root


CPU_ENV = {'CUDA_VISIBLE_DEVICES': '', 'PYTHON': sys.executable}


def test_cls_demo_two_processes(tmp_path, demo_root, run_cmd, free_port):
    data = demo_root / 'cls'
    options = [
        f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}',
        f'test_dataloader.dataset.data_root={data}',
        f'train_dataloader.dataset.classes={data}/meta/classes.txt',
        f'val_dataloader.dataset.classes={data}/meta/classes.txt',
        f'test_dataloader.dataset.classes={data}/meta/classes.txt',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0'
    ]
    work = tmp_path / 'cls'
    run_cmd(['bash', 'tools/dist_train.sh',
             'configs/demo/resnext_tiny_elastic_cls.py', '2', '--work-dir',
             work, '--cfg-options', 'train_cfg.max_epochs=1',
             'log_level=DEBUG', *options],  # DEBUG: a log file per rank
            env={**CPU_ENV, 'PORT': str(free_port)}, timeout=300)
    # 16 train images / 2 ranks / batch 4 = 2 iterations a rank.
    logs = sorted(work.glob('*/*_rank*.log'))
    assert [log.name[-9:] for log in logs] == ['rank0.log', 'rank1.log']
    for log in logs:
        assert 'Epoch(train) [1][2/2]' in log.read_text()
    out = run_cmd(['python', 'tools/test.py',
                   'configs/demo/resnext_tiny_elastic_cls.py',
                   work / 'epoch_1.pth', '--work-dir', tmp_path / 'test',
                   '--cfg-options', *options]).stdout
    assert re.search(r'accuracy/top1: [\d.]+', out)


def test_seg_demo_two_processes(tmp_path, demo_root, run_cmd, free_port):
    data = demo_root / 'voc' / 'VOCdevkit' / 'VOC2012'
    options = [
        f'{loader}.dataset.{key}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
        for key in (f'data_root={data}',
                    f'metainfo.classes={data}/class_names.txt')
    ] + ['train_dataloader.batch_size=2'] + [
        f'{loader}.{key}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
        for key in ('num_workers=0', 'persistent_workers=False')
    ]
    work = tmp_path / 'seg'
    out = run_cmd(['bash', 'tools/dist_train.sh',
                   'configs/demo/deeplabv3_tiny_elastic_voc.py', '2',
                   '--work-dir', work, '--cfg-options',
                   'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                   'default_hooks.checkpoint.interval=2',
                   'default_hooks.logger.interval=1', 'log_level=DEBUG',
                   *options],
                  env={**CPU_ENV, 'PORT': str(free_port)},
                  timeout=300).stdout
    # The recipe's SyncBN cannot run on CPU tensors; the tools say so.
    assert 'SyncBN layers run as per-process BN' in out
    logs = sorted(work.glob('*/*_rank*.log'))
    assert [log.name[-9:] for log in logs] == ['rank0.log', 'rank1.log']
    for log in logs:
        text = log.read_text()
        assert 'Distributed training: True' in text
        assert 'Iter(train) [2/2]' in text
    assert (work / 'iter_2.pth').exists()
    out = run_cmd(['python', 'tools/test.py',
                   'configs/demo/deeplabv3_tiny_elastic_voc.py',
                   work / 'iter_2.pth', '--work-dir', tmp_path / 'test',
                   '--cfg-options', *options]).stdout
    assert re.search(r'mIoU: [\d.]+', out)
