#!/bin/sh
# Test set-up for the screenshot test (tests/test_dagster_ui.py): installs Debian's `chromium` when it is
# missing and we can (root, apt-get present, the package registry reachable). Never fails: where it cannot
# install, the screenshot test skips and says why.
set -u
for bin in chromium chromium-browser google-chrome; do
    if command -v "$bin" >/dev/null 2>&1; then exit 0; fi
done
if [ "${COBUY_SKIP_CHROMIUM_INSTALL:-0}" = "1" ]; then
    echo "setup_chromium: COBUY_SKIP_CHROMIUM_INSTALL=1, not installing chromium" >&2; exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_chromium: chromium not found and cannot install it here (needs root and apt-get); the screenshot test will skip" >&2
    exit 0
fi
echo "setup_chromium: installing Debian's chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for the dpkg lock rather than fail when another apt run is in progress.
APT="apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=1 -o Acquire::http::Timeout=30 -qq"
if ! { $APT update >/dev/null 2>&1 || true; $APT install -y --no-install-recommends chromium >/dev/null; }; then
    echo "setup_chromium: apt-get install chromium failed (offline?); the screenshot test will skip" >&2
fi
exit 0
