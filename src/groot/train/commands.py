"""`groot finetune`: every flag of the official fine-tuning script (see `groot finetune --help`)."""

from __future__ import annotations

import argparse

from groot.train.finetune_config import FinetuneConfig
from groot.utils.cli_args import add_command


def _run(cfg: FinetuneConfig) -> int:
    from groot.train.finetune import finetune

    final = finetune(cfg)
    print(f"final checkpoint: {final}")
    return 0


def register(subparsers) -> None:
    parser = add_command(subparsers, "finetune", FinetuneConfig, _run,
                         help="Fine-tune GR00T N1.5 on LeRobot datasets (official recipe: bf16, AdamW, "
                              "warmup + cosine; DDP / FSDP with --num-gpus; LoRA with --lora-rank).")
    # the official script's name for --base-model
    parser.add_argument("--base-model-path", dest="base_model", default=argparse.SUPPRESS,
                        help="alias of --base-model")
