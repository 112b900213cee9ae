//! Self-describing sector contents for host writes.
//!
//! Every 512-byte sector a simulated host writes carries a header (magic,
//! write id, volume sector number) and a pattern derived from both, so a read
//! tells exactly which write a sector came from, whether it sits where that
//! write put it (a misdirected write shows up as a wrong sector number) and
//! whether it is intact (a torn or flipped sector shows up as garbage).
//! Write id 0 is "never written": all zeros.

/// Sector size of the model (torn writes happen at this granularity).
pub const SECTOR_BYTES: usize = 512;

const MAGIC: u32 = 0x314d_4953; // "SIM1"

/// What one sector read back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectorContent {
    /// All zeros (write id 0).
    Zero,
    /// Intact data of this write id, at the right place.
    Write(u32),
    /// Intact data of a write, but written for another sector.
    Misplaced {
        /// The write.
        write: u32,
        /// The sector it was written for.
        sector: u64,
    },
    /// Neither zeros nor an intact sector of any write.
    Garbage,
}

impl SectorContent {
    /// The write id if the sector is zeros or intact and in place.
    pub fn id(self) -> Option<u32> {
        match self {
            SectorContent::Zero => Some(0),
            SectorContent::Write(w) => Some(w),
            _ => None,
        }
    }
}

fn pattern_byte(write: u32, sector: u64, i: usize) -> u8 {
    let x = (write as u64)
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(sector.wrapping_mul(31))
        .wrapping_add(i as u64 * 7);
    (x ^ (x >> 8)) as u8
}

/// Fills `buf` (one sector) with the content of write `write` at volume sector `sector`.
pub fn fill_sector(buf: &mut [u8], write: u32, sector: u64) {
    debug_assert_eq!(buf.len(), SECTOR_BYTES);
    if write == 0 {
        buf.fill(0);
        return;
    }
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&write.to_le_bytes());
    buf[8..16].copy_from_slice(&sector.to_le_bytes());
    for (i, b) in buf.iter_mut().enumerate().skip(16) {
        *b = pattern_byte(write, sector, i);
    }
}

/// The bytes of write `write` covering `count` sectors from `first_sector`.
pub fn write_data(write: u32, first_sector: u64, count: u64) -> Vec<u8> {
    let mut data = vec![0u8; count as usize * SECTOR_BYTES];
    for (i, chunk) in data.chunks_mut(SECTOR_BYTES).enumerate() {
        fill_sector(chunk, write, first_sector + i as u64);
    }
    data
}

/// Decodes one sector read at volume sector `sector`.
pub fn decode_sector(buf: &[u8], sector: u64) -> SectorContent {
    if buf.len() != SECTOR_BYTES {
        return SectorContent::Garbage;
    }
    if buf.iter().all(|b| *b == 0) {
        return SectorContent::Zero;
    }
    let word = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a[..r.len()].copy_from_slice(&buf[r]);
        u64::from_le_bytes(a)
    };
    if word(0..4) as u32 != MAGIC {
        return SectorContent::Garbage;
    }
    let write = word(4..8) as u32;
    let claimed = word(8..16);
    // No early exit: the whole-sector fold vectorizes (the check runs on
    // every sector of every volume after every step).
    let diff = buf[16..].iter().enumerate().fold(0u8, |acc, (i, b)| {
        acc | (b ^ pattern_byte(write, claimed, i + 16))
    });
    if write == 0 || diff != 0 {
        return SectorContent::Garbage;
    }
    if claimed != sector {
        return SectorContent::Misplaced {
            write,
            sector: claimed,
        };
    }
    SectorContent::Write(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_recognised() {
        let data = write_data(9, 40, 2);
        assert_eq!(decode_sector(&data[..512], 40), SectorContent::Write(9));
        assert_eq!(decode_sector(&data[512..], 41), SectorContent::Write(9));
        assert_eq!(
            decode_sector(&data[512..], 57),
            SectorContent::Misplaced {
                write: 9,
                sector: 41
            }
        );
        let mut torn = data[..512].to_vec();
        torn[300] ^= 1;
        assert_eq!(decode_sector(&torn, 40), SectorContent::Garbage);
        assert_eq!(decode_sector(&[0u8; 512], 3), SectorContent::Zero);
        let mut half = vec![0u8; 512];
        half[..256].copy_from_slice(&data[..256]);
        assert_eq!(decode_sector(&half, 40), SectorContent::Garbage);
    }
}
