//! Streaming mixdown (docs/contracts/pipeline.md §4.5): decode every track, bring it to 48 kHz
//! mono, sum, soft-limit, and encode MP3 (LAME, 48 kHz, stereo, 128 kbps CBR) — block by block, so
//! memory is O(tracks × block), whatever the meeting's length.
//!
//! The mix lasts as long as the longest track; shorter tracks contribute silence. There is no
//! gain normalisation (Reflector's `amix normalize=0`); the limiter keeps the sum from clipping.
//!
//! The tracks decode on one thread per core, each track a few blocks ahead of the mix (a
//! bounded channel per track), while the calling thread sums, limits and runs LAME: decoding
//! is most of the work, and the one `reflow-mixdown` slot then has every core.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use mp3lame_encoder::{Bitrate, Builder, DualPcm, FlushNoGap, Quality};

use super::AudioError;
use super::limiter::soft_limit;
use super::mono::MonoStream;

/// Rate of the mix.
pub const MIX_RATE: u32 = super::mono::RATE;
/// Frames mixed per block (100 ms).
pub const BLOCK: usize = 4_800;
/// Blocks a track's decoder may run ahead of the mix.
const AHEAD: usize = 8;

/// What a mixdown produced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MixStats {
    /// Frames of the mix at 48 kHz.
    pub frames: u64,
    /// Largest |sample| of the sum before limiting.
    pub peak_in: f32,
    /// Largest |sample| handed to the encoder.
    pub peak_out: f32,
    /// Bytes of MP3 written.
    pub bytes: u64,
}

impl MixStats {
    /// Length of the mix in ms.
    pub fn duration_ms(&self) -> u64 {
        self.frames * 1000 / u64::from(MIX_RATE)
    }
}

/// Mix `tracks` (local files, each with the name errors use) into an MP3 at `out`. `progress`
/// is called after every block with the mixed length in ms; `Break` stops the work
/// ([`AudioError::Stopped`]).
pub fn mix_to_mp3(
    tracks: &[(PathBuf, String)],
    out: &Path,
    mut progress: impl FnMut(u64) -> ControlFlow<()>,
) -> Result<MixStats, AudioError> {
    let output_err = |e: &dyn std::fmt::Display| AudioError::Output {
        message: format!("{}: {e}", out.display()),
    };
    let streams = tracks
        .iter()
        .map(|(p, n)| MonoStream::open(p, n, false))
        .collect::<Result<Vec<_>, _>>()?;
    // One decoder thread per core at most (the mix thread runs LAME), each taking its share
    // of the tracks in turn: more runnable threads than cores would only crowd out the
    // worker's other tasks.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(streams.len())
        .max(1);
    let mut shares: Vec<Vec<(MonoStream, SyncSender<Block>)>> =
        (0..threads).map(|_| Vec::new()).collect();
    let mut decoded = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        let (tx, rx) = sync_channel(AHEAD);
        shares[i % threads].push((stream, tx));
        decoded.push(rx);
    }
    std::thread::scope(|scope| {
        for share in shares {
            std::thread::Builder::new()
                .name("mixdown-decode".into())
                .spawn_scoped(scope, move || decode_share(share))
                .map_err(|e| output_err(&format!("decoder thread: {e}")))?;
        }
        encode_mix(decoded, out, &mut progress)
    })
}

/// A track's next [`BLOCK`] frames (the last one shorter), or the error that ended it.
type Block = Result<Vec<f32>, AudioError>;

/// Decode the tracks of `share` a block at a time, in turn, into their channels, until each
/// has ended, failed, or lost its reader (the mix stopped). Round-robin keeps every track
/// within [`AHEAD`] blocks of the mix, so one full channel never starves another track.
fn decode_share(mut share: Vec<(MonoStream, SyncSender<Block>)>) {
    while !share.is_empty() {
        share.retain_mut(|(stream, tx)| {
            let block = stream.fill(BLOCK).map(|()| {
                let n = stream.queue.len().min(BLOCK);
                stream.queue.drain(..n).collect::<Vec<f32>>()
            });
            match block {
                Ok(b) if b.is_empty() => false,
                Ok(b) => tx.send(Ok(b)).is_ok(),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    false
                }
            }
        });
    }
}

