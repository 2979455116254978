"""What every fine-tuning method shares: freeze what it does not train, count what it trains.

A method (:class:`FineTuning`) adds its modules to a backbone (adapters, prompts; none for the
selective methods), then everything that is neither the classifier nor chosen by the method gets
``requires_grad=False`` and never changes: the optimiser only sees trained parameters
(``LongTailModule`` leaves frozen ones out), and with a frozen base every module with running
statistics (BatchNorm) stays in evaluation mode, so its buffers stay the pretrained ones too.
"""

from collections.abc import Iterable

from torch import nn

from ltlight.models.heads import get_classifier


class FineTuning:
    """The base of the fine-tuning methods; :class:`FullFineTuning` trains everything.

    A method says which parameters it trains (:meth:`select`), optionally adds modules first
    (:meth:`add_modules`) and says when it does not apply to a backbone (:meth:`not_applicable`).
    The classifier is always trained.
    """

    #: The pretrained tensors stay frozen, so a checkpoint need not hold them.
    frozen_base: bool = True

    def __init__(self) -> None:
        #: Names (in the backbone) of the pretrained tensors the method froze, set by :meth:`apply`.
        self.frozen_names: list[str] = []

    def not_applicable(self, backbone: nn.Module) -> str | None:
        """Why the method cannot apply to ``backbone``, or ``None`` when it can."""
        return None

    def add_modules(self, backbone: nn.Module) -> None:
        """Add the method's new modules (adapters, prompts) to ``backbone``, in place."""

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        """The parameters the method trains besides the classifier."""
        return ()

    def apply(self, backbone: nn.Module) -> nn.Module:
        """Add the method's modules to ``backbone`` and freeze the rest; returns ``backbone``.

        Raises:
            ValueError: the method does not apply to this backbone (the message names the
                methods that do).
        """
        reason = self.not_applicable(backbone)
        if reason is not None:
            raise ValueError(
                f"finetune: {type(self).__name__} does not apply to {type(backbone).__name__} "
                f"({reason}); methods that apply: {', '.join(applicable_methods(backbone))}"
            )
        base = {id(t) for t in (*backbone.parameters(), *backbone.buffers())}
        self.add_modules(backbone)
        trained = {id(p) for p in get_classifier(backbone).parameters()}
        trained |= {id(p) for p in self.select(backbone)}
        for parameter in backbone.parameters():
            parameter.requires_grad_(id(parameter) in trained)
        frozen = [n for n, p in backbone.named_parameters() if id(p) not in trained]
        frozen += [n for n, _ in backbone.named_buffers()]
        named = dict(backbone.state_dict(keep_vars=True))
        self.frozen_names = (
            [n for n in frozen if id(named.get(n)) in base] if self.frozen_base else []
        )
        if backbone.training:  # Lightning trains the module in the mode it is given
            self.set_train_mode(backbone)
        return backbone

    def set_train_mode(self, backbone: nn.Module) -> None:
        """After ``module.train()``: with a frozen base, every BatchNorm keeps its pretrained
        running statistics (evaluation mode), also under BitFit, which trains its ``β``."""
        if not self.frozen_base:
            return
        for module in backbone.modules():
            if getattr(module, "track_running_stats", False):
                module.eval()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "frozen_names")
        return f"{type(self).__name__}({arguments})"


class FullFineTuning(FineTuning):
    """Every parameter trains (BatchNorm statistics too): the "heavy" fine-tuning LIFT compares
    against; checkpoints hold the whole model."""

    frozen_base = False

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        return backbone.parameters()


def applicable_methods(backbone: nn.Module) -> list[str]:
    """The names of the methods (with default arguments) that apply to ``backbone``."""
    from ltlight import finetune

    names = []
    for name in finetune.__all__:
        method = getattr(finetune, name)
        is_method = isinstance(method, type) and issubclass(method, FineTuning)
        if is_method and method is not FineTuning and method().not_applicable(backbone) is None:
            names.append(name)
    return names


def parameter_counts(module: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``module``."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in module.parameters())
