"""Light client of the inference server: numpy, msgpack and pyzmq only (importing it never imports torch).

    with InferenceClient("localhost", 5555) as client:
        action = client.get_action({"video.ego_view": frame, "state.left_arm": q, ...})

`protocol` picks the server's protocol: "n1.5" (the default) or "n1.6". `get_action` takes and returns
groot's flat layout with either (so the client fits PolicyLike for evaluation); against an N1.6 server
it sends the nested observation and adds the "action." prefix back. `get_action_nested` and `reset`
speak N1.6 natively.

Every call has a timeout. A REQ socket whose request got no reply is stuck (it may not send again),
so after a timeout the socket is rebuilt and the next call works normally.
"""

from __future__ import annotations

from typing import Any

import zmq

from groot.errors import ConfigError, GrootError
from groot.serve import nested
from groot.serve import protocol as wire

DEFAULT_TIMEOUT_MS = 15_000
PROTOCOLS = ("n1.5", "n1.6")


class ServerError(GrootError, RuntimeError):
    """The server answered `{"error": ...}`."""


class ServerTimeoutError(GrootError, TimeoutError):
    """The server did not answer in time (down, busy, or it dropped a message over its size limit)."""


class InferenceClient:
    """Talks to `groot serve` (or the official inference service) over ZeroMQ REQ/REP."""

    def __init__(self, host: str = "localhost", port: int = 5555, api_token: str | None = None,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 max_message_bytes: int | None = wire.DEFAULT_MAX_MESSAGE_BYTES, protocol: str = "n1.5"):
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, found {protocol!r}")
        self.protocol = protocol
        self.address = f"tcp://{wire.tcp_host(host)}:{port}"  # IPv6 literals: "::1" or "[::1]"
        self._ipv6 = wire.is_ipv6(host.strip("[]"))
        self.api_token = api_token
        self.timeout_ms = timeout_ms
        # a larger request is refused here at once (a server drops it unanswered); None: no check
        self.max_message_bytes = max_message_bytes
        self._context = zmq.Context()
        self._socket = self._connect()

    # ---- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def _connect(self) -> zmq.Socket:
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        socket.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        if self._ipv6:
            socket.setsockopt(zmq.IPV6, 1)
        socket.connect(self.address)
        return socket

    # ---- endpoints -------------------------------------------------------------------------------------
    def ping(self) -> bool:
        """True when the server answers; False when it does not answer within the timeout."""
        try:
            self.call("ping")
        except ServerTimeoutError:
            return False
        return True

    def get_action(self, observation: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        """observation {"video.<k>": uint8 [T,H,W,3], "state.<k>": [T,D], "<language key>": [str]}
        -> {"action.<k>": [16, D]} (leading batch dim on both sides when batched). `seed` (sent as the
        request's top-level "seed"): the same seed and observation give the same chunk; None: random."""
        if self.protocol == "n1.5":
            return self.call("get_action", observation, seed=seed)
        request, batched = nested.nest_observation(observation)
        actions, _ = self.get_action_nested(request, seed=seed)
        return nested.prefix_actions(actions, batched)

    def get_action_nested(self, observation: dict[str, Any], options: dict | None = None,
                          seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """N1.6: observation {"video": {<view>: uint8 [B,T,H,W,3]}, "state": {<group>: float32 [B,T,D]},
        "language": {<language key>: [[str], ...]}} -> (actions {<group>: float32 [B,T,D]}, info)."""
        self._require_n16("get_action_nested")
        reply = self.call("get_action", {"observation": observation, "options": options}, seed=seed)
        if not (isinstance(reply, list) and len(reply) == 2 and all(isinstance(r, dict) for r in reply)):
            raise wire.ProtocolError(f"get_action: expected an N1.6 answer [actions, info], found "
                                     f"{type(reply).__name__} {str(reply)[:80]} (is the server N1.5?)")
        return reply[0], reply[1]

    def reset(self, options: dict | None = None) -> dict[str, Any]:
        """N1.6: reset the policy's episode state (groot's policies hold none) -> {}."""
        self._require_n16("reset")
        return self.call("reset", {"options": options})

    def get_modality_config(self) -> dict[str, Any]:
        """{"video"|"state"|"action"|"language": ModalityConfig}"""
        return self.call("get_modality_config")

    def kill_server(self) -> None:
        self.call("kill")

    def _require_n16(self, method: str) -> None:
        if self.protocol != "n1.6":
            raise ConfigError(f"{method}: an N1.6 endpoint; this client speaks {self.protocol} "
                              "(InferenceClient(protocol='n1.6'))")

    def call(self, endpoint: str, data: dict[str, Any] | None = None, seed: int | None = None) -> Any:
        """Send one request and return the decoded answer; raises ServerError on `{"error": ...}`."""
        message = wire.pack_request(endpoint, data, self.api_token, seed)
        if self.max_message_bytes is not None and len(message) > self.max_message_bytes:
            raise wire.ProtocolError(f"{endpoint} request is {len(message)} bytes, over the "
                                     f"{self.max_message_bytes}-byte message size limit (the server's "
                                     "--max-message-mb; InferenceClient(max_message_bytes=...))")
        try:
            self._socket.send(message)
            reply = self._socket.recv()
        except zmq.Again as e:
            self._socket.close(linger=0)
            self._socket = self._connect()
            raise ServerTimeoutError(
                f"no answer from {self.address} to {endpoint!r} within {self.timeout_ms} ms: the server is "
                f"down or busy, or it dropped this {len(message)}-byte request for exceeding its message "
                f"size limit (groot serve --max-message-mb)") from e
        response = wire.unpack(reply)
        if isinstance(response, dict) and "error" in response:
            raise ServerError(f"{endpoint}: {response['error']}")
        return response
