"""`HOST:PORT` addresses as the command line writes them."""

from __future__ import annotations

from groot.errors import ConfigError


def parse_host_port(address: str, name: str = "address") -> tuple[str, int]:
    """"HOST:PORT" -> (host, port), split at the last colon: IPv6 hosts may be bracketed
    ("[::1]:5555") or not ("::1:5555"); brackets are kept (the server and client accept both).
    Raises ConfigError naming `name` (e.g. "--server") when the host is empty or the port is not an
    integer in [1, 65535]."""
    host, _, port = address.rpartition(":")
    if not host or host == "[]" or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name}: expected HOST:PORT with a port in [1, 65535], found {address!r}")
    return host, int(port)
