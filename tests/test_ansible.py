"""The Ansible role and playbooks in deploy/ansible: lint, syntax, argument specs, the config they
write, the wheelhouse they install from — and a real rollout over SSH to a fleet of systemd
containers in IPv6-only namespaces (tests/fleet.py), with the health gate and rollbacks.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged import __version__
from edged.config import parse_config
from tests.fleet import (ANSIBLE_DIR, BROKER_PORT, SHARED, Device, Fleet, ansible_tool, authorize_key,
                         broken_source, make_keypair, parse_recap)

PLAYBOOKS = ("site.yml", "rollback.yml", "wheelhouse.yml")


def _tool(name: str) -> str:
    path = ansible_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    return path


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {"ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
           "HOME": str(Path.home()), "LANG": "C.UTF-8"}
    return subprocess.run(argv, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, **kwargs)


# ---- fast: lint, syntax, argument specs, rendered config ------------------------------------------

def test_ansible_lint_production_profile():
    done = _run([_tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor"], timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(playbook):
    done = _run([_tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.ini", playbook])
    assert done.returncode == 0, done.stdout + done.stderr


def test_argument_specs_stop_a_bad_value_before_anything_changes(tmp_path):
    """The role's meta/argument_specs.yml is enforced: a wrong choice fails validation, naming the variable."""
    done = _run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", "site.yml",
                 "-e", "edged_hosts=localhost", "-e", "edged_edgetpu=coral",
                 "-e", f"ansible_python_interpreter={sys.executable}"], timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Validation of arguments failed" in output, output
    assert "edged_edgetpu" in output and "none, usb, pci" in output, output
    assert parse_recap(output)["localhost"]["changed"] == 0


def test_argument_specs_require_the_pins_of_a_custom_model(tmp_path):
    """A custom model without the SHA-256 of one of its files stops the run before anything changes."""
    model = {"name": "doorbell", "kind": "detector", "file": "doorbell.tflite", "labels": "doorbell_labels.txt",
             "labels_sha256": "0" * 64, "edgetpu_file": "doorbell_edgetpu.tflite"}
    done = _run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", "site.yml",
                 "-e", "edged_hosts=localhost", "-e", json.dumps({"edged_custom_models": [model]}),
                 "-e", f"ansible_python_interpreter={sys.executable}"], timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Validation of arguments failed" in output, output
    assert "sha256" in output and "edgetpu_sha256" in output, output
    assert parse_recap(output)["localhost"]["changed"] == 0


def test_custom_model_files_are_found_in_the_mirror_and_checked_before_any_push(tmp_path):
    """The role's controller side: files looked up in the mirror dirs (the first that has it), hashed, and a
    wrong pin refused with both digests — before the push and `edged models add` tasks run."""
    mirror = (SHARED / "models").resolve()
    classifier = mirror / "zoo" / "mobilenet_v2_1.0_224_quant.tflite"
    if not classifier.is_file():
        pytest.skip(f"the shared model mirror is not at {mirror}")
    digest = hashlib.sha256(classifier.read_bytes()).hexdigest()
    model = {"name": "birds", "kind": "classifier", "file": classifier.name, "sha256": digest,
             "labels": "imagenet_labels.txt", "labels_sha256": "f" * 64}
    playbook = tmp_path / "custom.yml"
    playbook.write_text(json.dumps([{
        "name": "Custom models", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Ship", "ansible.builtin.include_role": {"name": str(ANSIBLE_DIR / "roles" / "edged"),
                                                                   "tasks_from": "models_custom"}}]}]))
    done = _run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
                 "-e", json.dumps({"edged_custom_models": [model],
                                  "edged_models_mirror_dirs": [str(mirror), str(mirror / "zoo")]}),
                 "-e", f"ansible_python_interpreter={sys.executable}"], timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"ok: [localhost] => (item=birds: {classifier.name})" in output, output
    labels = hashlib.sha256((mirror / "zoo" / "imagenet_labels.txt").read_bytes()).hexdigest()
    assert (f"birds: imagenet_labels.txt ({mirror / 'zoo' / 'imagenet_labels.txt'}) has sha256 {labels} but "
            f"edged_custom_models pins {'f' * 64}") in output, output
    assert "TASK [Push the custom model files]" not in output, output


