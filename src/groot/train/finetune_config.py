"""`FinetuneConfig`: the flags of `groot finetune` (kept free of heavy imports: the CLI loads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from groot.errors import ConfigError
from groot.utils.cli_args import arg

DEFAULT_BASE_MODEL = "nvidia/GR00T-N1.5-3B"


@dataclass
class FinetuneConfig:
    """Every flag of the official fine-tuning script, with its default, plus groot extras."""

    dataset_path: list[str] = arg(help="LeRobot dataset directory (several: a mixture with weight 1.0 each)")
    output_dir: str = arg("/tmp/gr00t", "directory for checkpoints, metrics.jsonl and logs")
    data_config: str | None = arg(None, "data config name (or 'module:Class'); default: the one registered "
                                        "config whose keys the first dataset's meta/modality.json has "
                                        "(printed; an error when none or several fit)")
    batch_size: int = arg(32, "batch size per GPU (per process)")
    max_steps: int = arg(10000, "number of optimizer steps")
    num_gpus: int = arg(1, "GPUs to use; >1 relaunches this command under torchrun")
    save_steps: int = arg(1000, "save a checkpoint every N steps (and at the end)")
    base_model: str = arg(DEFAULT_BASE_MODEL,
                          "model to start from: preset name (n1.5-3b, small, tiny, n1.6-3b, n1.6-small, "
                          "n1.6-tiny), checkpoint dir or hub id (N1.5 or N1.6)")
    tune_llm: bool = arg(False, "train the language model of the backbone")
    tune_visual: bool = arg(False, "train the vision tower and mlp1 of the backbone")
    tune_top_llm_layers: int = arg(0, "train the top N layers of an otherwise frozen LLM (the N1.6 "
                                      "pretraining tuned 4; 0: none)")
    tune_projector: bool = arg(True, "train the state/action encoders, action decoder, position embedding")
    tune_diffusion_model: bool = arg(True, "train the DiT of the action head")
    resume: bool = arg(False, "continue from the newest complete checkpoint in --output-dir")
    learning_rate: float = arg(1e-4, "peak learning rate")
    weight_decay: float = arg(1e-5, "AdamW weight decay (not applied to biases and norm weights)")
    warmup_ratio: float = arg(0.05, "fraction of --max-steps spent in linear warmup")
    lora_rank: int = arg(0, "LoRA rank (0: full fine-tuning of the tuned parts)")
    lora_alpha: int = arg(16, "LoRA alpha")
    lora_dropout: float = arg(0.1, "LoRA dropout")
    lora_full_model: bool = arg(False, "LoRA on q/k/v of the whole model, not only the action head")
    dataloader_num_workers: int = arg(8, "data loading worker processes per GPU")
    report_to: Literal["none", "tensorboard", "wandb"] = arg("none", "experiment tracker")
    embodiment_tag: str = arg("new_embodiment", "embodiment of the data (selects the projector slot)")
    video_backend: str = arg("pyav", "video decoder: pyav, opencv or torchcodec")
    video_cache_dir: str | None = arg(None, "decode each video once into this directory as raw uint8 "
                                            "frames that all loader workers memory-map (H*W*3 bytes per "
                                            "frame and camera on disk): no decoding during training")
    balance_dataset_weights: bool = arg(True, "mixture: weight each dataset by its length")
    balance_trajectory_weights: bool = arg(True, "mixture: sample trajectories proportionally to length")
    seed: int = arg(42, "random seed")
    gradient_accumulation_steps: int = arg(1, "micro-batches per optimizer step")
    max_grad_norm: float = arg(1.0, "clip the global gradient norm to this (0: no clipping)")
    gradient_checkpointing: bool = arg(False, "recompute block activations in backward (less memory)")
    save_total_limit: int = arg(8, "keep at most this many checkpoints (0: all)")
    logging_steps: int = arg(10, "log metrics every N steps")
    eval_dataset_path: list[str] | None = arg(None, "held-out dataset(s) for an eval loss")
    eval_steps: int = arg(500, "held-out loss before training and every N steps (with --eval-dataset-path)")
    eval_batches: int = arg(8, "batches per held-out loss evaluation")
    compile: Literal["auto", "on", "off"] = arg("auto", "torch.compile the training forward/backward (fused "
                                                         "elementwise kernels, less memory; the first step "
                                                         "compiles for minutes); auto: one CUDA GPU, no LoRA")
    cuda_graphs: Literal["auto", "on", "off"] = arg(
        "auto", "record the whole training step (forward, backward, clip, AdamW) once per batch shape as a "
                "CUDA graph and replay it: no waiting for the host between kernels; auto: with --compile on "
                "one CUDA GPU")
    host_token_embedding: Literal["auto", "on", "off"] = arg(
        "auto", "keep the frozen LLM token-embedding table (0.58 GiB on N1.5-3B) in host memory and look "
                "prompts up there; auto: on CUDA GPUs when the LLM is frozen (not with FSDP)")
    activation_memory_budget: float = arg(
        0.7, "with --compile: fraction of the activations the compiled step keeps for the backward; the "
             "rest is recomputed (1.0: fastest, most memory; lower: less peak memory, a slower step; "
             "measurements in BENCHMARKS.md)")
    bf16: bool = arg(True, "bf16 autocast and bf16 storage of frozen weights (CUDA only)")
    trainable_dtype: Literal["fp32", "bf16"] = arg(
        "fp32", "storage of the trained weights, their gradients and AdamW moments: fp32 (16 B per trained "
                "parameter) or bf16 (8 B; every AdamW update applied with stochastic rounding so that "
                "updates below bf16 resolution still count; needs --bf16, not with LoRA or FSDP)")
    fsdp: Literal["auto", "on", "off"] = arg("auto", "FSDP instead of DDP; auto: when the backbone is tuned "
                                                       "on more than one GPU")


def validate(cfg: FinetuneConfig) -> None:
    positive = {"batch_size": cfg.batch_size, "max_steps": cfg.max_steps, "num_gpus": cfg.num_gpus,
                "save_steps": cfg.save_steps, "logging_steps": cfg.logging_steps,
                "gradient_accumulation_steps": cfg.gradient_accumulation_steps}
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: expected a positive integer, found {value}")
    if not 0.0 <= cfg.warmup_ratio <= 1.0:
        raise ConfigError(f"--warmup-ratio: expected a value in [0, 1], found {cfg.warmup_ratio}")
    if not 0.0 < cfg.activation_memory_budget <= 1.0:
        raise ConfigError("--activation-memory-budget: expected a value in (0, 1], found "
                         f"{cfg.activation_memory_budget}")
