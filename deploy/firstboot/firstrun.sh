#!/bin/bash
# edged first boot for Raspberry Pi OS bookworm and older (Raspberry Pi Imager's "systemd" method):
# cmdline.txt runs this script once (systemd.run=/boot/firstrun.sh), it removes itself, and the Pi
# reboots into the installed, enabled edged. deploy/edged-seed writes it when Imager did not, or
# inserts the edged block below into Imager's own firstrun.sh (before its clean-up lines).
# The clean-up lines keep Imager's exact form: on bookworm the initramfs (raspberrypi-sys-mods
# imager_fixup) moves /boot/ to /boot/firmware/ in cmdline.txt and rewrites everything from the
# first `rm … firstrun.sh` line on.

set +e

# >>> edged: install from the boot partition (edged-seed manages this block)
for boot in /boot/firmware /boot; do
   if [ -f "$boot/edged/install-edged.sh" ]; then
      sh "$boot/edged/install-edged.sh" --no-start
      break
   fi
done
# <<< edged

rm -f /boot/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