def _render(tmp_path: Path, variables: dict, template: Path | None = None) -> str:
    """A template (default: the role's edged.toml.j2) rendered by Ansible with the role's defaults and
    derived vars, plus `variables` (facts included) — what the role would write for such a host."""
    role = ANSIBLE_DIR / "roles" / "edged"
    playbook = tmp_path / "render.yml"
    out = tmp_path / "rendered"
    playbook.write_text(json.dumps([{
        "name": "Render", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Role defaults", "ansible.builtin.include_vars": str(role / "defaults" / "main.yml")},
            {"name": "Role vars", "ansible.builtin.include_vars": str(role / "vars" / "main.yml")},
            {"name": "Test settings", "ansible.builtin.set_fact": variables},
            {"name": "Template", "ansible.builtin.template": {
                "src": str(template or role / "templates" / "edged.toml.j2"), "dest": str(out), "mode": "0600"}},
        ]}]))
    done = _run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
                 "-e", f"ansible_python_interpreter={sys.executable}"])
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text()


def test_libedgetpu_url_names_feranicks_build_for_the_host(tmp_path):
    template = tmp_path / "url.j2"
    template.write_text("{{ edged_libedgetpu_url | trim }}")
    url = _render(tmp_path, {"edged_edgetpu": "usb", "ansible_facts": {
        "architecture": "aarch64", "distribution_release": "bookworm"}}, template)
    assert url == ("https://github.com/feranick/libedgetpu/releases/download/16.0TF2.19.1-1/"
                   "libedgetpu1-std_16.0tf2.19.1-1.bookworm_arm64.deb")


def test_backend_defaults_to_auto_and_the_gate_expects_a_declared_edge_tpu_in_use(tmp_path):
    template = tmp_path / "backend.j2"
    template.write_text("{{ edged_backend }} [{{ edged_health_backend }}]")
    assert _render(tmp_path, {"edged_edgetpu": "none"}, template) == "auto []"  # auto runs the CPU, online
    assert _render(tmp_path, {"edged_edgetpu": "usb"}, template) == "auto [edgetpu]"
    assert _render(tmp_path, {"edged_edgetpu": "pci", "edged_backend": "cpu"}, template) == "cpu []"


def test_config_template_writes_a_config_edged_accepts(tmp_path):
    text = _render(tmp_path, {
        "edged_device_id": "pi-door",
        "edged_mqtt_brokers": ["mqtts://[2001:db8::10]:8883", "mqtts://[fe80::1%25eth0]:8883"],
        "edged_mqtt_username": "edged", "edged_mqtt_password": "s3cret",
        "edged_mqtt_tls_ca_file": "/controller/ca.crt",
        "edged_backend": "edgetpu",
        "edged_cameras": [{"name": "front", "source": "picamera2:0", "fps": 5},
                          {"name": "gate", "source": "rtsp://[2001:db8::20]:554/stream"}],
        "edged_config": {"detector": {"threshold": 0.6, "allow_labels": ["person", "car"]},
                         "publish": {"detections": {"mode": "on_change"}, "homeassistant": {"enabled": True}},
                         "service": {"log_level": "debug"}},
    })
    config = parse_config(text, "rendered edged.toml")  # the daemon's own strict decoder
    assert config.device_id == "pi-door"
    assert config.mqtt.brokers == ["mqtts://[2001:db8::10]:8883", "mqtts://[fe80::1%25eth0]:8883"]
    assert config.mqtt.username == "edged" and config.mqtt.password_credential == "mqtt-password"
    assert "s3cret" not in text
    assert config.mqtt.tls.ca_file == "/etc/edged/tls/ca.crt" and config.mqtt.tls.cert_file is None
    assert config.detector.backend == "edgetpu" and config.detector.threshold == 0.6
    assert config.detector.allow_labels == ["person", "car"]
    assert [(c.name, c.source, c.fps) for c in config.cameras] == [
        ("front", "picamera2:0", 5.0), ("gate", "rtsp://[2001:db8::20]:554/stream", "auto")]
    assert config.publish.detections.mode == "on_change" and config.publish.homeassistant.enabled
    assert config.service.log_level == "debug"


