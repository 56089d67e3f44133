"""Eagle VL backbones: SigLIP -> [pixel unshuffle] -> mlp1 -> image-token scatter -> truncated Qwen3.

`EagleBackbone` is N1.5's Eagle 2.5 (spec 2.2; checkpoint paths
`backbone.eagle_model.{vision_model, mlp1, language_model}`); `EagleBlock2ABackbone` is N1.6's
Eagle-Block2A (N1.6 spec 2: native-resolution SigLIP2-style tower, 2x2 pixel unshuffle, LayerNorm-MLP
`mlp1`, paths `backbone.model.*`). Both expose the VLM as `vlm`. The
pieces are exposed separately (`encode_images`, `embed`, `language_model`); the forward makes no host
synchronisation on an accelerator, so the fast inference path captures it as one CUDA graph.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from groot.errors import ConfigError, ObservationError
from groot.model.config import BackboneConfig
from groot.model.layers import init_weights
from groot.model.qwen3 import Qwen3LanguageModel
from groot.model.siglip import SiglipVisionModel


def build_projector(cfg: BackboneConfig) -> nn.Sequential:
    """`mlp1`: vision tokens of width vision.hidden_size * pixel_unshuffle^2 -> LLM width.
    "linear": one Linear (N1.5); "layernorm_mlp": LayerNorm, Linear, GELU (erf), Linear (N1.6: keys
    0, 1, 3)."""
    width, out = cfg.vision.hidden_size * cfg.pixel_unshuffle**2, cfg.llm.hidden_size
    if cfg.projector == "linear":
        projector = nn.Sequential(nn.Linear(width, out))
    elif cfg.projector == "layernorm_mlp":
        projector = nn.Sequential(nn.LayerNorm(width, eps=1e-5), nn.Linear(width, out), nn.GELU(),
                                  nn.Linear(out, out))
    else:
        raise ValueError(f"BackboneConfig.projector: expected 'linear' or 'layernorm_mlp', "
                         f"found {cfg.projector!r}")
    init_weights(projector)
    return projector


def pixel_unshuffle_tokens(tokens: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """Merge each factor x factor block of patch tokens into one token (channel index
    factor^2 * c + factor * dy + dx, as `F.pixel_unshuffle`), blocks row-major.
    tokens: [N, rows * cols, C] -> [N, rows * cols / factor^2, C * factor^2]"""
    if factor == 1:
        return tokens
    n, _, c = tokens.shape
    rows, cols = grid
    if rows % factor or cols % factor:
        raise ValueError(f"pixel unshuffle: patch grid {grid} is not divisible by {factor}")
    square = tokens.transpose(1, 2).reshape(n, c, rows, cols)
    return F.pixel_unshuffle(square, factor).flatten(2).transpose(1, 2)


class EagleModel(nn.Module):
    """The VLM level: vision tower, projector `mlp1`, language model."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.vision_model = SiglipVisionModel(cfg.vision)
        self.mlp1 = build_projector(cfg)
        self.language_model = Qwen3LanguageModel(cfg.llm)


