"""`groot eval ...` sub-commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from groot.errors import ConfigError
from groot.sim.commands import register_sim
from groot.utils.cli_args import add_command, add_group, arg
from groot.utils.net import parse_host_port


@dataclass
class OpenLoopConfig:
    dataset_path: str = arg(help="LeRobot dataset (with meta/modality.json) whose recorded actions are the "
                                 "ground truth")
    embodiment_tag: str = arg(help="embodiment tag of the dataset and the policy (e.g. new_embodiment)")
    model_path: str | None = arg(None, "checkpoint directory or hub id to run in this process "
                                       "(exactly one of --model-path / --server)")
    server: str | None = arg(None, "HOST:PORT of a running `groot serve` or official inference service")
    api_token: str | None = arg(None, "token for --server, when the server requires one")
    protocol: Literal["n1.5", "n1.6"] = arg("n1.5", "wire protocol of --server: n1.5 (flat observation, "
                                                    "dict reply) or n1.6 (nested observation, [action, "
                                                    "info] reply), the generation `groot serve` serves")
    data_config: str | None = arg(None, "data config for --model-path; default: the checkpoint's "
                                        "experiment_cfg/data_config.json, else the one its N1.6 "
                                        "processor files give the embodiment tag")
    trajs: int = arg(1, "number of trajectories to evaluate (the dataset's first ones)")
    steps: int = arg(150, "steps evaluated per trajectory (fewer when a trajectory is shorter)")
    action_horizon: int = arg(16, "steps executed from each predicted chunk: the policy is queried every "
                                  "this many steps")
    denoising_steps: int | None = arg(None, "flow-matching steps for --model-path; default: the "
                                            "checkpoint's (4)")
    device: str | None = arg(None, "torch device for --model-path; default: cuda if available")
    video_backend: Literal["pyav", "opencv", "torchcodec"] = arg("pyav", "video decoder")
    timeout_ms: int = arg(60_000, "per-request timeout for --server")
    out: str = arg("open_loop_eval", "output directory: trajectory_<id>.png plots and summary.json")


def run_open_loop_command(cfg: OpenLoopConfig) -> int:
    from contextlib import ExitStack

    from groot.eval.open_loop import run_open_loop

    if (cfg.model_path is None) == (cfg.server is None):
        raise ConfigError("groot eval open-loop: give exactly one of --model-path and --server")
    settings = {"model_path": cfg.model_path, "server": cfg.server, "denoising_steps": cfg.denoising_steps}
    with ExitStack() as stack:
        policy = stack.enter_context(_client(cfg)) if cfg.server is not None else _local_policy(cfg)
        summary = run_open_loop(policy, cfg.dataset_path, cfg.embodiment_tag, cfg.out, cfg.trajs, cfg.steps,
                                cfg.action_horizon, cfg.video_backend, settings)
    for result in summary["trajectories"]:
        print(f"trajectory {result['trajectory']}: MSE {result['mse']:.6g}  MAE {result['mae']:.6g}  "
              f"({result['steps']} steps)")
    print(f"mean MSE {summary['mean_mse']:.6g}  mean MAE {summary['mean_mae']:.6g}  -> "
          f"{cfg.out}/summary.json")
    return 0


def _client(cfg: OpenLoopConfig):
    from groot.serve.client import InferenceClient

    if cfg.data_config is not None:
        raise ConfigError("groot eval open-loop: --data-config applies to --model-path only; a server "
                         "reports its own modality config")
    host, port = parse_host_port(cfg.server, "groot eval open-loop: --server")
    return InferenceClient(host, port, api_token=cfg.api_token, timeout_ms=cfg.timeout_ms,
                           protocol=cfg.protocol)


def _local_policy(cfg: OpenLoopConfig):
    from groot.policy import Policy

    return Policy.from_pretrained(cfg.model_path, cfg.embodiment_tag, data_config=cfg.data_config,
                                  denoising_steps=cfg.denoising_steps, device=cfg.device)


def register(subparsers) -> None:
    group = add_group(subparsers, "eval",
                      help="Evaluate a policy: open loop on recorded actions, closed loop in simulation.")
    add_command(group, "open-loop", OpenLoopConfig, run_open_loop_command,
                help="Replay dataset trajectories through a policy (local checkpoint or running server); "
                     "report un-normalized MSE / MAE, plot predicted vs recorded actions.")
    register_sim(group)
