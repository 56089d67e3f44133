"""`groot sim ...` sub-commands."""

from __future__ import annotations

import dataclasses
from typing import Literal

from groot.errors import ConfigError
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
    noise: float = arg(0.0, "std of Gaussian noise on the executed actions (action units, e.g. 0.1) and "
                            "small random waypoint offsets; the dataset records the expert's noise-free "
                            "action for each state reached, so it shows how to correct small errors")
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


@dataclasses.dataclass
class SimEvalConfig:
    suite: str = arg(help="LIBERO suite: libero_object, libero_spatial, libero_goal, libero_10, libero_90")
    model_path: str | None = arg(None, "checkpoint directory or hub id, loaded in each worker process "
                                       "(exactly one of --model-path / --server)")
    server: str | None = arg(None, "HOST:PORT of a running `groot serve` (each worker connects a client)")
    embodiment_tag: str = arg("new_embodiment", "embodiment tag of the policy (--model-path)")
    data_config: str | None = arg(None, "data config for --model-path; default: the checkpoint's own")
    denoising_steps: int | None = arg(None, "flow-matching steps for --model-path; default: the checkpoint's")
    device: str | None = arg(None, "torch device for --model-path; default: cuda if available")
    api_token: str | None = arg(None, "token for --server, when the server requires one")
    protocol: Literal["n1.5", "n1.6"] = arg("n1.5", "wire protocol of --server: n1.5 (flat observation, "
                                                    "dict reply) or n1.6 (nested observation, [action, "
                                                    "info] reply), the generation `groot serve` serves")
    tasks: list[int] | None = arg(None, "task ids to evaluate (default: every task of the suite)")
    episodes_per_task: int = arg(10, "episodes per task; episode e starts from the suite's init state e")
    action_horizon: int = arg(8, "execute this many actions of each predicted chunk, then query the policy "
                                 "again")
    workers: int = arg(1, "simulator processes in parallel (one task at a time each; with --model-path each "
                          "loads the model)")
    video: Literal["failures", "all", "none"] = arg("failures",
                                                    "which episodes get an MP4 (agent view | wrist view); "
                                                    "none also renders the cameras only before each "
                                                    "policy query (several times faster with a software "
                                                    "renderer)")
    out: str = arg("sim_eval", "output directory: report.json, report.md, videos/")
    seed: int = arg(0, "simulator seed; episode e also seeds torch with seed + e")
    image_size: int = arg(128, "camera resolution: the resolution the policy was trained on")
    max_steps: int | None = arg(None, "step limit per episode (default: the suite's standard limit, e.g. "
                                      "libero_object 280)")


def run_sim_eval(cfg: SimEvalConfig) -> int:
    from groot.eval.closed_loop import PolicySource, evaluate, format_report

    try:
        source = PolicySource(model_path=cfg.model_path, server=cfg.server, embodiment_tag=cfg.embodiment_tag,
                              data_config=cfg.data_config, denoising_steps=cfg.denoising_steps,
                              device=cfg.device, api_token=cfg.api_token, protocol=cfg.protocol)
    except ValueError as e:
        raise ConfigError(f"groot eval sim: {e} (--model-path / --server)") from e
    report = evaluate(source, cfg.suite, cfg.out, tasks=cfg.tasks, episodes_per_task=cfg.episodes_per_task,
                      action_horizon=cfg.action_horizon, video=cfg.video, seed=cfg.seed, workers=cfg.workers,
                      image_size=cfg.image_size, max_steps=cfg.max_steps)
    print(format_report(report))
    print(f"report: {report['report_json']}  {report['report_md']}  videos: {cfg.out}/videos/")
    return 0


def register_sim(eval_subparsers) -> None:
    """`groot eval sim` (called by the eval group's register)."""
    add_command(eval_subparsers, "sim", SimEvalConfig, run_sim_eval,
                "Closed-loop evaluation in LIBERO: success rate per task, MP4s, JSON + markdown report "
                "(needs the `sim` extra)")
