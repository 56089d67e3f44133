"""Model configuration: one dataclass tree for GR00T N1.5 and N1.6 and their named presets.

Field names follow the official `config.json` (`backbone_cfg`, `action_head_cfg`,
`diffusion_model_cfg`, `vl_self_attention_cfg`) so official checkpoints load directly. Sizes that the
official file leaves to the Eagle config (vision tower, LLM) live in `vision` / `llm` and are written
by `save_pretrained` under the extra key `groot`, so a groot checkpoint of any preset is self-describing.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from groot.errors import CheckpointError, ConfigError


@dataclass
class VisionConfig:
    """SigLIP vision tower (`vision_model.vision_model.*`)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    patch_size: int = 14
    image_size: int = 224
    layer_norm_eps: float = 1e-6
    with_pooling_head: bool = True  # present in the 3B state dict, never used in forward
    linear_patch_embedding: bool = False  # N1.6 (SigLIP2): Linear(3 * patch^2 -> hidden), not a Conv2d
    native_resolution: bool = False  # N1.6: the position grid is resized to each image's patch grid

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class LLMConfig:
    """Qwen3 decoder, already truncated to `num_layers` (= the official `select_layer`)."""

    vocab_size: int = 151680
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_layers: int = 12
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 40960  # positions the rotary LLM was trained for (the longest prompt)


