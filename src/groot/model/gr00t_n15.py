"""GR00T N1.5: Eagle VL backbone + flow-matching action head (`backbone.*`, `action_head.*`).

`forward(batch)` returns the training loss, `get_action(batch)` a normalized action chunk; the `Batch`
(`groot.model.batch`) is the processor's output. Weights stay in the dtype they were built / loaded in
(fp32 by default); floating inputs are cast to the dtype of the module that consumes them, so a bf16
model takes the processor's fp32 tensors as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from groot.errors import ConfigError
from groot.model.action_head import FlowMatchingActionHead
from groot.model.batch import Batch
from groot.model.config import GR00TN15Config, preset_config
from groot.model.eagle import EagleBackbone


def _param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class GR00TN15(nn.Module):
    config_class: type[GR00TN15Config] = GR00TN15Config
    backbone_class: type[EagleBackbone] = EagleBackbone

    def __init__(self, config: GR00TN15Config):
        super().__init__()
        if type(config) is not self.config_class:
            raise ConfigError(f"{type(self).__name__} is built from a {self.config_class.__name__}, found a "
                              f"{type(config).__name__} (preset {config.preset!r})")
        self.config = config
        self.backbone = self.backbone_class(config.backbone_cfg)
        self.action_head = FlowMatchingActionHead(config.action_head_cfg)
        self.set_trainable(config.backbone_cfg.tune_llm, config.backbone_cfg.tune_visual,
                           config.action_head_cfg.tune_projector, config.action_head_cfg.tune_diffusion_model,
                           config.backbone_cfg.tune_top_llm_layers)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str) -> GR00TN15:
        """Random weights for a named preset of this generation (N1.5: `n1.5-3b`, `small`, `tiny`;
        N1.6: `n1.6-3b`, `n1.6-small`, `n1.6-tiny`)."""
        return cls(preset_config(name))

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, *, revision: str | None = None,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False) -> GR00TN15:
        """Load a checkpoint directory or hub id (see `groot.model.checkpoint.load_pretrained`)."""
        from groot.model.checkpoint import load_pretrained

        return load_pretrained(path_or_hub_id, dtype=dtype, device=device, revision=revision, token=token,
                               cache_dir=cache_dir, local_files_only=local_files_only)

    def save_pretrained(self, directory: str | Path, metadata: dict[str, Any] | None = None,
                        data_config: Any = None, max_shard_size: int | str = "2GB",
                        tokenizer: Any = None) -> Path:
        """Write a checkpoint directory (see `groot.model.checkpoint.save_pretrained`)."""
        from groot.model.checkpoint import save_pretrained

        return save_pretrained(self, directory, metadata=metadata, data_config=data_config,
                               max_shard_size=max_shard_size, tokenizer=tokenizer)

    def push_to_hub(self, repo_id: str, metadata: dict[str, Any] | None = None, data_config: Any = None,
                    max_shard_size: int | str = "2GB", tokenizer: Any = None, *,
                    token: str | bool | None = None, private: bool | None = None, revision: str | None = None,
                    commit_message: str | None = None, create_pr: bool = False) -> str:
        """`save_pretrained` into a temporary directory (plus a README.md model card) and upload it to the
        hub model repo `repo_id` in one commit (see `groot.model.hub.upload_folder`) -> the commit's URL."""
        from groot.model.hub import push_saved
        from groot.model.model_card import render_model_card

        def save(directory: Path) -> Path:
            out = self.save_pretrained(directory, metadata=metadata, data_config=data_config,
                                       max_shard_size=max_shard_size, tokenizer=tokenizer)
            (out / "README.md").write_text(render_model_card(self.config, load_path=repo_id))
            return out

        return push_saved(save, repo_id, token=token, private=private, revision=revision,
                          commit_message=commit_message, create_pr=create_pr)

    def tie_weights(self) -> None:
        """Point the LLM's `lm_head.weight` at `embed_tokens.weight` (after loading replaced either)."""
        if self.config.backbone_cfg.llm.tie_word_embeddings:
            lm = self.backbone.vlm.language_model
            lm.lm_head.weight = lm.model.embed_tokens.weight

    # ---- what trains (spec 2.3) --------------------------------------------------------------------
    def set_trainable(self, tune_llm: bool, tune_visual: bool, tune_projector: bool,
                      tune_diffusion_model: bool, tune_top_llm_layers: int = 0) -> None:
        """Freeze / unfreeze the four groups (and the top `tune_top_llm_layers` LLM layers of a frozen
        LLM); vlln, vl_self_attention, future_tokens and mask_token always train.
        The flags are recorded in the config, so a saved checkpoint remembers them."""
        bb, ah = self.config.backbone_cfg, self.config.action_head_cfg
        self.backbone.set_trainable(tune_llm=tune_llm, tune_visual=tune_visual,
                                    tune_top_llm_layers=tune_top_llm_layers)
        bb.tune_llm, bb.tune_visual, bb.tune_top_llm_layers = tune_llm, tune_visual, tune_top_llm_layers
        ah.tune_projector, ah.tune_diffusion_model = tune_projector, tune_diffusion_model
        self.action_head.requires_grad_(True)
        for module in self._projector_modules():
            module.requires_grad_(tune_projector)
        self.action_head.model.requires_grad_(tune_diffusion_model)
        self.train(self.training)

    def _projector_modules(self) -> list[nn.Module]:
        head = self.action_head
        modules: list[nn.Module] = [head.state_encoder, head.action_encoder, head.action_decoder]
        if self.config.action_head_cfg.add_pos_embed:
            modules.append(head.position_embedding)
        return modules

    def _frozen_modules(self) -> list[nn.Module]:
        bb, ah = self.config.backbone_cfg, self.config.action_head_cfg
        eagle = self.backbone.vlm
        frozen: list[nn.Module] = []
        if not bb.tune_llm:
            frozen.append(eagle.language_model)
        if not bb.tune_visual:
            frozen += [eagle.vision_model, eagle.mlp1]
        if not ah.tune_projector:
            frozen += self._projector_modules()
        if not ah.tune_diffusion_model:
            frozen.append(self.action_head.model)
        return frozen

    def train(self, mode: bool = True) -> GR00TN15:
        """Like nn.Module.train, but frozen modules stay in eval mode (no dropout) while training."""
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
        return self

    def trainable_parameter_names(self) -> list[str]:
        return [name for name, p in self.named_parameters() if p.requires_grad]

    # ---- forward -----------------------------------------------------------------------------------
    def backbone_features(self, batch: Batch) -> torch.Tensor:
        """pixel_values [N_img, 3, S, S], input_ids / attention_mask [B, L] and, when the batch has them,
        inputs_embeds [B, L, D] (the ids' token-table rows) -> features [B, L, D] in the action head's
        dtype."""
        pixels = batch.pixel_values.to(_param_dtype(self.backbone.vlm.vision_model))
        features = self.backbone(pixels, batch.input_ids, batch.attention_mask,
                                 inputs_embeds=batch.inputs_embeds)
        return features.to(_param_dtype(self.action_head))

    def vl_masks(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (text, image) VL token masks the action head's cross-attention reads (`token_masks`)."""
        return self.token_masks(batch.input_ids, batch.attention_mask)

    def token_masks(self, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """input_ids / attention_mask [B, L] -> (text, image) bool [B, L]; None in N1.5 (every VL token is
        read)."""
        return None

    def forward(self, batch: Batch, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`Batch` with `action` / `action_mask` -> {"loss": scalar}. t [B] (flow-matching
        times) and noise [B, 16, 32]: drawn by the action head when None."""
        dtype = _param_dtype(self.action_head)
        loss = self.action_head(
            self.backbone_features(batch),
            batch.state.to(dtype),  # [B, 1, 64]
            batch.action.to(dtype),  # [B, 16, 32]
            batch.action_mask,  # [B, 16, 32]
            batch.embodiment_id,  # [B]
            t=t,
            noise=None if noise is None else noise.to(dtype),
            vl_masks=self.vl_masks(batch),
        )
        return {"loss": loss}

    @torch.no_grad()
    def get_action(self, batch: Batch, num_steps: int | None = None,
                   noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """`Batch` -> {"action_pred": normalized action chunk [B, 16, 32]}"""
        dtype = _param_dtype(self.action_head)
        actions = self.action_head.sample(
            self.backbone_features(batch), batch.state.to(dtype), batch.embodiment_id,
            num_steps=num_steps, noise=None if noise is None else noise.to(dtype), generator=generator,
            vl_masks=self.vl_masks(batch),
        )
        return {"action_pred": actions}
