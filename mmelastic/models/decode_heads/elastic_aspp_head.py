# Copyright (c) mmelastic contributors. All rights reserved.
import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads import ASPPHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS as MMSEG_MODELS

from mmelastic.registry import MODELS


@MODELS.register_module()
@MMSEG_MODELS.register_module()
class ElasticASPPHead(ASPPHead):
    """DeepLabV3 ASPP head in the layout of the ELASTIC segmentation code.

    The official ELASTIC DeepLabV3 (from chenxi116/DeepLabv3.pytorch) differs
    from mmseg's :class:`~mmseg.models.decode_heads.ASPPHead` in two places,
    kept here so that the official VOC weights convert exactly:

    * the image-pooling branch comes *last* in the concatenation:
      (1x1, 3x3 r6, 3x3 r12, 3x3 r18, pool);
    * the fusion conv after the concatenation is a 1x1 conv (mmseg: 3x3).

    Every branch is conv -> norm -> ReLU, the pooled branch is upsampled back
    to the feature size, and the classifier is a 1x1 conv with bias. Use
    ``dropout_ratio=0`` for the paper's "without bells and whistles" head.

    Args:
        dilations (tuple[int]): Rates of the ASPP branches; 1 gives the 1x1
            branch. Default: (1, 6, 12, 18).
        **kwargs: Arguments of :class:`~mmseg.models.decode_heads.ASPPHead`.

    Example:
        >>> import torch
        >>> head = ElasticASPPHead(in_channels=64, channels=16,
        ...                        num_classes=21, dropout_ratio=0)
        >>> tuple(head([torch.rand(2, 64, 33, 33)]).shape)
        (2, 21, 33, 33)
    """

    def __init__(self, dilations=(1, 6, 12, 18), **kwargs):
        super().__init__(dilations=dilations, **kwargs)
        self.bottleneck = ConvModule(
            (len(dilations) + 1) * self.channels,
            self.channels,
            1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def _forward_feature(self, inputs):
        x = self._transform_inputs(inputs)
        outs = list(self.aspp_modules(x))
        # warning=False: mmseg's alignment warning reads the sizes with
        # int(), which would fix them in an exported graph (and it never
        # warns when upsampling the pooled 1x1 map).
        outs.append(
            resize(
                self.image_pool(x),
                size=x.shape[2:],
                mode='bilinear',
                align_corners=self.align_corners,
                warning=False))
        return self.bottleneck(torch.cat(outs, dim=1))
