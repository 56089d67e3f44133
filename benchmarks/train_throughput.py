"""Fine-tuning throughput: model-only samples/s and peak memory, then end-to-end with the real data
pipeline, under the default fine-tune flags (LLM and vision frozen, projector and DiT trained, bf16),
for N1.5 and N1.6 presets.

    python benchmarks/train_throughput.py                      # n1.5-3b, batch 32, one GPU
    python benchmarks/train_throughput.py --preset n1.6-3b --batch-size 16 --trainable-dtype bf16
    python benchmarks/train_throughput.py --preset tiny --batch-size 4 --steps 3 --warmup 1   # CPU check

Model-only feeds one synthetic batch of the right shapes again and again: 1 camera, the image a 256x256
frame becomes under the release geometry (`release_geometry`: n1.5-3b 224x224, 256 image tokens;
n1.6-3b 252x252, 81 image tokens), plus --text-tokens (default 34 on N1.5: ~290 in all; 28 on N1.6:
109, about the latency benchmark's N1.6 reference prompt of 108). End-to-end trains through
`finetune()` on a generated 256x256 video dataset with N loader workers.
Writes JSON to benchmarks/results/train_throughput_<preset>.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from groot.data.synthetic import make_synthetic_dataset
from groot.inference.engine import release_geometry
from groot.model.checkpoint import save_pretrained
from groot.model.config import GR00TN15Config, preset_config
from groot.model.gr00t_n15 import GR00TN15
from groot.model.gr00t_n16 import model_class
from groot.model.synthetic_batch import synthetic_batch
from groot.train.cuda_graph_step import GraphedTrainStep
from groot.train.embodiment_slices import EmbodimentSlices
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.host_embedding import HostTokenEmbedding
from groot.train.logging import read_metrics
from groot.train.optim import build_optimizer, parameter_groups
from groot.train.precision import (
    cast_frozen_to_bf16,
    cast_trainable_to_bf16,
    compile_for_training,
    compiled_step_settings,
    tf32_matmuls,
)
from groot.train.step import micro_batch, train_step
from kernel_profile import profile_calls

NEW_EMBODIMENT = 31
BYTE_IMAGE_TOKEN_ID = 261  # <IMG_CONTEXT> of the built-in byte tokenizer
VIDEO_SIZE = 256  # raw camera frames (end-to-end dataset; model-only: what the release geometry makes of one)
DEFAULT_TEXT_TOKENS = {"n1.5": 34, "n1.6": 28}


def batch_shapes(config: GR00TN15Config) -> GR00TN15Config:
    """A copy of `config` whose nominal image (`vision.image_size`, what `synthetic_batch` draws) is the
    model image of a VIDEO_SIZE square frame under `release_geometry`: unchanged on N1.5 (frames are
    resized to it), 252 on n1.6-3b (native resolution: 81 image tokens)."""
    height, width = release_geometry(config).output_size(VIDEO_SIZE, VIDEO_SIZE)
    assert height == width, (height, width)  # a square frame stays square
    shapes = config.copy()
    shapes.backbone_cfg.vision.image_size = height
    return shapes


def offline_base_model(preset: str, work_dir: Path) -> str:
    """A base model `finetune()` can load without the network: presets with the built-in byte tokenizer
    as they are; others (qwen3 tokenizer) saved with random weights and the byte tokenizer instead."""
    config = preset_config(preset)
    if config.backbone_cfg.tokenizer == "bytes":
        return preset
    config.backbone_cfg.tokenizer, config.backbone_cfg.image_token_id = "bytes", BYTE_IMAGE_TOKEN_ID
    torch.manual_seed(0)
    model = model_class(config)(config).to(torch.bfloat16)
    save_pretrained(model, work_dir / "base_model")
    return str(work_dir / "base_model")


def default_finetune_model(preset: str, device: torch.device, trainable_dtype: str = "fp32") -> GR00TN15:
    """Random weights of `preset` (N1.5 or N1.6) set up as `finetune` does by default: LLM and vision
    frozen (held in bf16 on CUDA), projector, DiT and VL adapter trained (in `trainable_dtype`), one
    embodiment slice; on `device`, in train mode. Its steps run under `finetune`'s settings:
    `tf32_matmuls()` on CUDA, `compiled_step_settings` when compiled."""
    torch.manual_seed(0)
    config = preset_config(preset)
    model = model_class(config)(config)
    model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_diffusion_model=True)
    EmbodimentSlices(model, [NEW_EMBODIMENT])
    if device.type == "cuda" or trainable_dtype == "bf16":
        cast_frozen_to_bf16(model)
    if trainable_dtype == "bf16":
        cast_trainable_to_bf16(model)
    return model.to(device).train()


def model_only(preset: str, batch_size: int, steps: int, warmup: int, device: torch.device,
               compile_model: bool, memory_budget: float, text_tokens: int, cuda_graphs: bool,
               host_embedding: bool, profile_dir: Path | None = None, trainable_dtype: str = "fp32") -> dict:
    """Samples/s and peak memory of `finetune`'s step (forward + backward + clip + AdamW) on one repeated
    batch, with its flow-matching times drawn per step as in `finetune`."""
    model = default_finetune_model(preset, device, trainable_dtype)
    bf16 = device.type == "cuda" or trainable_dtype == "bf16"
    if compile_model:
        compile_for_training(model)
    optimizer = build_optimizer(parameter_groups(model, 1e-5), learning_rate=1e-4,
                                trainable_dtype=trainable_dtype)
    # 1 camera: the image tokens of a VIDEO_SIZE frame with text_tokens // 2 prompt tokens on either side
    shapes = batch_shapes(model.config)
    batch = synthetic_batch(shapes, batch_size, text_tokens // 2, embodiment=NEW_EMBODIMENT)
    if host_embedding:
        batch = HostTokenEmbedding(model)(batch)
    batch = batch.to(device, non_blocking=True)
    run = functools.partial(train_step, model, optimizer, max_grad_norm=1.0, bf16=bf16)
    if cuda_graphs:
        run = GraphedTrainStep(run, optimizer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> torch.Tensor:
        return run([micro_batch(model, batch, device)])[0]

    for _ in range(warmup):
        step()
    _sync(device)
    # compiling (inductor autotunes on real-size buffers) and, with CUDA graphs, recording: a replay
    # allocates nothing, so the recording's peak is the step's footprint
    first_steps_peak = _peak_memory_gib(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(device)
    elapsed = time.perf_counter() - start
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = {"samples_per_s": batch_size * steps / elapsed, "step_ms": 1000 * elapsed / steps,
              "tokens_per_sample": int(batch.input_ids.shape[1]),
              "image_tokens": shapes.backbone_cfg.num_image_tokens,
              "model_image": [shapes.backbone_cfg.vision.image_size] * 2, "trainable_params": trainable,
              "final_loss": float(loss)}
    if device.type == "cuda":
        result["steady_peak_memory_gib"] = _peak_memory_gib(device)  # the timed steps
        result["warmup_peak_memory_gib"] = first_steps_peak
        result["peak_memory_gib"] = max(result["steady_peak_memory_gib"], first_steps_peak)
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    if profile_dir is not None:
        profiled_ms, kernel_ms = profile_calls(step, 2, f"model-only step, batch {batch_size}",
                                               profile_dir / "train_step_kernels.txt")
        result["profile"] = {"profiled_step_ms": profiled_ms, "kernel_ms_per_step": kernel_ms}
    return result


def end_to_end(preset: str, batch_size: int, steps: int, warmup: int, workers: int, work_dir: Path,
               compile_model: bool, memory_budget: float, cuda_graphs: bool, host_embedding: bool,
               trainable_dtype: str = "fp32") -> dict:
    """`finetune()` on a generated 256x256 one-camera video dataset (the `fourier_gr1_arms_only`
    layout: as many images per sample as model-only); samples/s over the steps after warmup."""
    arms_and_hands = {"left_arm": 7, "right_arm": 7, "left_hand": 6, "right_hand": 6}
    dataset = make_synthetic_dataset(work_dir / "dataset", num_episodes=8,
                                     episode_length=max(64, batch_size * 4), cameras=("ego_view",),
                                     image_size=VIDEO_SIZE, state_dims=arms_and_hands)
    total = warmup + steps
    cfg = FinetuneConfig(dataset_path=[str(dataset)], output_dir=str(work_dir / "run"),
                         data_config="fourier_gr1_arms_only", base_model=offline_base_model(preset, work_dir),
                         batch_size=batch_size, max_steps=total, save_steps=total, logging_steps=1,
                         dataloader_num_workers=workers, save_total_limit=1,
                         compile="on" if compile_model else "off", activation_memory_budget=memory_budget,
                         cuda_graphs="on" if cuda_graphs else "off",
                         host_token_embedding="on" if host_embedding else "off",
                         trainable_dtype=trainable_dtype)
    finetune(cfg)
    records = read_metrics(work_dir / "run" / "metrics.jsonl")[warmup:]
    rates = [r["samples_per_s"] for r in records]
    return {"samples_per_s": len(rates) / sum(1.0 / r for r in rates), "workers": workers,
            "tokens_per_sample": _tokens_per_sample(cfg), "cameras": 1, "video_size": VIDEO_SIZE}


def _peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _tokens_per_sample(cfg: FinetuneConfig) -> int:
    """Prompt length of the end-to-end batches (the byte tokenizer spends a token per character)."""
    from groot.data.configs import get_data_config
    from groot.model.checkpoint import read_config
    from groot.train.data import build_dataset, fit_data_config_to_model
    from groot.train.finetune import build_processor

    base = Path(cfg.base_model)
    config = read_config(base) if base.is_dir() else preset_config(cfg.base_model)
    data_config = fit_data_config_to_model(get_data_config(cfg.data_config), config)
    dataset = build_dataset(cfg.dataset_path, data_config, cfg.embodiment_tag, cfg.video_backend,
                            cfg.balance_dataset_weights, cfg.balance_trajectory_weights, cfg.seed,
                            cfg.video_cache_dir)
    return int(build_processor(config, cfg.base_model)([dataset[0]]).input_ids.shape[1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="n1.5-3b",
                        help="model preset (n1.5-3b, small, tiny, n1.6-3b, n1.6-small, n1.6-tiny)")
    parser.add_argument("--batch-size", type=int, default=32, help="per-GPU batch size")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=8, help="data loader workers (end-to-end)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the step (as finetune does on one GPU)")
    parser.add_argument("--text-tokens", type=int, default=None,
                        help="model-only prompt tokens besides the image tokens (default N1.5 34: ~290 in "
                             "all on n1.5-3b, the end-to-end prompts of the byte tokenizer come to 88: pass "
                             "that for the ratio; N1.6 28: 109 on n1.6-3b, its end-to-end prompts come to "
                             "77, odd: model-only draws an even count, so no ratio)")
    parser.add_argument("--activation-memory-budget", type=float,
                        default=FinetuneConfig.activation_memory_budget,
                        help="with --compile: share of activations kept for the backward (1.0: fastest)")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="replay no CUDA graph of the step (default: recorded with --compile on a GPU, "
                             "as finetune does)")
    parser.add_argument("--no-host-embedding", action="store_true",
                        help="keep the frozen token-embedding table on the GPU (default: on the host, as "
                             "finetune does on a GPU)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="also profile two model-only steps (kernel summary: DIR/train_step_kernels.txt)")
    parser.add_argument("--skip-end-to-end", action="store_true", help="only the model-only measurement")
    parser.add_argument("--trainable-dtype", choices=("fp32", "bf16"), default="fp32",
                        help="as finetune's flag: bf16 trained weights, grads and AdamW moments (stochastic "
                             "rounding)")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/...)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda_graphs = args.compile and device.type == "cuda" and not args.no_cuda_graphs
    host_embedding = device.type == "cuda" and not args.no_host_embedding
    generation = preset_config(args.preset).generation
    text_tokens = DEFAULT_TEXT_TOKENS[generation] if args.text_tokens is None else args.text_tokens
    result = {"preset": args.preset, "generation": generation, "batch_size": args.batch_size,
              "device": _device_name(device),
              "torch": torch.__version__, "python": platform.python_version(),
              "compile": args.compile, "activation_memory_budget": args.activation_memory_budget,
              "cuda_graphs": cuda_graphs, "host_token_embedding": host_embedding,
              "trainable_dtype": args.trainable_dtype}
    with tf32_matmuls(device.type == "cuda"), compiled_step_settings(args.activation_memory_budget):
        result["model_only"] = model_only(args.preset, args.batch_size, args.steps, args.warmup, device,
                                          args.compile, args.activation_memory_budget, text_tokens,
                                          cuda_graphs, host_embedding, args.profile, args.trainable_dtype)
    print(json.dumps(result["model_only"], indent=1))
    if not args.skip_end_to_end:
        with tempfile.TemporaryDirectory(prefix="groot-train-bench-") as tmp:
            result["end_to_end"] = end_to_end(args.preset, args.batch_size, args.steps, args.warmup,
                                              args.workers, Path(tmp), args.compile,
                                              args.activation_memory_budget, cuda_graphs, host_embedding,
                                              args.trainable_dtype)
        same_shapes = result["end_to_end"]["tokens_per_sample"] == result["model_only"]["tokens_per_sample"]
        # only a ratio at equal shapes says how much the data pipeline costs
        ratio = result["end_to_end"]["samples_per_s"] / result["model_only"]["samples_per_s"]
        result["end_to_end_over_model_only"] = ratio if same_shapes else None
    bf16_suffix = "_bf16" if args.trainable_dtype == "bf16" else ""
    name = f"train_throughput_{args.preset}{'_compiled' * args.compile}{bf16_suffix}.json"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


if __name__ == "__main__":
    main()
