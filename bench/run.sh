#!/usr/bin/env bash
# The runtime benchmark in one command: bench/run.sh [--reps 3 --duration 5 --only small wide conv]
# Creates the virtual environments it needs under bench/.work/venvs/ on first use (ours: this
# repository; kserve==0.21.*; mlserver==1.7.1 with uvloop==0.21.0; bench: the driver's tools),
# installs Debian's wrk if missing, then runs bench/run.py (see its docstring).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venvs="$here/.work/venvs"
mkdir -p "$venvs"
py="${PYTHON:-python3.11}"
make_venv() {  # name, then pip arguments
    local name="$1"; shift
    if [ ! -x "$venvs/$name/bin/python" ] || [ ! -f "$venvs/$name/.installed" ]; then
        echo "creating $venvs/$name" >&2
        "$py" -m venv "$venvs/$name" || return 1
        "$venvs/$name/bin/pip" install -q "$@" || return 1
        touch "$venvs/$name/.installed"
    fi
}
make_venv ours -e "$repo/client" -e "$repo"  # the runtime depends on the client (client/)
make_venv bench onnx "onnxruntime==1.31.*" numpy orjson matplotlib py-spy pyinstrument
skip=()
# A peer that cannot be installed is left out (and says why in the log), not fatal.
make_venv kserve "kserve==0.21.*" "onnxruntime==1.31.*" numpy \
    || { echo "kserve could not be installed: see the pip output above" >&2; skip+=(kserve); }
make_venv mlserver "mlserver==1.7.1" "uvloop==0.21.0" "onnxruntime==1.31.*" numpy \
    || { echo "mlserver could not be installed: see the pip output above" >&2; skip+=(mlserver); }
if ! command -v wrk > /dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk
fi
cd "$here"
if [ ${#skip[@]} -gt 0 ]; then
    exec "$venvs/bench/bin/python" "$here/run.py" --skip "${skip[@]}" "$@"
fi
exec "$venvs/bench/bin/python" "$here/run.py" "$@"
