#!/usr/bin/env bash
# Release build of every function for Lambda (arm64, provided.al2023), one zip each, with each
# zip's size; fails if one is 10 MB or more. Needs cargo-lambda (with zig) on PATH, or in the
# tools folder ./local/test fills; adds Rust's aarch64 standard library with rustup when missing.
# Zips go to ${LAMBDA_DIR:-$CARGO_TARGET_DIR/lambda} (target/lambda without CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${WTC_TOOLS_DIR:-$HOME/.cache/wtc-streaming/tools}"
if ! command -v cargo-lambda >/dev/null && [ -x "$tools/cargo-lambda/bin/cargo-lambda" ]; then
  export PATH="$tools/cargo-lambda/bin:$PATH"
fi
command -v cargo-lambda >/dev/null || {
  echo "cargo-lambda is missing: pip install 'cargo-lambda>=1.8,<2' (it brings zig)" >&2
  exit 1
}
target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  echo "adding Rust's standard library for $target (rustup target add, once)"
  rustup target add "$target" || {
    echo "rustup could not add $target (it downloads from static.rust-lang.org)" >&2
    exit 1
  }
fi
out="${LAMBDA_DIR:-${CARGO_TARGET_DIR:-target}/lambda}"
. infra/arm64-env.sh
started=$SECONDS
cargo lambda build --release --arm64 --output-format zip --lambda-dir "$out" \
  -p process-ticks -p fetch-quotes -p compute-indicators \
  -p stream-cdr-files -p aggregate-usage -p api
echo "built in $((SECONDS - started)) s; zipped artifacts (Lambda takes at most 50 MB; ours must stay under 10 MB):"
status=0
for function in process-ticks fetch-quotes compute-indicators stream-cdr-files aggregate-usage api; do
  zip="$out/$function/bootstrap.zip"
  if [ ! -f "$zip" ]; then
    echo "  $function: no $zip" >&2
    status=1
    continue
  fi
  size=$(stat -c %s "$zip")
  awk -v f="$function" -v s="$size" 'BEGIN { printf "  %-20s %6.2f MB (%d bytes)\n", f, s / 1e6, s }'
  if [ "$size" -ge 10000000 ]; then
    echo "  $function is over 10 MB" >&2
    status=1
  fi
done
exit "$status"
