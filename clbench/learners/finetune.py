"""Plain sequential fine-tuning: the lower bound of every continual-learning table."""
from __future__ import annotations

from dataclasses import dataclass

from clbench.learner import SGDLearner


@dataclass
class Finetune(SGDLearner):
    """Sequential fine-tuning: trains on each task in turn with no defence against forgetting.

    The lower bound every method must beat (called "Naive" in Avalanche, "SGD" or "None" in
    many papers). All fields are those of `SGDLearner`.
    """
