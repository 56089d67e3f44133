"""Where the fine-tuning step's time goes: the frozen backbone's forward alone, then the action head's
step alone (forward + backward + clip + AdamW on the backbone's features, replayed as a CUDA graph),
each compiled on its own, under the default fine-tune flags and the model-only batch of
train_throughput.py.

    python benchmarks/train_step_split.py                       # n1.5-3b, batch 32, one GPU
    python benchmarks/train_step_split.py --profile DIR         # + kernel summaries DIR/kernels_<part>.txt

Writes JSON to benchmarks/results/train_step_split_<preset>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from groot.model.batch import Batch
from groot.model.synthetic_batch import synthetic_batch
from groot.train.cuda_graph_step import GraphedTrainStep
from groot.train.host_embedding import HostTokenEmbedding
from groot.train.optim import build_optimizer, clip_and_step, parameter_groups
from groot.train.precision import compile_for_training, compiled_step_settings, tf32_matmuls
from groot.train.step import draw_flow_times
from kernel_profile import profile_calls
from train_throughput import NEW_EMBODIMENT, _device_name, default_finetune_model


def milliseconds(run, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="n1.5-3b", help="model preset (n1.5-3b, small, tiny)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--text-tokens", type=int, default=34, help="prompt tokens besides the image tokens")
    parser.add_argument("--steps", type=int, default=15, help="timed runs of each part")
    parser.add_argument("--warmup", type=int, default=4, help="untimed runs of each part first (compiling)")
    parser.add_argument("--activation-memory-budget", type=float, default=0.7,
                        help="share of its activations the head's compiled step keeps (finetune's default)")
    parser.add_argument("--profile", type=Path, default=None, help="also write kernel summaries to DIR")
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/...)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("train_step_split.py needs a CUDA GPU")
    device = torch.device("cuda")
    # finetune's process-wide settings, held while the parts compile and run
    with tf32_matmuls(), compiled_step_settings(args.activation_memory_budget):
        model = default_finetune_model(args.preset, device)
        compile_for_training(model.backbone)
        compile_for_training(model.action_head)
        optimizer = build_optimizer(parameter_groups(model, 1e-5), learning_rate=1e-4)
        batch = synthetic_batch(model.config, args.batch_size, args.text_tokens // 2,
                                embodiment=NEW_EMBODIMENT)
        batch = HostTokenEmbedding(model)(batch).to(device, non_blocking=True)

        def backbone() -> torch.Tensor:  # [B, L, D] features
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                return model.backbone_features(batch)

        features = backbone()

        def head_step_of(batches: list[tuple[tuple[Batch, torch.Tensor], torch.Tensor]]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
            (((part, part_features), t),) = batches
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model.action_head(part_features, part.state.float(), part.action.float(),
                                         part.action_mask, part.embodiment_id, t=t)
            loss.backward()
            grad_norm = clip_and_step(optimizer, 1.0)
            optimizer.zero_grad(set_to_none=True)
            return loss.detach(), grad_norm

        graphed_head_step = GraphedTrainStep(head_step_of, optimizer)  # as finetune replays its step

        def head_step() -> None:
            graphed_head_step([((batch, features), draw_flow_times(model, batch, device))])

        parts = {}
        for name, run in (("backbone_forward", backbone), ("head_step", head_step)):
            ms = milliseconds(run, args.steps, args.warmup)
            parts[name] = {"ms": ms}
            if args.profile is not None:
                kernels_file = args.profile / f"kernels_{name}.txt"
                _, parts[name]["kernel_ms"] = profile_calls(run, 2, name, kernels_file)
            print(name, parts[name], flush=True)
        total = sum(part["ms"] for part in parts.values())
    result = {"preset": args.preset, "batch_size": args.batch_size, "device": _device_name(device),
              "torch": torch.__version__, "python": platform.python_version(),
              "tokens_per_sample": int(batch.input_ids.shape[1]), **parts,
              "sum_ms": total, "samples_per_s_of_the_sum": args.batch_size * 1000 / total}
    default_out = Path(__file__).parent / "results" / f"train_step_split_{args.preset}.json"
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
