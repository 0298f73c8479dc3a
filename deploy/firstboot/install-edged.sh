#!/bin/sh
# Install edged from a seeded boot partition (deploy/edged-seed wrote this directory): no network
# needed. Run once on first boot by cloud-init's runcmd (trixie) or firstrun.sh (bookworm and
# older); safe to run again by hand: `sudo sh /boot/firmware/edged/install-edged.sh`.
#
#   install-edged.sh              install, enable and (re)start edged.service
#   install-edged.sh --no-start   install and enable only (firstrun.sh: the Pi reboots next)
#
# ROOT=DIR installs into another root filesystem instead of this system (image building, tests):
# python3, systemd-sysusers and systemctl --root then run as the root's own (through chroot, e.g.
# an arm64 Pi OS tree under qemu-user) when DIR has /usr/bin/python3, else as this machine's —
# a scratch directory for tests, whose venv then only runs from here.
#
# Layout it creates (the deploy contract): /opt/edged/releases/<version> (venv with
# --system-site-packages, so apt's picamera2 and numpy are used), /opt/edged/current -> it,
# /etc/edged/edged.toml, /var/lib/edged/models, the edged.service unit, Coral udev rules.
set -eu

SRC=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-}
START=yes
for arg in "$@"; do
    case $arg in
        --no-start) START=no ;;
        *) echo "install-edged: unknown argument: $arg (usage: install-edged.sh [--no-start])" >&2; exit 64 ;;
    esac
done

# Everything below is logged to the target's /var/log/edged-install.log and, for reading from
# another computer when the Pi does not come up, to install.log next to this script.
if [ -z "${EDGED_INSTALL_LOGGING:-}" ]; then
    mkdir -p "$ROOT/var/log"
    status=$(mktemp)
    { rc=0; EDGED_INSTALL_LOGGING=1 sh "$0" "$@" 2>&1 || rc=$?; echo "$rc" >"$status"; } \
        | tee -a "$ROOT/var/log/edged-install.log" "$SRC/install.log"
    rc=$(cat "$status"); rm -f "$status"
    exit "$rc"
fi

say() { echo "install-edged: $*"; }
die() { code=$1; shift; echo "install-edged: error: $*" >&2; exit "$code"; }
say "$(date -u +%Y-%m-%dT%H:%M:%SZ) installing from $SRC into ${ROOT:-/}"

