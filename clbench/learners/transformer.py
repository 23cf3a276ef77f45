"""Fine-tuning of a decoder-only Transformer byte language model: the lower bound of continual
language modelling (and the default sequence learner of the text streams)."""
from __future__ import annotations

from dataclasses import dataclass

from clbench.learners.finetune import Finetune


@dataclass
class Transformer(Finetune):
    """Sequential fine-tuning of a small Transformer language model over bytes (`models.TransformerLM`).

    Pre-norm blocks with rotary positions (Su et al. 2021), SwiGLU MLPs (Shazeer 2020) and tied input
    and output embeddings (Press & Wolf 2017), as in Touvron et al. 2023 (LLaMA) at toy size. The
    fields are those of `SGDLearner` with defaults for language modelling: `widths` is (width, depth,
    heads) and the context length is the scenario's; one pass over each domain's training budget.
    The other methods run the same model with `--set backbone=transformer --set widths=192,4,4`.
    """

    backbone: str = "transformer"              # a sequence backbone (clbench.models)
    widths: tuple[int, ...] = (192, 4, 4)      # (width, depth, heads): 1.8 M parameters with 256 bytes
    epochs: int = 1                            # one pass over each domain's training budget
    lr: float = 0.001                          # Adam learning rate
    batch_size: int = 16                       # token windows per step
