"""`groot sim ...` sub-commands."""

from __future__ import annotations

import dataclasses
from typing import Literal

from groot.utils.cli_args import add_command, add_group, arg


@dataclasses.dataclass
class GenerateConfig:
    out: str = arg(help="output dataset directory (must not exist; an interrupted run with the same --out "
                        "resumes from its scratch folder .<name>.episodes)")
    suite: str = arg("libero_object", "LIBERO suite: libero_object, libero_spatial or libero_goal (its "
                                      "pick-and-place tasks 1 2 4 6 8 9)")
    episodes_per_task: int = arg(10, "successful demonstrations to collect per task")
    tasks: list[int] | None = arg(None, "task ids to generate (default: every task of the suite)")
    workers: int = arg(2, "simulator processes in parallel (each uses one CPU core)")
    image_size: int = arg(128, "camera resolution (square, pixels)")
    noise: float = arg(0.0, "std of Gaussian noise on the expert's actions (in action units, e.g. 0.1) "
                            "and small random waypoint offsets, for diverse demonstrations")
    seed: int = arg(0, "random seed (noise, waypoint offsets, simulator)")
    version: Literal["v2.1", "v3.0"] = arg("v2.1", "LeRobot dataset format version")
    attempts_per_episode: int = arg(3, "expert tries per demonstration (next init states) before giving up")
    crf: int = arg(23, "H.264 quality (lower: better and larger; 26 is ~30%% smaller than 23)")


def run_generate(cfg: GenerateConfig) -> int:
    from groot.sim.generate import format_summary, generate_dataset

    summary = generate_dataset(cfg.suite, cfg.out, cfg.episodes_per_task, tasks=cfg.tasks,
                               workers=cfg.workers, image_size=cfg.image_size, noise=cfg.noise, seed=cfg.seed,
                               version=cfg.version, attempts_per_episode=cfg.attempts_per_episode,
                               crf=cfg.crf)
    print(format_summary(summary))
    return 0


def register(subparsers) -> None:
    sim = add_group(subparsers, "sim", "LIBERO simulator: scripted demonstrations (needs the `sim` extra)")
    add_command(sim, "generate", GenerateConfig, run_generate,
                "Generate a LeRobot dataset of successful scripted-expert demonstrations in LIBERO")
