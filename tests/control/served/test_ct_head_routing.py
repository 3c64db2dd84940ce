"""``ct_head`` routing: which CT series it reads, and the settle delay of its jobs."""

from __future__ import annotations

from control.config import Settings
from control.served.base import RoutingRules
from control.served.ct_head import CT_HEAD_MODEL
from control.served.registry import route_study
from tests.control.served.test_registry import CT_IMAGE, _series, _study


def test_the_fullest_head_ct_series_is_read():
    scout, axial = _series("CT", "HEAD", 2, CT_IMAGE), _series("CT", "HEAD", 30, CT_IMAGE)
    route = route_study(_study(scout, axial), RoutingRules())
    assert route.pipeline == "ct_head"
    assert route.instances == axial.instances and route.subjects == ["volume"]


def test_brain_is_a_head_body_part_and_the_set_is_configurable():
    brain = _study(_series("CT", "brain", 4, CT_IMAGE))
    assert route_study(brain, RoutingRules()).pipeline == "ct_head"
    rules = RoutingRules.from_settings(Settings(route_ct_head_body_parts=["skull"]))
    assert route_study(brain, rules).pipeline is None
    assert route_study(_study(_series("CT", "SKULL", 4, CT_IMAGE)), rules).pipeline == "ct_head"


def test_a_ct_without_a_recorded_body_part_is_not_read_as_a_head():
    route = route_study(_study(_series("CT", "", 40, CT_IMAGE)), RoutingRules())
    assert (route.pipeline, route.reason) == (None, "no model for CT studies")


def test_head_ct_jobs_settle_as_configured():
    assert CT_HEAD_MODEL.settle_s(Settings()) == 3.0
    assert CT_HEAD_MODEL.settle_s(Settings(ct_series_settle_s=0)) == 0.0
