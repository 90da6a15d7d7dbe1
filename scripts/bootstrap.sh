#!/usr/bin/env bash
# Idempotent set-up shared by every make target: Debian packages, .venv, the project with its dev extra.
# Fast the second time: each step is skipped when its stamp or its packages are already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs at run and test time (TPM simulator, TSS headers for tpm2-pytss,
# network namespaces, PostgreSQL for tests, Chromium for the storefront test, umockdev + GObject bindings
# for terminal_cli's USB discovery tests: a recorded udev tree pyudev reads, uevents emitted from Python).
APT_PACKAGES=(
  swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config gcc python3-dev python3-venv
  iproute2 postgresql chromium openssl umockdev gir1.2-umockdev-1.0 python3-gi
)
# Extra packages only the image targets need (installed by `make image`).
if [[ "${COFFER_BOOTSTRAP_IMAGE:-0}" == 1 ]]; then
  # build (image/build) and boot test (tests/image): bmap-tools writes the .bmap; cpio + zstd list the initrd
  APT_PACKAGES+=(mmdebstrap qemu-user-static qemu-system-arm genimage binfmt-support dosfstools mtools
                 e2fsprogs fdisk device-tree-compiler arch-test xz-utils bmap-tools cpio zstd)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.coffer-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  echo "bootstrap: installing the project into .venv (first run builds tpm2-pytss: about a minute)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
