"""`edged watch` as a user runs it: against a real broker fed by a real Publisher."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from edged.publish.mosquitto import write_password_file
from edged.publish.payloads import Stats
from edged.publish.publisher import REPUBLISH_DELAY_S, Publisher
from edged.publish.settings import MqttSettings, PublishSettings, TlsSettings
from tests.fixtures.broker import REPO, Received, assert_valid_payloads, make_pki
from tests.fixtures.publisher_proc import PERSON, frame
from tests.fixtures.rawbroker import raw_server


def watch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edged", "watch", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def publisher(url: str, device: str = "pi1", **mqtt) -> Publisher:
    pub = Publisher(MqttSettings(brokers=[url], **mqtt), PublishSettings(), device_id=device, version="2.0")
    pub.start(backend="edgetpu:usb", model="ssd")
    assert pub.wait_connected(10), pub.last_error
    return pub


def test_json_passes_every_message_through(mosquitto):
    broker = mosquitto()
    url = f"mqtt://[::1]:{broker.port}"
    pub = publisher(url)
    pub.publish_frame("front", frame(1), [PERSON, PERSON], inference_ms=9.0, backend="edgetpu:usb", model="ssd")
    time.sleep(REPUBLISH_DELAY_S + 0.3)  # past the publisher's second sending of its state after connecting
    process = subprocess.Popen([sys.executable, "-m", "edged", "watch", "--broker", url, "--device", "pi1", "--json",
                                "--count", "5", "--timeout", "20"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = json.loads(process.stdout.readline())  # retained state arrives first
    pub.publish_frame("front", frame(2), [PERSON], inference_ms=9.5, backend="edgetpu:usb", model="ssd")
    pub.publish_stats(Stats(backend="edgetpu:usb", model="ssd", fps=7.5))
    out, err = process.stdout.read(), process.stderr.read()  # not communicate(): readline() buffered some
    process.wait(20)
    pub.stop()
    records = [first, *(json.loads(line) for line in out.splitlines())]
    assert process.returncode == 0, err
    assert len(records) == 5
    assert {"topic", "retain", "qos", "payload"} <= set(first)
    by_topic = {}
    for record in records:
        by_topic.setdefault(record["topic"], []).append(record)
    assert by_topic["edged/pi1/status"][0]["retain"] is True
    assert by_topic["edged/pi1/status"][0]["payload"]["backend"] == "edgetpu:usb"
    assert [r["payload"] for r in by_topic["edged/pi1/front/person"] if r["retain"]] == [2]
    assert by_topic["edged/pi1/front/detections"][0]["payload"]["seq"] == 2
    assert by_topic["edged/pi1/stats"][0]["payload"]["fps"] == 7.5
    received = [Received(r["topic"], json.dumps(r["payload"]).encode(), r["retain"], r["qos"]) for r in records]
    assert assert_valid_payloads(received) == 5


def test_plain_lines_for_pipes_and_device_filter(mosquitto):
    broker = mosquitto()
    url = f"mqtt://[::1]:{broker.port}"
    pi1, pi2 = publisher(url, "pi1"), publisher(url, "pi2")
    pi1.publish_frame("front", frame(1), [PERSON], inference_ms=9.0, backend="edgetpu:usb", model="ssd")
    pi2.set_state("degraded", backend="cpu:litert", model="ssd")
    time.sleep(0.3)
    everyone = watch("--broker", url, "--timeout", "1.5")
    only_pi2 = watch("--broker", url, "--device", "pi2", "--timeout", "1.5")
    pi1.stop()
    pi2.stop()
    assert everyone.returncode == 0, everyone.stderr
    lines = everyone.stdout.splitlines()
    assert any(line.startswith("pi1 status online backend=edgetpu:usb model=ssd version=2.0") for line in lines)
    assert any(line.startswith("pi2 status degraded backend=cpu:litert") for line in lines)
    assert "pi1 front person=1" in lines
    assert only_pi2.stdout and all(line.startswith("pi2 ") for line in only_pi2.stdout.splitlines())


def watch_on_a_terminal(url: str, timeout: str) -> tuple[int, str, str]:
    """`edged watch` with a pty as its stdout (so it draws its screen): exit code, all it drew, stderr."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "edged", "watch", "--broker", url, "--timeout",
                                timeout], cwd=REPO, stdout=follower, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    os.close(follower)
    screen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 5)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the pty closes when watch exits
            chunk = b""
        if not chunk:
            break
        screen += chunk
    code = process.wait(10)
    os.close(leader)
    return code, screen.decode(errors="replace"), process.stderr.read().decode(errors="replace")


