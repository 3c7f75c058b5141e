#!/usr/bin/env bash
# Headless Chromium + ChromeDriver from Debian's packages, for the report browser tests.
# Exits 0 when both are there (or were installed), 1 when they are missing and cannot be
# installed here (not root and no password-less sudo): the browser tests need them.
set -euo pipefail
have_browser() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }
if have_browser; then
  exit 0
fi
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo -n)
  else
    echo "install_browser.sh: Chromium/ChromeDriver are missing and cannot be installed" \
      "as this user (not root, no password-less sudo). Install them as root:" \
      "apt-get install chromium chromium-driver, then re-run." >&2
    exit 1
  fi
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq chromium chromium-driver >/dev/null
if ! have_browser; then
  echo "install_browser.sh: apt-get installed chromium and chromium-driver, but" \
    "'chromium' or 'chromedriver' is still not on PATH ($PATH)" >&2
  exit 1
fi
