"""Fine-tuning a pretrained backbone: ``LongTailModule(backbone, finetune=AdaptFormer())``.

Every method trains the classifier and what it names; the rest is frozen and stays bit-identical
(``requires_grad=False``; BatchNorm statistics kept). With a frozen base, checkpoints hold only
the trained tensors and the base weights' identity (:mod:`ltlight.finetune.checkpoints`).

============================  ======================================================
method                         trains (besides the classifier)
============================  ======================================================
:class:`FullFineTuning`        everything
:class:`LinearProbe`           nothing
:class:`BitFit`                the biases
:class:`LayerNormTuning`       the LayerNorms' ``γ, β``
:class:`LoRA`                  low-rank adapters on named layers (Hugging Face peft)
:class:`AdaptFormer`           a bottleneck adapter beside each block's MLP (LIFT)
:class:`VisualPromptTuning`    prompt tokens in the input sequence (shallow or deep)
============================  ======================================================
"""

from ltlight.finetune.adaptformer import AdaptFormer
from ltlight.finetune.base import FineTuning, FullFineTuning, parameter_counts
from ltlight.finetune.lora import LoRA
from ltlight.finetune.prompts import VisualPromptTuning
from ltlight.finetune.selective import BitFit, LayerNormTuning, LinearProbe

__all__ = [
    "AdaptFormer",
    "BitFit",
    "FineTuning",
    "FullFineTuning",
    "LayerNormTuning",
    "LinearProbe",
    "LoRA",
    "VisualPromptTuning",
    "parameter_counts",
]
