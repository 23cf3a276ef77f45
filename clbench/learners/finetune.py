"""Plain sequential fine-tuning: the lower bound of every continual-learning table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clbench.learner import SGDLearner


@dataclass
class Finetune(SGDLearner):
    """Sequential fine-tuning: trains on each task in turn with no defence against forgetting.

    The lower bound every method must beat (called "Naive" in Avalanche, "SGD" or "None" in
    many papers). All fields are those of `SGDLearner`. It needs no task boundary, so on a
    stream it trains batch by batch (`fit_batch`).
    """

    task_free: ClassVar[bool] = True
