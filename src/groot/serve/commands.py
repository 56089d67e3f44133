"""`groot serve`: run the official-protocol inference server on a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from groot.utils.cli_args import add_command, arg


@dataclass
class ServeConfig:
    model_path: str = arg(help="checkpoint directory or Hugging Face model id (e.g. nvidia/GR00T-N1.5-3B)")
    embodiment_tag: str = arg(help="embodiment tag whose statistics and projector to use (e.g. gr1, "
                                   "new_embodiment)")
    data_config: str | None = arg(None, "data config name or module:Class; default: the checkpoint's "
                                        "experiment_cfg/data_config.json")
    host: str = arg("127.0.0.1", "address to bind; use 0.0.0.0 (with --api-token) to accept remote robots")
    port: int = arg(5555, "TCP port to bind; 0 picks a free one (logged at start)")
    api_token: str | None = arg(None, "shared secret every request must carry as 'api_token'")
    denoising_steps: int | None = arg(None, "flow-matching integration steps; default: the checkpoint's "
                                            "num_inference_timesteps (4)")
    device: str | None = arg(None, "torch device, e.g. cuda, cuda:1, cpu; default: cuda if available")
    max_message_mb: float = arg(64.0, "largest request accepted, in MiB; larger ones are dropped")
    fast: bool = arg(True, "on CUDA, run the fast inference engine (GPU image preprocessing, fused "
                           "projections, compiled blocks, CUDA graphs); --no-fast uses the eager model")
    exact: bool = arg(False, "fast engine with the eager model's numbers bit for bit (no compilation at the "
                             "first request, a little slower per chunk: see BENCHMARKS.md)")


def run(cfg: ServeConfig) -> int:
    import logging

    from groot.policy import Policy
    from groot.serve.server import InferenceServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policy = Policy.from_pretrained(cfg.model_path, cfg.embodiment_tag, data_config=cfg.data_config,
                                    denoising_steps=cfg.denoising_steps, device=cfg.device,
                                    fast=None if cfg.fast else False, exact=cfg.exact)
    server = InferenceServer(policy, host=cfg.host, port=cfg.port, api_token=cfg.api_token,
                             max_message_bytes=int(cfg.max_message_mb * 2**20))
    with server:
        server.serve_until_signalled()
    return 0


def register(subparsers) -> None:
    add_command(subparsers, "serve", ServeConfig, run,
                help="Serve a checkpoint over ZeroMQ with the official GR00T inference protocol "
                     "(endpoints ping, kill, get_action, get_modality_config).")
