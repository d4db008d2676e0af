"""MQTT: every record to a broker, for home automation and alerting (paho-mqtt).

Topics, with ``prefix`` (default ``loco``) and the stream's name::

    PREFIX/available          "online" while connected, "offline" (retained; also the will)
    PREFIX/STREAM/start       the start record, as JSON: the event is confirmed
    PREFIX/STREAM/update      the update record: the event's evidence files are written
    PREFIX/STREAM/end         the end record: final
    PREFIX/STREAM/stats       the stats records

QoS 1, in order, over one connection for all streams. Credentials come from the environment
(``LOCO_MQTT_USERNAME``, ``LOCO_MQTT_PASSWORD``), a CA file for TLS from ``LOCO_MQTT_CA_FILE``
(default: the system's). A broker that cannot be reached is warned about once; paho keeps
reconnecting and the messages wait (at most QUEUE_LIMIT, the newest beyond that are dropped
and counted) until it can.
"""

from __future__ import annotations

import json
import os
import secrets
import threading

from .base import Sink, log, split_address

DEFAULT_PORT, TLS_PORT = 1883, 8883
QUEUE_LIMIT = 10000  # messages waiting for the broker
CONNECT_WAIT_S = 5.0  # open() waits this long for the broker's answer
FLUSH_TIMEOUT_S = 5.0  # close() waits this long for the broker to acknowledge what is sent
KEEPALIVE_S = 30


class MqttSink(Sink):
    """Publishes each record to the broker at ``address`` (``HOST[:PORT]``)."""

    name = "mqtt"

    def __init__(self, address: str, prefix: str = "loco", tls: bool = False) -> None:
        self.host, self.port = split_address(address, TLS_PORT if tls else DEFAULT_PORT, "--mqtt")
        if not prefix or any(c in prefix for c in "#+") or prefix.startswith("/"):
            raise ValueError(
                f"--mqtt-prefix '{prefix}' must be a topic without wildcards (# +) or a "
                "leading '/', e.g. loco or home/cameras"
            )
        self.prefix = prefix.rstrip("/")
        self.tls = tls
        try:
            from paho.mqtt import client as mqtt
        except ImportError:
            raise ValueError(
                "--mqtt needs paho-mqtt: pip install 'loco-stream[monitoring]'"
            ) from None
        self._mqtt = mqtt
        self._client = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified as the broker acknowledges
        self._sent = 0  # messages handed to paho
        self._acknowledged = 0  # messages the broker acknowledged
        self._dropped = 0  # messages refused because QUEUE_LIMIT were waiting
        self._refusal_warned = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def open(self) -> None:
        mqtt = self._mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"loco-stream-{secrets.token_hex(4)}"
        )
        username = os.environ.get("LOCO_MQTT_USERNAME")
        if username:
            client.username_pw_set(username, os.environ.get("LOCO_MQTT_PASSWORD"))
        if self.tls:
            client.tls_set(ca_certs=os.environ.get("LOCO_MQTT_CA_FILE"))
        client.max_queued_messages_set(QUEUE_LIMIT)
        client.reconnect_delay_set(1, 30)
        client.will_set(f"{self.prefix}/available", "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        try:
            client.connect(self.host, self.port, KEEPALIVE_S)
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            log.warning(
                f"mqtt: cannot reach the broker at {self.where} ({reason}); detection goes on, "
                f"messages wait (up to {QUEUE_LIMIT}) and are sent once it can be reached: "
                "check the host and port (and --mqtt-tls)"
            )
            client.connect_async(self.host, self.port, KEEPALIVE_S)
            client.loop_start()
            return
        client.loop_start()
        self._connected.wait(CONNECT_WAIT_S)  # the broker's answer (CONNACK)

    def publish(self, stream: str, record: dict) -> None:
        topic = f"{self.prefix}/{stream}/{record.get('type', 'record')}"
        self._send(topic, json.dumps(record), retain=False)

    def counters(self) -> dict:
        with self._lock:
            return {
                "connected": self._connected.is_set(),
                "acknowledged": self._acknowledged,
                "waiting": self._sent - self._acknowledged,
                "dropped": self._dropped,
            }

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._connected.is_set():  # what is sent gets a few seconds to be acknowledged
            self._send(f"{self.prefix}/available", "offline", retain=True, client=client)
            with self._settled:
                self._settled.wait_for(lambda: self._acknowledged >= self._sent, FLUSH_TIMEOUT_S)
        client.disconnect()
        client.loop_stop()
        waiting = self.counters()["waiting"]
        if waiting:
            log.warning(f"mqtt: {waiting} messages were not delivered to {self.where}")

    def _send(self, topic: str, payload: str, retain: bool, client=None) -> None:
        info = (client or self._client).publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
                self._dropped += 1
            else:
                self._sent += 1

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if not self._refusal_warned:
                self._refusal_warned = True
                log.warning(
                    f"mqtt: the broker at {self.where} refused the connection ({reason_code}); "
                    "check LOCO_MQTT_USERNAME and LOCO_MQTT_PASSWORD"
                )
            return
        self._send(f"{self.prefix}/available", "online", retain=True, client=client)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._settled:
            self._acknowledged += 1
            self._settled.notify_all()
