//! `audio-bench OUT.mp3 TRACK...`: reflow's mixdown and waveform on local files, exactly the
//! library code the `mixdown_tracks` and `generate_waveform` activities run (without storage
//! transfers). Prints one JSON line with the phase timings; `bench/audio.sh` runs it under
//! `/usr/bin/time -v` next to ffmpeg and writes `bench/results/audio.md`.

use std::path::PathBuf;
use std::time::Instant;

use activities::audio::mix::mix_to_mp3;
use activities::audio::waveform::waveform_of_file;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: audio-bench OUT.mp3 TRACK..."))?,
    );
    let tracks: Vec<(PathBuf, String)> = args.map(|a| (PathBuf::from(&a), a)).collect();
    anyhow::ensure!(!tracks.is_empty(), "usage: audio-bench OUT.mp3 TRACK...");
    let t0 = Instant::now();
    let stats = mix_to_mp3(&tracks, &out, |_| {})?;
    let mix_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let peaks = waveform_of_file(&out, "audio.mp3")?;
    let waveform_s = t1.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"tracks": tracks.len(), "duration_ms": stats.duration_ms(), "mix_s": mix_s,
                           "waveform_s": waveform_s, "peaks": peaks.len(), "peak_in": stats.peak_in,
                           "peak_out": stats.peak_out, "mp3_bytes": stats.bytes})
    );
    Ok(())
}
