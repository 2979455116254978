"""Backbones: the CIFAR and ImageNet ResNets of He et al. (2016) with an optional cosine head, a
digits net."""

from ltlight.models.classifier import get_classifier, reset_classifier
from ltlight.models.digits_net import DigitsNet
from ltlight.models.normed_linear import NormedLinear
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

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "DigitsNet",
    "ImageNetResNet",
    "NormedLinear",
    "OptionAShortcut",
    "get_classifier",
    "reset_classifier",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet152",
    "resnext50_32x4d",
]
