#!/usr/bin/env bash
# System packages some tests need, from Debian's registry:
#   - FFmpeg's shared libraries, which torchcodec loads (--decoder torchcodec);
#   - GStreamer's RTSP server and x264 encoder, driven from Debian's own python3 (python3-gi), to serve a
#     live RTSP stream on loopback for the live-source tests;
#   - headless Chromium and a font, to load `framescope report`'s HTML offline, check that every chart
#     rendered and take its screenshot (tests/test_report.py).
# Needs root (or sudo) and apt. CI runs it before `make test`; locally the tests that need these skip when
# they are missing.
set -euo pipefail
PACKAGES=(
  libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  chromium fonts-dejavu-core
)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps: everything is installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-system-deps: installed ${missing[*]}"
