import io
import json
import pickle
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from groot.data.modality import ModalityConfig
from groot.serve import protocol


@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3),
    np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    np.array([True, False, True]),
    np.array(7, dtype=np.int64),
    np.zeros((0, 5), dtype=np.float32),
    np.array(["pick the cube", "place it"]),
])
def test_arrays_round_trip_exactly(array):
    decoded = protocol.unpack(protocol.pack({"x": array}))["x"]
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.writeable


def test_nested_values_and_modality_config_round_trip():
    config = ModalityConfig(delta_indices=[-2, -1, 0], modality_keys=["state.arm", "state.gripper"])
    value = {"modality": {"state": config}, "texts": ["a", "b"], "n": 3, "f": np.float32(0.5),
             "batch": [np.ones((2, 2), np.float32)]}
    decoded = protocol.unpack(protocol.pack(value))
    assert decoded["modality"]["state"] == config
    assert decoded["texts"] == ["a", "b"] and decoded["n"] == 3 and decoded["f"] == 0.5
    np.testing.assert_array_equal(decoded["batch"][0], np.ones((2, 2), np.float32))


def test_wire_format_is_the_official_one():
    config = ModalityConfig(delta_indices=[0], modality_keys=["video.front"])
    raw = msgpack.unpackb(protocol.pack({"a": np.arange(3, dtype=np.int16), "m": config}))
    assert set(raw["a"]) == {"__ndarray_class__", "as_npy"} and raw["a"]["__ndarray_class__"] is True
    np.testing.assert_array_equal(np.load(io.BytesIO(raw["a"]["as_npy"]), allow_pickle=False), [0, 1, 2])
    assert raw["m"]["__ModalityConfig_class__"] is True
    assert json.loads(raw["m"]["as_json"]) == {"delta_indices": [0], "modality_keys": ["video.front"]}


def test_decodes_a_message_built_the_official_way():
    buffer = io.BytesIO()
    np.save(buffer, np.full((1, 7), 0.25, np.float32), allow_pickle=False)
    message = msgpack.packb({"endpoint": "get_action", "data": {
        "state.arm": {"__ndarray_class__": True, "as_npy": buffer.getvalue()},
        "language": ["do it"]}})
    request = protocol.parse_request(message)
    assert request.endpoint == "get_action" and request.api_token is None
    np.testing.assert_array_equal(request.data["state.arm"], np.full((1, 7), 0.25, np.float32))


def _npy_message(payload: bytes) -> bytes:
    return msgpack.packb({"x": {"__ndarray_class__": True, "as_npy": payload}})


def _object_array_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _truncated_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 4), np.float32))
    return buffer.getvalue()[:-3]


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(3))
    return buffer.getvalue()


@pytest.mark.parametrize("payload, message", [
    (_object_array_npy(), "object array"),
    (pickle.dumps(np.zeros(3)), "not an .npy file"),
    (_npz_bytes(), "not an .npy file"),
    (_truncated_npy(), "found 61 bytes"),
    ("text, not bytes", "must be bytes"),
])
def test_unsafe_or_broken_arrays_are_refused(payload, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.unpack(_npy_message(payload))


def test_a_huge_declared_shape_is_refused_without_allocating():
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    with pytest.raises(protocol.ProtocolError, match="declares shape"):
        protocol.unpack(_npy_message(header.getvalue() + b"\0" * 16))


def test_object_arrays_are_not_encoded():
    with pytest.raises(ValueError):
        protocol.pack({"x": np.array([object()], dtype=object)})


@pytest.mark.parametrize("message, match", [
    (b"\xc1\xff\x00", "malformed msgpack"),
    (msgpack.packb({"a": 1}) + b"trailing", "malformed msgpack"),
    (msgpack.packb([1, 2]), "must be a map"),
    (msgpack.packb({"endpoint": 5}), "'endpoint' must be a string"),
    (msgpack.packb({"endpoint": "ping", "api_token": 123}), "'api_token' must be a string"),
    (msgpack.packb({"endpoint": "get_action"}), "needs 'data'"),
    (msgpack.packb({"data": [1]}), "needs 'data'"),
    (msgpack.packb({"m": {"__ModalityConfig_class__": True, "as_json": "{not json"}}), "not JSON"),
    (msgpack.packb({"m": {"__ModalityConfig_class__": True, "as_json": '{"delta_indices": ["a"], '
                                                                       '"modality_keys": []}'}}),
     "malformed ModalityConfig"),
])
def test_malformed_requests_raise_protocol_errors(message, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.parse_request(message)


def test_request_without_endpoint_means_get_action():
    request = protocol.parse_request(msgpack.packb({"data": {"k": 1}, "api_token": "t"}))
    assert (request.endpoint, request.data, request.api_token) == ("get_action", {"k": 1}, "t")
    ping = protocol.unpack(protocol.pack_request("ping", api_token="t"))
    assert ping == {"endpoint": "ping", "api_token": "t"}


def test_client_import_does_not_import_torch():
    code = "import groot.serve.client, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seed", [True, -1, -2**63, 1.5, "7", [1]])
def test_a_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(protocol.ProtocolError, match="'seed' must be an integer in"):
        protocol.parse_request(msgpack.packb({"endpoint": "get_action", "data": {}, "seed": seed}))


def test_seeds_up_to_two_to_the_64_are_accepted():
    assert protocol.parse_request(protocol.pack_request("get_action", {}, seed=2**64 - 1)).seed == 2**64 - 1
    assert protocol.parse_request(protocol.pack_request("get_action", {})).seed is None


@pytest.mark.parametrize("value, path", [
    ({"data": {"video.a": [np.zeros(2), {"__ndarray_class__": True, "as_npy": b"no"}]}},
     r"data\['video\.a'\]\[1\]: 'as_npy' is not an \.npy file"),
    ({"data": {"m": {"__ModalityConfig_class__": "yes", "as_json": "{}"}}},
     r"data\['m'\]: malformed encoding: expected '__ModalityConfig_class__': true, found 'yes'"),
    ({"__ndarray_class__": False, "as_npy": b""}, r"message: malformed encoding"),
])
def test_malformed_encodings_name_their_path(value, path):
    with pytest.raises(protocol.ProtocolError, match=path):
        protocol.unpack(msgpack.packb(value, default=protocol._encode_custom))
