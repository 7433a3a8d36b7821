//! On-disk record format, version 1. An object is one head record (meta, URL, tags, purge
//! stamp, body length and the crc32 of every body chunk) plus its body chunks, each a separate
//! foyer entry smaller than a block. Everything read back is length-checked and crc-checked:
//! a record that does not verify is reported as corrupt (the caller turns it into a miss).

use bytes::Bytes;
use pingora_cache::key::HashBinary;

/// Head records start with this; the last byte is the format version.
const HEAD_MAGIC: [u8; 4] = *b"OPH\x01";
/// Body chunk records start with this.
const CHUNK_MAGIC: [u8; 4] = *b"OPC\x01";
/// Written over a head to remove its object.
pub(crate) const REMOVED: [u8; 4] = *b"OPX\x01";

/// A record that failed to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// The head record of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Entry id: part of the chunk keys, so chunks of two generations never mix.
    pub(crate) gen: u64,
    /// Purge sequence number the object is judged by (see `purge/bans.rs`).
    pub(crate) stamp: u64,
    pub(crate) body_len: u64,
    /// Every chunk but the last has exactly this many bytes.
    pub(crate) chunk_size: u32,
    pub(crate) chunk_crcs: Vec<u32>,
    pub(crate) primary: HashBinary,
    /// `CacheMeta::serialize()` output.
    pub(crate) meta: (Vec<u8>, Vec<u8>),
    pub(crate) url: String,
    pub(crate) tags: Vec<String>,
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, Corrupt> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Corrupt("invalid UTF-8"))
    }
}

impl Head {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(
            128 + self.meta.0.len() + self.meta.1.len() + self.url.len(),
        ));
        w.u64(self.gen);
        w.u64(self.stamp);
        w.u64(self.body_len);
        w.u32(self.chunk_size);
        w.u32(u32::try_from(self.chunk_crcs.len()).unwrap_or(u32::MAX));
        for crc in &self.chunk_crcs {
            w.u32(*crc);
        }
        w.0.extend_from_slice(&self.primary);
        w.bytes(&self.meta.0);
        w.bytes(&self.meta.1);
        w.bytes(self.url.as_bytes());
        w.u32(u32::try_from(self.tags.len()).unwrap_or(u32::MAX));
        for t in &self.tags {
            w.bytes(t.as_bytes());
        }
        seal(HEAD_MAGIC, &w.0)
    }

    pub(crate) fn decode(record: &[u8]) -> Result<Head, Corrupt> {
        let mut r = Reader(open(HEAD_MAGIC, record)?);
        let gen = r.u64()?;
        let stamp = r.u64()?;
        let body_len = r.u64()?;
        let chunk_size = r.u32()?;
        let n = r.u32()? as usize;
        let crcs = r.take(n.checked_mul(4).ok_or(Corrupt("chunk count"))?)?;
        let chunk_crcs = crcs
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut primary = [0; 16];
        primary.copy_from_slice(r.take(16)?);
        let meta = (r.bytes()?.to_vec(), r.bytes()?.to_vec());
        let url = r.string()?;
        let ntags = r.u32()? as usize;
        let mut tags = Vec::with_capacity(ntags.min(256));
        for _ in 0..ntags {
            tags.push(r.string()?);
        }
        let head = Head {
            gen,
            stamp,
            body_len,
            chunk_size,
            chunk_crcs,
            primary,
            meta,
            url,
            tags,
        };
        head.check()?;
        Ok(head)
    }

    /// The chunk layout must add up to the body length.
    fn check(&self) -> Result<(), Corrupt> {
        let size = u64::from(self.chunk_size);
        let expected = if self.body_len == 0 {
            0
        } else {
            self.body_len.div_ceil(size.max(1))
        };
        if size == 0 || self.chunk_crcs.len() as u64 != expected {
            return Err(Corrupt("chunk layout does not match the body length"));
        }
        Ok(())
    }

    /// Length of chunk `i`.
    pub(crate) fn chunk_len(&self, i: usize) -> usize {
        let start = i as u64 * u64::from(self.chunk_size);
        self.body_len
            .saturating_sub(start)
            .min(u64::from(self.chunk_size)) as usize
    }
}

