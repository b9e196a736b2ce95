# Source before building fetch-quotes for arm64 (`. infra/arm64-env.sh`, then `sam build` or
# `cargo lambda build --release --arm64`): fetch-quotes links librdkafka, which its own configure
# script builds with $CC, so $CC (and $CXX, $AR) must be the same zig toolchain cargo-lambda uses
# for the Rust code; lld also needs to accept librdkafka's version script. The other functions
# build without it. Needs cargo-lambda on PATH.
_wtc_cc_dir="${TMPDIR:-/tmp}/wtc-arm64-cc"
mkdir -p "$_wtc_cc_dir"
printf '#!/bin/sh\nexec cargo-lambda zig cc -- -g -fno-sanitize=all -target aarch64-linux-gnu "$@"\n' >"$_wtc_cc_dir/cc"
printf '#!/bin/sh\nexec cargo-lambda zig c++ -- -g -fno-sanitize=all -target aarch64-linux-gnu "$@"\n' >"$_wtc_cc_dir/c++"
printf '#!/bin/sh\nexec cargo-lambda zig ar -- "$@"\n' >"$_wtc_cc_dir/ar"
chmod +x "$_wtc_cc_dir/cc" "$_wtc_cc_dir/c++" "$_wtc_cc_dir/ar"
export CC="$_wtc_cc_dir/cc" CXX="$_wtc_cc_dir/c++" AR="$_wtc_cc_dir/ar" LDFLAGS="-Wl,--undefined-version"
unset _wtc_cc_dir
