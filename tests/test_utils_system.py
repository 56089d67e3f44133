"""usable_cores: the affinity mask where there is one, else the machine's core count."""

from __future__ import annotations

import os

from groot.utils import system


def test_the_affinity_mask_counts(monkeypatch):
    monkeypatch.setattr(system.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(system.os, "cpu_count", lambda: 64)
    assert system.usable_cores() == 3


def test_without_an_affinity_call_every_core_counts(monkeypatch):
    monkeypatch.delattr(system.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(system.os, "cpu_count", lambda: 12)
    assert system.usable_cores() == 12
    monkeypatch.setattr(system.os, "cpu_count", lambda: None)  # undeterminable
    assert system.usable_cores() == 1


def test_this_process_has_at_least_one_core():
    cores = system.usable_cores()
    assert cores >= 1
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))
