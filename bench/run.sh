#!/usr/bin/env bash
# The runtime benchmark in one command: bench/run.sh [--reps 3 --duration 5 --only small wide conv]
# The hot path's regression guard (bench/check.py, about 30 s): bench/run.sh check [--min 0.50]
# gRPC on grpc.aio vs on uvicorn's HTTP/2 (bench/grpc_h2.py, an experiment): bench/run.sh h2 [--ours]
# Creates the virtual environments it needs under bench/.work/venvs/ on first use (ours: this
# repository; kserve==0.21.*; mlserver==1.7.1 with uvloop==0.21.0; bench: the driver's tools),
# installs Debian's wrk if missing, then runs bench/run.py (see its docstring).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venvs="$here/.work/venvs"
mkdir -p "$venvs"
py="${PYTHON:-python3.11}"
# A venv is (re)installed when its pip arguments or this repository's dependencies changed.
deps=$(cat "$repo/pyproject.toml" "$repo/client/pyproject.toml" | sha256sum | cut -d' ' -f1)
make_venv() {  # name, then pip arguments
    local name="$1"; shift
    local want="$* $deps"
    if [ ! -x "$venvs/$name/bin/python" ] || [ "$(cat "$venvs/$name/.installed" 2>/dev/null)" != "$want" ]; then
        echo "installing $venvs/$name" >&2
        [ -x "$venvs/$name/bin/python" ] || "$py" -m venv "$venvs/$name" || return 1
        "$venvs/$name/bin/pip" install -q "$@" || return 1
        echo "$want" > "$venvs/$name/.installed"
    fi
}
make_venv ours -e "$repo/client" -e "$repo[h2]"  # the runtime needs the client (client/); h2:
# the opt-in gRPC transport (--grpc-transport h2)
make_venv bench onnx "onnxruntime==1.31.*" numpy orjson matplotlib py-spy pyinstrument
if ! command -v wrk > /dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk
fi
if [ "${1:-}" = h2 ]; then  # gRPC on grpc.aio vs on uvicorn's HTTP/2 (zttp): an experiment
    shift
    make_venv h2 -e "$repo/client" "uvicorn[standard]==0.54.0" "zttp==0.0.35" grpcio numpy \
        "onnxruntime==1.32.*"
    if [[ " $* " == *" --ours "* ]]; then  # ours on HTTP/2: the runtime with zttp beside it
        make_venv h2ours -e "$repo/client" -e "$repo" "zttp==0.0.35"
        make_venv kserve "kserve==0.21.*" "onnxruntime==1.31.*" numpy
    fi
    cd "$here"
    exec "$venvs/bench/bin/python" "$here/grpc_h2.py" "$@"
fi
if [ "${1:-}" = check ]; then  # ours and the floor only: no peers' venvs
    shift
    cd "$here"
    exec "$venvs/bench/bin/python" "$here/check.py" "$@"
fi
skip=()
# A peer that cannot be installed is left out (and says why in the log), not fatal.
make_venv kserve "kserve==0.21.*" "onnxruntime==1.31.*" numpy \
    || { echo "kserve could not be installed: see the pip output above" >&2; skip+=(kserve); }
make_venv mlserver "mlserver==1.7.1" "uvloop==0.21.0" "onnxruntime==1.31.*" numpy \
    || { echo "mlserver could not be installed: see the pip output above" >&2; skip+=(mlserver); }
cd "$here"
if [ ${#skip[@]} -gt 0 ]; then
    exec "$venvs/bench/bin/python" "$here/run.py" --skip "${skip[@]}" "$@"
fi
exec "$venvs/bench/bin/python" "$here/run.py" "$@"
