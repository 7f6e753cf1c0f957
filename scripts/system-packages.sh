#!/usr/bin/env bash
# Debian packages the project needs: ClamAV's daemon (virus scan), Tesseract with
# Spanish and English (OCR), Chromium (the dashboard's browser test), redis-server (a real
# Redis Cluster in the suite) and wrk (the benchmarks' HTTP load generator). Installed with
# apt-get when root; otherwise named, and exit 1.
set -euo pipefail
PACKAGES=(clamav-daemon tesseract-ocr tesseract-ocr-spa tesseract-ocr-eng chromium redis-server wrk)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "buildpeer needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
