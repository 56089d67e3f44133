"""Wire format of the inference service: msgpack with the official custom encodings, shared by the N1.5
(spec 9) and N1.6 (spec 6.2) protocols.

Light on purpose (numpy, msgpack and the torch-free `groot.data.modality` only), so a robot-side
client never imports torch.

- numpy array  <-> `{"__ndarray_class__": True, "as_npy": <bytes of np.save(..., allow_pickle=False)>}`
- ModalityConfig <-> `{"__ModalityConfig_class__": True, "as_json": '{"delta_indices": [...],
  "modality_keys": [...]}'}`
- request  `{"endpoint": str, "data": dict (get_action; N1.6 reset), "api_token": str (when one is
  set), "seed": int (optional, get_action only: the same seed and observation give the same action
  chunk)}`; a request without "endpoint" means `get_action`. Servers that do not know "seed" ignore it.
  get_action's data: N1.5 the flat observation; N1.6 `{"observation": nested, "options": map | None}`.
- response the endpoint's result (N1.6 get_action: `[actions, info]`), or `{"error": str}`.

Decoding never unpickles: `.npy` payloads are parsed header-first, object dtypes are refused and the
payload length must match the declared shape exactly. A malformed encoding is reported with the path of
its key (e.g. `data['state.arm']: ...`).
"""

from __future__ import annotations

import io
import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from groot.data.modality import ModalityConfig
from groot.errors import DatasetError, GrootError

NDARRAY_TAG = "__ndarray_class__"
MODALITY_CONFIG_TAG = "__ModalityConfig_class__"
DEFAULT_ENDPOINT = "get_action"
ENDPOINTS_WITH_DATA = ("get_action",)

_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the server's default --max-message-mb (64)

class ProtocolError(GrootError, ValueError):
    """A message that is not valid msgpack or does not follow the service's wire format."""


# ---- values ---------------------------------------------------------------------------------------
def _encode_custom(obj: Any) -> Any:
    """msgpack `default` hook: called for every object msgpack cannot pack natively."""
    if isinstance(obj, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)  # object arrays raise ValueError here
        return {NDARRAY_TAG: True, "as_npy": buffer.getvalue()}
    if isinstance(obj, ModalityConfig):
        return {MODALITY_CONFIG_TAG: True, "as_json": obj.to_json()}
    if isinstance(obj, np.generic):  # numpy scalars (np.float32(1.0), np.bool_) -> Python scalars
        return obj.item()
    raise TypeError(f"cannot encode a value of type {type(obj).__name__} for the inference service")


def _decode_ndarray(payload: Any) -> np.ndarray:
    if not isinstance(payload, bytes):
        raise ProtocolError(f"'as_npy' must be bytes of an .npy file, found {type(payload).__name__}")
    buffer = io.BytesIO(payload)
    try:
        version = np.lib.format.read_magic(buffer)
    except ValueError as e:
        raise ProtocolError(f"'as_npy' is not an .npy file: {e}") from e
    reader = _NPY_HEADER_READERS.get(version)
    if reader is None:
        raise ProtocolError(f"'as_npy' has .npy format version {version}; expected 1.0 or 2.0")
    try:
        shape, fortran_order, dtype = reader(buffer)
    except ValueError as e:
        raise ProtocolError(f"'as_npy' has a malformed .npy header: {e}") from e
    if dtype.hasobject:
        raise ProtocolError(f"'as_npy' holds an object array (dtype {dtype}); only plain dtypes are accepted")
    data = payload[buffer.tell():]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(f"'as_npy' declares shape {shape} of {dtype} ({expected} bytes of data), "
                            f"found {len(data)} bytes")
    flat = np.frombuffer(data, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran_order else "C").copy()


def _decode_modality_config(payload: Any) -> ModalityConfig:
    if not isinstance(payload, str):
        raise ProtocolError(f"'as_json' of a ModalityConfig must be a JSON string, "
                            f"found {type(payload).__name__}")
    try:
        fields = json.loads(payload)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"'as_json' of a ModalityConfig is not JSON: {e}") from e
    if not isinstance(fields, dict):
        raise ProtocolError(f"'as_json' of a ModalityConfig must be a JSON object, found {payload[:80]!r}")
    try:
        return ModalityConfig.from_dict(fields)
    except DatasetError as e:
        raise ProtocolError(f"malformed ModalityConfig: {e}") from e


