# Sourced by local/up and local/test. Besides Rust and Python 3, building needs a C toolchain
# (librdkafka and zlib are built from source) and the tools need Python's venv module: install
# them with apt-get when they are missing and we may, or say exactly what to install.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${need[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing: ${need[*]}. Install them (e.g. sudo apt-get install ${need[*]}) and run again." >&2
    exit 1
  fi
fi
