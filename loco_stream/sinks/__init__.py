"""Where events go besides the JSON lines, for people who monitor streams (docs/monitoring.md):
evidence files per event, MQTT, webhooks and a live page, each optional, none able to stop
detection or cost a JSON line.

    from loco_stream import Detector
    from loco_stream.sinks import EvidenceRecorder, LivePage, MqttSink, WebhookSink

    detector = Detector(sinks=[EvidenceRecorder("evidence"), MqttSink("127.0.0.1"),
                               WebhookSink("http://127.0.0.1:8000/events"),
                               LivePage("127.0.0.1:8080", evidence_folder="evidence")])
"""

from loco_stream.sinks.base import Sink, SinkError
from loco_stream.sinks.evidence import EvidenceRecorder
from loco_stream.sinks.live_page import LivePage
from loco_stream.sinks.monitor import Monitor
from loco_stream.sinks.mqtt import MqttSink
from loco_stream.sinks.webhook import WebhookSink

__all__ = [
    "EvidenceRecorder",
    "LivePage",
    "Monitor",
    "MqttSink",
    "Sink",
    "SinkError",
    "WebhookSink",
]
