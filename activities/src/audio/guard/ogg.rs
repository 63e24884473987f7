//! Ogg: every packet symphonia would parse as a comment header, checked ([`super::xiph`]).
//!
//! symphonia's Ogg reader maps *every* packet of a stream, not only the headers: a Vorbis
//! packet starting `\x03vorbis` is read as a comment header wherever it sits, an Ogg FLAC
//! packet whose first byte is not `0xff` as a metadata block, and Opus packets as `OpusTags`
//! until one is. So the whole file is walked, page by page as symphonia reads it (capture
//! pattern, header, CRC; after a bad page it resynchronises where symphonia does), packets
//! reassembled per stream as symphonia does (a gap in page sequence numbers or a missing
//! continuation drops the partial packet; at most 16 MB buffered), and each packet a mapper
//! would parse as a comment or picture is checked. Reading is by page: memory stays at one
//! page and one packet per stream.

use std::collections::HashMap;

use super::{Refusal, Source, bytes, xiph};

/// Page header bytes, capture pattern included.
const HEADER: u64 = 27;
/// The largest partial packet symphonia buffers (`LogicalStream::MAX_PACKET_LEN`).
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// One page symphonia would accept.
struct Page {
    serial: u32,
    sequence: u32,
    continuation: bool,
    first: bool,
    /// Lengths of the packets that end on this page.
    lens: Vec<usize>,
    body: Vec<u8>,
}

/// What reading at a position gives.
enum Read {
    /// A page, and where the next read starts.
    Page(Page, u64),
    /// A damaged page: symphonia skips it and reads again from here.
    Skip(u64),
    /// The end of the stream.
    End,
}

/// The codec a stream's first packet names (symphonia's `mappings::detect`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Flac,
    Vorbis,
    Opus,
    Other,
}

/// One logical stream as symphonia's `LogicalStream` keeps it.
struct Stream {
    codec: Codec,
    sequence: Option<u32>,
    partial: Vec<u8>,
    /// Opus: no `OpusTags` read yet.
    need_tags: bool,
    /// An audio packet was mapped (ends the header pages of a physical stream).
    has_packets: bool,
}

/// Walks the Ogg stream starting at `start`.
pub fn check<S: Source + ?Sized>(src: &S, start: u64) -> Result<(), Refusal> {
    let mut pos = start;
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    // In the header pages of a physical stream (after its first pages) until one of its
    // streams has an audio packet; first pages there do not start another physical stream.
    let mut in_headers = false;
    loop {
        let page = match read_page(src, pos)? {
            Read::Page(page, next) => {
                pos = next;
                page
            }
            Read::Skip(next) => {
                pos = next;
                continue;
            }
            Read::End => return Ok(()),
        };
        if page.first && !in_headers {
            // A new physical stream: its first pages name the codecs of its streams.
            streams.clear();
            let mut page = page;
            loop {
                if let Some(&len) = page.lens.first() {
                    streams.insert(page.serial, Stream::new(detect(&page.body[..len])));
                }
                page = loop {
                    match read_page(src, pos)? {
                        Read::Page(next_page, next) => {
                            pos = next;
                            break next_page;
                        }
                        Read::Skip(next) => pos = next,
                        Read::End => return Ok(()),
                    }
                };
                if !page.first {
                    break;
                }
            }
            in_headers = true;
            read(&mut streams, &page, &mut in_headers)?;
            continue;
        }
        read(&mut streams, &page, &mut in_headers)?;
    }
}

/// Hands `page` to its stream, if it has one.
fn read(
    streams: &mut HashMap<u32, Stream>,
    page: &Page,
    in_headers: &mut bool,
) -> Result<(), Refusal> {
    if let Some(stream) = streams.get_mut(&page.serial) {
        stream.read_page(page)?;
        if stream.has_packets {
            *in_headers = false;
        }
    }
    Ok(())
}

fn detect(packet: &[u8]) -> Codec {
    if packet.starts_with(b"\x7fFLAC") {
        Codec::Flac
    } else if packet.starts_with(b"\x01vorbis") {
        Codec::Vorbis
    } else if packet.starts_with(b"OpusHead") {
        Codec::Opus
    } else {
        Codec::Other
    }
}

impl Stream {
    fn new(codec: Codec) -> Self {
        Stream {
            codec,
            sequence: None,
            partial: Vec::new(),
            need_tags: true,
            has_packets: false,
        }
    }

    /// symphonia's `LogicalStream::read_page`: the packets this page completes.
    fn read_page(&mut self, page: &Page) -> Result<(), Refusal> {
        if let Some(previous) = self.sequence
            && (page.sequence < previous || page.sequence - previous > 1)
        {
            self.partial.clear();
        }
        self.sequence = Some(page.sequence);
        if !page.continuation {
            self.partial.clear();
        }
        let mut lens = page.lens.iter();
        let mut at = 0;
        if page.continuation && self.partial.is_empty() {
            match lens.next() {
                Some(&len) => at = len,
                None => return Ok(()),
            }
        }
        for &len in lens {
            let piece = &page.body[at..at + len];
            at += len;
            if self.partial.is_empty() {
                self.map(piece)?;
            } else {
                let mut packet = std::mem::take(&mut self.partial);
                packet.extend_from_slice(piece);
                self.map(&packet)?;
            }
        }
        let rest = &page.body[at..];
        if !rest.is_empty() {
            if self.partial.len() + rest.len() > MAX_PACKET {
                // symphonia gives up on the stream here.
                return Err(Refusal::Corrupt(format!(
                    "an Ogg packet of stream {:#x} exceeds {MAX_PACKET} bytes",
                    page.serial
                )));
            }
            self.partial.extend_from_slice(rest);
        }
        Ok(())
    }

