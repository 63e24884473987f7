//! Vorbis comments and FLAC pictures: each length they state must fit in the bytes that hold
//! them.
//!
//! symphonia-metadata 0.5.5 reads a comment as `vec![0; length]` then the bytes (`vorbis.rs`,
//! `read_comment_no_framing`), and a picture's MIME type, description and data the same way
//! (`flac.rs`, `read_picture_block`), the picture also when it is base64 in a
//! `METADATA_BLOCK_PICTURE` comment. A comment block is a FLAC `VORBIS_COMMENT` block, an Ogg
//! Vorbis comment header after its `\x03vorbis`, an `OpusTags` packet after its signature, or
//! an Ogg FLAC metadata packet after its 4-byte block header.

/// Reads the fields of one block, refusing a length larger than what is left.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        if n > self.rest.len() as u64 {
            return Err(format!(
                "{what} claims {n} bytes, {} are left",
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(n as usize);
        self.rest = rest;
        Ok(taken)
    }

    fn u32(&mut self, what: &str, big_endian: bool) -> Result<u32, String> {
        let b: [u8; 4] = self.take(4, what)?.try_into().expect("took 4 bytes");
        Ok(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
}

/// A Vorbis comment block without framing bit: vendor string, count, comments.
pub fn comment(block: &[u8]) -> Result<(), String> {
    let mut f = Fields { rest: block };
    let vendor = f.u32("the vendor length", false)?;
    f.take(u64::from(vendor), "the vendor string")?;
    let count = f.u32("the comment count", false)?;
    if u64::from(count) * 4 > f.rest.len() as u64 {
        return Err(format!(
            "{count} comments cannot fit in the {} bytes left",
            f.rest.len()
        ));
    }
    for i in 0..count {
        let len = f.u32("a comment's length", false)?;
        let text = f.take(u64::from(len), &format!("comment {}", i + 1))?;
        embedded_picture(text)
            .map_err(|e| format!("comment {} (METADATA_BLOCK_PICTURE): {e}", i + 1))?;
    }
    Ok(())
}

/// A FLAC picture block: type, MIME type, description, dimensions, data.
pub fn picture(block: &[u8]) -> Result<(), String> {
    let mut f = Fields { rest: block };
    f.u32("the picture type", true)?;
    let mime = f.u32("the MIME type's length", true)?;
    f.take(u64::from(mime), "the MIME type")?;
    let description = f.u32("the description's length", true)?;
    f.take(u64::from(description), "the description")?;
    f.take(16, "the picture's dimensions and colours")?;
    let data = f.u32("the picture data's length", true)?;
    f.take(u64::from(data), "the picture data")?;
    Ok(())
}

/// A `METADATA_BLOCK_PICTURE=<base64>` comment, matched and decoded as symphonia does (the key
/// lower-cased after a lossy UTF-8 reading; a comment that is not valid base64 is ignored).
fn embedded_picture(text: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(text);
    let Some((key, value)) = text.split_once('=') else {
        return Ok(());
    };
    if key.to_lowercase() != "metadata_block_picture" {
        return Ok(());
    }
    match base64(value) {
        Some(block) => picture(&block),
        None => Ok(()),
    }
}

/// RFC 4648 base64 as symphonia-metadata 0.5.5 decodes it: trailing `=` trimmed, no other
/// symbol allowed, 2 or 3 trailing symbols decoding to 1 or 2 bytes.
fn base64(encoded: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let symbols = encoded.trim_end_matches('=').as_bytes();
    if symbols.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3 + 2);
    for chunk in symbols.chunks(4) {
        let v = chunk
            .iter()
            .map(|&c| value(c))
            .collect::<Option<Vec<u8>>>()?;
        out.push((v[0] << 2) | (v[1] >> 4));
        if v.len() > 2 {
            out.push((v[1] << 4) | (v[2] >> 2));
        }
        if v.len() > 3 {
            out.push((v[2] << 6) | v[3]);
        }
    }
    Some(out)
}