class EagleBackbone(nn.Module):
    vlm_attribute = "eagle_model"  # the checkpoint's name of the VLM level

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        if cfg.select_layer != cfg.llm.num_layers:
            raise ValueError(f"BackboneConfig: select_layer={cfg.select_layer} but llm.num_layers="
                             f"{cfg.llm.num_layers}; the LLM must be built truncated to select_layer layers")
        self.cfg = cfg
        setattr(self, self.vlm_attribute, EagleModel(cfg))
        self.set_trainable(tune_llm=cfg.tune_llm, tune_visual=cfg.tune_visual,
                           tune_top_llm_layers=cfg.tune_top_llm_layers)

    @property
    def vlm(self) -> EagleModel:
        return getattr(self, self.vlm_attribute)

    # ---- trainability (spec 2.3) ---------------------------------------------------------------
    def set_trainable(self, tune_llm: bool, tune_visual: bool, tune_top_llm_layers: int = 0) -> None:
        """Freeze the LLM (all but its top `tune_top_llm_layers` layers) and/or the vision tower + mlp1.
        The SigLIP pooling head never gets gradients (its output is unused), so it is always frozen."""
        layers = self.vlm.language_model.model.layers
        if not 0 <= tune_top_llm_layers <= len(layers):
            raise ConfigError(f"tune_top_llm_layers: expected 0..{len(layers)} (the LLM's layers), found "
                              f"{tune_top_llm_layers}")
        self.vlm.language_model.requires_grad_(tune_llm)
        if tune_top_llm_layers and not tune_llm:
            layers[len(layers) - tune_top_llm_layers:].requires_grad_(True)
        self.vlm.vision_model.requires_grad_(tune_visual)
        self.vlm.mlp1.requires_grad_(tune_visual)
        head = self.vlm.vision_model.vision_model.head
        if head is not None:
            head.requires_grad_(False)

    # ---- pieces ---------------------------------------------------------------------------------
    @property
    def language_model(self) -> Qwen3LanguageModel:
        """`(inputs_embeds [B, L, D], attention_mask [B, L]) -> features [B, L, D]`"""
        return self.vlm.language_model

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N_img, 3, H, W] -> projected image tokens [N_img, T, D_llm]
        (T = H * W / (patch * pixel_unshuffle)^2: 256 for N1.5, 81 for a 252 x 252 N1.6 image)"""
        vision = self.vlm.vision_model(pixel_values)  # [N_img, (H/p) * (W/p), C]
        patch = self.cfg.vision.patch_size
        grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        return self.vlm.mlp1(pixel_unshuffle_tokens(vision, grid, self.cfg.pixel_unshuffle))

    def check_image_tokens(self, input_ids: torch.Tensor, num_images: int,
                           tokens_per_image: int | None = None) -> None:
        """Raise unless input_ids [B, L] hold exactly num_images x tokens_per_image (default: the
        config's `num_image_tokens`) image-token positions. Counts on the host: pass host ids."""
        per_image = self.cfg.num_image_tokens if tokens_per_image is None else tokens_per_image
        found = int((input_ids == self.cfg.image_token_id).sum())
        if found != num_images * per_image:
            raise ObservationError(f"EagleBackbone: input_ids hold {found} image-token positions (id "
                                   f"{self.cfg.image_token_id}) but {num_images} images x {per_image} "
                                   f"image tokens = {num_images * per_image} image embeddings were given")

    def embed(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None = None,
              inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with every `image_token_id` position replaced by the image tokens, filled in
        row-major (batch, position) order. input_ids: [B, L], image_embeds: [N_img, T, D] -> [B, L, D].
        inputs_embeds [B, L, D]: the token-table rows of input_ids, looked up by the caller; None:
        looked up here. input_ids locate the image positions either way.

        No host synchronisation on the device (CUDA-graph safe): the positions are matched to image
        tokens by a running count. The count itself is checked here when input_ids are on the CPU;
        callers that upload ids first check the host copy with `check_image_tokens`."""
        embeds = (self.vlm.language_model.model.embed_tokens(input_ids) if inputs_embeds is None
                  else inputs_embeds)  # [B, L, D]
        num_images, per_image = (0, None) if image_embeds is None else image_embeds.shape[:2]
        if input_ids.device.type == "cpu":
            self.check_image_tokens(input_ids, num_images, per_image)
        if num_images == 0:
            return embeds
        is_image = input_ids == self.cfg.image_token_id  # [B, L]
        flat = image_embeds.reshape(-1, embeds.shape[-1]).to(embeds.dtype)  # [N_img * T, D]
        # k-th image position (row-major) <- flat[k]; other positions read a valid row, then discarded
        source = (is_image.flatten().cumsum(0) - 1).clamp(0, flat.shape[0] - 1).view_as(input_ids)
        return torch.where(is_image[..., None], flat[source], embeds)

    # ---- whole forward --------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values [N_img, 3, H, W], input_ids / attention_mask [B, L] -> features [B, L, D_llm].
        attention_mask None: no row is padded (plain causal attention). inputs_embeds: see `embed`."""
        image_embeds = self.encode_images(pixel_values) if pixel_values.shape[0] > 0 else None
        return self.language_model(self.embed(input_ids, image_embeds, inputs_embeds), attention_mask)


class EagleBlock2ABackbone(EagleBackbone):
    """N1.6's Eagle-Block2A backbone; the VLM level is `backbone.model` in the checkpoint."""

    vlm_attribute = "model"
