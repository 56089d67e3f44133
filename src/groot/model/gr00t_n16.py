"""GR00T N1.6: Eagle-Block2A backbone + AlternateVLDiT flow-matching action head (`backbone.model.*`,
`action_head.*`; N1.6 spec 2-3).

The same model as `GR00TN15` built from a `GR00TN16Config`: the shared blocks take the N1.6 options
(see `groot.model.config.GR00TN16Config`), the backbone's VLM level is named `model`, and the action
head's cross-attention blocks alternate between the prompt's text tokens and its image tokens.
"""

from __future__ import annotations

import torch

from groot.model.config import GR00TN15Config, GR00TN16Config
from groot.model.eagle import EagleBlock2ABackbone
from groot.model.gr00t_n15 import GR00TN15


class GR00TN16(GR00TN15):
    config_class = GR00TN16Config
    backbone_class = EagleBlock2ABackbone

    def token_masks(self, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids / attention_mask [B, L] -> (text, image) bool [B, L]: image = `<IMG_CONTEXT>`
        positions, text = every other non-padding position (role tokens and `<img>` markers included)."""
        tokens = attention_mask.to(torch.bool)
        image = input_ids == self.config.backbone_cfg.image_token_id
        return tokens & ~image, tokens & image


def model_class(config: GR00TN15Config) -> type[GR00TN15]:
    """The model class a config builds: GR00TN16 for a GR00TN16Config, else GR00TN15."""
    return GR00TN16 if isinstance(config, GR00TN16Config) else GR00TN15
