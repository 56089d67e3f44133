"""`PolicyLike`: what serving and evaluation need from a policy. `groot.policy.Policy` and
`groot.serve.client.InferenceClient` both fit it. Importing this module never imports torch."""

from __future__ import annotations

from typing import Any, Protocol


class PolicyLike(Protocol):
    def get_action(self, observation: dict[str, Any]) -> dict[str, Any]:
        """{"video.<k>": uint8 [T, H, W, 3], "state.<k>": [T, D], <language key>: [str]}
        -> {"action.<k>": [16, D]} (a leading batch dim on both sides when batched). An implementation
        may also take `seed: int | None`: the same seed and observation give the same chunk."""
        ...

    def get_modality_config(self) -> dict[str, Any]:
        """{"video" | "state" | "action" | "language": ModalityConfig} the policy was trained with."""
        ...
