"""MQTT and webhooks while the other side is down: what waits is delivered once, in order, when
it comes back (a real mosquitto broker, a real HTTP receiver); a full queue drops and counts."""

from __future__ import annotations

from pathlib import Path

from loco_stream.sinks import MqttSink, WebhookSink
from tests.test_sinks_support import Broker, Receiver, Subscriber, wait_for

RECORDS = [
    {"type": kind, "id": i, "label": "dog", "start": float(i), "score": 0.5, "emitted_at": i + 1.0}
    for i in range(12)
    for kind in ("start", "end")
]


def test_mqtt_messages_wait_for_the_broker_and_arrive_once_in_order(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port, "home/#", persistent=True)  # its session is kept
    broker.stop()  # the broker is down when the stream begins
    sink = MqttSink(f"127.0.0.1:{broker.port}", prefix="home")
    sink.open()
    try:
        for record in RECORDS:
            sink.publish("door", record)
        assert sink.counters() == {
            "connected": False,
            "acknowledged": 0,
            "waiting": 24,
            "dropped": 0,
        }
        broker.start()  # back: the sink reconnects and delivers; the subscriber's session gets it
        wait_for(lambda: len(subscriber.records("home")) >= len(RECORDS), "the waiting messages")
        assert subscriber.records("home") == [(f"home/door/{r['type']}", r) for r in RECORDS]
        wait_for(lambda: sink.counters()["waiting"] == 0, "the broker's acknowledgements")
    finally:
        sink.close()
        subscriber.stop()
        broker.stop()
    availability = [
        payload for topic, payload, _ in subscriber.messages if topic == "home/available"
    ]
    assert availability == ["online", "offline"]


def test_webhook_records_wait_for_the_receiver_and_arrive_once_in_order() -> None:
    receiver = Receiver()  # its port is chosen, nothing listens yet
    sink = WebhookSink(receiver.url)
    sink.open()
    try:
        for record in RECORDS:
            sink.publish("door", record)
        wait_for(lambda: sink.counters()["retries"] >= 2, "two failed tries")
        receiver.start()
        wait_for(lambda: len(receiver.received) >= len(RECORDS), "the waiting records")
    finally:
        sink.close()
        receiver.stop()
    assert [body for _, body in receiver.received] == RECORDS
    assert [sequence for sequence, _ in receiver.received] == list(range(1, len(RECORDS) + 1))
    counters = sink.counters()
    assert counters["delivered"] == len(RECORDS) and counters["dropped"] == 0


def test_a_webhook_receiver_down_too_long_costs_the_oldest_records_counted() -> None:
    receiver = Receiver()
    sink = WebhookSink(receiver.url, queue_limit=5)
    sink.open()
    try:
        for record in RECORDS[:8]:
            sink.publish("door", record)
        receiver.start()
        wait_for(lambda: len(receiver.received) >= 5, "the records kept")
    finally:
        sink.close()
        receiver.stop()
    assert [body for _, body in receiver.received] == RECORDS[3:8]
    assert sink.counters()["dropped"] == 3
