//! WebM/Matroska: no element symphonia could read into memory claims more than the file, and
//! the frame sizes of a laced block fit in the block.
//!
//! symphonia-format-mkv 0.5.5 reads a string or binary element as `vec![0; size]` then its
//! bytes (`ebml.rs`, `try_read_data`), bounded only by the parent's end, and a master of size 0
//! or of unknown size has no end: the `webm_opus` fuzz target found a `TrackEntry` of size 0
//! holding a 2.7 TB string. A laced block's frames are allocated from the lace sizes
//! (`lacing.rs`), which may claim anything. The whole element tree is walked as symphonia walks
//! it (a master's children from its data on, up to its end; a master without size goes on
//! with what follows; an invalid ID resynchronises on the next top-level ID), reading element
//! headers only, plus the lace header of a laced block.

use super::{Refusal, Source, bytes};

/// Master elements of symphonia-format-mkv 0.5.5 (`element_ids.rs`): their children follow
/// their header.
const MASTERS: [u32; 30] = [
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x1549A966, 0x1F43B675, 0xA0, 0x75A1, 0xA6,
    0x1654AE6B, 0xAE, 0xE0, 0xE1, 0x6D80, 0x6240, 0x5035, 0x47E7, 0x55B0, 0x55D0, 0x1C53BB6B, 0xBB,
    0xB7, 0x1043A770, 0x45B9, 0xB6, 0x80, 0x1254C367, 0x7373, 0x63C0, 0x67C8,
];

/// Top-level elements symphonia resynchronises on after an invalid ID (`is_top_level`).
const TOP_LEVEL: [u32; 6] = [
    0x1F43B675, 0x1C53BB6B, 0x1549A966, 0x114D9B74, 0x1254C367, 0x1654AE6B,
];

/// `SimpleBlock` and `Block`.
const BLOCKS: [u32; 2] = [0xA3, 0xA1];

/// Nesting followed at most; deeper masters are walked as if their children were siblings.
const MAX_DEPTH: usize = 16;

/// Walks the Matroska stream whose EBML header is at `start`.
pub fn check<S: Source + ?Sized>(src: &S, start: u64) -> Result<(), Refusal> {
    let size = src.size();
    let (mut pos, mut end) = (start, size);
    // Where each enclosing master with a size ends, and the end of its own parent.
    let mut resume: Vec<(u64, u64)> = Vec::new();
    loop {
        let header = if pos < end.min(size) {
            read_header(src, pos)?
        } else {
            None
        };
        let Some(header) = header else {
            match resume.pop() {
                Some((p, e)) => (pos, end) = (p, e),
                None => return Ok(()),
            }
            continue;
        };
        match header {
            Header::Invalid => match resync(src, pos + 1)? {
                Some(p) => pos = p,
                None => pos = end,
            },
            Header::Element { id, data, len } => {
                if MASTERS.contains(&id) {
                    match len {
                        Some(n) if n > 0 && resume.len() < MAX_DEPTH => {
                            resume.push((data.saturating_add(n), end));
                            end = data.saturating_add(n);
                        }
                        _ => {}
                    }
                    pos = data;
                    continue;
                }
                let n = len.unwrap_or(0);
                // A recording cut short ends inside its last block: symphonia allocates what
                // that block claims, at most the file's size then, and keeps what came before.
                if n > size {
                    return Err(Refusal::Corrupt(format!(
                        "the WebM element {id:#x} at byte {pos} claims {n} bytes, more than the \
                         whole {size}-byte file"
                    )));
                }
                if BLOCKS.contains(&id)
                    && let Some(e) = laces(src, data, n)?
                {
                    return Err(Refusal::Corrupt(format!(
                        "the WebM block at byte {pos}: {e}"
                    )));
                }
                pos = data + n;
            }
        }
    }
}

enum Header {
    /// An ID whose first byte has more than 3 leading zeros.
    Invalid,
    /// An element: its ID, where its data starts, its size (`None`: unknown).
    Element {
        id: u32,
        data: u64,
        len: Option<u64>,
    },
}

/// The element header at `pos` (`None` at the end of the file).
fn read_header<S: Source + ?Sized>(src: &S, pos: u64) -> Result<Option<Header>, Refusal> {
    let b = bytes(src, pos, 13)?;
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return Ok(Some(Header::Invalid));
    }
    let Some(id) = b.get(..id_len) else {
        return Ok(None);
    };
    let id = id.iter().fold(0u32, |v, &x| (v << 8) | u32::from(x));
    let Some((len, width)) = vint(&b[id_len..]) else {
        return Ok(None);
    };
    Ok(Some(Header::Element {
        id,
        data: pos + (id_len + width) as u64,
        len,
    }))
}

/// symphonia's `read_vint` as a release build computes it: `0xff` alone is unknown; a first
/// byte of 0 takes 8 more bytes. `None` if `b` is too short.
fn vint(b: &[u8]) -> Option<(Option<u64>, usize)> {
    let first = *b.first()?;
    if first == 0xff {
        return Some((None, 1));
    }
    let extra = first.leading_zeros() as usize;
    let rest = b.get(1..1 + extra)?;
    let marker = if extra < 8 { 1u64 << (7 - extra) } else { 0 };
    let value = rest
        .iter()
        .fold(u64::from(first) ^ marker, |v, &x| (v << 8) | u64::from(x));
    Some((Some(value), extra + 1))
}

