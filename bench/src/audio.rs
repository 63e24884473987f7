//! `audio-bench OUT.mp3 TRACK...`: reflow's padding, mixdown and waveform on local files,
//! exactly the library code the `pad_track`, `mixdown_tracks` and `generate_waveform`
//! activities run (without storage transfers), one track after the other. Padded tracks go
//! next to `OUT.mp3`. Prints one JSON line with the phase timings; `bench/audio.sh` runs it
//! under `/usr/bin/time -v` next to ffmpeg and writes `bench/results/audio.md`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use activities::audio::mix::mix_to_mp3;
use activities::audio::pad::pad_to_webm;
use activities::audio::waveform::waveform_of_file;

fn main() -> anyhow::Result<()> {
    let usage = || anyhow::anyhow!("usage: audio-bench OUT.mp3 TRACK...");
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or_else(usage)?);
    let raw: Vec<PathBuf> = args.map(PathBuf::from).collect();
    anyhow::ensure!(!raw.is_empty(), usage());
    let dir = out.parent().map(PathBuf::from).unwrap_or_default();
    let t0 = Instant::now();
    let mut padded = Vec::new();
    let mut offsets = Vec::new();
    for (i, track) in raw.iter().enumerate() {
        let path = dir.join(format!("reflow_padded_{i}.webm"));
        let stats = pad_to_webm(track, &track.display().to_string(), None, &path, |_| {
            ControlFlow::Continue(())
        })?;
        offsets.push(stats.offset_ms);
        padded.push((path, format!("padded_{i}")));
    }
    let pad_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let stats = mix_to_mp3(&padded, &out, |_| ControlFlow::Continue(()))?;
    let mix_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let peaks = waveform_of_file(&out, "audio.mp3", || ControlFlow::Continue(()))?;
    let waveform_s = t2.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"tracks": raw.len(), "offsets_ms": offsets, "duration_ms": stats.duration_ms(),
                           "pad_s": pad_s, "mix_s": mix_s, "waveform_s": waveform_s, "peaks": peaks.len(),
                           "peak_in": stats.peak_in, "peak_out": stats.peak_out, "mp3_bytes": stats.bytes})
    );
    Ok(())
}
