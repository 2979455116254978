"""The two training steps the speed benchmarks time: the CIFAR ResNet-32 recipe and a small ViT.

* ``resnet32``: ResNet-32 with the cosine (``NormedLinear``) head and LDAM (``max_m`` 0.5,
  ``s`` 30) on CIFAR-10-LT's class counts, SGD (lr 0.1, momentum 0.9, weight decay 2e-4),
  ``channels_last`` — the LDAM-DRW recipe as ``configs/cifar10_lt/ldam_drw.yaml`` trains it;
* ``vit``: a small Vision Transformer for 32×32 images (torchvision's ``VisionTransformer``:
  patch 4, so 64 tokens, 6 blocks, width 192, 3 heads, MLP 768 — ViT-Tiny's width at half its
  depth; 2.7 M parameters) with cross-entropy and the same SGD.

Both take batches of 128 random CIFAR-shaped images (normalised; the pixels do not change the
time). :func:`time_steps` times steps one after the other on one model and returns the
seconds of each; ``train_speed.py --compile-table`` and ``losses.py --step-share`` build their
tables from these.
"""

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

BATCH_SIZE = 128
MODELS = ("resnet32", "vit")
#: CIFAR-10-LT (ratio 100): the class counts LDAM's margins come from.
CIFAR10_LT_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def make_model(name: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialised ``resnet32`` (cosine head) or ``vit`` (seeded: every call equal)."""
    from torchvision.models import VisionTransformer

    from ltlight.models import resnet32

    torch.manual_seed(0)
    if name == "resnet32":
        return resnet32(num_classes, normed=True).to(memory_format=torch.channels_last)
    if name == "vit":
        return VisionTransformer(
            image_size=32, patch_size=4, num_layers=6, num_heads=3, hidden_dim=192,
            mlp_dim=768, num_classes=num_classes,
        )  # fmt: skip
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def recipe_loss(name: str) -> nn.Module:
    """The loss each model trains with: LDAM for the ResNet-32 recipe, cross-entropy for the ViT."""
    from ltlight.losses import CrossEntropyLoss, LDAMLoss

    if name == "resnet32":
        return LDAMLoss(CIFAR10_LT_COUNTS, max_m=0.5, s=30.0)
    return CrossEntropyLoss()


def batch(model: str, device: torch.device, size: int = BATCH_SIZE) -> tuple[Tensor, Tensor]:
    """``size`` random normalised CIFAR-shaped images (channels-last for the ResNet) and labels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (size,), generator=generator).to(device)
    if model == "resnet32":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


class TrainingStep:
    """``step()``: zero the gradients, forward, loss, backward, SGD step — one training step.

    Args:
        model: the network, on ``images``' device.
        loss: ``(logits, target) → scalar``.
        images, labels: the batch every step trains on.
        forward: what calls the model (``model`` itself, or its compiled form).
        bf16: autocast to bfloat16 (the GPU setting of the benchmarks).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[[Tensor, Tensor], Tensor],
        images: Tensor,
        labels: Tensor,
        forward: Callable[[Tensor], Tensor] | None = None,
        bf16: bool = False,
    ) -> None:
        self.loss, self.images, self.labels, self.bf16 = loss, images, labels, bf16
        self.forward = forward or model
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4
        )

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(self.images)
        self.loss(logits.float(), self.labels).backward()
        self.optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, count: int = 1) -> list[float]:
    """Seconds of each of ``count`` consecutive calls of ``step`` (device synchronised)."""
    seconds = []
    for _ in range(count):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds
