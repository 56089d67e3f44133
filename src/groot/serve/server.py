"""ZeroMQ REP inference server speaking the official GR00T protocols: N1.5 (spec 9) or N1.6 (spec 6.2).

Both: `ping`, `kill`, `get_modality_config`, the same encodings, token, limits and error answers.
- "n1.5": `get_action` data is groot's flat observation; the answer is {"action.<k>": array}.
- "n1.6": `get_action` data is {"observation": <nested observation>, "options": map | None}; the answer
  is [{<k>: float32 [B, T, D]}, {}] (no "action." prefix); `reset` ({"options": ...}) answers {}. The
  nested observation is checked strictly against the policy's modality config and handed to the
  policy flat (`groot.serve.nested`).
Every request that reaches the socket gets exactly one answer, `{"error": ...}` when anything is wrong
(malformed msgpack, unknown endpoint, bad token, bad observation, a failing model), so a client never
hangs and the server never dies on input. A get_action request over one of the `RequestLimits`
(prompt characters, batch size, frames, image size) is answered with an error naming the key and the
limit before the policy sees it. Messages over `max_message_bytes` are dropped by ZeroMQ before they
reach the server (the sender's connection is reset; the light client reports a timeout that names the
limit). A request's optional "seed" is passed to the policy, so the same seed gives the same chunk.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import logging
import signal
import threading
import time
from typing import Any

import zmq

from groot.errors import ConfigError, GrootError
from groot.finite import check_finite_actions
from groot.policy_protocol import PolicyLike
from groot.serve import nested
from groot.serve import protocol as wire
from groot.serve.limits import RequestLimits

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
PROTOCOLS = ("n1.5", "n1.6")
ENDPOINTS = {"n1.5": ("ping", "kill", "get_action", "get_modality_config"),
             "n1.6": ("ping", "kill", "get_action", "reset", "get_modality_config")}


class BindError(GrootError, OSError):
    """The server's address cannot be bound (port in use, no such interface, malformed host)."""


