"""`edged watch`: subscribe to a device's (or every device's) topics and show what it publishes.

For people checking a device: live per-label counts, fps, backend and status
changes — a redrawn screen on a terminal, one line per event otherwise.
`--json` passes every message through as one JSON object per line, for scripts.
The connection uses the publisher's own modules (URLs, TLS, credentials), so
a broker `edged watch` reaches is one the daemon reaches with the same settings.
Payloads are validated against their schemas and escaped before they are shown
(edged/publish/watchview.py): any client of the broker can write them.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import time
from pathlib import Path

#: MQTT 5 Maximum Packet Size asked of the broker: room for a full-resolution JPEG snapshot, not for a
#: message big enough to exhaust the memory of the machine someone watches from.
WATCH_PACKET_BYTES = 16 * 1024 * 1024


def configure(parser: argparse.ArgumentParser) -> None:
    # No abbreviations: `--password SECRET` must not be taken for `--password-file SECRET`.
    parser.allow_abbrev = False
    parser.add_argument("--broker", action="append", metavar="URL",
                        help="broker URL, e.g. mqtt://[2001:db8::10]:1883 or mqtts://[fe80::1%%25eth0]:8883 "
                             "(repeat for failover; default: from the config, else mqtt://[::1]:1883)")
    parser.add_argument("--device", metavar="ID", help="device id to watch (default: every device)")
    parser.add_argument("--json", action="store_true",
                        help="print every message as one JSON object per line: topic, retain, qos, payload")
    parser.add_argument("--config", metavar="FILE",
                        help="take [mqtt], [publish] and the device id from this edged config file "
                             "(default: /etc/edged/edged.toml when readable and no --broker is given)")
    parser.add_argument("--topic-prefix", metavar="TEMPLATE", help="topic prefix template (edged/{device_id})")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], help="MQTT version")
    parser.add_argument("--address-family", choices=["any", "ipv6", "ipv4"], help="for broker host names")
    tls = parser.add_argument_group("TLS and login (the password is only ever read from a file)")
    tls.add_argument("--ca-file", metavar="PEM", help="CA certificates for mqtts:// (default: system store)")
    tls.add_argument("--cert-file", metavar="PEM", help="client certificate")
    tls.add_argument("--key-file", metavar="PEM", help="client key")
    tls.add_argument("--fingerprint", metavar="SHA256", help="pinned SHA-256 fingerprint of the broker certificate")
    tls.add_argument("--insecure", action="store_true", help="do not verify the broker certificate (warned)")
    tls.add_argument("--username", help="MQTT username")
    tls.add_argument("--password-file", metavar="FILE", help="file holding the MQTT password (mode 0600)")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="exit after this many seconds")


def _settings(args: argparse.Namespace):
    """MqttSettings, topic prefix template and device id from the config file and the flags."""
    import msgspec

    from edged.publish.settings import MqttSettings, PublishSettings

    mqtt_settings, publish, device = MqttSettings(), PublishSettings(), args.device
    path = args.config
    if path is None and not args.broker and os.access("/etc/edged/edged.toml", os.R_OK):
        path = "/etc/edged/edged.toml"
    if path is not None:
        from edged.config import load_config

        config = load_config(Path(path))
        mqtt_settings, publish = config.mqtt, config.publish
        if device is None and args.config is not None:
            device = config.device_id
    replace = msgspec.structs.replace
    tls_flags = {"ca_file": args.ca_file, "cert_file": args.cert_file, "key_file": args.key_file,
                 "fingerprint_sha256": args.fingerprint, "insecure": args.insecure or None}
    tls = replace(mqtt_settings.tls, **{k: v for k, v in tls_flags.items() if v is not None})
    flags = {"brokers": args.broker, "protocol": args.protocol, "address_family": args.address_family,
             "username": args.username, "password_file": args.password_file}
    mqtt_settings = replace(mqtt_settings, tls=tls, **{k: v for k, v in flags.items() if v is not None})
    return mqtt_settings, args.topic_prefix or publish.topic_prefix, device or "+"


def main(args: argparse.Namespace) -> int:
    from edged.errors import ConfigError, UnavailableError
    from edged.publish.connection import Connection
    from edged.publish.topics import Topics
    from edged.publish.watchview import make_view

    mqtt_settings, prefix, device = _settings(args)
    topics = Topics(prefix, device)
    connection = Connection(mqtt_settings, client_id=f"edged-watch-{os.getpid()}", persistent=False,
                            max_packet_bytes=WATCH_PACKET_BYTES)
    inbox: queue.Queue = queue.Queue()
    connection.client.on_message = lambda client, userdata, message: inbox.put(message)
    connection.on_connected = lambda: connection.client.subscribe(topics.everything, qos=1)
    view = make_view("json" if args.json else ("screen" if sys.stdout.isatty() else "lines"), topics,
                     broker=str(connection.target))
    link_log = logging.getLogger("edged.mqtt")
    link_log.disabled = True  # how the first connect went is this command's own one line, not a log line too
    try:
        connection.connect_now()
    except BaseException:
        link_log.disabled = False
        raise
    try:
        if not connection.wait_connected(mqtt_settings.connect_timeout_seconds + 5):
            if connection.refused:
                raise ConfigError(connection.refused)
            raise UnavailableError(connection.closed_early or f"{connection.target}: no answer to CONNECT")
        link_log.disabled = False  # later disconnects and reconnects are worth a line on stderr
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        seen = 0
        while args.count is None or seen < args.count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                message = inbox.get(timeout=min(0.25, remaining) if remaining is not None else 0.25)
            except queue.Empty:
                view.tick(connected=connection.connected.is_set())
                continue
            if topics.parse(message.topic) is None:
                continue
            seen += 1
            view.show(message)
    finally:
        link_log.disabled = False
        connection.stop()
        view.close()
    return 0
