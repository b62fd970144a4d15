#!/usr/bin/env bash
# Builds the Lambda deployment package: target/lambda/firehose-replay/bootstrap.zip, one
# executable named `bootstrap` for the provided.al2023 runtime.
#
#   scripts/package.sh                 # x86_64 (deploy with Architecture=x86_64)
#   ARCH=arm64 scripts/package.sh      # arm64 / Graviton (the template's default Architecture)
#
# cargo-lambda comes from PyPI into .venv (the wheel carries a prebuilt cargo-lambda and zig,
# which it uses as the cross linker), so nothing else is needed beyond the Rust toolchain.
# ARCH=arm64 needs the aarch64-unknown-linux-gnu standard library, which the script adds with
# `rustup target add` when missing; where rustup cannot download it, the script stops and says so
# (then build arm64 elsewhere, or build x86_64 and deploy Architecture=x86_64).
#
# Release settings: cargo-lambda's own defaults for `--release` add `panic = "abort"`, which would
# turn a bug in one object's processing into the loss of the whole container and batch (the
# runner and the Lambda handler catch a panic per object and report it against that object).
# So this script passes --disable-optimizations and sets the rest of cargo-lambda's choices
# itself: symbols stripped, thin LTO, and the CPU baseline cargo-lambda uses for Lambda
# (haswell / neoverse-n1).
# `sam build` (BuildMethod rust-cargolambda) does not go through this script: see README, Deploy.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
ARCH=${ARCH:-x86_64}
BIN=firehose-replay

case "$ARCH" in
  x86_64 | amd64) ARCH=x86_64; target=x86_64-unknown-linux-gnu; arch_flag=--x86-64; cpu=haswell ;;
  arm64 | aarch64) ARCH=arm64; target=aarch64-unknown-linux-gnu; arch_flag=--arm64; cpu=neoverse-n1 ;;
  *) echo "error: ARCH must be x86_64 or arm64 (got '$ARCH')" >&2; exit 2 ;;
esac

if ! .venv/bin/python -c "
import sys
from importlib.metadata import version
sys.exit(version('cargo-lambda') != '$CARGO_LAMBDA_VERSION')" 2>/dev/null; then
  echo "== installing cargo-lambda==$CARGO_LAMBDA_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
# `cargo lambda` finds cargo-lambda (and cargo-lambda finds zig) on PATH.
export PATH="$PWD/.venv/bin:$PATH"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "== adding the $target standard library (rustup target add $target)"
  if ! rustup target add "$target"; then
    echo "error: cannot install the Rust standard library for $target, needed for ARCH=$ARCH." >&2
    echo "       Run 'rustup target add $target' where it can be downloaded, or build ARCH=x86_64" >&2
    echo "       and deploy with the template parameter Architecture=x86_64." >&2
    exit 1
  fi
fi

export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_PROFILE_RELEASE_LTO=thin
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-cpu=$cpu"

echo "== cargo lambda build --release $arch_flag --bin $BIN --output-format zip"
start=$(date +%s)
cargo lambda build --release --locked "$arch_flag" --bin "$BIN" --output-format zip --disable-optimizations
elapsed=$(( $(date +%s) - start ))

target_dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo target)
zip="$target_dir/lambda/$BIN/bootstrap.zip"
if [ ! -f "$zip" ]; then
  echo "error: the build finished but $zip is missing" >&2
  exit 1
fi
# A package built for one architecture cannot run on the other; check what the zip holds.
python3 - "$zip" "$ARCH" <<'EOF'
import sys, zipfile
path, arch = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(path) as z:
    names = z.namelist()
    if names != ["bootstrap"]:
        sys.exit(f"error: {path} should hold exactly 'bootstrap', holds {names}")
    info = z.getinfo("bootstrap")
    if not (info.external_attr >> 16) & 0o111:
        sys.exit(f"error: bootstrap in {path} is not executable")
    head = z.open("bootstrap").read(20)
machine = int.from_bytes(head[18:20], "little")
want = {"x86_64": 0x3E, "arm64": 0xB7}[arch]
if head[:4] != b"\x7fELF" or machine != want:
    sys.exit(f"error: bootstrap is not a Linux {arch} executable (ELF machine {machine:#x})")
print(f"bootstrap: {info.file_size / 2**20:.1f} MiB uncompressed, ELF {arch}")
EOF
size=$(stat -c %s "$zip")
echo "== $zip: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }')), built in ${elapsed}s"
echo "   it runs only with the template parameter Architecture=$ARCH; to update a deployed function:"
echo "   aws lambda update-function-code --function-name FUNCTION --zip-file fileb://$zip"
