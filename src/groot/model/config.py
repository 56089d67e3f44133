"""Model configuration: one dataclass tree for GR00T N1.5 and its named presets.

Field names follow the official `config.json` (`backbone_cfg`, `action_head_cfg`,
`diffusion_model_cfg`, `vl_self_attention_cfg`) so official checkpoints load directly. Sizes that the
official file leaves to the Eagle config (vision tower, LLM) live in `vision` / `llm` and are written
by `save_pretrained` under the extra key `groot`, so a groot checkpoint of any preset is self-describing.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from groot.errors import ConfigError


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

    @property
    def num_image_tokens(self) -> int:
        return self.vision.num_patches


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
    num_target_vision_tokens: int = 32
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
    diffusion_model_cfg: DiTConfig = field(default_factory=DiTConfig)
    vl_self_attention_cfg: VLSelfAttentionConfig = field(default_factory=VLSelfAttentionConfig)


@dataclass
class GR00TN15Config:
    backbone_cfg: BackboneConfig = field(default_factory=BackboneConfig)
    action_head_cfg: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    preset: str = "n1.5-3b"

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


PRESETS: dict[str, GR00TN15Config] = {"n1.5-3b": GR00TN15Config(), **_small_presets()}


def preset_config(name: str) -> GR00TN15Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].copy()
