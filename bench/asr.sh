#!/usr/bin/env bash
# ASR benchmark: the embedded Whisper models (tiny.en, base) on one synthesized minute of
# speech — realtime factor (processing time ÷ audio time, lower is faster) and word error rate
# against the text that was spoken, both models in this one invocation.
# Writes bench/results/asr.md. Needs espeak-ng and ffmpeg (just bench-asr installs them) and
# the models (just setup).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
work="${BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$work" bench/results
cargo build --release --quiet -p reflow-bench --bin asr-bench
bin="$target/release/asr-bench"

# About a minute of meeting speech, two voices taking turns, 0.7 s pauses.
sentences=(
  "Good morning everyone, thank you for joining the weekly planning meeting."
  "First we will look at the support queue, which grew by forty tickets since last week."
  "Most of the new tickets are about password resets and slow page loads on the mobile application."
  "Then Maria will present the new onboarding flow, which shortens the signup form from nine fields to four."
  "It also adds a short product tour for first time visitors."
  "Finally we need a volunteer to organise the team lunch on Friday."
  "Somebody should update the holiday calendar before the end of the month."
  "The quarterly budget review is scheduled for next Tuesday, and every team lead should bring a hiring plan."
  "We decided to freeze travel spending until the budget review is finished."
)
voices=(en-us+m3 en-us+f3)
: > "$work/list.txt"
: > "$work/reference.txt"
for i in "${!sentences[@]}"; do
    espeak-ng -v "${voices[$((i % 2))]}" -s 150 -w "$work/s$i.wav" "${sentences[$i]}"
    ffmpeg -hide_banner -loglevel error -y -i "$work/s$i.wav" -af "apad=pad_dur=0.7,aresample=16000" -ac 1 "$work/p$i.wav"
    echo "file '$work/p$i.wav'" >> "$work/list.txt"
    printf '%s ' "${sentences[$i]}" >> "$work/reference.txt"
done
ffmpeg -hide_banner -loglevel error -y -f concat -safe 0 -i "$work/list.txt" -ac 1 -c:a libopus -b:a 64k "$work/meeting.webm"

"$bin" "$work/meeting.webm" "$work/reference.txt" tiny.en base > "$work/results.jsonl"
cat "$work/results.jsonl"

python3 - "$work/results.jsonl" "$(nproc)" > bench/results/asr.md <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cores = sys.argv[2]
print("# Embedded ASR benchmark\n")
print(f"One synthesized meeting minute (espeak-ng, two voices, {rows[0]['audio_s']:.1f} s, Opus in WebM),")
print(f"transcribed by reflow's embedded Whisper (CTranslate2 int8, beam 5) on {cores} cores, both models")
print("in one invocation. Realtime factor = processing wall time ÷ audio duration (lower is faster);")
print("WER against the text that was spoken (lowercased, punctuation dropped).\n")
print("| model | audio s | wall s | load s | realtime factor | WER | words |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['model']} | {r['audio_s']:.1f} | {r['wall_s']:.2f} | {r['load_s']:.2f} | {r['rtf']:.3f} | {r['wer']:.3f} | {r['words']} |")
base = next(r for r in rows if r['model'] == 'base')
tiny = next(r for r in rows if r['model'] == 'tiny.en')
print(f"\nbase transcript: {base['text']}\n")
print(f"asr_realtime_factor_tiny_en: {tiny['rtf']:.3f}")
print(f"asr_wer_tiny_en: {tiny['wer']:.3f}")
print(f"asr_realtime_factor_base: {base['rtf']:.3f}")
print(f"asr_wer_base: {base['wer']:.3f}")
PY
cat bench/results/asr.md
