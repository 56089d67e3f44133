"""`groot serve`: run the official-protocol inference server on a checkpoint (the N1.5 or N1.6 protocol,
by default the checkpoint's generation)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from groot.errors import ConfigError
from groot.serve.limits import RequestLimits
from groot.utils.cli_args import add_command, arg

API_TOKEN_ENV = "GROOT_API_TOKEN"
_LIMIT_DEFAULTS = RequestLimits()


@dataclass
class ServeConfig:
    model_path: str = arg(help="checkpoint directory or Hugging Face model id (e.g. nvidia/GR00T-N1.5-3B)")
    embodiment_tag: str = arg(help="embodiment tag whose statistics and projector to use (e.g. gr1, "
                                   "new_embodiment)")
    data_config: str | None = arg(None, "data config name or module:Class; default: the checkpoint's "
                                        "experiment_cfg/data_config.json, else the one its N1.6 "
                                        "processor files give the embodiment tag")
    host: str = arg("127.0.0.1", "address to bind, IPv4 or IPv6 (::1); use 0.0.0.0 or :: (with an API "
                                 "token) to accept remote robots")
    port: int = arg(5555, "TCP port to bind; 0 picks a free one (logged at start)")
    api_token: str | None = arg(None, "shared secret every request must carry as 'api_token' (visible to "
                                      f"other users in ps: prefer --api-token-file or {API_TOKEN_ENV})")
    api_token_file: str | None = arg(None, "file whose content (surrounding whitespace stripped) is the API "
                                           f"token; default: the {API_TOKEN_ENV} environment variable, "
                                           "if set")
    denoising_steps: int | None = arg(None, "flow-matching integration steps; default: the checkpoint's "
                                            "num_inference_timesteps (4)")
    device: str | None = arg(None, "torch device, e.g. cuda, cuda:1, cpu; default: cuda if available")
    max_message_mb: float = arg(64.0, "largest request accepted, in MiB; larger ones are dropped")
    max_prompt_chars: int | None = arg(None, "most characters in one instruction string; default: the "
                                             "model's positions (max_position_embeddings, 40960 for Qwen3)")
    max_prompt_tokens: int | None = arg(None, "most prompt tokens one request may run: batch size x its "
                                              "longest prompt, chat template and image tokens included; "
                                              "default: the model's positions (40960 for Qwen3)")
    max_batch_size: int = arg(_LIMIT_DEFAULTS.max_batch_size, "most samples in one batched request")
    max_frames: int = arg(_LIMIT_DEFAULTS.max_frames, "most video frames in one request (all cameras, "
                                                      "time steps and samples)")
    max_image_size: int = arg(_LIMIT_DEFAULTS.max_image_size, "largest frame height or width, in pixels")
    protocol: Literal["auto", "n1.5", "n1.6"] = arg(
        "auto", "wire protocol: n1.5 (flat observation -> {'action.<k>': ...}) or n1.6 ({'observation': "
                "nested video / state / language, 'options'} -> [actions without the 'action.' prefix, "
                "info], plus a reset endpoint); auto (default): the checkpoint's generation")
    fast: bool = arg(True, "on CUDA, run the fast inference engine (GPU image preprocessing, fused "
                           "projections, compiled blocks, CUDA graphs); --no-fast uses the eager model")
    exact: bool = arg(False, "fast engine with the eager model's numbers bit for bit (no compilation at the "
                             "first request, a little slower per chunk: see BENCHMARKS.md)")


def resolve_api_token(flag: str | None, token_file: str | None, environ: dict[str, str]) -> str | None:
    """The API token from --api-token, --api-token-file or GROOT_API_TOKEN (in that order; at most one
    of the two flags). Raises ConfigError for an unreadable or empty token file."""
    if flag is not None and token_file is not None:
        raise ConfigError("--api-token and --api-token-file: expected at most one, found both")
    if flag is not None:
        return flag
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: expected a readable text file holding the API token, found "
                             f"{type(e).__name__}: {e}") from e
        if not token:
            raise ConfigError(f"{path}: expected the API token, found an empty file")
        return token
    return environ.get(API_TOKEN_ENV) or None


def resolve_protocol(flag: str, generation: str) -> str:
    """--protocol -> "n1.5" | "n1.6": `auto` follows the checkpoint's generation ("n1.5" | "n1.6")."""
    return generation if flag == "auto" else flag


def run(cfg: ServeConfig) -> int:
    import logging

    from groot.policy import Policy
    from groot.serve.server import InferenceServer, check_bindable

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_token = resolve_api_token(cfg.api_token, cfg.api_token_file, dict(os.environ))
    if cfg.max_prompt_tokens is not None and cfg.max_prompt_tokens < 1:
        raise ConfigError(f"--max-prompt-tokens: expected a positive integer, found {cfg.max_prompt_tokens}")
    check_bindable(cfg.host, cfg.port)  # a port in use fails before the checkpoint loads
    policy = Policy.from_pretrained(cfg.model_path, cfg.embodiment_tag, data_config=cfg.data_config,
                                    denoising_steps=cfg.denoising_steps, device=cfg.device,
                                    fast=None if cfg.fast else False, exact=cfg.exact,
                                    max_prompt_tokens=cfg.max_prompt_tokens)
    limits = RequestLimits(max_prompt_chars=cfg.max_prompt_chars or policy.max_prompt_tokens,
                           max_batch_size=cfg.max_batch_size, max_frames=cfg.max_frames,
                           max_image_size=cfg.max_image_size)
    server = InferenceServer(policy, host=cfg.host, port=cfg.port, api_token=api_token,
                             max_message_bytes=int(cfg.max_message_mb * 2**20), limits=limits,
                             protocol=resolve_protocol(cfg.protocol, policy.model.config.generation))
    with server:
        server.serve_until_signalled()
    return 0


def register(subparsers) -> None:
    add_command(subparsers, "serve", ServeConfig, run,
                help="Serve a checkpoint over ZeroMQ with the official GR00T inference protocol of its "
                     "generation, N1.5 or N1.6 (--protocol; endpoints ping, kill, get_action, "
                     "get_modality_config, and reset for N1.6). A get_action request may "
                     "carry a top-level integer 'seed' to reproduce an action chunk; requests over a limit "
                     "(--max-*) are answered with an error naming the key and the limit.")
