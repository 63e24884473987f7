//! What symphonia is handed: the container at the start of the file, and only that.
//!
//! symphonia 0.5 allocated the lengths metadata states before reading them (upstream issue
//! <https://github.com/pdeljanov/Symphonia/issues/508>; the `webm_opus` fuzz target found four
//! such sites), and this module used to check every length prefix before symphonia read the
//! file. symphonia 0.6.1 reads such buffers as they arrive (upstream commit a3801864), and every
//! hostile input of those checks is refused by it (the tests here keep them), so the length
//! checks are gone. What 0.6.1 still does that reflow does not want:
//!
//! - its probe looks for a container marker anywhere in the first megabyte, so `fLaC` in the
//!   middle of garbage is read as FLAC: here the container is the one whose magic starts the
//!   file ([`check`]): EBML (WebM/Matroska), `RIFF`…`WAVE`, `fLaC`, `OggS`, or an MPEG audio
//!   frame sync, and the decoder's probe only knows that one reader ([`probe`]);
//! - ID3v2 tags in front of an MP3 are scanned through for a frame sync when no ID3v2 reader is
//!   built in (none is: reflow reads no tag), and a sync-like pair inside cover art is taken for
//!   audio (upstream issue #522, new in 0.6.0), and a tag over a megabyte ends the probe: the tags
//!   are skipped unparsed ([`id3v2`]; only their size must fit in the file) and symphonia is
//!   handed the stream from the end of them on ([`Checked::start`]).
//!
//! [`matroska`] also reads the one Matroska fact symphonia 0.6 does not report, the tracks'
//! `CodecDelay`.

pub mod id3v2;
pub mod matroska;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::LazyLock;

use symphonia::core::formats::probe::Probe;
use symphonia::default::formats::{FlacReader, MkvReader, MpaReader, OggReader, WavReader};

/// A container symphonia may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// WebM/Matroska (EBML).
    Matroska,
    /// RIFF WAVE.
    Wav,
    /// Native FLAC.
    Flac,
    /// Ogg (Opus, Vorbis or FLAC inside).
    Ogg,
    /// MPEG audio (MP3), possibly after ID3v2 tags.
    Mp3,
}

/// What [`check`] found: the container, and where it starts (after any ID3v2 tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The container at `start`.
    pub container: Container,
    /// Bytes to skip (ID3v2 tags) before the container.
    pub start: u64,
}

/// Why a file is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No container this build decodes starts the file.
    Unsupported(String),
    /// An ID3v2 tag in front claims more than the file.
    Corrupt(String),
    /// The file could not be read.
    Read(String),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Read(e.to_string())
    }
}

/// Bytes read by position: a file, or a slice in memory.
pub trait Source {
    /// The number of bytes.
    fn size(&self) -> u64;
    /// Reads at `pos` into `buf`, returning how many bytes were read (0 at the end).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(pos).map_or(self.len(), |p| p.min(self.len()));
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl Source for std::fs::File {
    fn size(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(self, &mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// Up to `n` bytes at `pos` (fewer at the end of `src`); `n` is never more than what is left.
pub fn bytes<S: Source + ?Sized>(src: &S, pos: u64, n: u64) -> io::Result<Vec<u8>> {
    let n = n.min(src.size().saturating_sub(pos));
    let mut buf = vec![0; n as usize];
    let got = src.read_at(pos, &mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

/// ID3v2 tags skipped in front of a container at most.
const MAX_ID3_TAGS: usize = 16;

/// The first two bytes of the MPEG audio frames symphonia's MP3 reader looks for (layer III).
const MP3_SYNCS: [[u8; 2]; 6] = [
    [0xff, 0xfa],
    [0xff, 0xfb],
    [0xff, 0xf2],
    [0xff, 0xf3],
    [0xff, 0xe2],
    [0xff, 0xe3],
];

/// The container at the start of `src`, after its ID3v2 tags.
pub fn check<S: Source + ?Sized>(src: &S) -> Result<Checked, Refusal> {
    let mut start = 0;
    let mut tags = 0;
    let container = loop {
        let head = bytes(src, start, 12)?;
        if head.starts_with(b"ID3") {
            if tags == MAX_ID3_TAGS {
                return Err(Refusal::Unsupported(format!(
                    "more than {MAX_ID3_TAGS} ID3v2 tags in front of the audio"
                )));
            }
            start = id3v2::tag_end(src, start)?;
            tags += 1;
            continue;
        }
        break if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
            Container::Matroska
        } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
            Container::Wav
        } else if head.starts_with(b"fLaC") {
            Container::Flac
        } else if head.starts_with(b"OggS") {
            Container::Ogg
        } else if tags > 0 || MP3_SYNCS.iter().any(|s| head.starts_with(s)) {
            // After ID3v2 tags, symphonia's MP3 reader looks for the first frame itself.
            Container::Mp3
        } else {
            return Err(Refusal::Unsupported(format!(
                "no audio container (WebM/Matroska, WAV, FLAC, Ogg, MP3) starts the file \
                 (its first bytes: {})",
                hex(&head[..head.len().min(8)])
            )));
        };
    };
    Ok(Checked { container, start })
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A probe that knows only `container`'s reader: it finds that reader's marker at the start
/// of the stream [`check`] looked at, and no other reader anywhere further.
pub fn probe(container: Container) -> &'static Probe {
    fn only(register: fn(&mut Probe)) -> Probe {
        let mut probe = Probe::default();
        register(&mut probe);
        probe
    }
    static MATROSKA: LazyLock<Probe> =
        LazyLock::new(|| only(|p| p.register_format::<MkvReader<'_>>()));
    static WAV: LazyLock<Probe> = LazyLock::new(|| only(|p| p.register_format::<WavReader<'_>>()));
    static FLAC: LazyLock<Probe> =
        LazyLock::new(|| only(|p| p.register_format::<FlacReader<'_>>()));
    static OGG: LazyLock<Probe> = LazyLock::new(|| only(|p| p.register_format::<OggReader<'_>>()));
    static MP3: LazyLock<Probe> = LazyLock::new(|| only(|p| p.register_format::<MpaReader<'_>>()));
    match container {
        Container::Matroska => &MATROSKA,
        Container::Wav => &WAV,
        Container::Flac => &FLAC,
        Container::Ogg => &OGG,
        Container::Mp3 => &MP3,
    }
}