    /// The part of symphonia's mappers' `map_packet` that reads comments and pictures.
    fn map(&mut self, packet: &[u8]) -> Result<(), Refusal> {
        let corrupt = |what: &str, e: String| Refusal::Corrupt(format!("Ogg {what}: {e}"));
        match self.codec {
            Codec::Vorbis => match packet.first() {
                Some(3) if packet.get(1..7) == Some(b"vorbis") => {
                    xiph::comment(&packet[7..]).map_err(|e| corrupt("Vorbis comment header", e))?
                }
                Some(t) if t & 1 == 0 => self.has_packets = true,
                _ => {}
            },
            Codec::Opus if self.need_tags => {
                if let Some(tags) = packet.strip_prefix(b"OpusTags") {
                    xiph::comment(tags).map_err(|e| corrupt("OpusTags header", e))?;
                    self.need_tags = false;
                }
            }
            Codec::Opus => self.has_packets = true,
            Codec::Flac => match packet.first() {
                Some(0xff) => self.has_packets = true,
                Some(0x00 | 0x80) | None => {}
                Some(t) if packet.len() >= 4 => match t & 0x7f {
                    4 => xiph::comment(&packet[4..])
                        .map_err(|e| corrupt("FLAC VORBIS_COMMENT packet", e))?,
                    6 => xiph::picture(&packet[4..])
                        .map_err(|e| corrupt("FLAC PICTURE packet", e))?,
                    _ => {}
                },
                Some(_) => {}
            },
            Codec::Other => {}
        }
        Ok(())
    }
}

/// symphonia's `PageReader::try_next_page` from `pos`: find `OggS`, read the header; a bad
/// version or flags resumes after the header, a bad CRC right after the capture pattern.
fn read_page<S: Source + ?Sized>(src: &S, pos: u64) -> Result<Read, Refusal> {
    let Some(at) = find_capture(src, pos)? else {
        return Ok(Read::End);
    };
    let head = bytes(src, at, HEADER + 255)?;
    if (head.len() as u64) < HEADER {
        return Ok(Read::End);
    }
    let (version, flags) = (head[4], head[5]);
    if version != 0 || flags & 0xf8 != 0 {
        return Ok(Read::Skip(at + HEADER));
    }
    let segments = u64::from(head[26]);
    let Some(table) = head.get(HEADER as usize..(HEADER + segments) as usize) else {
        return Ok(Read::End);
    };
    let body_len: u64 = table.iter().map(|&s| u64::from(s)).sum();
    let body = bytes(src, at + HEADER + segments, body_len)?;
    if (body.len() as u64) < body_len {
        return Ok(Read::End);
    }
    let mut crc = Crc::default();
    crc.update(&head[..22]);
    crc.update(&[0; 4]);
    crc.update(&head[26..(HEADER + segments) as usize]);
    crc.update(&body);
    if crc.0 != u32::from_le_bytes(head[22..26].try_into().expect("4 bytes")) {
        return Ok(Read::Skip(at + 4));
    }
    let mut lens = Vec::new();
    let mut len = 0;
    for &s in table {
        len += usize::from(s);
        if s < 255 {
            lens.push(len);
            len = 0;
        }
    }
    let page = Page {
        serial: u32::from_le_bytes(head[14..18].try_into().expect("4 bytes")),
        sequence: u32::from_le_bytes(head[18..22].try_into().expect("4 bytes")),
        continuation: flags & 0x01 != 0,
        first: flags & 0x02 != 0,
        lens,
        body,
    };
    Ok(Read::Page(page, at + HEADER + segments + body_len))
}

/// The first `OggS` at or after `pos`.
fn find_capture<S: Source + ?Sized>(src: &S, mut pos: u64) -> Result<Option<u64>, Refusal> {
    const CHUNK: u64 = 64 * 1024;
    // Pages follow each other: the next one almost always starts right here.
    if bytes(src, pos, 4)? == b"OggS" {
        return Ok(Some(pos));
    }
    loop {
        let chunk = bytes(src, pos, CHUNK)?;
        if chunk.len() < 4 {
            return Ok(None);
        }
        if let Some(i) = chunk.windows(4).position(|w| w == b"OggS") {
            return Ok(Some(pos + i as u64));
        }
        pos += chunk.len() as u64 - 3;
    }
}

/// Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0.
#[derive(Default)]
pub(super) struct Crc(pub(super) u32);

impl Crc {
    pub(super) fn update(&mut self, bytes: &[u8]) {
        static TABLE: std::sync::LazyLock<[u32; 256]> = std::sync::LazyLock::new(|| {
            let mut table = [0u32; 256];
            for (i, entry) in table.iter_mut().enumerate() {
                let mut r = (i as u32) << 24;
                for _ in 0..8 {
                    r = if r & 0x8000_0000 != 0 {
                        (r << 1) ^ 0x04c1_1db7
                    } else {
                        r << 1
                    };
                }
                *entry = r;
            }
            table
        });
        for &b in bytes {
            self.0 = (self.0 << 8) ^ TABLE[((self.0 >> 24) as u8 ^ b) as usize];
        }
    }
}
