//! WebM/Opus intake: a track's bytes demuxed (symphonia), decoded (libopus, or whichever codec
//! the probe finds: local sources may be Ogg, WAV, FLAC, MP3), downmixed, resampled to 48 kHz
//! and gap-filled from the packet timestamps — the [`MonoStream`] `pad_track` pulls from —
//! from an in-memory slice ([`AudioReader::from_bytes`]).
//!
//! Bounded: at most [`LIMIT`] output frames are pulled per input. A corrupt timestamp may
//! legitimately ask for up to 24 h of silence (`MAX_TRACK_S`), which the stream hands out block
//! by block; pulling all of it would be a slow input, not a bug.
//!
//! symphonia panics on some damaged containers and `AudioReader` catches those (bad input,
//! not a crash). libFuzzer's panic hook aborts on every panic, caught or not, so this target
//! installs one that only remembers the message: a panic that escapes the decoding is printed
//! and aborts the run (libfuzzer-sys aborts on it), and is the crash to fix.

#![no_main]

use std::cell::RefCell;
use std::sync::Once;

use activities::audio::decode::AudioReader;
use activities::audio::mono::MonoStream;
use libfuzzer_sys::fuzz_target;

/// Output frames pulled per input at most: 10 s at 48 kHz.
const LIMIT: usize = 48_000 * 10;
/// One Opus frame of the padded output (20 ms), what `pad_to_webm` pulls at a time.
const FRAME: usize = 960;

static HOOK: Once = Once::new();

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
        }))
    });
    if let Err(panic) = std::panic::catch_unwind(|| decode(data)) {
        LAST_PANIC.with(|p| eprintln!("panic escaped the decoder: {}", p.borrow()));
        std::panic::resume_unwind(panic);
    }
});

fn decode(data: &[u8]) {
    let Ok(reader) = AudioReader::from_bytes(data.to_vec(), Some("webm"), "fuzz.webm") else {
        return;
    };
    let _ = (reader.is_matroska(), reader.pre_skip(), reader.stats());
    let mut stream = MonoStream::new(reader, "fuzz.webm", true);
    let mut pulled = 0;
    let mut sum = 0f32;
    while pulled < LIMIT {
        if stream.fill(FRAME).is_err() {
            return;
        }
        let n = stream.queue.len().min(FRAME);
        if n == 0 {
            assert!(stream.ended(), "fill returned nothing before the end");
            break;
        }
        sum += stream.queue.drain(..n).sum::<f32>();
        pulled += n;
    }
    std::hint::black_box(sum);
    let _ = (
        stream.first_packet_time(),
        stream.gaps(),
        stream.source_frames(),
    );
}
