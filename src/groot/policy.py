"""Policy: raw robot observation -> per-key action chunks in original units (spec 8).

    policy = Policy.from_pretrained("ckpt/", "new_embodiment")
    action = policy.get_action({"video.front": uint8 [1, H, W, 3], "state.arm": [1, 7],
                                "annotation.human.task_description": ["pick the cube"]})
    action["action.arm"]  # float32 [16, 7]

An observation is batched iff every `state.*` array has ndim >= 3 (video [B, T, H, W, 3], state
[B, T, D], language a list of B strings); the outputs then carry the batch dim too ([B, 16, D]).

On CUDA the model runs through the fast path (`groot.inference.InferenceEngine`: raw uint8 frames are
cropped and resized on the GPU, the eval transforms run without their video stage, fused projections,
compiled transformer blocks, CUDA graphs; the first call compiles, once per process);
`exact=True` (`groot serve --exact`) makes it compute the eager model's numbers bit for bit, a little
slower and without compiling; `fast=False` (`groot serve --no-fast`) keeps the eager path, which the
CPU always uses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groot.data.configs import DataConfig, get_data_config
from groot.data.image_ops import ImageGeometry
from groot.data.metadata import DatasetMetadata
from groot.data.modality import ModalityConfig
from groot.data.transforms import REFERENCE_STATE, Concat, RelativeAction, split_key
from groot.errors import CheckpointError, ObservationError
from groot.finite import check_finite_actions
from groot.model.processor import GrootProcessor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObservationSpec:
    """What a policy accepts, per full key: video (T, H, W), state (T, D), language keys. A video entry
    (T, None, None) takes frames of any size, the same for every such camera of one observation (the
    model takes one image size per batch)."""

    video: dict[str, tuple[int, int | None, int | None]]
    state: dict[str, tuple[int, int]]
    language: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return [*self.video, *self.state, *self.language]

    def check(self, observation: Any) -> tuple[dict[str, Any], bool]:
        """Validate `observation` and give it a leading batch dim.

        -> ({"video.<k>": uint8 [B, T, H, W, 3], "state.<k>": float32 [B, T, D], <language key>:
        list of B str}, batched). Raises ObservationError naming the key, expected and found."""
        if not isinstance(observation, Mapping):
            raise ObservationError(f"observation: expected a dict of {', '.join(self.keys)}, "
                                   f"found {type(observation).__name__}")
        missing = [key for key in self.keys if key not in observation]
        if missing:
            raise ObservationError(f"observation is missing {', '.join(missing)}; expected keys: "
                                   f"{', '.join(self.keys)}; found: {', '.join(map(str, observation))}")
        arrays = {key: _as_array(key, observation[key]) for key in [*self.video, *self.state]}
        batched = self._is_batched(arrays)
        checked: dict[str, Any] = {}
        for key, (steps, height, width) in self.video.items():
            checked[key] = _check_video(key, arrays[key], steps, height, width, batched)
        _check_one_frame_size({key: checked[key] for key, (_, height, _) in self.video.items()
                               if height is None})
        for key, (steps, dim) in self.state.items():
            checked[key] = _check_state(key, arrays[key], steps, dim, batched)
        for key in self.language:
            checked[key] = _check_language(key, observation[key], batched)
        _check_batch_sizes(checked)
        return checked, batched

    def _is_batched(self, arrays: dict[str, np.ndarray]) -> bool:
        """Batched iff every state array has ndim >= 3 (video ndim 5 when there is no state)."""
        keys, batched_ndim = (list(self.state), 3) if self.state else (list(self.video), 5)
        flags = {key: arrays[key].ndim >= batched_ndim for key in keys}
        if len(set(flags.values())) > 1:
            shapes = ", ".join(f"{key} {arrays[key].shape}" for key in keys)
            raise ObservationError(f"observation mixes batched and unbatched arrays: {shapes}; expected all "
                                   f"state arrays [T, D] (unbatched) or all [B, T, D] (batched)")
        return all(flags.values())


class Policy:
    """A GR00T model (N1.5 or N1.6) with the data config's eval-mode transforms around it.

    `Policy(model, data_config, metadata)` wraps a model in memory; `Policy.from_pretrained` loads a
    checkpoint. `get_action` validates the observation, runs transforms -> processor -> model (flow
    matching, `denoising_steps` steps) -> unapply, and returns float32 `action.<k>` chunks.
    `max_prompt_tokens`: most prompt tokens one call may run, batch size x longest prompt (chat
    template and image tokens included); default: the LLM's positions (`max_position_embeddings`).
    `fast`: None = the fast inference engine on CUDA, eager on the CPU; True / False force either
    (True on the CPU runs the engine without CUDA graphs; views of different resolutions or a data
    config whose image size differs from the model's fall back to eager). `exact`: the engine computes
    the eager model's numbers bit for bit instead of compiling its blocks on CUDA (rounded differently).
    """

    def __init__(self, model: torch.nn.Module, data_config: DataConfig, metadata: DatasetMetadata,
                 embodiment_tag: str | None = None, processor: GrootProcessor | None = None,
                 denoising_steps: int | None = None, device: str | torch.device | None = None,
                 fast: bool | None = None, exact: bool = False, max_prompt_tokens: int | None = None,
                 provenance: Mapping[str, Any] | None = None):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.data_config = data_config
        self.embodiment_tag = embodiment_tag or metadata.embodiment_tag
        self.metadata = metadata
        self.modality_config = data_config.modality_config()
        _check_observation_indices(self.modality_config)
        self.transform = data_config.transform()
        self.transform.set_metadata(metadata)
        self.transform.eval()
        self.processor = processor or GrootProcessor.for_config(model.config)
        self.denoising_steps = denoising_steps
        self.max_prompt_tokens = max_prompt_tokens or model.config.backbone_cfg.llm.max_position_embeddings
        self.provenance = dict(provenance or {})  # training record and eval results, for the model card
        self.observation_spec = observation_spec(self.modality_config, metadata, data_config.image_geometry())
        use_engine = self.device.type == "cuda" if fast is None else fast
        self.engine = self._fast_engine(exact) if use_engine else None
        # observation -> model sample; the engine runs the pixel stage itself, on the device
        self.sample_transform = self.transform if self.engine is None else self.transform.host

    @classmethod
    def from_pretrained(cls, path: str | Path, embodiment_tag: str | None = None,
                        data_config: DataConfig | str | None = None, denoising_steps: int | None = None,
                        device: str | torch.device | None = None, fast: bool | None = None,
                        exact: bool = False, max_prompt_tokens: int | None = None, *,
                        revision: str | None = None, token: str | bool | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False,
                        dtype: torch.dtype | None = None) -> Policy:
        """Load a checkpoint directory or hub id: weights (bf16 on CUDA, fp32 on CPU), the tag's block of
        experiment_cfg/metadata.json (None: its only block), and the data config (given by object or
        name, else the checkpoint's experiment_cfg/data_config.json); an N1.6 checkpoint in the official
        layout (no experiment_cfg/) gives both from its processor files. `fast`, `exact`,
        `max_prompt_tokens`: see the class docstring; revision, token, cache_dir, local_files_only: where
        a hub id is fetched from (`groot.model.checkpoint.resolve_checkpoint_dir`); dtype: the weights'
        dtype instead of the default (e.g. float32 to train them)."""
        from groot.model.checkpoint import load_pretrained, resolve_checkpoint_dir
        from groot.model.model_card import read_provenance

        root = resolve_checkpoint_dir(path, revision, token=token, cache_dir=cache_dir,
                                      local_files_only=local_files_only)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        metadata = load_metadata(root, embodiment_tag)
        config = resolve_data_config(root, data_config, metadata.embodiment_tag)
        model = load_pretrained(root, dtype=dtype, device=device)
        processor = GrootProcessor.for_config(model.config, root)
        return cls(model, config, metadata, embodiment_tag, processor, denoising_steps, device, fast, exact,
                   max_prompt_tokens, read_provenance(root))

    # ---- one servable artifact ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, max_shard_size: int | str = "2GB", *,
                        training: Mapping[str, Any] | None = None,
                        eval_results: Mapping[str, Any] | None = None, load_path: str | None = None) -> Path:
        """Write everything `Policy.from_pretrained(directory)` needs to serve the same actions: weights
        and config.json (with `denoising_steps` as the default step count), experiment_cfg/metadata.json
        (this embodiment's statistics), experiment_cfg/data_config.json, the tokenizer's files, and a
        README.md model card generated from experiment_cfg/provenance.json (this policy's training record
        and eval results, updated by `training` / `eval_results`; `load_path`: the path or hub id the
        card's usage example loads)."""
        from groot.model.checkpoint import save_state_dict
        from groot.model.model_card import PROVENANCE_FILE, render_model_card

        config = self.model.config.copy()
        if self.denoising_steps is not None:
            config.action_head_cfg.num_inference_timesteps = self.denoising_steps
        provenance = dict(self.provenance)
        if training is not None:
            provenance["training"] = {**provenance.get("training", {}), **training}
        if eval_results is not None:
            provenance["eval_results"] = {**provenance.get("eval_results", {}), **eval_results}
        spec = self.observation_spec
        inputs = {key: f"uint8 [{steps}, {height or 'H'}, {width or 'W'}, 3]"
                  for key, (steps, height, width) in spec.video.items()}
        inputs |= {key: f"float32 {list(shape)}" for key, shape in spec.state.items()}
        inputs |= {key: "str" for key in spec.language}
        horizon = len(self.modality_config["action"].delta_indices)
        outputs = {key: f"float32 [{horizon}, {self.metadata.dim(*split_key(key))}]"
                   for key in self.data_config.action_keys}
        card = render_model_card(config, embodiment_tag=self.embodiment_tag,
                                 data_config_name=self.data_config.name, inputs=inputs, outputs=outputs,
                                 provenance=provenance, load_path=load_path or str(directory))
        return save_state_dict(config, self.model.state_dict(), directory,
                               metadata={self.embodiment_tag: self.metadata}, data_config=self.data_config,
                               max_shard_size=max_shard_size, tokenizer=self.processor.tokenizer,
                               extra_files={PROVENANCE_FILE: json.dumps(provenance, indent=2) + "\n",
                                            "README.md": card})

    def push_to_hub(self, repo_id: str, max_shard_size: int | str = "2GB", *,
                    training: Mapping[str, Any] | None = None, eval_results: Mapping[str, Any] | None = None,
                    token: str | bool | None = None, private: bool | None = None, revision: str | None = None,
                    commit_message: str | None = None, create_pr: bool = False) -> str:
        """`save_pretrained` into a temporary directory and upload it to the hub model repo `repo_id` in one
        commit (see `groot.model.hub.upload_folder`) -> the commit's URL."""
        from groot.model.hub import push_saved

        def save(directory: Path) -> Path:
            return self.save_pretrained(directory, max_shard_size, training=training,
                                        eval_results=eval_results, load_path=repo_id)

        return push_saved(save, repo_id, token=token, private=private, revision=revision,
                          commit_message=commit_message, create_pr=create_pr)

    # ---- the official Gr00tPolicy surface -------------------------------------------------------------
    def get_modality_config(self) -> dict[str, ModalityConfig]:
        return dict(self.modality_config)

    @property
    def video_delta_indices(self) -> list[int]:
        return list(self.modality_config["video"].delta_indices)

    @property
    def state_delta_indices(self) -> list[int]:
        return list(self.modality_config["state"].delta_indices)

    def get_action(self, observation: Mapping[str, Any], seed: int | None = None) -> dict[str, np.ndarray]:
        """{"video.<k>": uint8 [(B,) T, H, W, 3], "state.<k>": [(B,) T, D], <language key>: str | [str]}
        -> {"action.<k>": float32 [(B,) 16, D]} in original units. `seed`: the flow-matching noise is
        drawn from a generator seeded with it (same seed and observation: same chunk); None: torch's
        global generator."""
        samples, batched = self.model_samples(observation)
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        normalized = self._predict_normalized(samples, generator)
        out = self.decode_actions(normalized, self.reference_state(observation))
        return out if batched else {key: value[0] for key, value in out.items()}

    def model_samples(self, observation: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Validate an observation (see `get_action`) and transform it -> (one model sample per batch row,
        batched). The samples are what `processor` batches for the model; with the fast engine their
        images are raw frames, which the engine crops and resizes itself."""
        checked, batched = self.observation_spec.check(observation)
        self._check_prompt_tokens(checked)
        samples = [self.sample_transform.apply(self._raw_step(checked, b))
                   for b in range(_batch_size(checked))]
        return samples, batched

    @property
    def action_dim(self) -> int:
        """Width of the embodiment's action vector in the model's padded action columns (the first
        `action_dim`): the data config's action keys after their rotation conversions."""
        concat = next(t for t in self.transform.transforms if isinstance(t, Concat))
        return sum(concat.action_dims())

    def reference_state(self, observation: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        """The raw last observed state under each state-relative action key, {"state.<k>": [B, D]}, which
        `decode_actions` adds back; None when the data config predicts no action relative to the state."""
        if not self.data_config.relative_action_keys:
            return None
        checked, _ = self.observation_spec.check(observation)
        state_keys = map(RelativeAction.state_key, self.data_config.relative_action_keys)
        return {key: np.asarray(checked[key])[:, -1] for key in state_keys}

    def decode_actions(self, normalized: np.ndarray,
                       reference_state: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Normalized model actions float [B, H, D_max] -> {"action.<k>": float32 [B, H', D]} in original
        units (the transforms' `unapply`); `reference_state`: `self.reference_state(observation)`, needed
        when the data config has state-relative actions. Non-finite actions are refused."""
        predicted: dict[str, Any] = {"action": np.asarray(normalized, np.float32)}
        if self.data_config.relative_action_keys:
            if reference_state is None:
                raise ObservationError("decode_actions: the data config predicts actions relative to the "
                                       "state; pass reference_state=policy.reference_state(observation)")
            predicted[REFERENCE_STATE] = dict(reference_state)
        actions = self.transform.unapply(predicted)
        out = {key: np.asarray(actions[key], np.float32) for key in self.data_config.action_keys}
        check_finite_actions(out)
        return out

    @property
    def image_tokens(self) -> int | None:
        """Image tokens per camera frame at the first view's resolution (all views reach the model at one
        size); None when the policy takes frames of any size (`image_tokens_at`)."""
        _, height, width = next(iter(self.observation_spec.video.values()), (1, 1, 1))
        return None if height is None else self.image_tokens_at(height, width)

    def image_tokens_at(self, height: int, width: int) -> int:
        """Image tokens of one camera frame of height x width: the processor's count at the size the
        data config's geometry gives it."""
        return self.processor.image_tokens(*self.data_config.image_geometry().output_size(height, width))

    def _check_prompt_tokens(self, checked: dict[str, Any]) -> None:
        """Tokenize each sample's prompt (cached for the processor) and refuse a batch whose padded
        prompts exceed `max_prompt_tokens`, before any transform or model work."""
        spec = self.observation_spec
        if not spec.language:
            return
        key = spec.language[0]  # the instruction the model sees (GR00TPack reads the first language key)
        num_images = sum(steps for steps, _, _ in spec.video.values())
        first_view = next(iter(spec.video), None)  # checked frames [B, T, H, W, 3]
        per_image = self.image_tokens_at(*checked[first_view].shape[2:4]) if first_view else 0
        try:
            longest = max(len(self.processor.prompt_ids(text, num_images, per_image))
                          for text in checked[key])
        except ObservationError as e:
            raise ObservationError(f"{key}: {e}") from e
        total = len(checked[key]) * longest
        if total > self.max_prompt_tokens:
            raise ObservationError(
                f"{key}: {len(checked[key])} prompt(s) of up to {longest} tokens (chat template and "
                f"{num_images * per_image} image tokens included) make {total} tokens, "
                f"over the limit of {self.max_prompt_tokens} (max_prompt_tokens; groot serve "
                "--max-prompt-tokens)")

    def _predict_normalized(self, samples: list[dict[str, Any]],
                            generator: torch.Generator | None = None) -> np.ndarray:
        """model samples -> normalized action chunks, float32 [B, 16, 32] on the host."""
        if self.engine is not None:
            return self.engine.predict(samples, num_steps=self.denoising_steps,
                                       generator=generator).float().cpu().numpy()
        batch = self.processor(samples).to(self.device)
        # bf16 weights without autocast, as the fast engine computes: both paths give the same numbers
        # (the original adds bf16 autocast, which changes results by bf16 rounding only)
        with torch.inference_mode():
            predicted = self.model.get_action(batch, num_steps=self.denoising_steps,
                                              generator=generator)["action_pred"]
        return predicted.float().cpu().numpy()

    def _fast_engine(self, exact: bool):
        """The inference engine for this policy, or None (logged) when the data config needs the CPU
        video transform: views of different resolutions, or images the processor would resize again."""
        from groot.inference import InferenceEngine

        resolutions = {shape[1:] for shape in self.observation_spec.video.values()}
        geometry = self.data_config.image_geometry()
        if len(resolutions) > 1 or not self.processor.takes_as_is(geometry):
            logger.warning("Policy: eager path: the fast engine needs one camera resolution (found %s) and "
                           "images the processor takes as they are (data config: %s)", sorted(resolutions),
                           geometry)
            return None
        compile = not exact and self.device.type == "cuda"
        return InferenceEngine(self.model, self.processor, geometry=geometry, exact=exact, compile=compile)

    def _raw_step(self, checked: dict[str, Any], index: int) -> dict[str, Any]:
        """Sample `index` of a checked batch as the dataset's raw step (language: list of one str)."""
        spec = self.observation_spec
        step = {key: checked[key][index] for key in [*spec.video, *spec.state]}
        step.update({key: [checked[key][index]] for key in spec.language})
        return step


def observation_spec(modality_config: Mapping[str, ModalityConfig], metadata: DatasetMetadata,
                     geometry: ImageGeometry | None = None) -> ObservationSpec:
    """Expected per-key shapes: video (T, H, W) at the metadata resolution, state (T, D_metadata). A
    video key the metadata records no resolution for takes frames of any size, (T, None, None), when the
    `geometry` keeps the native aspect ("shortest_edge", N1.6: any frame size has its image size)."""
    video_steps = len(modality_config["video"].delta_indices)
    state_steps = len(modality_config["state"].delta_indices)
    any_size = geometry is not None and geometry.resize == "shortest_edge"
    video: dict[str, tuple[int, int | None, int | None]] = {}
    for key in modality_config["video"].modality_keys:
        info = metadata.modalities.get("video", {}).get(split_key(key)[1])
        if info is None and any_size:
            video[key] = (video_steps, None, None)
            continue
        if info is None:
            raise CheckpointError(f"metadata of embodiment {metadata.embodiment_tag!r}: no video key "
                                  f"{split_key(key)[1]!r}, which the data config needs for {key}")
        width, height = info["resolution"]
        video[key] = (video_steps, int(height), int(width))
    state = {key: (state_steps, metadata.dim(*split_key(key)))
             for key in modality_config["state"].modality_keys}
    language = tuple(modality_config["language"].modality_keys)
    return ObservationSpec(video=video, state=state, language=language)


def load_metadata(root: Path, embodiment_tag: str | None) -> DatasetMetadata:
    """The `embodiment_tag` block of `root/experiment_cfg/metadata.json` (None: the file's only block);
    without that file, an N1.6 checkpoint's `statistics.json` (`n16_processor_files.load_n16_metadata`)."""
    from groot.model.checkpoint import METADATA_FILE
    from groot.model.n16_processor_files import PROCESSOR_CONFIG_FILE, load_n16_metadata

    path = root / METADATA_FILE
    if not path.is_file() and (root / PROCESSOR_CONFIG_FILE).is_file():
        return load_n16_metadata(root, embodiment_tag)
    if not path.is_file():
        raise CheckpointError(f"{path}: expected the dataset statistics the checkpoint was trained with, "
                              "found no file")
    blocks = json.loads(path.read_text())
    if isinstance(blocks, dict) and embodiment_tag is None and len(blocks) == 1:
        embodiment_tag = next(iter(blocks))
    if not isinstance(blocks, dict) or embodiment_tag not in blocks:
        found = ", ".join(blocks) if isinstance(blocks, dict) else type(blocks).__name__
        expected = (f"a block for embodiment tag {embodiment_tag!r}" if embodiment_tag is not None
                    else "exactly one embodiment block (or pass the embodiment tag)")
        raise CheckpointError(f"{path}: expected {expected}, found {found}")
    return DatasetMetadata.from_dict(blocks[embodiment_tag], source=str(path))


def resolve_data_config(root: Path, data_config: DataConfig | str | None,
                        embodiment_tag: str | None = None) -> DataConfig:
    """An explicit DataConfig or name wins; otherwise the checkpoint's experiment_cfg/data_config.json;
    without it, an N1.6 checkpoint's processor files give `embodiment_tag`'s (None: their only tag;
    `n16_data_config.load_n16_data_config`)."""
    from groot.model.checkpoint import DATA_CONFIG_FILE
    from groot.model.n16_data_config import load_n16_data_config
    from groot.model.n16_processor_files import PROCESSOR_CONFIG_FILE

    if isinstance(data_config, DataConfig):
        return data_config
    if data_config is not None:
        return get_data_config(data_config)
    path = root / DATA_CONFIG_FILE
    if not path.is_file() and (root / PROCESSOR_CONFIG_FILE).is_file():
        return load_n16_data_config(root, embodiment_tag)
    if not path.is_file():
        raise CheckpointError(f"{path}: expected the data config the checkpoint was trained with, found no "
                              "file; pass a data config name (--data-config)")
    return DataConfig.from_dict(json.loads(path.read_text()), source=str(path))


def _check_observation_indices(modality_config: Mapping[str, ModalityConfig]) -> None:
    """Video / state steps must be <= 0, end at 0 and be evenly spaced (a policy sees the past only)."""
    for group in ("video", "state"):
        indices = list(modality_config[group].delta_indices)
        steps = np.diff(indices)
        if not indices or indices[-1] != 0 or (steps <= 0).any() or len(set(steps.tolist())) > 1:
            raise ValueError(f"{group} delta_indices {indices}: expected increasing, evenly spaced steps "
                             "ending at 0 (e.g. [0] or [-2, -1, 0])")


def _batch_size(checked: Mapping[str, Any]) -> int:
    return len(next(iter(checked.values())))


def _as_array(key: str, value: Any) -> np.ndarray:
    """An observation value as an array; a ragged nested list or a map is refused naming the key."""
    if isinstance(value, np.ndarray):
        return value
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        raise ObservationError(f"{key}: expected a rectangular numeric array, found a ragged "
                               f"{type(value).__name__} ({e})") from e
    if array.dtype == object:
        raise ObservationError(f"{key}: expected a numeric array, found {type(value).__name__} "
                               f"{repr(value)[:80]}")
    return array


def _check_video(key: str, frames: np.ndarray, steps: int, height: int | None, width: int | None,
                 batched: bool) -> np.ndarray:
    """height / width None: any frame size of at least 1 x 1."""
    fixed = height is not None
    size = f"{height}, {width}" if fixed else "H, W"
    expected = f"{'[B, ' if batched else '['}{steps}, {size}, 3]"
    what = f"the {width}x{height} training resolution" if fixed else "any size"
    if frames.dtype != np.uint8:
        raise ObservationError(f"{key}: expected dtype uint8 (RGB frames), found {frames.dtype}")
    shape = frames.shape[-4:]
    fits = frames.ndim == (5 if batched else 4) and shape[0] == steps and shape[3] == 3 and (
        shape[1:3] == (height, width) if fixed else min(shape[1:3]) >= 1)
    if not fits:
        raise ObservationError(f"{key}: expected shape {expected} ({steps} frame(s) of {what}), found "
                               f"{list(frames.shape)}")
    return frames if batched else frames[None]


def _check_one_frame_size(videos: Mapping[str, np.ndarray]) -> None:
    """The checked frames [B, T, H, W, 3] of the any-size cameras share one H x W."""
    sizes = {key: frames.shape[2:4] for key, frames in videos.items()}
    if len(set(sizes.values())) > 1:
        found = ", ".join(f"{key} {h}x{w}" for key, (h, w) in sizes.items())
        raise ObservationError(f"{', '.join(sizes)}: expected frames of one size (H x W) for every camera "
                               f"of an observation, found {found}")


def _check_state(key: str, values: np.ndarray, steps: int, dim: int, batched: bool) -> np.ndarray:
    expected = f"{'[B, ' if batched else '['}{steps}, {dim}]"
    if values.dtype.kind not in "biuf":
        raise ObservationError(f"{key}: expected a numeric array, found dtype {values.dtype}")
    if values.ndim != (3 if batched else 2) or values.shape[-2:] != (steps, dim):
        raise ObservationError(f"{key}: expected shape {expected}, found {list(values.shape)}")
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0].tolist()
        raise ObservationError(f"{key}: expected finite values, found {values[tuple(bad)]} at index {bad}")
    limit = np.finfo(np.float32).max
    if values.dtype.kind == "f" and values.dtype.itemsize > 4 and (np.abs(values) > limit).any():
        bad = np.argwhere(np.abs(values) > limit)[0].tolist()
        raise ObservationError(f"{key}: expected values within the float32 range (|x| <= {limit:.4g}), "
                               f"found {values[tuple(bad)]} at index {bad}")
    values = values.astype(np.float32)
    return values if batched else values[None]


def _check_language(key: str, value: Any, batched: bool) -> list[str]:
    """str | [str] (unbatched) or B strings (batched: a list, or an array [B] / [B, 1]) -> list of str."""
    texts = _as_texts(value)
    if texts is None or not texts or not all(isinstance(t, str) for t in texts) or (
            not batched and len(texts) != 1):
        expected = "a list of B strings" if batched else "a string or a list of 1 string"
        found = repr(value) if len(repr(value)) <= 80 else f"{type(value).__name__} {repr(value)[:80]}..."
        raise ObservationError(f"{key}: expected {expected}, found {found}")
    return texts


def _as_texts(value: Any) -> list | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        column = value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)
        return value.reshape(-1).tolist() if value.dtype.kind == "U" and column else None
    if isinstance(value, (list, tuple)):  # [B] or [B, 1]
        return [t[0] if isinstance(t, (list, tuple)) and len(t) == 1 else t for t in value]
    return None


def _check_batch_sizes(checked: dict[str, Any]) -> None:
    sizes = {key: len(value) for key, value in checked.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{key}: {size}" for key, size in sizes.items())
        raise ObservationError(f"observation keys disagree on the batch size: {listed}")
