"""Architecture controls of the `hope` learner: Hope's own network with the memory removed and
every level stepping each step (the `token-mlp` backbone of clbench.models), trained by plain
fine-tuning, by replay and by EWC.

Hope (Behrouz et al., Nested Learning, arXiv 2512.24695) changes two things at once against an
MLP baseline: a patch-token network, and its mechanisms (the self-modifying memory, the CMS
levels' periods). These controls keep the first and remove the second, so every Hope number can
stand beside the same network without Hope's mechanisms. They are the existing learners with a
different default backbone, not new methods: `--learner replay --set backbone=token-mlp` is the
same as `--learner token-mlp-replay`.
"""
from __future__ import annotations

from dataclasses import dataclass

from clbench.learners.ewc import EWC
from clbench.learners.finetune import Finetune
from clbench.learners.replay import Replay


@dataclass
class TokenMLP(Finetune):
    """Fine-tuning of Hope's network without its memory (backbone `token-mlp`), one Adam over all
    of it: `Hope(selfmod=False, levels=(1, 1, 1, 1))` at one learning rate."""

    backbone: str = "token-mlp"


@dataclass
class TokenMLPReplay(Replay):
    """Experience replay (Chaudhry et al. 2019) on Hope's network without its memory."""

    backbone: str = "token-mlp"


@dataclass
class TokenMLPEWC(EWC):
    """EWC (Kirkpatrick et al. 2017) on Hope's network without its memory."""

    backbone: str = "token-mlp"
