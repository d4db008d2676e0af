"""What a sink is: something beside the JSON lines that gets every record, and may fail.

A sink never stops detection and never costs a JSON line: `Monitor` writes the line first, then
hands the record to each sink, and a sink that raises is counted and warned about, not obeyed.
Settings that cannot work (a malformed URL or address) are a `ValueError` when the sink is made;
what only starting shows (a port in use, a folder that cannot be written) is a `SinkError` from
``open()``. Both name the problem and what to do, in one line.
"""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger("loco_stream.sinks")


class SinkError(RuntimeError):
    """A sink that cannot start; the message names the problem and what to do."""


class Sink:
    """Gets each record (docs/output.md, docs/monitoring.md) of each stream, in order.

    ``publish`` runs in the thread that made the record and must not wait on the network: a sink
    queues its work for a thread of its own.
    """

    name = "sink"  # in messages and as its key in the stats record

    def open(self) -> None:
        """Connect, bind or create what the sink needs; `SinkError` if it cannot."""

    def publish(self, stream: str, record: dict) -> None:
        """Take one record of ``stream``."""

    def counters(self) -> dict:
        """What it did so far (for the stats record)."""
        return {}

    def close(self) -> None:
        """Deliver what it can within a few seconds, then let go of everything."""


def split_address(address: str, default_port: int, what: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[V6]:PORT`` for IPv6) as (host, port); a ValueError naming ``what``."""
    host, port = address.strip(), str(default_port)
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{what} '{address}' is not HOST[:PORT] ([IPv6]:PORT for IPv6)")
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"{what} '{address}' is not HOST[:PORT] with a port from 0 to 65535, "
            f"e.g. 127.0.0.1:{default_port}"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
