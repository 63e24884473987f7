//! WebM/Matroska: the tracks' `CodecDelay`, which symphonia-format-mkv 0.6 subtracts from every
//! block timestamp without reporting it. Element headers are read as EBML encodes them; only the
//! `Tracks` of the first Segment are walked, and the walk stops at the first Cluster.

use super::{Refusal, Source, bytes};

/// An element header: its ID, where its data starts, its size (`None`: unknown).
struct Header {
    id: u32,
    data: u64,
    len: Option<u64>,
}

/// The element header at `pos` (`None` at the end of the file, or an invalid ID).
fn read_header<S: Source + ?Sized>(src: &S, pos: u64) -> Result<Option<Header>, Refusal> {
    let b = bytes(src, pos, 13)?;
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return Ok(None);
    }
    let Some(id) = b.get(..id_len) else {
        return Ok(None);
    };
    let id = id.iter().fold(0u32, |v, &x| (v << 8) | u32::from(x));
    let Some((len, width)) = vint(&b[id_len..]) else {
        return Ok(None);
    };
    Ok(Some(Header {
        id,
        data: pos + (id_len + width) as u64,
        len,
    }))
}

/// An EBML variable-size integer: its value (`None`: `0xff`, unknown) and width; a first byte
/// of 0 takes 8 more bytes. `None` if `b` is too short.
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
        let Some(Header { id, data, len }) = read_header(src, pos)? else {
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
