//! The foyer key and value of the disk tier: a key names one record of an object (its head
//! or a body chunk of one generation); a value is the record's exact bytes.

use bytes::Bytes;
use foyer::Code;
use pingora_cache::key::HashBinary;

/// Marks the head record in `DiskKey::part`.
const HEAD: u32 = u32::MAX;

/// A foyer key: an object's combined key plus which record of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DiskKey {
    key: HashBinary,
    /// Chunk number, or `HEAD`.
    part: u32,
    /// Entry id (0 for the head): chunks of different generations never collide.
    gen: u64,
}

impl DiskKey {
    pub(in crate::cache::storage) fn head(key: HashBinary) -> Self {
        DiskKey {
            key,
            part: HEAD,
            gen: 0,
        }
    }
    pub(in crate::cache::storage) fn chunk(key: HashBinary, gen: u64, part: usize) -> Self {
        let part = u32::try_from(part).unwrap_or(HEAD - 1);
        DiskKey { key, part, gen }
    }
}

impl Code for DiskKey {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        w.write_all(&self.key).map_err(foyer::Error::io_error)?;
        w.write_all(&self.part.to_le_bytes())
            .map_err(foyer::Error::io_error)?;
        w.write_all(&self.gen.to_le_bytes())
            .map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut b = [0u8; 28];
        r.read_exact(&mut b).map_err(foyer::Error::io_error)?;
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[..16]);
        let part = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        let mut g = [0u8; 8];
        g.copy_from_slice(&b[20..]);
        Ok(DiskKey {
            key,
            part,
            gen: u64::from_le_bytes(g),
        })
    }

    fn estimated_size(&self) -> usize {
        28
    }
}

/// A foyer value: one encoded record. Decoding takes the exact bytes foyer stored, so no
/// length prefix is ever trusted.
#[derive(Debug, Clone)]
pub(crate) struct DiskValue(pub(super) Bytes);

impl Code for DiskValue {
    fn encode(&self, w: &mut impl std::io::Write) -> foyer::Result<()> {
        w.write_all(&self.0).map_err(foyer::Error::io_error)
    }

    fn decode(r: &mut impl std::io::Read) -> foyer::Result<Self> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).map_err(foyer::Error::io_error)?;
        Ok(DiskValue(Bytes::from(v)))
    }

    fn estimated_size(&self) -> usize {
        self.0.len()
    }
}
