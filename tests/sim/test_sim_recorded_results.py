"""The LIBERO results `groot demo` quotes agree with benchmarks/results/ and BENCHMARKS.md."""

from __future__ import annotations

import json
from pathlib import Path

from groot.sim.recorded import RECORDED_LIBERO_RESULTS, RecordedResult, format_recorded_results

ROOT = Path(__file__).resolve().parents[2]
RECIPE_KEYS = {"suite", "preset", "success", "successes", "episodes", "tasks"}


def libero_section() -> str:
    text = (ROOT / "BENCHMARKS.md").read_text()
    start = text.index("\n## LIBERO")
    return text[start:text.index("\n## ", start + 1)]


def test_every_recorded_result_has_its_file_and_its_benchmarks_row():
    section = libero_section()
    for result in RECORDED_LIBERO_RESULTS:
        assert (ROOT / result.source).is_file(), result.source
        assert f"{result.successes} / {result.episodes}" in section, result
        assert result.source.removeprefix("benchmarks/results/") in section, result.source


def test_every_recipe_result_file_is_recorded_with_its_numbers():
    recorded = {(r.suite, r.preset): r for r in RECORDED_LIBERO_RESULTS}
    for path in sorted((ROOT / "benchmarks" / "results").glob("libero_*.json")):
        data = json.loads(path.read_text())
        if not set(data) >= RECIPE_KEYS:
            continue  # an earlier result's own format
        row = recorded.get((data["suite"], data["preset"]))
        assert row is not None, f"{path.name}: add its row to groot.sim.recorded.RECORDED_LIBERO_RESULTS"
        assert (row.successes, row.episodes) == (data["successes"], data["episodes"]), path.name


def test_the_quoted_line_reads_suite_preset_and_fraction():
    line = format_recorded_results((RecordedResult("libero_spatial", "n1.6-small", 37, 200,
                                                   "benchmarks/results/x.json", "a setting"),))
    assert line == ("- LIBERO-Spatial, `n1.6-small` preset: 37 / 200 (18 %), a setting "
                    "(benchmarks/results/x.json)")