class InferenceServer:
    """Serve `policy` on tcp://host:port. `port=0` picks a free port (read it from `.port`); `host` may be
    an IPv4 or IPv6 address (`::1`, `[::1]`) or a name. Binding beyond loopback without `api_token` logs
    a warning. `protocol`: "n1.5" or "n1.6" (the module docstring says how they differ). Raises
    BindError when the address cannot be bound, ConfigError for an unknown protocol.

    Use as a context manager, or call `close()`; `serve_forever()` returns after `kill` or `stop()`.
    """

    def __init__(self, policy: PolicyLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 api_token: str | None = None, max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
                 poll_interval_ms: int = 100, limits: RequestLimits | None = None, protocol: str = "n1.5"):
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, found {protocol!r}")
        self.policy = policy
        self.protocol = protocol
        # N1.6: {"video" | "state" | "language": {nested key: (flat key, T)}} the observations must match
        self._nested_keys = nested.expected_keys(policy.get_modality_config()) if protocol == "n1.6" else None
        self.api_token = api_token
        self.max_message_bytes = max_message_bytes
        self.poll_interval_ms = poll_interval_ms
        self.limits = limits or RequestLimits()
        self._policy_takes_seed = "seed" in inspect.signature(policy.get_action).parameters
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        host = host.strip("[]")
        try:
            self.endpoint = _bind(self._socket, host, port)  # e.g. tcp://127.0.0.1:5555
        except BindError:
            self.close()
            raise
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        if api_token is None and not _is_loopback(host):
            logger.warning("serving on %s beyond loopback without an API token: anyone who reaches this "
                           "port can drive the robot; set one with --api-token-file or GROOT_API_TOKEN",
                           self.endpoint)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> InferenceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask `serve_forever` to return (thread- and signal-handler-safe)."""
        self._stop.set()

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def serve_forever(self) -> None:
        logger.info("serving on %s (%s protocol, messages up to %.1f MiB, %s%s)", self.endpoint,
                    self.protocol, self.max_message_bytes / 2**20, self.limits,
                    ", api token required" if self.api_token else "")
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(self.poll_interval_ms):
                continue
            frames = self._socket.recv_multipart(copy=True)
            started = time.perf_counter()
            reply, endpoint = self._answer(frames)
            self._socket.send(reply)
            logger.info("%s answered in %.1f ms", endpoint, (time.perf_counter() - started) * 1e3)
        logger.info("server on %s stopped", self.endpoint)

    def serve_until_signalled(self) -> None:
        """`serve_forever` with SIGINT / SIGTERM stopping the loop cleanly (main thread only)."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda signum, frame: self.stop())
        try:
            self.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ---- one request ----------------------------------------------------------------------------------
    def _answer(self, frames: list[bytes]) -> tuple[bytes, str]:
        """frames of one request -> (reply bytes, endpoint name for the log). Never raises."""
        if len(frames) != 1:
            return self._error("?", f"a request must be a single message frame, found {len(frames)}"), "?"
        try:
            request = wire.parse_request(frames[0])
        except wire.ProtocolError as e:
            return self._error("?", str(e)), "?"
        if self.api_token is not None and not _same_token(request.api_token, self.api_token):
            return self._error(request.endpoint, "Unauthorized: Invalid API token"), request.endpoint
        try:
            result = self._dispatch(request)
            return wire.pack(result), request.endpoint
        except GrootError as e:  # the caller's mistake: a bad observation, an unknown endpoint
            return self._error(request.endpoint, str(e)), request.endpoint
        except Exception as e:  # a bug or a model failure: answer, and keep the traceback in the log
            logger.exception("%s failed", request.endpoint)
            return wire.error_response(f"{type(e).__name__}: {e}"), request.endpoint

    def _dispatch(self, request: wire.Request) -> Any:
        if request.endpoint == "ping":
            return {"status": "ok", "message": "Server is running"}
        if request.endpoint == "kill":
            self.stop()
            return {"status": "ok", "message": "Server is shutting down"}
        if request.endpoint == "get_action":
            action = self._get_action(self._flat_observation(request.data), request.seed)
            return action if self.protocol == "n1.5" else [nested.unprefix_actions(action), {}]
        if request.endpoint == "reset" and self.protocol == "n1.6":
            _options(request.data)  # groot's policies are stateless: nothing to reset
            return {}
        if request.endpoint == "get_modality_config":
            return self.policy.get_modality_config()
        raise wire.ProtocolError(f"unknown endpoint {request.endpoint!r}; expected one of "
                                 f"{', '.join(ENDPOINTS[self.protocol])} ({self.protocol} protocol)")

    def _flat_observation(self, data: dict) -> dict[str, Any]:
        """get_action's data -> the flat observation the policy takes, within the request limits."""
        if self.protocol == "n1.5":
            if "observation" in data and set(data) <= {"observation", "options"}:
                raise wire.ProtocolError("data: found an N1.6 {'observation', 'options'} request; this "
                                         "server speaks the N1.5 protocol (a flat observation as data)")
            observation = data
        else:
            unexpected = [key for key in data if key not in ("observation", "options")]
            if unexpected or "observation" not in data:
                raise wire.ProtocolError(
                    f"data: expected {{'observation': <nested observation>, 'options': map | None}} (N1.6 "
                    f"protocol), found keys {', '.join(map(repr, data)) or 'none'}")
            _options(data)
            observation = nested.flatten_observation(data["observation"], self._nested_keys)
        self.limits.check(observation)
        return observation

    def _get_action(self, observation: dict[str, Any], seed: int | None) -> dict[str, Any]:
        if seed is None:
            action = self.policy.get_action(observation)
        elif self._policy_takes_seed:
            action = self.policy.get_action(observation, seed=seed)
        else:
            raise wire.ProtocolError("'seed': this server's policy does not take a seed")
        if isinstance(action, dict):  # whatever the policy, no NaN / inf reaches a robot
            check_finite_actions(action)
        return action

    @staticmethod
    def _error(endpoint: str, message: str) -> bytes:
        logger.warning("%s rejected: %s", endpoint, message)
        return wire.error_response(message)


def _options(data: Any) -> dict | None:
    """The N1.6 "options" of a get_action / reset request's data (a map, or none for reset): a map or
    None, not used by groot's policies."""
    if data is not None and not isinstance(data, dict):
        raise wire.ProtocolError(f"'data': expected a map, found {type(data).__name__}")
    options = (data or {}).get("options")
    if options is not None and not isinstance(options, dict):
        raise wire.ProtocolError(f"data['options']: expected a map or null, "
                                 f"found {type(options).__name__}")
    return options


def check_bindable(host: str, port: int) -> None:
    """Raise BindError now if `host:port` cannot be bound (e.g. the port is in use), so that a server
    fails before it spends minutes loading a checkpoint."""
    context = zmq.Context()
    probe = context.socket(zmq.REP)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        _bind(probe, host.strip("[]"), port)
    finally:
        probe.close(linger=0)
        context.term()


def _bind(socket: zmq.Socket, host: str, port: int) -> str:
    """Bind `socket` to tcp://host:port (port 0: any free port) -> the bound endpoint."""
    if wire.is_ipv6(host):
        socket.setsockopt(zmq.IPV6, 1)
    address = f"tcp://{wire.tcp_host(host)}:{port if port else '*'}"
    try:
        socket.bind(address)
    except zmq.ZMQError as e:
        hint = ("is another server on that port? pick another --port" if e.errno == zmq.EADDRINUSE
                else "expected an address of this machine as --host")
        raise BindError(f"cannot bind the inference server to {address}: {zmq.strerror(e.errno)} "
                        f"({hint})") from e
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def _same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name or a wildcard: may reach beyond this machine
        return False