/// Sum the tracks' blocks as they arrive, limit, and encode the MP3 at `out`.
fn encode_mix(
    mut tracks: Vec<Receiver<Block>>,
    out: &Path,
    progress: &mut impl FnMut(u64) -> ControlFlow<()>,
) -> Result<MixStats, AudioError> {
    let output_err = |e: &dyn std::fmt::Display| AudioError::Output {
        message: format!("{}: {e}", out.display()),
    };
    let mut encoder = Builder::new()
        .ok_or_else(|| output_err(&"LAME could not start"))?
        .with_num_channels(2)
        .and_then(|b| b.with_sample_rate(MIX_RATE))
        .and_then(|b| b.with_brate(Bitrate::Kbps128))
        .and_then(|b| b.with_quality(Quality::Good))
        // The LAME/Xing tag records the encoder delay and padding: decoders that honour it
        // (symphonia's gapless mode, ffmpeg, browsers) start the audio at t = 0 exactly.
        .and_then(|b| b.with_to_write_vbr_tag(true))
        .and_then(|b| b.build())
        .map_err(|e| output_err(&e))?;
    let file = std::fs::File::create(out).map_err(|e| output_err(&e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut stats = MixStats::default();
    let mut mix = vec![0f32; BLOCK];
    let mut mp3 = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(BLOCK));
    loop {
        let mut n = 0;
        let mut live = Vec::with_capacity(tracks.len());
        for rx in tracks.drain(..) {
            // A closed channel is a track that ended.
            let Ok(block) = rx.recv() else { continue };
            let block = block?;
            if n == 0 {
                mix.fill(0.0);
            }
            n = n.max(block.len());
            for (m, v) in mix.iter_mut().zip(&block) {
                *m += v;
            }
            live.push(rx);
        }
        tracks = live;
        if n == 0 {
            break;
        }
        for m in &mut mix[..n] {
            stats.peak_in = stats.peak_in.max(m.abs());
            *m = soft_limit(*m);
            stats.peak_out = stats.peak_out.max(m.abs());
        }
        mp3.clear();
        encoder
            .encode_to_vec(
                DualPcm {
                    left: &mix[..n],
                    right: &mix[..n],
                },
                &mut mp3,
            )
            .map_err(|e| output_err(&e))?;
        writer.write_all(&mp3).map_err(|e| output_err(&e))?;
        stats.bytes += mp3.len() as u64;
        stats.frames += n as u64;
        if progress(stats.duration_ms()).is_break() {
            // Dropping the channels ends the decoder threads.
            return Err(AudioError::Stopped);
        }
    }
    mp3.clear();
    mp3.reserve(mp3lame_encoder::max_required_buffer_size(BLOCK));
    encoder
        .flush_to_vec::<FlushNoGap>(&mut mp3)
        .map_err(|e| output_err(&e))?;
    writer.write_all(&mp3).map_err(|e| output_err(&e))?;
    stats.bytes += mp3.len() as u64;
    writer.flush().map_err(|e| output_err(&e))?;
    // The tag frame was reserved as the first frame; fill it in now that the totals are known.
    let mut tag = Vec::with_capacity(4096);
    if encoder.lame_tag_encode_to_vec(&mut tag).is_some() {
        use std::io::Seek;
        let file = writer.get_mut();
        file.seek(std::io::SeekFrom::Start(encoder.id3v2_tag_size() as u64))
            .map_err(|e| output_err(&e))?;
        file.write_all(&tag).map_err(|e| output_err(&e))?;
        file.flush().map_err(|e| output_err(&e))?;
    }
    Ok(stats)
}
