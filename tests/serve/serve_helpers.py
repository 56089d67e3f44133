"""Helpers shared by the server tests: a policy that validates like the real one, and observations."""

import numpy as np

from groot.data.modality import ModalityConfig
from groot.policy import ObservationSpec
from groot.serve.client import InferenceClient

LANGUAGE = "annotation.human.task_description"


class EchoPolicy:
    """Validates like the real Policy; the action chunk is the state repeated 16 times plus the step."""

    spec = ObservationSpec(video={"video.front": (1, 8, 10)}, state={"state.arm": (1, 3)},
                           language=(LANGUAGE,))

    def get_action(self, observation):
        checked, batched = self.spec.check(observation)
        if checked[LANGUAGE][0] == "crash":
            raise RuntimeError("the model fell over")
        chunk = checked["state.arm"] + np.arange(16, dtype=np.float32)[None, :, None]  # [B, 16, 3]
        return {"action.arm": chunk if batched else chunk[0]}

    def get_modality_config(self):
        return {"video": ModalityConfig([0], ["video.front"]), "state": ModalityConfig([0], ["state.arm"]),
                "action": ModalityConfig(list(range(16)), ["action.arm"]),
                "language": ModalityConfig([0], [LANGUAGE])}


def observation(state=(0.5, -1.0, 2.0), text="pick the cube"):
    return {"video.front": np.zeros((1, 8, 10, 3), np.uint8),
            "state.arm": np.array([state], np.float32), LANGUAGE: [text]}


def client_for(server, **kwargs):
    return InferenceClient("127.0.0.1", server.port, timeout_ms=kwargs.pop("timeout_ms", 5000), **kwargs)