/// The start of the first top-level element ID at or after `pos`.
fn resync<S: Source + ?Sized>(src: &S, mut pos: u64) -> Result<Option<u64>, Refusal> {
    const CHUNK: u64 = 64 * 1024;
    loop {
        let chunk = bytes(src, pos, CHUNK)?;
        if chunk.len() < 4 {
            return Ok(None);
        }
        if let Some(i) = chunk
            .windows(4)
            .position(|w| TOP_LEVEL.contains(&u32::from_be_bytes(w.try_into().expect("4 bytes"))))
        {
            return Ok(Some(pos + i as u64));
        }
        pos += chunk.len() as u64 - 3;
    }
}

/// A block's lace sizes (Xiph or EBML lacing) within the block, as symphonia reads them.
fn laces<S: Source + ?Sized>(src: &S, data: u64, len: u64) -> Result<Option<String>, Refusal> {
    // Track number, timecode, flags: at most 8 + 2 + 1 bytes.
    let head = bytes(src, data, len.min(12))?;
    let Some((_, track_len)) = vint(&head) else {
        return Ok(None);
    };
    let Some(&flags) = head.get(track_len + 2) else {
        return Ok(None);
    };
    let lacing = (flags >> 1) & 3;
    if lacing != 1 && lacing != 3 {
        return Ok(None);
    }
    let block = bytes(src, data, len)?;
    let mut at = track_len + 3;
    let Some(&frames) = block.get(at) else {
        return Ok(None);
    };
    at += 1;
    let mut sizes: Vec<u64> = Vec::new();
    while sizes.len() < usize::from(frames) {
        let size = if lacing == 1 {
            let mut size = 0u64;
            loop {
                let Some(&b) = block.get(at) else {
                    return Ok(None);
                };
                at += 1;
                size += u64::from(b);
                if b < 255 {
                    break size;
                }
            }
        } else {
            let Some((value, width)) = vint(&block[at.min(block.len())..]) else {
                return Ok(None);
            };
            at += width;
            let value = value.unwrap_or(u64::MAX);
            match sizes.last() {
                None => value,
                Some(&last) => {
                    let half = (1i64 << (7 * width as u32 - 1)) - 1;
                    (last as i64).wrapping_add((value as i64).wrapping_sub(half)) as u64
                }
            }
        };
        sizes.push(size);
    }
    // Against the size the block claims: a block cut short by the end of the file is read
    // (and allocated) as long as it claims.
    let mut left = len.saturating_sub(at as u64);
    for (i, &size) in sizes.iter().enumerate() {
        if size > left {
            return Ok(Some(format!(
                "laced frame {} claims {size} bytes, {left} are left",
                i + 1
            )));
        }
        left -= size;
    }
    Ok(None)
}

/// The `CodecDelay` of each track that has one, as (track number, ns), from the `Tracks` of
/// the first Segment after the EBML header at `start` (symphonia 0.6 takes the delay off every
/// block's timestamp and does not say how much).
pub fn codec_delays<S: Source + ?Sized>(src: &S, start: u64) -> Result<Vec<(u64, u64)>, Refusal> {
    const SEGMENT: u32 = 0x18538067;
    const TRACKS: u32 = 0x1654AE6B;
    const TRACK_ENTRY: u32 = 0xAE;
    const TRACK_NUMBER: u32 = 0xD7;
    const CODEC_DELAY: u32 = 0x56AA;
    const CLUSTER: u32 = 0x1F43B675;
    let size = src.size();
    let mut delays = Vec::new();
    let (mut pos, mut end) = (start, size);
    // (number, delay) of the TrackEntry being read, and where it ends.
    let mut entry: Option<(Option<u64>, Option<u64>, u64)> = None;
    while pos < end {
        if let Some((number, delay, entry_end)) = entry
            && pos >= entry_end
        {
            if let (Some(n), Some(d)) = (number, delay) {
                delays.push((n, d));
            }
            entry = None;
        }
        let Some(Header::Element { id, data, len }) = read_header(src, pos)? else {
            break;
        };
        let data_end = len.map_or(end, |n| data.saturating_add(n).min(end));
        match id {
            SEGMENT | TRACKS => {
                end = data_end;
                pos = data;
            }
            TRACK_ENTRY => {
                entry = Some((None, None, data_end));
                pos = data;
            }
            CLUSTER => break,
            TRACK_NUMBER | CODEC_DELAY if entry.is_some() => {
                let b = bytes(src, data, len.unwrap_or(0).min(8))?;
                let value = b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x));
                if let Some((number, delay, _)) = entry.as_mut() {
                    *(if id == TRACK_NUMBER { number } else { delay }) = Some(value);
                }
                pos = data_end;
            }
            _ if len.is_none() => break,
            _ => pos = data_end,
        }
    }
    if let Some((Some(n), Some(d), _)) = entry {
        delays.push((n, d));
    }
    Ok(delays)
}