@dataclass
class BackboneConfig:
    """Eagle 2.5 VL backbone: vision tower -> mlp1 -> token scatter -> truncated LLM."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    select_layer: int = 12
    image_token_id: int = 151669  # <IMG_CONTEXT>
    tokenizer: str = "qwen3"  # "qwen3" (from checkpoint or hub) or "bytes" (built in, no download)
    tune_llm: bool = False
    tune_visual: bool = False
    tune_top_llm_layers: int = 0  # train the top N LLM layers while the rest is frozen (N1.6 pretraining: 4)
    pixel_unshuffle: int = 1  # N1.6: 2 (2x2 patches -> one token of 4x the width before mlp1)
    projector: str = "linear"  # mlp1: "linear" (N1.5) or "layernorm_mlp" (N1.6: LN, Linear, GELU, Linear)

    @property
    def num_image_tokens(self) -> int:
        """Image tokens per image at the nominal `vision.image_size`."""
        return self.vision.num_patches // self.pixel_unshuffle**2


@dataclass
class DiTConfig:
    """`action_head_cfg.diffusion_model_cfg`."""

    num_layers: int = 16
    num_attention_heads: int = 32
    attention_head_dim: int = 48
    output_dim: int = 1024
    cross_attention_dim: int = 2048
    dropout: float = 0.2
    final_dropout: bool = True
    interleave_self_attention: bool = True
    norm_type: str = "ada_norm"
    # N1.6 AlternateVLDiT: cross-attention block i attends to text tokens only when
    # i % (2 * attend_text_every_n_blocks) == 0, else to image tokens only; None = every VL token
    attend_text_every_n_blocks: int | None = None

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


@dataclass
class VLSelfAttentionConfig:
    """`action_head_cfg.vl_self_attention_cfg`."""

    num_layers: int = 4
    num_attention_heads: int = 32
    attention_head_dim: int = 64
    dropout: float = 0.2
    final_dropout: bool = True


@dataclass
class ActionHeadConfig:
    """`action_head_cfg`: flow-matching DiT action head."""

    action_dim: int = 32
    action_horizon: int = 16
    max_action_dim: int = 32
    max_state_dim: int = 64
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    backbone_embedding_dim: int = 2048
    num_target_vision_tokens: int = 32  # learned future tokens; 0 = none (N1.6)
    max_num_embodiments: int = 32
    max_seq_len: int = 1024
    add_pos_embed: bool = True
    use_vlln: bool = True
    num_inference_timesteps: int = 4
    num_timestep_buckets: int = 1000
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    tune_projector: bool = True
    tune_diffusion_model: bool = True
    use_vl_self_attention: bool = True  # N1.6: False (vlln output goes straight to the DiT)
    time_sampling: str = "(s-u)/s"  # flow time from u ~ Beta: "(s-u)/s" (N1.5) or "(1-u)*s" (N1.6)
    state_dropout_prob: float = 0.0  # N1.6 training: state token -> `mask_token` with this probability
    diffusion_model_cfg: DiTConfig = field(default_factory=DiTConfig)
    vl_self_attention_cfg: VLSelfAttentionConfig = field(default_factory=VLSelfAttentionConfig)


@dataclass
class GR00TN15Config:
    backbone_cfg: BackboneConfig = field(default_factory=BackboneConfig)
    action_head_cfg: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    preset: str = "n1.5-3b"

    @property
    def generation(self) -> str:
        return "n1.5"

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The official `config.json` layout plus a `groot` block with every size."""
        bb, ah = self.backbone_cfg, self.action_head_cfg
        ah_dict = dataclasses.asdict(ah)
        return {
            "model_type": "gr00t_n1_5",
            "architectures": ["GR00T_N1_5"],
            "action_dim": ah.action_dim,
            "action_horizon": ah.action_horizon,
            "hidden_size": bb.llm.hidden_size,
            "model_dtype": "float32",
            "torch_dtype": "bfloat16",
            "backbone_cfg": {
                "eagle_path": "NVEagle/eagle_er-qwen3_1_7B-Siglip2_400M_stage1_5_128gpu_er_v7_1mlp_nops",
                "load_bf16": False,
                "project_to_dim": None,
                "reproject_vision": False,
                "select_layer": bb.select_layer,
                "tune_llm": bb.tune_llm,
                "tune_visual": bb.tune_visual,
                "tune_top_llm_layers": bb.tune_top_llm_layers,
                "use_flash_attention": False,
            },
            "action_head_cfg": ah_dict,
            "groot": {
                "preset": self.preset,
                "vision": dataclasses.asdict(bb.vision),
                "llm": dataclasses.asdict(bb.llm),
                "image_token_id": bb.image_token_id,
                "tokenizer": bb.tokenizer,
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GR00TN15Config:
        """Read an official or groot `config.json`. Unknown keys are ignored; missing ones default
        to the N1.5-3B values (the official file omits the Eagle sizes)."""
        g = d.get("groot", {})
        bb_in = d.get("backbone_cfg", {})
        ah_in = dict(d.get("action_head_cfg", {}))
        backbone = BackboneConfig(
            vision=_build(VisionConfig, g.get("vision", {})),
            llm=_build(LLMConfig, g.get("llm", {})),
            select_layer=bb_in.get("select_layer", 12),
            image_token_id=g.get("image_token_id", 151669),
            tokenizer=g.get("tokenizer", "qwen3"),
            tune_llm=bb_in.get("tune_llm", False),
            tune_visual=bb_in.get("tune_visual", False),
            tune_top_llm_layers=bb_in.get("tune_top_llm_layers", 0),
        )
        backbone.llm.num_layers = backbone.select_layer
        dit = _build(DiTConfig, ah_in.pop("diffusion_model_cfg", {}) or {})
        vlsa = _build(VLSelfAttentionConfig, ah_in.pop("vl_self_attention_cfg", {}) or {})
        head = _build(ActionHeadConfig, ah_in)
        head.diffusion_model_cfg, head.vl_self_attention_cfg = dit, vlsa
        return cls(backbone_cfg=backbone, action_head_cfg=head, preset=g.get("preset", "n1.5-3b"))

    def copy(self) -> GR00TN15Config:
        return copy.deepcopy(self)


def _build(cls, values: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def _small_presets() -> dict[str, GR00TN15Config]:
    small = GR00TN15Config(
        preset="small",
        backbone_cfg=BackboneConfig(
            vision=VisionConfig(hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4,
                                patch_size=14, image_size=112, with_pooling_head=False),
            llm=LLMConfig(vocab_size=512, hidden_size=256, intermediate_size=768, num_layers=4,
                          num_heads=4, num_kv_heads=2, head_dim=64),
            select_layer=4,
            image_token_id=261,
            tokenizer="bytes",
        ),
        action_head_cfg=ActionHeadConfig(
            hidden_size=256,
            input_embedding_dim=256,
            backbone_embedding_dim=256,
            max_seq_len=64,
            diffusion_model_cfg=DiTConfig(num_layers=6, num_attention_heads=4, attention_head_dim=64,
                                          output_dim=256, cross_attention_dim=256, dropout=0.1),
            vl_self_attention_cfg=VLSelfAttentionConfig(num_layers=2, num_attention_heads=4,
                                                        attention_head_dim=64, dropout=0.1),
        ),
    )
    tiny = GR00TN15Config(
        preset="tiny",
        backbone_cfg=BackboneConfig(
            vision=VisionConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2,
                                patch_size=14, image_size=56, with_pooling_head=False),
            llm=LLMConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
                          num_heads=2, num_kv_heads=1, head_dim=32),
            select_layer=2,
            image_token_id=261,
            tokenizer="bytes",
        ),
        action_head_cfg=ActionHeadConfig(
            hidden_size=64,
            input_embedding_dim=64,
            backbone_embedding_dim=64,
            max_seq_len=64,
            diffusion_model_cfg=DiTConfig(num_layers=4, num_attention_heads=2, attention_head_dim=32,
                                          output_dim=64, cross_attention_dim=64, dropout=0.0),
            vl_self_attention_cfg=VLSelfAttentionConfig(num_layers=1, num_attention_heads=2,
                                                        attention_head_dim=32, dropout=0.0),
        ),
    )
    return {"small": small, "tiny": tiny}


def _n16_backbone(vision: VisionConfig, llm: LLMConfig, **kwargs: Any) -> BackboneConfig:
    vision.linear_patch_embedding = vision.native_resolution = True
    return BackboneConfig(vision=vision, llm=llm, select_layer=llm.num_layers, pixel_unshuffle=2,
                          projector="layernorm_mlp", **kwargs)


def _n16_action_head(**kwargs: Any) -> ActionHeadConfig:
    values: dict[str, Any] = dict(action_dim=128, action_horizon=50, max_action_dim=128, max_state_dim=128,
                                  num_target_vision_tokens=0, use_vl_self_attention=False,
                                  time_sampling="(1-u)*s", state_dropout_prob=0.8)
    return ActionHeadConfig(**{**values, **kwargs})


_N16_PROCESSING_FLAGS = ("formalize_language", "use_relative_action", "apply_sincos_state_encoding")
# The official N1.6 `config.json` is flat (N1.6 spec 1.2): key (= groot field name) -> (part, type).
# Everything it does not say (the Eagle vision / LLM sizes) keeps the n1.6-3b preset's value.
_OFFICIAL_N16_KEYS: dict[str, tuple[str, type]] = {
    "select_layer": ("backbone", int), "tune_llm": ("backbone", bool), "tune_visual": ("backbone", bool),
    "tune_top_llm_layers": ("backbone", int),
    **{key: ("head", kind) for key, kind in (
        ("action_horizon", int), ("max_state_dim", int), ("max_action_dim", int), ("hidden_size", int),
        ("input_embedding_dim", int), ("backbone_embedding_dim", int), ("max_num_embodiments", int),
        ("max_seq_len", int), ("add_pos_embed", bool), ("use_vlln", bool), ("num_inference_timesteps", int),
        ("num_timestep_buckets", int), ("noise_beta_alpha", float), ("noise_beta_beta", float),
        ("noise_s", float), ("tune_projector", bool), ("tune_diffusion_model", bool),
        ("state_dropout_prob", float))},
    **{key: ("config", bool) for key in _N16_PROCESSING_FLAGS},
}
_OFFICIAL_DIT_KEYS: dict[str, type] = {
    "num_layers": int, "num_attention_heads": int, "attention_head_dim": int, "output_dim": int,
    "dropout": float, "final_dropout": bool, "interleave_self_attention": bool, "norm_type": str}


def _typed(source: str, key: str, value: Any, kind: type) -> Any:
    """`value` when it is a `kind` (an int counts as a float; bool never counts as a number; floats must
    be finite), else CheckpointError naming the file, the key, the expected and the found value."""
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        expected = {float: "a finite number", int: "an integer", bool: "true or false",
                    str: "a string", dict: "a JSON object"}[kind]
        raise CheckpointError(f"{source}: key {key!r}: expected {expected}, found {value!r}")
    return float(value) if kind is float else value


@dataclass
class GR00TN16Config(GR00TN15Config):
    """GR00T N1.6 (`Gr00tN1d6`): Eagle-Block2A backbone (SigLIP2-style tower at native resolution,
    2x2 pixel unshuffle, LayerNorm-MLP projector, Qwen3 cut at 16 layers) and the AlternateVLDiT head
    (32 blocks, text / image cross-attention masks, no VL adapter, no future tokens, 128-d state /
    action, horizon 50). The defaults are the `nvidia/GR00T-N1.6-3B` checkpoint's. `shortest_image_edge`
    and `crop_fraction` are the image geometry its processor applies (spec 4.2).

    The processing flags carry the official config's values to the processor and to the checkpoint's
    `processor_config.json`: `formalize_language` (the instruction is lower-cased and stripped of every
    character matching `[^\\w\\s]`), `use_relative_action` (action groups configured as relative are
    predicted relative to the last state), `apply_sincos_state_encoding` (state groups listed for it are
    fed as [sin, cos])."""

    backbone_cfg: BackboneConfig = field(default_factory=lambda: _n16_backbone(
        VisionConfig(), LLMConfig(num_layers=16, tie_word_embeddings=False)))  # lm_head stored untied
    action_head_cfg: ActionHeadConfig = field(default_factory=lambda: _n16_action_head(
        diffusion_model_cfg=DiTConfig(num_layers=32, attend_text_every_n_blocks=2)))
    preset: str = "n1.6-3b"
    shortest_image_edge: int = 256
    crop_fraction: float = 0.95
    formalize_language: bool = True
    use_relative_action: bool = True
    apply_sincos_state_encoding: bool = True

    @property
    def generation(self) -> str:
        return "n1.6"

    def to_dict(self) -> dict[str, Any]:
        """Every size under the N1.5 layout's keys (`groot` block included), tagged `Gr00tN1d6`, with the
        processing flags at the top level under their official names."""
        d = super().to_dict()
        d.update(model_type="Gr00tN1d6", architectures=["Gr00tN1d6"])
        d.update({flag: getattr(self, flag) for flag in _N16_PROCESSING_FLAGS})
        d["groot"]["backbone"] = {k: getattr(self.backbone_cfg, k) for k in ("pixel_unshuffle", "projector")}
        d["groot"]["images"] = {k: getattr(self, k) for k in ("shortest_image_edge", "crop_fraction")}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config.json") -> GR00TN16Config:
        """Read groot's layout (what `to_dict` writes: it has a `groot` block) or the official flat N1.6
        `config.json` (`from_official_dict`). A wrongly typed value raises CheckpointError naming
        `source`, the key, the expected and the found value."""
        if "groot" not in d:
            return cls.from_official_dict(d, source)
        base = GR00TN15Config.from_dict(d)
        for key, value in d.get("groot", {}).get("backbone", {}).items():
            setattr(base.backbone_cfg, key, value)
        flags = {flag: _typed(source, flag, d[flag], bool) for flag in _N16_PROCESSING_FLAGS if flag in d}
        images = d.get("groot", {}).get("images", {})
        geometry = {k: images[k] for k in ("shortest_image_edge", "crop_fraction") if k in images}
        return cls(backbone_cfg=base.backbone_cfg, action_head_cfg=base.action_head_cfg, preset=base.preset,
                   **flags, **geometry)

    @classmethod
    def from_official_dict(cls, d: dict[str, Any], source: str = "config.json") -> GR00TN16Config:
        """The official flat `config.json` (keys of N1.6 spec 1.2) over the n1.6-3b preset: the sizes it
        does not name (vision tower, LLM width) stay the preset's; unknown keys are ignored. Derived:
        the LLM keeps `select_layer` layers, `action_dim` = `max_action_dim`, the DiT cross-attends to
        `backbone_embedding_dim` features and alternates text / image blocks only when
        `use_alternate_vl_dit`."""
        config = cls()
        bb, head = config.backbone_cfg, config.action_head_cfg
        dit = head.diffusion_model_cfg
        parts = {"backbone": bb, "head": head, "config": config}
        for key, (part, kind) in _OFFICIAL_N16_KEYS.items():
            if key in d:
                setattr(parts[part], key, _typed(source, key, d[key], kind))
        dit_in = _typed(source, "diffusion_model_cfg", d.get("diffusion_model_cfg", {}), dict)
        for key, kind in _OFFICIAL_DIT_KEYS.items():
            if key in dit_in:
                setattr(dit, key, _typed(source, f"diffusion_model_cfg.{key}", dit_in[key], kind))
        alternate = _typed(source, "use_alternate_vl_dit", d.get("use_alternate_vl_dit", True), bool)
        every = _typed(source, "attend_text_every_n_blocks",
                       d.get("attend_text_every_n_blocks", dit.attend_text_every_n_blocks), int)
        dit.attend_text_every_n_blocks = every if alternate else None
        bb.llm.num_layers = bb.select_layer
        head.action_dim = head.max_action_dim
        dit.cross_attention_dim = head.backbone_embedding_dim
        return config


def _n16_small() -> GR00TN16Config:
    """N1.5 `small` sizes with every N1.6 structure and the checkpoint's 128-d / 50-step envelope."""
    return GR00TN16Config(
        preset="n1.6-small",
        shortest_image_edge=112,
        backbone_cfg=_n16_backbone(
            VisionConfig(hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4, patch_size=14,
                         image_size=112, with_pooling_head=False),
            LLMConfig(vocab_size=512, hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4,
                      num_kv_heads=2, head_dim=64),
            image_token_id=261, tokenizer="bytes"),
        action_head_cfg=_n16_action_head(
            hidden_size=256, input_embedding_dim=256, backbone_embedding_dim=256, max_seq_len=64,
            diffusion_model_cfg=DiTConfig(num_layers=8, num_attention_heads=4, attention_head_dim=64,
                                          output_dim=256, cross_attention_dim=256, dropout=0.1,
                                          attend_text_every_n_blocks=2)),
    )


def _n16_tiny() -> GR00TN16Config:
    """CPU-test size: every N1.6 structure (2 + 2 tower / LLM layers, 4 alternating DiT blocks)."""
    return GR00TN16Config(
        preset="n1.6-tiny",
        shortest_image_edge=56,
        backbone_cfg=_n16_backbone(
            VisionConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, patch_size=14,
                         image_size=56, with_pooling_head=False),
            LLMConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2,
                      num_kv_heads=1, head_dim=32),
            image_token_id=261, tokenizer="bytes"),
        action_head_cfg=_n16_action_head(
            hidden_size=64, input_embedding_dim=64, backbone_embedding_dim=64, max_seq_len=64,
            action_dim=32, max_action_dim=32, max_state_dim=32, action_horizon=16,
            diffusion_model_cfg=DiTConfig(num_layers=4, num_attention_heads=2, attention_head_dim=32,
                                          output_dim=64, cross_attention_dim=64, dropout=0.0,
                                          attend_text_every_n_blocks=2)),
    )


PRESETS: dict[str, GR00TN15Config] = {"n1.5-3b": GR00TN15Config(), **_small_presets(),
                                      "n1.6-3b": GR00TN16Config(), "n1.6-small": _n16_small(),
                                      "n1.6-tiny": _n16_tiny()}


def preset_config(name: str) -> GR00TN15Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].copy()
