"""Learner fields in run configs: a field added after runs were recorded keeps their run ids."""
from __future__ import annotations

from dataclasses import dataclass, field

from clbench.fields import field_values


@dataclass
class Method:
    lr: float = 0.1
    reduce: str = field(default="mean", metadata={"since": "0.2"})


def test_a_field_added_later_is_left_out_at_its_default_only():
    assert field_values(Method()) == {"lr": 0.1}
    assert field_values(Method(reduce="sum")) == {"lr": 0.1, "reduce": "sum"}


def test_hope_keeps_the_run_ids_recorded_before_its_new_fields():
    from clbench.learners.hope import Hope

    assert not {"cms_reduce", "period_unit", "memory_width"} & set(field_values(Hope()))
    assert field_values(Hope(cms_reduce="sum"))["cms_reduce"] == "sum"
