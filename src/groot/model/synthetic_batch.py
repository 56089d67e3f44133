"""A processor-shaped `Batch` of random values for any model config: for tests and benchmarks that need
the model's input shapes without a tokenizer or a dataset."""

from __future__ import annotations

import torch

from groot.model.batch import Batch
from groot.model.config import GR00TN15Config


def synthetic_batch(config: GR00TN15Config, batch: int = 2, text_tokens: int = 6, seed: int = 0,
                    embodiment: int = 31, real_action_dims: int = 7) -> Batch:
    """One image per sample: [text | image tokens | text] ids (`text_tokens` on each side), pixels in
    [-1, 1], state and action padded past `real_action_dims`. -> a host `Batch` with actions."""
    g = torch.Generator().manual_seed(seed)
    bb, ah = config.backbone_cfg, config.action_head_cfg
    size, n_img = bb.vision.image_size, bb.num_image_tokens
    text = torch.randint(0, 256, (batch, 2 * text_tokens), generator=g)
    image = torch.full((batch, n_img), bb.image_token_id)
    input_ids = torch.cat([text[:, :text_tokens], image, text[:, text_tokens:]], dim=1)
    action_mask = torch.zeros(batch, ah.action_horizon, ah.max_action_dim, dtype=torch.bool)
    action_mask[..., :real_action_dims] = True
    action = torch.randn(batch, ah.action_horizon, ah.max_action_dim, generator=g) * action_mask
    state_mask = torch.zeros(batch, 1, ah.max_state_dim, dtype=torch.bool)
    state_mask[..., :real_action_dims] = True
    return Batch(
        pixel_values=torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        state=torch.randn(batch, 1, ah.max_state_dim, generator=g) * state_mask,
        state_mask=state_mask,
        action=action,
        action_mask=action_mask,
        embodiment_id=torch.full((batch,), embodiment, dtype=torch.long),
    )