/// A body chunk record and the crc32 of `data` (what the head records for it).
pub(crate) fn encode_chunk(data: &[u8]) -> (Vec<u8>, u32) {
    let crc = crc32fast::hash(data);
    (seal_with(CHUNK_MAGIC, crc, data), crc)
}

/// Verifies a chunk record against the crc and length its head recorded. The record's own
/// seal carries the same crc32 over the same bytes, so one hash checks both.
pub(crate) fn decode_chunk(record: &Bytes, crc: u32, len: usize) -> Result<Bytes, Corrupt> {
    if record.len() < 8 || record[..4] != CHUNK_MAGIC {
        return Err(Corrupt("bad magic or unknown format version"));
    }
    let sealed = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    let data = record.slice(8..);
    if sealed != crc || data.len() != len || crc32fast::hash(&data) != crc {
        return Err(Corrupt("chunk does not match its head"));
    }
    Ok(data)
}

/// magic | crc32(payload) | payload
fn seal(magic: [u8; 4], payload: &[u8]) -> Vec<u8> {
    seal_with(magic, crc32fast::hash(payload), payload)
}

fn seal_with(magic: [u8; 4], crc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn open(magic: [u8; 4], record: &[u8]) -> Result<&[u8], Corrupt> {
    if record.len() < 8 || record[..4] != magic {
        return Err(Corrupt("bad magic or unknown format version"));
    }
    let crc = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    let payload = &record[8..];
    if crc32fast::hash(payload) != crc {
        return Err(Corrupt("checksum mismatch"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            gen: 7,
            stamp: 3,
            body_len: 10,
            chunk_size: 4,
            chunk_crcs: vec![1, 2, 3],
            primary: [9; 16],
            meta: (vec![1, 2], vec![3]),
            url: "http://a.test/x".into(),
            tags: vec!["a".into(), "b c".into()],
        }
    }

    #[test]
    fn head_round_trips() {
        assert_eq!(Head::decode(&head().encode()).unwrap(), head());
        assert_eq!(
            (
                head().chunk_len(0),
                head().chunk_len(2),
                head().chunk_len(3)
            ),
            (4, 2, 0)
        );
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_corrupt() {
        let rec = head().encode();
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(Head::decode(&bad).is_err(), "byte {i}");
        }
        assert!(Head::decode(&rec[..rec.len() - 1]).is_err());
        let mut inconsistent = head();
        inconsistent.body_len = 13;
        assert!(Head::decode(&inconsistent.encode()).is_err());
    }

    #[test]
    fn chunks_verify_against_the_head() {
        let rec = Bytes::from(encode_chunk(b"abcd").0);
        let crc = crc32fast::hash(b"abcd");
        assert_eq!(decode_chunk(&rec, crc, 4).unwrap(), "abcd");
        assert!(decode_chunk(&rec, crc ^ 1, 4).is_err());
        assert!(decode_chunk(&rec, crc, 5).is_err());
        assert_eq!(encode_chunk(b"abcd").1, crc);
        // Any flipped byte (magic, seal, payload) or a truncation is caught by the one hash.
        for i in 0..rec.len() {
            let mut bad = rec.to_vec();
            bad[i] ^= 0x40;
            assert!(decode_chunk(&Bytes::from(bad), crc, 4).is_err(), "byte {i}");
        }
        assert!(decode_chunk(&rec.slice(..rec.len() - 1), crc, 4).is_err());
        // A record sealed consistently over other bytes is not this chunk.
        let other = Bytes::from(encode_chunk(b"abce").0);
        assert!(decode_chunk(&other, crc, 4).is_err());
    }
}
