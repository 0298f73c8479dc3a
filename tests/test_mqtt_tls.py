"""TLS and login against a real mosquitto on [::1]: verified by default, pinned, insecure (warned),
client certificates, password files and systemd credentials — and bad files as one-line ConfigErrors."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest

from edged.errors import ConfigError
from edged.publish.mosquitto import write_password_file
from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings, TlsSettings
from tests.fixtures.broker import Subscriber, make_pki

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki", ["IP:::1", "DNS:localhost"])


def publisher(url: str, *, environ: dict | None = None, **mqtt) -> Publisher:
    settings = MqttSettings(brokers=[url], reconnect_min_seconds=0.2, reconnect_max_seconds=0.5, **mqtt)
    return Publisher(settings, PublishSettings(), device_id="pi1", version="1.0", environ=environ or {})


def run(pub: Publisher, seconds: float = 10) -> bool:
    pub.start(backend="cpu", model="m")
    return pub.wait_connected(seconds)


def edged_clients(broker) -> int:
    return broker.log_tail().count(" as edged-pi1 ")


def test_tls_with_client_certificate(mosquitto, pki):
    broker = mosquitto(tls=pki.server_tls(require_certificate=True))
    sub = Subscriber("::1", broker.port, ("edged/pi1/status",))
    url = f"mqtts://[::1]:{broker.tls_port}"
    with_cert = publisher(url, tls=TlsSettings(ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                                               key_file=str(pki.client_key)))
    assert run(with_cert), with_cert.last_error
    assert sub.wait_topic("edged/pi1/status")[0].json()["state"] == "online"
    with_cert.stop()
    sub.stop()

    without_cert = publisher(url, tls=TlsSettings(ca_file=str(pki.ca)))
    assert not run(without_cert, 3)  # the broker requires a client certificate
    without_cert.stop(timeout=0.2)


def test_wrong_ca_is_one_clear_error_and_never_plaintext(mosquitto, pki, caplog):
    broker = mosquitto(tls=pki.server_tls())
    sub = Subscriber("::1", broker.port, ("#",))  # the plaintext listener of the same broker
    pub = publisher(f"mqtts://[::1]:{broker.tls_port}", tls=TlsSettings(ca_file=str(pki.other_ca)))
    with caplog.at_level(logging.DEBUG, logger="edged.mqtt"):
        assert not run(pub, 3)
        pub.stop(timeout=0.2)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    attempts = sum("still failing" in r.getMessage() for r in caplog.records) + len(errors)
    assert attempts >= 2  # it kept trying...
    assert len(errors) == 1  # ...but said it once, on one line
    assert re.fullmatch(rf"MQTT mqtts://\[::1\]:{broker.tls_port}: TLS certificate verification failed: "
                        "(unable to get local issuer certificate|self-signed certificate in certificate chain)",
                        errors[0])
    assert edged_clients(broker) == 0 and sub.messages == []  # no CONNECT ever reached the broker
    sub.stop()


def test_pinned_certificate_without_ca(mosquitto, pki, caplog):
    broker = mosquitto(tls=pki.server_tls())
    url = f"mqtts://[::1]:{broker.tls_port}"
    pinned = publisher(url, tls=TlsSettings(fingerprint_sha256=pki.fingerprint()))
    assert run(pinned), pinned.last_error
    pinned.stop()
    assert edged_clients(broker) == 1

    wrong = "AA:" * 31 + "AA"
    mismatch = publisher(url, tls=TlsSettings(fingerprint_sha256=wrong), username="u", password_file=None)
    with caplog.at_level(logging.WARNING, logger="edged.mqtt"):
        assert not run(mismatch, 3)
        mismatch.stop(timeout=0.2)
    assert "does not match mqtt.tls.fingerprint_sha256" in caplog.text
    assert edged_clients(broker) == 1  # the pin failed before CONNECT (and its username) was sent


def test_insecure_warns_at_every_connect(mosquitto, pki, caplog):
    broker = mosquitto(tls=pki.server_tls())
    pub = publisher(f"mqtts://[::1]:{broker.tls_port}", tls=TlsSettings(insecure=True))
    with caplog.at_level(logging.WARNING, logger="edged.mqtt"):
        assert run(pub)
        broker.stop()
        deadline = time.monotonic() + 10
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.start()
        assert pub.wait_connected(10)
        pub.stop()
    assert caplog.text.count("WITHOUT certificate verification (mqtt.tls.insecure)") == 2


def test_bad_tls_files_are_config_errors_before_anything_is_sent(mosquitto, pki, tmp_path):
    broker = mosquitto(tls=pki.server_tls())
    url = f"mqtts://[::1]:{broker.tls_port}"
    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("this is not a certificate\n")
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text(pki.ca.read_text())
    unreadable.chmod(0)
    encrypted = tmp_path / "encrypted.key"
    os.system(f"openssl pkey -in {pki.client_key} -aes256 -passout pass:x -out {encrypted} 2>/dev/null")
    cases = [
        (TlsSettings(ca_file=str(tmp_path / "missing.pem")), "mqtt.tls.ca_file: .*missing.pem: no such file"),
        (TlsSettings(ca_file=str(not_pem)), "mqtt.tls.ca_file: .*junk.pem: not a PEM CA certificate"),
        (TlsSettings(ca_file=str(tmp_path)), "is a directory"),
        (TlsSettings(cert_file=str(pki.client_cert), key_file=str(pki.server_key)),
         "mqtt.tls.key_file .*server.key does not belong to mqtt.tls.cert_file"),
        (TlsSettings(cert_file=str(pki.client_cert)), "not a PEM certificate and key"),
        (TlsSettings(key_file=str(pki.client_key)), "key_file is set without mqtt.tls.cert_file"),
        (TlsSettings(cert_file=str(pki.client_cert), key_file=str(encrypted)), "the key is encrypted"),
        (TlsSettings(fingerprint_sha256="abc"), "is not a SHA-256 fingerprint"),
        (TlsSettings(insecure=True, fingerprint_sha256=pki.fingerprint()), "either insecure or fingerprint"),
    ]
    if os.geteuid() != 0:  # root reads anything
        cases.append((TlsSettings(ca_file=str(unreadable)), "not readable by this user"))
    for tls, message in cases:
        with pytest.raises(ConfigError, match=message) as caught:
            publisher(url, tls=tls)
        assert caught.value.exit_code == 78 and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="use mqtts:// URLs"):
        publisher(f"mqtt://[::1]:{broker.port}", tls=TlsSettings(ca_file=str(pki.ca)))
    time.sleep(0.2)
    log = broker.log_tail()  # nothing was sent half-way: no TLS connection, no MQTT client
    assert not re.search(rf"New connection from .* on port {broker.tls_port}\.", log)
    assert edged_clients(broker) == 0


def test_password_file_and_systemd_credential(mosquitto, tmp_path, caplog):
    broker = mosquitto(password_file=write_password_file(tmp_path / "passwd", {"edge": PASSWORD}))
    url = f"mqtt://[::1]:{broker.port}"
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"has mode 0644 but holds a password: make it private \(chmod 600"):
        publisher(url, username="edge", password_file=str(secret))
    secret.chmod(0o600)
    with caplog.at_level(logging.DEBUG):
        by_file = publisher(url, username="edge", password_file=str(secret))
        assert run(by_file), by_file.last_error
        by_file.stop()

        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "mqtt-password").write_text(PASSWORD)
        by_credential = publisher(url, username="edge", environ={"CREDENTIALS_DIRECTORY": str(credentials)})
        assert run(by_credential), by_credential.last_error
        by_credential.stop()

        (credentials / "mqtt-password").write_text("Wr0ng-Pa55")
        refused = publisher(url, username="edge", environ={"CREDENTIALS_DIRECTORY": str(credentials)})
        assert not run(refused, 3)
        refused.stop(timeout=0.2)
    assert "broker refused the connection: Not authorized" in caplog.text
    assert PASSWORD not in caplog.text and "Wr0ng-Pa55" not in caplog.text
    with pytest.raises(ConfigError, match="no such file"):
        publisher(url, username="edge", password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="password_file is set but mqtt.username is empty"):
        publisher(url, password_file=str(secret))