def test_screen_on_a_terminal(mosquitto):
    broker = mosquitto()
    url = f"mqtt://[::1]:{broker.port}"
    pub = publisher(url)
    pub.publish_frame("front", frame(1), [PERSON, PERSON], inference_ms=9.0, backend="edgetpu:usb", model="ssd")
    pub.publish_stats(Stats(backend="edgetpu:usb", model="ssd", fps=7.5))
    time.sleep(0.3)
    code, text, _ = watch_on_a_terminal(url, "2")
    pub.stop()
    assert "\x1b[H\x1b[2J" in text  # redrawn, not scrolled
    last = text.rsplit("\x1b[H\x1b[2J", 1)[1]
    assert "pi1  ONLINE  backend edgetpu:usb" in last and "front: person 2" in last


def test_tls_and_password_like_the_publisher(mosquitto, tmp_path):
    pki = make_pki(tmp_path / "pki", ["IP:::1"])
    broker = mosquitto(tls=pki.server_tls(), password_file=write_password_file(tmp_path / "pw", {"edge": "Pa55"}))
    secret = tmp_path / "secret"
    secret.write_text("Pa55\n")
    secret.chmod(0o600)
    url = f"mqtts://[::1]:{broker.tls_port}"
    pub = publisher(url, tls=TlsSettings(ca_file=str(pki.ca)), username="edge", password_file=str(secret))
    result = watch("--broker", url, "--ca-file", str(pki.ca), "--username", "edge", "--password-file", str(secret),
                   "--json", "--count", "1", "--timeout", "10")
    pub.stop()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["topic"] == "edged/pi1/status"
    refused = watch("--broker", url, "--ca-file", str(pki.ca), "--timeout", "5")
    assert refused.returncode == 78 and "broker refused the connection: Not authorized" in refused.stderr
    wrong_ca = watch("--broker", url, "--ca-file", str(pki.other_ca), "--timeout", "5")
    assert wrong_ca.returncode == 78
    assert wrong_ca.stderr.strip().splitlines() == [wrong_ca.stderr.strip()]
    assert "TLS certificate verification failed" in wrong_ca.stderr


def test_bad_input_is_one_line_and_exit_78(tmp_path):
    loose = tmp_path / "password"
    loose.write_text("x\n")
    loose.chmod(0o644)
    cases = [
        (["--broker", "mqtt//[::1]:1883"], "malformed broker URL"),
        (["--broker", "amqp://[::1]:5672"], "unknown scheme 'amqp'"),
        (["--broker", "mqtt://no-such-broker.invalid:1883"], "cannot resolve broker host 'no-such-broker.invalid'"),
        (["--broker", "mqtt://[fe80::1]:1883"], "link-local broker address fe80::1 needs a zone"),
        (["--broker", "mqtts://[::1]:8883", "--ca-file", str(tmp_path / "nope.pem")], "nope.pem: no such file"),
        (["--broker", "mqtt://[::1]:1883", "--username", "u", "--password-file", str(loose)], "has mode 0644"),
        (["--broker", "mqtt://[::1]:1883", "--device", "a/b"], "device id 'a/b' cannot be an MQTT topic level"),
    ]
    for args, complaint in cases:
        result = watch(*args)
        assert result.returncode == 78, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edged watch: error: ") and complaint in lines[0], lines


