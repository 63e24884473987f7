//! WAV: every chunk ahead of `data` within the file.
//!
//! symphonia's WAV reader reads the chunks up to `data`; in a `LIST`/`INFO` chunk it allocates
//! each entry's stated length before reading it (`wave/chunks.rs`, `InfoChunk`), bounded only
//! by the enclosing lengths, which the file states too (the RIFF length may be 4 GB). Once
//! each chunk before `data` ends inside the file, no entry can claim more than the file.

use super::{Refusal, Source, bytes};

/// Checks the chunks of the RIFF WAVE file whose `RIFF` is at `start`.
pub fn check<S: Source + ?Sized>(src: &S, start: u64) -> Result<(), Refusal> {
    let mut pos = start + 12;
    loop {
        // symphonia aligns each chunk to 2 bytes from the start of the RIFF body.
        pos += (pos - start) & 1;
        let header = bytes(src, pos, 8)?;
        if header.len() < 8 {
            // No data chunk: symphonia refuses the file without allocating.
            return Ok(());
        }
        if &header[..4] == b"data" {
            return Ok(());
        }
        let len = u64::from(u32::from_le_bytes(
            header[4..8].try_into().expect("4 bytes"),
        ));
        if pos + 8 + len > src.size() {
            return Err(Refusal::Corrupt(format!(
                "the WAV '{}' chunk claims {len} bytes, past the end of the {}-byte file",
                String::from_utf8_lossy(&header[..4]).escape_debug(),
                src.size()
            )));
        }
        pos += 8 + len;
    }
}
