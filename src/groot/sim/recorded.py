"""LIBERO results recorded on GPU machines, as `groot demo` quotes them (offline, no file reads).

One row per (suite, preset) in BENCHMARKS.md's LIBERO section; the files behind them live in
`benchmarks/results/` (`libero_<suite>_<preset>.json` from `benchmarks/libero_recipe.py`). A test keeps
this table, those files and BENCHMARKS.md in agreement: a new result file needs its row here.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RecordedResult:
    suite: str
    preset: str
    successes: int
    episodes: int
    source: str  # results file, relative to the repository root
    setting: str  # how it was trained and evaluated, in a few words

    @property
    def success(self) -> float:
        return self.successes / self.episodes


RECORDED_LIBERO_RESULTS: tuple[RecordedResult, ...] = (
    RecordedResult("libero_object", "small", 68, 100, "benchmarks/results/libero_object_small_v2_v3.json",
                   "trained from scratch on 500 scripted demonstrations, 15 min on one NVIDIA H100; "
                   "10 episodes per task"),
)


def format_recorded_results(results: tuple[RecordedResult, ...] = RECORDED_LIBERO_RESULTS) -> str:
    """One markdown line per recorded result, e.g. "- LIBERO-Object, `small` preset: 68 / 100 (68 %) ..."."""
    lines = []
    for r in results:
        suite = "LIBERO-" + r.suite.removeprefix("libero_").capitalize()
        fraction = f"{r.successes} / {r.episodes} ({100 * r.success:.0f} %)"
        lines.append(f"- {suite}, `{r.preset}` preset: {fraction}, {r.setting} ({r.source})")
    return "\n".join(lines)
