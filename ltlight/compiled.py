"""``torch.compile`` of a backbone, falling back to eager with one warning when it cannot compile.

:class:`CompiledCall` is what ``LongTailModule(compile=True)`` calls in place of its backbone:

* **lazily**: nothing compiles until the first batch, when the module is on its device
  (compiling before ``.to(device)`` would compile for the wrong device);
* **outside the module tree**: it is a plain object holding ``torch.compile(backbone)``, so the
  backbone's parameters keep their names — checkpoints have no ``_orig_mod.`` keys and load into
  an uncompiled module, and the reverse;
* **with static shapes** (``dynamic=False``): each batch shape (training, a last short batch,
  evaluation) compiles once and always runs the same kernels, whatever shapes came before — so a
  run resumed mid-epoch computes bit for bit what the uninterrupted run computed. (Automatic
  dynamic shapes would recompile for a second shape and choose kernels by history.)
* **falling back**: a backbone that cannot compile — an operation Dynamo cannot trace (a custom
  operator without a fake implementation), no working C++ compiler for Inductor on the CPU, a
  Python version without Dynamo — raises when its first batch compiles, before anything runs;
  the batch then runs eagerly, with one ``UserWarning`` naming the cause, and so does every later
  one. The trained weights are those of an eager run.
"""

import warnings
from typing import Any

import torch
from torch import Tensor, nn


def _compile_errors() -> tuple[type[BaseException], ...]:
    from torch._dynamo.exc import TorchDynamoException  # Dynamo's and Inductor's failures

    return (TorchDynamoException,)


class CompiledCall:
    """Calls ``torch.compile(module)``, or ``module`` itself once compiling has failed.

    Args:
        module: the network to compile (kept as it is; the compiled wrapper shares its weights).
        **options: ``torch.compile``'s keyword arguments (default ``dynamic=False``).

    Example:
        >>> backbone = nn.Linear(3, 2)
        >>> call = CompiledCall(backbone)
        >>> call.compiled, call.failed  # nothing is compiled before the first call
        (None, False)
    """

    def __init__(self, module: nn.Module, **options: Any) -> None:
        self.module = module
        self.options = {"dynamic": False, **options}
        self.compiled: Any = None
        #: The error that made it fall back to eager, or ``False``.
        self.failed: BaseException | bool = False

    def __call__(self, *args: Tensor) -> Any:
        if self.failed:
            return self.module(*args)
        try:
            if self.compiled is None:
                self.compiled = torch.compile(self.module, **self.options)
            return self.compiled(*args)
        except Exception as error:
            if self.compiled is not None and not isinstance(error, _compile_errors()):
                raise  # the model's own error at run time, as it would be raised eagerly
            self.failed = error
        first_line = (str(self.failed).strip().splitlines() or [""])[0]
        warnings.warn(
            f"compile=True: {type(self.module).__name__} cannot be compiled "
            f"({type(self.failed).__name__}: {first_line}); it runs eagerly",
            stacklevel=3,
        )
        return self.module(*args)
