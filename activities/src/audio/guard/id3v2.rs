//! ID3v2 tags in front of an MP3 (or FLAC) file: skipped, never parsed.
//!
//! reflow reads no tag and builds symphonia without its ID3v2 reader, whose probe would then
//! scan through the tag for a frame sync (upstream issue #522). So the decoder is handed the
//! stream from the end of the tags on ([`super::Checked::start`]): only the tag's own size,
//! which says where the audio starts, must fit in the file.

use super::{Refusal, Source, bytes};

/// Where the ID3v2 tag starting at `pos` ends: its 10-byte header, the size it states
/// (synchsafe, at most 256 MB) and its footer (v2.4 with the footer flag).
pub fn tag_end<S: Source + ?Sized>(src: &S, pos: u64) -> Result<u64, Refusal> {
    let header = bytes(src, pos, 10)?;
    if header.len() < 10 {
        return Err(Refusal::Corrupt(format!(
            "the ID3v2 tag at byte {pos} is cut short (its header has {} of 10 bytes)",
            header.len()
        )));
    }
    let (major, flags) = (header[3], header[5]);
    if !(2..=4).contains(&major) {
        return Err(Refusal::Unsupported(format!(
            "the ID3v2 tag at byte {pos} has version 2.{major}, not 2.2 to 2.4"
        )));
    }
    let size = header[6..10]
        .iter()
        .fold(0u64, |n, b| (n << 7) | u64::from(b & 0x7f));
    let footer = if major == 4 && flags & 0x10 != 0 {
        10
    } else {
        0
    };
    let end = pos + 10 + size + footer;
    if end > src.size() {
        return Err(Refusal::Corrupt(format!(
            "the ID3v2 tag at byte {pos} claims {size} bytes, past the end of the {}-byte file",
            src.size()
        )));
    }
    Ok(end)
}
