"""Training metrics: always one JSON line per logged step in `output_dir/metrics.jsonl`, plus
TensorBoard or Weights & Biases when asked (imported lazily; a clear error when not installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groot.errors import ConfigError

REPORT_TARGETS = ("none", "tensorboard", "wandb")


class MetricsLogger:
    """Rank-0 metrics sink. `log(step, metrics)` appends to metrics.jsonl and forwards to the tracker."""

    def __init__(self, output_dir: Path, report_to: str = "none", run_config: dict | None = None,
                 truncate_after_step: int | None = None, jsonl_name: str = "metrics.jsonl"):
        """truncate_after_step: drop records of later steps already in the file (a resumed run
        rewrites them)."""
        if report_to not in REPORT_TARGETS:
            raise ConfigError(f"--report-to: expected one of {REPORT_TARGETS}, found {report_to!r}")
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.output_dir / jsonl_name
        if truncate_after_step is not None and self.jsonl_path.is_file():
            kept = [r for r in read_metrics(self.jsonl_path) if r["step"] <= truncate_after_step]
            self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._tensorboard = None
        self._wandb_run = None
        if report_to == "tensorboard":
            self._tensorboard = _open_tensorboard(self.output_dir / "runs")
        elif report_to == "wandb":
            self._wandb_run = _open_wandb(self.output_dir, run_config or {})

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if self._tensorboard is not None:
            for key, value in numbers.items():
                self._tensorboard.add_scalar(f"train/{key}" if "/" not in key else key, value, step)
        if self._wandb_run is not None:
            self._wandb_run.log(numbers, step=step)

    def close(self) -> None:
        self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()


def _open_tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's writer needs the `tensorboard` package
        raise ImportError("--report-to tensorboard needs the tensorboard package: "
                          "pip install 'groot[log]' (or pip install tensorboard)") from exc
    return SummaryWriter(log_dir=str(log_dir))


def _open_wandb(output_dir: Path, run_config: dict):
    try:
        import wandb
    except ImportError as exc:
        raise ImportError("--report-to wandb needs the wandb package: "
                          "pip install 'groot[log]' (or pip install wandb)") from exc
    (output_dir / "wandb_config.json").write_text(json.dumps(run_config, indent=1, default=str))
    return wandb.init(dir=str(output_dir), config=run_config)


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
