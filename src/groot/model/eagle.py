"""Eagle 2.5 VL backbone: SigLIP -> mlp1 -> image-token scatter -> truncated Qwen3 (spec 2.2).

Module paths match the checkpoint (`backbone.eagle_model.{vision_model, mlp1, language_model}`). The
pieces are exposed separately (`encode_images`, `embed`, `language_model`); the forward makes no host
synchronisation on an accelerator, so the fast inference path captures it as one CUDA graph.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from groot.errors import ObservationError
from groot.model.config import BackboneConfig
from groot.model.layers import init_weights
from groot.model.qwen3 import Qwen3LanguageModel
from groot.model.siglip import SiglipVisionModel


class EagleModel(nn.Module):
    """The `eagle_model` level: vision tower, one-Linear projector `mlp1`, language model."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.vision_model = SiglipVisionModel(cfg.vision)
        self.mlp1 = nn.Sequential(nn.Linear(cfg.vision.hidden_size, cfg.llm.hidden_size))
        init_weights(self.mlp1)
        self.language_model = Qwen3LanguageModel(cfg.llm)


class EagleBackbone(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        if cfg.select_layer != cfg.llm.num_layers:
            raise ValueError(f"BackboneConfig: select_layer={cfg.select_layer} but llm.num_layers="
                             f"{cfg.llm.num_layers}; the LLM must be built truncated to select_layer layers")
        self.cfg = cfg
        self.eagle_model = EagleModel(cfg)
        self.set_trainable(tune_llm=cfg.tune_llm, tune_visual=cfg.tune_visual)

    # ---- trainability (spec 2.3) ---------------------------------------------------------------
    def set_trainable(self, tune_llm: bool, tune_visual: bool) -> None:
        """Freeze the LLM and/or the vision tower + mlp1. The SigLIP pooling head never gets
        gradients (its output is unused), so it is always frozen."""
        self.eagle_model.language_model.requires_grad_(tune_llm)
        self.eagle_model.vision_model.requires_grad_(tune_visual)
        self.eagle_model.mlp1.requires_grad_(tune_visual)
        head = self.eagle_model.vision_model.vision_model.head
        if head is not None:
            head.requires_grad_(False)

    # ---- pieces ---------------------------------------------------------------------------------
    @property
    def language_model(self) -> Qwen3LanguageModel:
        """`(inputs_embeds [B, L, D], attention_mask [B, L]) -> features [B, L, D]`"""
        return self.eagle_model.language_model

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N_img, 3, S, S] -> projected image tokens [N_img, T, D_llm] (T = 256 for N1.5)"""
        return self.eagle_model.mlp1(self.eagle_model.vision_model(pixel_values))

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
        embeds = (self.eagle_model.language_model.model.embed_tokens(input_ids) if inputs_embeds is None
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
        """pixel_values [N_img, 3, S, S], input_ids / attention_mask [B, L] -> features [B, L, D_llm].
        attention_mask None: no row is padded (plain causal attention). inputs_embeds: see `embed`."""
        image_embeds = self.encode_images(pixel_values) if pixel_values.shape[0] > 0 else None
        return self.language_model(self.embed(input_ids, image_embeds, inputs_embeds), attention_mask)
