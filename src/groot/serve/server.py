"""ZeroMQ REP inference server speaking the official GR00T protocol (spec 9).

Endpoints: `ping`, `kill`, `get_action` (observation dict -> action dict), `get_modality_config`.
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

from groot.errors import GrootError
from groot.finite import check_finite_actions
from groot.policy_protocol import PolicyLike
from groot.serve import protocol
from groot.serve.limits import RequestLimits

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
ENDPOINTS = ("ping", "kill", "get_action", "get_modality_config")


class BindError(GrootError, OSError):
    """The server's address cannot be bound (port in use, no such interface, malformed host)."""


class InferenceServer:
    """Serve `policy` on tcp://host:port. `port=0` picks a free port (read it from `.port`); `host` may be
    an IPv4 or IPv6 address (`::1`, `[::1]`) or a name. Binding beyond loopback without `api_token` logs
    a warning. Raises BindError when the address cannot be bound.

    Use as a context manager, or call `close()`; `serve_forever()` returns after `kill` or `stop()`.
    """

    def __init__(self, policy: PolicyLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 api_token: str | None = None, max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES,
                 poll_interval_ms: int = 100, limits: RequestLimits | None = None):
        self.policy = policy
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
        logger.info("serving on %s (messages up to %.1f MiB, %s%s)", self.endpoint,
                    self.max_message_bytes / 2**20, self.limits,
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
            request = protocol.parse_request(frames[0])
        except protocol.ProtocolError as e:
            return self._error("?", str(e)), "?"
        if self.api_token is not None and not _same_token(request.api_token, self.api_token):
            return self._error(request.endpoint, "Unauthorized: Invalid API token"), request.endpoint
        try:
            if request.endpoint == "get_action":
                self.limits.check(request.data)
            result = self._dispatch(request)
            return protocol.pack(result), request.endpoint
        except GrootError as e:  # the caller's mistake: a bad observation, an unknown endpoint
            return self._error(request.endpoint, str(e)), request.endpoint
        except Exception as e:  # a bug or a model failure: answer, and keep the traceback in the log
            logger.exception("%s failed", request.endpoint)
            return protocol.error_response(f"{type(e).__name__}: {e}"), request.endpoint

    def _dispatch(self, request: protocol.Request) -> Any:
        if request.endpoint == "ping":
            return {"status": "ok", "message": "Server is running"}
        if request.endpoint == "kill":
            self.stop()
            return {"status": "ok", "message": "Server is shutting down"}
        if request.endpoint == "get_action":
            if request.seed is None:
                action = self.policy.get_action(request.data)
            elif self._policy_takes_seed:
                action = self.policy.get_action(request.data, seed=request.seed)
            else:
                raise protocol.ProtocolError("'seed': this server's policy does not take a seed")
            if isinstance(action, dict):  # whatever the policy, no NaN / inf reaches a robot
                check_finite_actions(action)
            return action
        if request.endpoint == "get_modality_config":
            return self.policy.get_modality_config()
        raise protocol.ProtocolError(f"unknown endpoint {request.endpoint!r}; "
                                     f"expected one of {', '.join(ENDPOINTS)}")

    @staticmethod
    def _error(endpoint: str, message: str) -> bytes:
        logger.warning("%s rejected: %s", endpoint, message)
        return protocol.error_response(message)


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
    if protocol.is_ipv6(host):
        socket.setsockopt(zmq.IPV6, 1)
    address = f"tcp://{protocol.tcp_host(host)}:{port if port else '*'}"
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