def test_config_template_local_bridge_points_edged_at_the_device_broker(tmp_path):
    text = _render(tmp_path, {
        "edged_device_id": "pi-shed", "edged_mqtt_local_bridge": True,
        "edged_mqtt_brokers": ["mqtts://mqtt.example.net:8883"], "edged_mqtt_username": "edged",
        "edged_mqtt_password": "s3cret", "edged_mqtt_tls_ca_file": "/controller/ca.crt"})
    config = parse_config(text, "rendered edged.toml")
    assert config.mqtt.brokers == ["mqtt://[::1]:1883"]
    assert config.mqtt.username is None and config.mqtt.tls.ca_file is None
    assert [c.source for c in config.cameras] == ["samples"]  # no cameras given: edged's default


# ---- the wheelhouse playbook: a complete offline install set for a Pi ------------------------------

@pytest.mark.ansible
def test_wheelhouse_playbook_builds_an_offline_install_set_for_aarch64(tmp_path):
    """wheelhouse.yml on the controller → pip can resolve edged for a Pi (aarch64, Python 3.11) with --no-index."""
    wheelhouse = tmp_path / "wheelhouse"
    done = _run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", "wheelhouse.yml",
                 "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"edged_wheelhouse={wheelhouse}"],
                timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in wheelhouse.glob("*.whl"))
    assert f"edged-{__version__}-py3-none-any.whl" in names
    assert any(n.startswith("ai_edge_litert-") and n.endswith("aarch64.whl") for n in names), names
    resolve = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(tmp_path / "report.json"),
         "--no-index", "--find-links", str(wheelhouse), "--only-binary=:all:", "--platform", "manylinux_2_36_aarch64",
         *(arg for minor in range(35, 16, -1) for arg in ("--platform", f"manylinux_2_{minor}_aarch64")),
         "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "--implementation", "cp",
         "--target", str(tmp_path / "target"), f"edged=={__version__}"],
        capture_output=True, text=True, env={"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"})
    assert resolve.returncode == 0, resolve.stderr
    installed = {item["metadata"]["name"] for item in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"edged", "ai-edge-litert", "numpy", "paho-mqtt", "msgspec", "pillow"} <= installed, installed


# ---- the fleet: real rollouts over SSH -------------------------------------------------------------

GOOD, NEXT, BROKEN = "1.0.0", "1.1.0", "1.2.0"


@pytest.fixture(scope="session")
def fleet_wheelhouses(tmp_path_factory, nspawn_rootfs) -> dict[str, Path]:
    """One wheelhouse per release (built once per session): two good ones and one that fails at start."""
    from tests.fixtures.nspawn import build_wheelhouse

    base = tmp_path_factory.mktemp("wheelhouses")
    return {
        GOOD: build_wheelhouse(base / GOOD, version=GOOD),
        NEXT: build_wheelhouse(base / NEXT, version=NEXT),
        BROKEN: build_wheelhouse(base / BROKEN, source=broken_source(base / "broken-src"), version=BROKEN),
    }


@pytest.fixture
def fleet(ipv6_lan, containers, mosquitto, tmp_path) -> Fleet:
    """A controller with the broker on fd00:ed9e::1 and three booted containers, ::2 to ::4, with sshd."""
    _tool("ansible-playbook")
    controller = ipv6_lan.add_host("ctl")
    mosquitto(host=controller, bind=controller.address, port=BROKER_PORT)
    key = make_keypair(tmp_path)
    devices = []
    for name in ("pi1", "pi2", "pi3"):
        host = ipv6_lan.add_host(name)
        container = containers(name, netns=host.netns)
        authorize_key(container, key.with_suffix(".pub"), tmp_path)
        devices.append(Device(name=name, address=host.address, container=container))
    return Fleet(controller=controller, devices=devices, workdir=tmp_path, key=key)


