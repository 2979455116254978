"""Backbones: the CIFAR and ImageNet ResNets of He et al. (2016) with an optional cosine head, a
digits net, any timm model with pretrained weights (:func:`timm_backbone`); every one speaks
timm's head interface (``forward_features``, ``forward_head``, ``get_classifier``,
``reset_classifier``)."""

from ltlight.models.digits_net import DigitsNet
from ltlight.models.heads import ClassifierHeadMixin, NormedLinear, get_classifier, make_head
from ltlight.models.resnet_cifar import (
    BasicBlock,
    CifarResNet,
    OptionAShortcut,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
)
from ltlight.models.resnet_imagenet import ImageNetResNet, resnet50, resnet152, resnext50_32x4d
from ltlight.models.timm_backbone import BaseWeights, timm_backbone

__all__ = [
    "BaseWeights",
    "BasicBlock",
    "CifarResNet",
    "ClassifierHeadMixin",
    "DigitsNet",
    "ImageNetResNet",
    "NormedLinear",
    "OptionAShortcut",
    "get_classifier",
    "make_head",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet152",
    "resnext50_32x4d",
    "timm_backbone",
]