# --- what to install --------------------------------------------------------------------------
set -- "$SRC"/wheels/edged-*.whl
[ -f "$1" ] || die 66 "no edged wheel in $SRC/wheels (run deploy/edged-seed again)"
[ $# -eq 1 ] || die 65 "several edged wheels in $SRC/wheels: $*"
WHEEL=$1
VERSION=$(basename "$WHEEL" | cut -d- -f2)
set -- "$SRC"/wheels/pip-*.whl
[ -f "$1" ] || die 66 "no pip wheel in $SRC/wheels (run deploy/edged-seed again)"
PIP_WHEEL=$1
for need in edged.toml systemd/edged.service systemd/edged.sysusers; do
    [ -f "$SRC/$need" ] || die 66 "missing $SRC/$need (run deploy/edged-seed again)"
done

# Where commands run: in the target root (chroot) when it has its own Python, else here. T is the
# target prefix as those commands see it, FROM the seeded files as they see them.
mkdir -p "$ROOT/etc" "$ROOT/var/tmp"
if [ -n "$ROOT" ] && [ -x "$ROOT/usr/bin/python3" ]; then
    in_root() { chroot "$ROOT" "$@"; }
    T=""
    STAGE=$(mktemp -d "$ROOT/var/tmp/edged-install.XXXXXX")
    trap 'rm -rf "$STAGE"' EXIT
    cp -R "$SRC/wheels" "$STAGE/"
    [ ! -d "$SRC/mirror" ] || cp -R "$SRC/mirror" "$STAGE/"
    FROM=${STAGE#"$ROOT"}
else
    in_root() { "$@"; }
    T=$ROOT
    FROM=$SRC
fi
has_group() { grep -q "^$1:" "$ROOT/etc/group" 2>/dev/null; }
id_of() { awk -F: -v name="$2" '$1 == name { print $3 }' "$ROOT/etc/$1"; }   # no NSS: works for ROOT

# --- OS packages brought on the card (e.g. feranick's libedgetpu1-std .deb); live system only --
if [ -d "$SRC/debs" ] && [ -z "$ROOT" ]; then
    for deb in "$SRC"/debs/*.deb; do
        [ -f "$deb" ] || continue
        say "installing $(basename "$deb")"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb"
    done
fi

# --- user and groups --------------------------------------------------------------------------
mkdir -p "$ROOT/usr/lib/sysusers.d"
install -m 0644 "$SRC/systemd/edged.sysusers" "$ROOT/usr/lib/sysusers.d/edged.conf"
command -v systemd-sysusers >/dev/null || die 69 "systemd-sysusers not found: edged needs systemd"
systemd-sysusers ${ROOT:+--root="$ROOT"} "$ROOT/usr/lib/sysusers.d/edged.conf"
# PCIe Coral: the apex driver is loaded but nobody created its group yet (gasket docs leave it
# to the admin); the udev rule then hands /dev/apex_* to it.
if [ -z "$ROOT" ] && [ -d /sys/class/apex ] && ! has_group apex; then
    say "apex driver present: creating the apex group"
    groupadd --system apex
    udevadm trigger --subsystem-match=apex 2>/dev/null || true
fi

# --- release venv -----------------------------------------------------------------------------
REL=/opt/edged/releases/$VERSION
installed=$(in_root "$T$REL/bin/edged" --version 2>/dev/null || true)
if [ "$installed" = "edged $VERSION" ]; then
    say "release $VERSION already installed in $REL"
else
    say "creating release $VERSION in $REL"
    rm -rf "$ROOT$REL"
    mkdir -p "$ROOT/opt/edged/releases"
    # --without-pip: no python3-venv/ensurepip needed; pip runs straight from its wheel instead.
    in_root python3 -m venv --system-site-packages --without-pip "$T$REL"
    in_root "$T$REL/bin/python" "$FROM/wheels/$(basename "$PIP_WHEEL")/pip" --isolated install --quiet \
        --no-index --find-links "$FROM/wheels" --no-cache-dir --disable-pip-version-check "edged==$VERSION"
fi
ln -sfn "releases/$VERSION" "$ROOT/opt/edged/current.new"
mv -T "$ROOT/opt/edged/current.new" "$ROOT/opt/edged/current"
say "$(in_root "$T/opt/edged/current/bin/edged" --version) is current"
UID_EDGED=$(id_of passwd edged)
GID_EDGED=$(id_of group edged)

# --- configuration and secrets ----------------------------------------------------------------
mkdir -p "$ROOT/etc/edged"
chown "0:$GID_EDGED" "$ROOT/etc/edged"
chmod 0750 "$ROOT/etc/edged"   # the unit's ConfigurationDirectoryMode
if ! cmp -s "$SRC/edged.toml" "$ROOT/etc/edged/edged.toml"; then
    # A different existing config is kept as edged.toml.~N~ (nothing already accepted is lost).
    install --backup=numbered -m 0640 "$SRC/edged.toml" "$ROOT/etc/edged/edged.toml"
fi
chown "0:$GID_EDGED" "$ROOT/etc/edged/edged.toml"
if [ -f "$SRC/mqtt-password" ]; then
    # Read by systemd (LoadCredential=) as root only; removed from the FAT partition once copied.
    install -m 0600 "$SRC/mqtt-password" "$ROOT/etc/edged/mqtt-password"
    rm -f "$SRC/mqtt-password"
fi

# --- models: verified again against the manifest's pins, on the device -------------------------
mkdir -p "$ROOT/var/lib/edged"
if [ -d "$SRC/mirror" ]; then
    fetch_args=""
    [ ! -f "$SRC/fetch-args" ] || fetch_args=$(cat "$SRC/fetch-args")
    # shellcheck disable=SC2086  # fetch-args holds plain words: model names, --variant X
    EDGED_DATA_DIR=$T/var/lib/edged in_root "$T/opt/edged/current/bin/edged" models fetch \
        $fetch_args --mirror "$FROM/mirror" --offline
fi
chown -R "$UID_EDGED:$GID_EDGED" "$ROOT/var/lib/edged"
chmod 0750 "$ROOT/var/lib/edged"

# --- udev rules and the unit ------------------------------------------------------------------
mkdir -p "$ROOT/etc/udev/rules.d" "$ROOT/etc/systemd/system"
for rules in "$SRC"/udev/*.rules; do
    [ ! -f "$rules" ] || install -m 0644 "$rules" "$ROOT/etc/udev/rules.d/"
done
install -m 0644 "$SRC/systemd/edged.service" "$ROOT/etc/systemd/system/edged.service"
if [ -f "$ROOT/etc/edged/mqtt-password" ] && [ -f "$SRC/systemd/edged.service.d/mqtt-password.conf" ]; then
    # LoadCredential= lives in a drop-in: systemd 252 fails the unit when its source file is missing.
    install -D -m 0644 "$SRC/systemd/edged.service.d/mqtt-password.conf" \
        "$ROOT/etc/systemd/system/edged.service.d/mqtt-password.conf"
fi
if has_group apex && [ -f "$SRC/systemd/edged.service.d/coral-pcie.conf" ]; then
    install -D -m 0644 "$SRC/systemd/edged.service.d/coral-pcie.conf" \
        "$ROOT/etc/systemd/system/edged.service.d/coral-pcie.conf"
fi

if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" enable edged.service
elif [ -d /run/systemd/system ]; then
    udevadm control --reload 2>/dev/null && udevadm trigger --subsystem-match=usb 2>/dev/null || true
    systemctl daemon-reload
    systemctl enable edged.service
    # restart: a re-run applies the new release, config or drop-in; --no-block: cloud-init's runcmd
    # is itself part of the boot transaction.
    [ "$START" = no ] || systemctl restart --no-block edged.service
else
    systemctl enable edged.service   # e.g. inside an image build chroot: starts on first boot
fi
say "done: edged $VERSION enabled$([ "$START" = yes ] && [ -z "$ROOT" ] && echo ' and started')"
