"""The frozen token-embedding table of the LLM kept in host memory during fine-tuning.

When the LLM is frozen, `HostTokenEmbedding` moves the table to the host and looks each batch's prompt up
there while the batch is prepared: the `Batch` gains `inputs_embeds` [B, L, D] (the rows `embed_tokens`
would return, bit for bit), which the backbone takes instead of `input_ids`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from groot.model.batch import Batch


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The LLM's `embed_tokens` of a GR00TN15."""
    return model.backbone.vlm.language_model.model.embed_tokens


class HostTokenEmbedding:
    """Moves the (frozen) table of `model` to the host; `__call__` adds `inputs_embeds` to a host batch."""

    def __init__(self, model: nn.Module):
        weight = token_embedding(model).weight
        if weight.requires_grad:
            raise ValueError("HostTokenEmbedding: the token embedding trains (--tune-llm); it must stay on "
                             "the device")
        weight.data = weight.data.to("cpu")  # the same Parameter object: a tied lm_head follows
        self.weight = weight

    def __call__(self, batch: Batch) -> Batch:
        """Host batch with `input_ids` [B, L] -> the batch plus `inputs_embeds` [B, L, D], in pinned memory
        when CUDA is present (so that the copy to the device is asynchronous)."""
        ids = batch.input_ids
        width = self.weight.shape[1]
        inputs_embeds = torch.empty((*ids.shape, width), dtype=self.weight.dtype,
                                  pin_memory=torch.cuda.is_available())
        torch.index_select(self.weight.detach(), 0, ids.reshape(-1), out=inputs_embeds.view(-1, width))
        return dataclasses.replace(batch, inputs_embeds=inputs_embeds)