def test_unreachable_broker_is_exit_69():
    result = watch("--broker", "mqtt://[::1]:9", "--broker", "mqtt://[::1]:7")
    assert result.returncode == 69
    assert result.stderr.strip() == ("edged watch: error: cannot reach the broker: mqtt://[::1]:9: connection refused; "
                                     "mqtt://[::1]:7: connection refused")


@pytest.mark.parametrize("flag", ["--password", "-p"])
def test_no_password_on_the_command_line(flag):
    result = watch("--broker", "mqtt://[::1]:1883", flag, "secret")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def hostile_broker(mosquitto):
    """A broker where some other client left a status with escape sequences and malformed messages."""
    broker = mosquitto()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("::1", broker.port)
    client.loop_start()
    status = {"state": "online", "version": "1.0", "backend": "\x1b]0;pwned\x07\x1b[2J",
              "model": "m\u202egnp.exe", "since": None}
    box = {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}
    cat = {"label": "cat", "class_id": 1, "score": "high", "box": box}
    detections = {"v": 1, "device": "pi1", "camera": "front", "seq": 1, "captured_at": "x",
                  "published_at": "x", "backend": "b", "model": "m", "inference_ms": 1.0,
                  "frame": {"width": 1, "height": 1}, "detections": [cat]}
    messages = {"edged/pi1/status": json.dumps(status).encode(),
                "edged/pi1/front/detections": json.dumps(detections).encode(),
                "edged/pi1/front/person": b"-3",
                "edged/pi1/front/car": b"2",
                "edged/pi1/stats": b"\x1b[2J not json"}
    for topic, payload in messages.items():
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    return f"mqtt://[::1]:{broker.port}"


def test_hostile_payloads_are_escaped_and_invalid_ones_shown_as_such(mosquitto):
    url = hostile_broker(mosquitto)
    lines = watch("--broker", url, "--timeout", "1.5")
    assert lines.returncode == 0, lines.stderr
    out = lines.stdout
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "pi1 status online backend=\\x1b]0;pwned\\x07\\x1b[2J model=m\\u202egnp.exe" in out
    assert "pi1 front detections INVALID" in out
    assert "Expected `float`, got `str` - at `$.detections[0].score`" in out
    assert "pi1 front count INVALID 2 bytes (not count.v1: Expected `int` >= 0)" in out
    assert "pi1 stats INVALID" in out and "pi1 front car=2" in out  # the valid ones still shown

    as_json = watch("--broker", url, "--json", "--timeout", "1.5")
    assert as_json.returncode == 0 and "\x1b" not in as_json.stdout and "\u202e" not in as_json.stdout
    records = {record["topic"]: record for record in map(json.loads, as_json.stdout.splitlines())}
    assert records["edged/pi1/status"]["payload"]["backend"] == "\x1b]0;pwned\x07\x1b[2J"  # exact for scripts
    assert "invalid" not in records["edged/pi1/status"]
    assert records["edged/pi1/front/detections"]["invalid"].startswith("not detections.v1: Expected `float`")
    assert "invalid" in records["edged/pi1/front/person"] and "invalid" not in records["edged/pi1/front/car"]


def test_the_screen_carries_no_escape_sequence_but_its_own(mosquitto):
    url = hostile_broker(mosquitto)
    code, text, errors = watch_on_a_terminal(url, "1.5")
    assert code == 0, errors
    assert "\x1b" not in text.replace("\x1b[H\x1b[2J", "") and "\x07" not in text
    last = text.rsplit("\x1b[H\x1b[2J", 1)[1]
    assert "backend \\x1b]0;pwned\\x07\\x1b[2J" in last and "INVALID messages: 3" in last


def test_a_broker_closing_after_connect_is_exit_69_with_the_fix():
    with raw_server("closes") as server:
        result = watch("--broker", server.url, timeout=20)
    assert result.returncode == 69
    assert result.stderr.strip().splitlines() == [
        f"edged watch: error: {server.url}: the broker closed the connection after the MQTT 5 CONNECT "
        'without a CONNACK; if it only speaks MQTT 3.1.1, set mqtt.protocol = "3.1.1" '
        "(edged watch: --protocol 3.1.1)"]