def _rollout(fleet: Fleet, wheelhouse: Path, serial: list) -> object:
    """site.yml with its batches: [1, "100%"] is a canary, then the other two together (the default,
    [1, "25%", "50%"], makes three batches of one out of three hosts)."""
    return fleet.playbook("site.yml", "-e", f"edged_wheelhouse={wheelhouse}", "-e", json.dumps({"edged_serial": serial}))


def _assert_running(fleet: Fleet, devices: list[Device], version: str, statuses: dict[str, dict]) -> None:
    for device in devices:
        assert device.readlink("/opt/edged/current") == f"/opt/edged/releases/{version}", device.name
        assert device.container.show("edged", "ActiveState") == "active", device.container.journal("edged")[-3000:]
        status = statuses.get(device.name, {})
        assert (status.get("state"), status.get("version")) == ("online", version), (device.name, status)


@pytest.mark.ansible
@pytest.mark.timeout(1200)
def test_fleet_rollout_health_gate_and_rollbacks(fleet, fleet_wheelhouses):
    mirror = (SHARED / "models").resolve()
    own_model = {"name": "own_ssd", "kind": "detector", "title": "the default SSD, shipped as our own",
                 "file": "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite",
                 "labels": "coco_labels.txt"}
    own_model |= {"sha256": hashlib.sha256((mirror / own_model["file"]).read_bytes()).hexdigest(),
                  "labels_sha256": hashlib.sha256((mirror / own_model["labels"]).read_bytes()).hexdigest()}
    fleet.write_inventory({
        "edged_mqtt_brokers": [fleet.broker_url],  # mqtt://[fd00:ed9e::1]:1883, over the IPv6-only LAN
        "edged_models_mirror_dirs": [str(mirror), str((SHARED / "images").resolve())],
        "edged_custom_models": [own_model],
        "edged_health_delay": 2,
        "edged_controller_cache": str(fleet.workdir / "controller-cache"),
    }, host_vars={
        # pi2 is set up as a PCIe Coral host (apex group + unit drop-in); without the card it runs on
        # the CPU, and without internet libedgetpu cannot come from feranick's releases.
        # It is told to use the CPU: with `auto`, the gate would (rightly) wait for its declared Coral.
        # pi1 and pi3 run the default `auto` with no Edge TPU attached: on the CPU and `online`.
        "pi2": "edged_edgetpu=pci edged_libedgetpu_install=false edged_models_variants='[\"cpu\"]' "
               "edged_backend=cpu",
        # pi3 buffers on its own mosquitto, bridged to the fleet broker: its gate reads the bridged status.
        # It runs the custom model every host received, by name.
        "pi3": "edged_mqtt_local_bridge=true edged_model=own_ssd",
    })
    pi1, pi2, pi3 = fleet.devices

    # 1. First install of the whole fleet in one batch; every host passes the health gate.
    first = _rollout(fleet, fleet_wheelhouses[GOOD], ["100%"])
    assert first.returncode == 0, first.explain()
    assert set(first.recap) == {"pi1", "pi2", "pi3"}
    assert all(r["failed"] == 0 and r["changed"] > 0 for r in first.recap.values()), first.recap_lines
    statuses = fleet.statuses()
    _assert_running(fleet, fleet.devices, GOOD, statuses)
    # pi1 runs the role's default `auto` with no Edge TPU attached: the CPU, online, no accelerator.
    assert statuses["pi1"]["backend"].startswith("cpu:") and statuses["pi1"]["accelerators"] == [], statuses
    # pi2's daemon runs with the apex group, which the role created before the unit's drop-in named it.
    apex_gid = pi2.container.exec(["getent", "group", "apex"]).stdout.split(":")[2]
    assert pi2.container.exec(["test", "-f", "/etc/systemd/system/edged.service.d/coral-pcie.conf"],
                              check=False).returncode == 0
    groups = pi2.container.exec(["grep", "^Groups:", f"/proc/{pi2.main_pid()}/status"]).stdout.split()[1:]
    assert apex_gid in groups, (apex_gid, groups)
    # pi3's edged knows only its local broker; its status reached the fleet broker through the bridge.
    assert 'brokers = ["mqtt://[::1]:1883"]' in pi3.container.exec(["cat", "/etc/edged/edged.toml"]).stdout
    assert pi3.container.show("mosquitto", "ActiveState") == "active"
    # The custom model reached every host through `edged models add`; pi3's daemon runs it by name.
    assert fleet.statuses()["pi3"]["model"] == "own_ssd"
    for device in fleet.devices:
        local = device.container.exec(["cat", "/var/lib/edged/models/models.local.toml"]).stdout
        assert '[models."own_ssd"]' in local and own_model["sha256"] in local, device.name

    # 2. The same release again: nothing changes anywhere.
    again = _rollout(fleet, fleet_wheelhouses[GOOD], ["100%"])
    assert again.returncode == 0, again.explain()
    assert set(again.recap) == {"pi1", "pi2", "pi3"}
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in again.recap.values()), again.recap_lines

    # 3. An upgrade, canary first: new venv next to the old one, previous → old, fresh status.
    upgrade = _rollout(fleet, fleet_wheelhouses[NEXT], [1, "100%"])
    assert upgrade.returncode == 0, upgrade.explain()
    assert upgrade.output.count("TASK [edged : Check the status]") == 2, "one health gate per batch"
    before = fleet.statuses()
    _assert_running(fleet, fleet.devices, NEXT, before)
    for device in fleet.devices:
        assert device.readlink("/opt/edged/previous") == f"/opt/edged/releases/{GOOD}"
    pids = {d.name: d.main_pid() for d in fleet.devices}

    # 4. A release that dies at start: the canary rolls back, the rollout stops before the others.
    started = time.time()
    broken = _rollout(fleet, fleet_wheelhouses[BROKEN], [1, "100%"])
    assert broken.returncode != 0, broken.explain()
    assert broken.recap["pi1"]["rescued"] == 1 and broken.recap["pi1"]["failed"] == 1, broken.recap_lines
    assert "pi2" not in broken.recap and "pi3" not in broken.recap, broken.recap_lines
    assert f"rolled back to {NEXT}" in broken.output, broken.explain()
    statuses = fleet.statuses()
    _assert_running(fleet, fleet.devices, NEXT, statuses)
    since = statuses["pi1"]["since"]
    assert since[:19] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)), statuses["pi1"]  # restarted
    assert pi1.readlink("/opt/edged/previous") == f"/opt/edged/releases/{GOOD}"  # put back as it was
    assert "broken on purpose" in pi1.container.journal("edged")
    for device in (pi2, pi3):  # untouched: same process, the broken release never arrived
        assert device.main_pid() == pids[device.name]
        assert BROKEN not in device.releases()
        assert statuses[device.name]["since"] == before[device.name]["since"]

    # 5. Manual rollback of the whole fleet to the previous release, through the same health gate.
    rollback = fleet.playbook("rollback.yml")
    assert rollback.returncode == 0, rollback.explain()
    _assert_running(fleet, fleet.devices, GOOD, fleet.statuses())
    for device in fleet.devices:
        assert device.readlink("/opt/edged/previous") == f"/opt/edged/releases/{NEXT}"

    # 6. A named release on one host only.
    named = fleet.playbook("rollback.yml", "--limit", "pi2", "-e", f"edged_rollback_to={NEXT}")
    assert named.returncode == 0, named.explain()
    assert set(named.recap) == {"pi2"}
    statuses = fleet.statuses()
    _assert_running(fleet, [pi2], NEXT, statuses)
    _assert_running(fleet, [pi1, pi3], GOOD, statuses)

    print("\nfleet runs: " + ", ".join(f"{run.playbook} {run.seconds:.0f} s" for run in fleet.runs))
    for run in fleet.runs:
        print("\n".join(run.recap_lines))
