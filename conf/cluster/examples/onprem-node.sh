#!/usr/bin/env bash
# The per-platform setup of a node of conf/cluster/examples/onprem-ray-up.yaml (Ray's local
# provider runs the same setup on every node: it has no node types). Idempotent.
#
#   bash ~/tuner/conf/cluster/examples/onprem-node.sh
#
# Leaves ~/tuner-venv/bin/python on every node, so the YAML's start commands are the same
# everywhere. What each platform gets (the node agent's detection, conf/platform/<name>.yaml):
#   rpi4, rpi4-coral, milan, x8664, aarch64
#                 a venv with $TUNER_PYTHON, the core install (Ray, LoadGen, which builds
#                 from source, ONNX Runtime), then the extras of the platform's runtimes
#                 (`python -m tuner.node extras`: [litert,tvm]). The Coral Pi's Edge TPU
#                 runtime (libedgetpu1-std) comes from Coral's apt repository, by hand.
#   jetson-nano   JetPack 4.6 has Python 3.6 and glibc 2.27, too old for the tuner's wheels:
#                 a container ($TUNER_IMAGE: Debian bookworm, the head's Python) on the host
#                 network holds the install, and ~/tuner-venv/bin/python forwards to it.
# Environment: TUNER_PYTHON (default python3.11: the head's minor release, any patch; see
# the YAML), TUNER_SRC (~/tuner), TUNER_VENV (~/tuner-venv), TUNER_IMAGE (default
# python:3.11-bookworm). A Jetson on JetPack 6 (Python 3.10): docs/arm64_and_jetson.md.
set -euo pipefail

PY=${TUNER_PYTHON:-python3.11}
SRC=${TUNER_SRC:-$HOME/tuner}
VENV=${TUNER_VENV:-$HOME/tuner-venv}
IMAGE=${TUNER_IMAGE:-python:3.11-bookworm}
CONTAINER=tuner-node

die() { echo "onprem-node: $*" >&2; exit 1; }

# The Nano's own Python (3.6) cannot run the agent's detection, so it is recognised here.
jetson_nano() {
    [ -f /etc/nv_tegra_release ] || return 1
    local model
    model=$(tr -d '\0' </proc/device-tree/model 2>/dev/null || true)
    [[ $model == *"Jetson Nano"* && $model != *Orin* ]]
}

if jetson_nano; then
    command -v docker >/dev/null || die "docker not found (JetPack 4.6 ships it: apt install docker.io)"
    if ! docker inspect "$CONTAINER" >/dev/null 2>&1; then
        # host network: Ray's ports are the host's; the checkout, the token and the agent's
        # records at the same paths as on the host; nv_tegra_release so the agent detects
        # the Nano. CPU only: no GPU runtime is passed in (conf/platform/jetson-nano.yaml).
        mkdir -p "$HOME/.tuner"
        docker run -d --name "$CONTAINER" --network host --restart unless-stopped \
            -v "$SRC":"$SRC" -v "$HOME/.tuner":"$HOME/.tuner" -e HOME="$HOME" \
            -v /etc/nv_tegra_release:/etc/nv_tegra_release:ro \
            "$IMAGE" sleep infinity >/dev/null
    fi
    docker exec "$CONTAINER" python -m pip install -q -e "$SRC[litert,tvm]"
    mkdir -p "$VENV/bin"
    printf '#!/bin/sh\n# Jetson Nano: the tuner runs in the container %s (onprem-node.sh)\nexec docker exec -i %s python "$@"\n' \
        "$CONTAINER" "$CONTAINER" >"$VENV/bin/python"
    chmod +x "$VENV/bin/python"
    exit 0
fi

command -v "$PY" >/dev/null || die "$PY not found: install the head's Python (apt install python3.11 python3.11-venv python3.11-dev, or uv python install)"
command -v g++ >/dev/null || die "g++ not found: apt install g++ (LoadGen builds from source)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q -e "$SRC"          # core: Ray, LoadGen, ONNX Runtime
"$VENV/bin/pip" install -q -e "$("$VENV/bin/python" -m tuner.node extras --spec "$SRC")"
