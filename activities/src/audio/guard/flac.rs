//! Native FLAC: the metadata blocks after `fLaC`, each within the file, and the lengths inside
//! its `VORBIS_COMMENT` and `PICTURE` blocks within the block ([`super::xiph`]).
//!
//! symphonia reads every block up to the one marked last before the first audio frame; a
//! block's own length (24 bits) is bounded, the lengths inside the comment and picture blocks
//! are not. Only those two kinds of block are read here; the others are stepped over.

use super::{Refusal, Source, bytes, xiph};

/// `VORBIS_COMMENT` block type.
const COMMENT: u8 = 4;
/// `PICTURE` block type.
const PICTURE: u8 = 6;

/// Checks the metadata blocks of the FLAC stream whose `fLaC` is at `start`.
pub fn check<S: Source + ?Sized>(src: &S, start: u64) -> Result<(), Refusal> {
    let mut pos = start + 4;
    for index in 1u64.. {
        let header = bytes(src, pos, 4)?;
        if header.len() < 4 {
            return Err(Refusal::Corrupt(format!(
                "the FLAC metadata is cut short after {} blocks",
                index - 1
            )));
        }
        let last = header[0] & 0x80 != 0;
        let kind = header[0] & 0x7f;
        let len = u64::from(u32::from_be_bytes([0, header[1], header[2], header[3]]));
        let name = match kind {
            COMMENT => "VORBIS_COMMENT",
            PICTURE => "PICTURE",
            _ => "metadata",
        };
        let body = pos + 4;
        if body + len > src.size() {
            return Err(Refusal::Corrupt(format!(
                "FLAC {name} block {index} claims {len} bytes, past the end of the {}-byte file",
                src.size()
            )));
        }
        let checked = match kind {
            COMMENT => xiph::comment(&bytes(src, body, len)?),
            PICTURE => xiph::picture(&bytes(src, body, len)?),
            _ => Ok(()),
        };
        checked.map_err(|e| Refusal::Corrupt(format!("FLAC {name} block {index}: {e}")))?;
        if last {
            break;
        }
        pos = body + len;
    }
    Ok(())
}
