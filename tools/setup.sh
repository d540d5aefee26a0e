#!/usr/bin/env bash
# Installs what building, running and testing the kernel needs, when it is missing:
#   - the aarch64-unknown-none target and the rust-src, llvm-tools, clippy, rustfmt components
#     for the pinned toolchain (rust-toolchain.toml),
#   - QEMU (qemu-system-aarch64, Debian package qemu-system-arm).
# Safe to rerun: it only installs what is absent, and it never runs `rustup update` (a newer
# stable no longer ships the prebuilt aarch64-unknown-none target).
set -euo pipefail

cd "$(dirname "$0")/.."
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
say() { echo "setup: $*" >&2; }

if ! command -v rustup >/dev/null 2>&1; then
    say "rustup is not installed; install it (https://rustup.rs), then rerun this script"
    exit 1
fi
if ! rustup toolchain list | grep -q "^${toolchain}"; then
    say "installing Rust ${toolchain}"
    rustup toolchain install "${toolchain}" --profile minimal
fi
if ! rustup target list --installed --toolchain "${toolchain}" | grep -qx aarch64-unknown-none; then
    say "adding target aarch64-unknown-none"
    rustup target add aarch64-unknown-none --toolchain "${toolchain}"
fi
installed=$(rustup component list --installed --toolchain "${toolchain}")
missing=()
for component in rust-src llvm-tools clippy rustfmt; do
    grep -q "^${component}" <<<"${installed}" || missing+=("${component}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "adding components ${missing[*]}"
    rustup component add --toolchain "${toolchain}" "${missing[@]}"
fi

if ! command -v qemu-system-aarch64 >/dev/null 2>&1; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    say "installing QEMU (apt-get install qemu-system-arm)"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq qemu-system-arm >/dev/null
fi