def _decode_custom(obj: dict) -> Any:
    """A decoded map -> the array or ModalityConfig it encodes, or the map itself."""
    for tag, decode, payload in ((NDARRAY_TAG, _decode_ndarray, "as_npy"),
                                 (MODALITY_CONFIG_TAG, _decode_modality_config, "as_json")):
        if tag not in obj:
            continue
        if obj[tag] is not True:
            raise ProtocolError(f"malformed encoding: expected {tag!r}: true, found {obj[tag]!r:.80}")
        if payload not in obj:
            raise ProtocolError(f"malformed encoding: {tag!r} without its {payload!r} field")
        return decode(obj[payload])
    return obj


@dataclass
class _Malformed:
    """Stands in the decoded tree for a map that could not be decoded, so its path can be reported."""

    message: str


def _path_of(tree: Any, target: _Malformed) -> str:
    """`data['state.arm'][0]`-style path of `target` inside `tree` (iterative: no recursion limit)."""
    stack: list[tuple[Any, str]] = [(tree, "")]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path or "message"
        if isinstance(node, dict):
            stack.extend((value, f"{path}[{key!r}]" if path else str(key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
    return "message"


def pack(value: Any) -> bytes:
    """Any msgpack-able value, numpy arrays and ModalityConfigs included -> bytes."""
    return msgpack.packb(value, default=_encode_custom, use_bin_type=True)


def unpack(message: bytes) -> Any:
    """bytes -> value, decoding arrays and ModalityConfigs; raises ProtocolError on anything malformed,
    naming the path of a malformed encoding."""
    malformed: list[_Malformed] = []

    def decode_or_mark(obj: dict) -> Any:  # msgpack `object_hook`: every decoded map, innermost first
        try:
            return _decode_custom(obj)
        except ProtocolError as e:
            malformed.append(_Malformed(str(e)))
            return malformed[-1]

    try:
        value = msgpack.unpackb(message, object_hook=decode_or_mark, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise ProtocolError(f"malformed msgpack message ({len(message)} bytes): {e}") from e
    if malformed:
        raise ProtocolError(f"{_path_of(value, malformed[0])}: {malformed[0].message}")
    return value


# ---- requests and responses ----------------------------------------------------------------------
@dataclass
class Request:
    endpoint: str
    data: dict | None
    api_token: str | None
    seed: int | None = None


def pack_request(endpoint: str, data: dict | None = None, api_token: str | None = None,
                 seed: int | None = None) -> bytes:
    message: dict[str, Any] = {"endpoint": endpoint}
    if data is not None:
        message["data"] = data
    if api_token is not None:
        message["api_token"] = api_token
    if seed is not None:
        message["seed"] = seed
    return pack(message)


def parse_request(message: bytes) -> Request:
    """Decode and check the envelope of a request (not the observation inside it)."""
    request = unpack(message)
    if not isinstance(request, dict):
        raise ProtocolError(f"a request must be a map with an 'endpoint' key, found {type(request).__name__}")
    endpoint = request.get("endpoint", DEFAULT_ENDPOINT)
    if not isinstance(endpoint, str):
        raise ProtocolError(f"'endpoint' must be a string, found {type(endpoint).__name__}")
    token = request.get("api_token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError(f"'api_token' must be a string, found {type(token).__name__}")
    data = request.get("data")
    if endpoint in ENDPOINTS_WITH_DATA and not isinstance(data, dict):
        raise ProtocolError(f"endpoint {endpoint!r} needs 'data': a map, found {type(data).__name__}")
    seed = request.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ProtocolError(f"'seed' must be an integer in [0, 2**64), found {seed!r:.80}")
    return Request(endpoint=endpoint, data=data, api_token=token, seed=seed)


def error_response(message: str) -> bytes:
    return pack({"error": message})


# ---- addresses ------------------------------------------------------------------------------------
def is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def tcp_host(host: str) -> str:
    """The host as a ZeroMQ tcp:// address writes it: IPv6 literals in brackets."""
    host = host.strip("[]")
    return f"[{host}]" if is_ipv6(host) else host

