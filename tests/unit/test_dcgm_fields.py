"""Every server of DCGM metrics serves every field of ``hardware.dcgm``, under the one
name and help text defined there: the GPU health agent (from NVML readings) and the
simulator (from its simulated GPUs)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from gpufleet.gpuagent import exporter
from gpufleet.hardware import dcgm
from gpufleet.sim import metrics


@pytest.mark.parametrize("values", [exporter.VALUES, metrics.DCGM_VALUES], ids=["gpuagent", "sim"])
def test_every_field_has_a_value(values: Mapping[dcgm.Field, object]) -> None:
    assert list(values) == list(dcgm.FIELDS)


def test_field_names_are_distinct_dcgm_fields() -> None:
    names = [f.name for f in dcgm.FIELDS]
    assert len(set(names)) == len(names)
    assert all(n.startswith("DCGM_FI_DEV_") for n in names)
