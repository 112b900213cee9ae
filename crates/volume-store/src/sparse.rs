//! [`SparseFileStore`]: one sparse file per volume.
//!
//! Layout: track `t` at byte `t * track_size`, so a plain `pread` of the file
//! sees the volume; after the last track one 4 KiB trailer block identifies the
//! file (see [`crate::trailer`]). Unwritten tracks are holes: open walks them
//! once with `SEEK_DATA`/`SEEK_HOLE` into an in-memory [`AllocMap`] that
//! `allocated` answers from afterwards (no filesystem query per copy-on-write);
//! `discard` punches whole tracks (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`)
//! and zeroes partial ones, `flush` is `fdatasync`. A copy from another
//! file store (`copy_from`) is one `copy_file_range` (the kernel moves the
//! pages, or shares the extents where the filesystem can), falling back to a
//! buffer where the kernel cannot copy between the two files. A copied range
//! has its writeback started at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)`,
//! no wait): every copy is made durable by a flush soon after (the commit of
//! a copy-on-write or of a background run), and starting early lets the
//! device work on a grain while the next ones are copied, so that flush waits
//! for less (on ext4: first writes +17 %, background copy +50 %,
//! docs/PERFORMANCE.md). It is a hint, not a durability point.
//!
//! Writes larger than [`PAGE_CACHE_PIECE`] go to the file in pieces of at
//! most that size, cut at multiples of it in the file. The kernel sizes the
//! page-cache folio a buffered write creates by the write's length, and on
//! filesystems with large folios (ext4 on Linux 6.16 and later) every later
//! small write into a large folio walks all of its block buffers: after a
//! volume was filled with 1 MiB writes, 4 KiB random writes ran at 29-40k
//! per second against 120-135k after a fill with small writes (nbdkit's
//! file plugin, which writes what it gets, in the same run). Pieces of
//! 64 KiB cost sequential writes nothing measurable (docs/PERFORMANCE.md).
//! On tmpfs, whose writes walk no block buffers, writes go whole.
//!
//! Invariants:
//! - the file is exactly `size_bytes + 4096` bytes long and its trailer names this
//!   volume and geometry (checked at open; never rewritten afterwards);
//! - once a flush fails the store is poisoned: the kernel may have dropped the
//!   dirty pages it could not write, so a later "successful" fsync would lie.
//!   Writes, discards and flushes then fail with `Poisoned` until reopened;
//! - the allocation map never under-reports (module [`crate::alloc_map`]):
//!   writes set their tracks' bits before the `pwrite`; a discard punches with
//!   writes excluded (`punch_lock` held exclusively; writes hold it shared) and
//!   clears the bits of the tracks it punched before it lets writes in again.
//!
//! Assumption: the filesystem block size divides the track size (4 KiB blocks;
//! every 3390 and FB track is a multiple of 4 KiB), so holes and allocation are
//! tracked per track exactly. Filesystems without hole punching get zeros written
//! instead (the tracks then stay allocated). There is no file lock: the caller
//! (the controller) owns each volume file exclusively.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use geometry::{split_range, Extent, ExtentSet, Geometry};
use parking_lot::RwLock;
use rustix::fs::{FallocateFlags, SeekFrom};

use crate::alloc_map::AllocMap;
use crate::error::{ErrorKind, Op, StoreError};
use crate::store::{check_extent, check_range, copy_through_buffer, read_into, TrackStore};
use crate::trailer::{Trailer, TRAILER_BYTES};

/// The largest piece a buffered write hands the kernel (module docs): small
/// enough that the folios it creates keep later 4 KiB writes cheap, large
/// enough that a 1 MiB write costs 16 calls.
pub const PAGE_CACHE_PIECE: u64 = 64 * 1024;

/// `data` cut into `(file offset, bytes)` pieces that never cross a multiple
/// of `piece` in the file (so none is longer than it).
fn pieces(piece: u64, offset: u64, data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    debug_assert!(piece > 0);
    let mut at = offset;
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let room = piece - at % piece;
        let n = usize::try_from(room).map_or(rest.len(), |r| r.min(rest.len()));
        let (piece, tail) = rest.split_at(n);
        let out = (at, piece);
        at += n as u64;
        rest = tail;
        Some(out)
    })
}

/// The largest piece a write to `file` is cut into: [`PAGE_CACHE_PIECE`],
/// or whole writes on tmpfs (module docs).
fn write_piece(file: &File) -> u64 {
    #[cfg(target_os = "linux")]
    {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        #[allow(clippy::unnecessary_cast)] // f_type's type differs by target
        let tmpfs = rustix::fs::fstatfs(file).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC);
        if tmpfs {
            return u64::MAX;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
    PAGE_CACHE_PIECE
}

/// A volume stored in one sparse file (see the module docs).
#[derive(Debug)]
pub struct SparseFileStore {
    file: File,
    path: PathBuf,
    volume_id: String,
    geometry: Geometry,
    poisoned: AtomicBool,
    /// Which tracks may hold data (built at open, kept by every mutation).
    alloc: AllocMap,
    /// Shared by writes, exclusive for a discard's punch-and-clear.
    punch_lock: RwLock<()>,
    /// Writes reach the file in pieces of at most this many bytes
    /// ([`write_piece`]).
    piece: u64,
    #[cfg(feature = "test-utils")]
    fail_next_flush: AtomicBool,
}

fn path_ctx(path: &Path) -> String {
    format!("file {}", path.display())
}

impl SparseFileStore {
    /// The copy of [`TrackStore::copy_from`], without the writeback hint:
    /// `copy_file_range` from `src`'s file, the rest (or all of it, when
    /// `src` has no file or the kernel cannot copy between the two) through
    /// `buf`.
    fn copy_pages(
        &self,
        src: &dyn TrackStore,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let Some(from) = src.backing_file() else {
            return copy_through_buffer(self, src, offset, len, buf);
        };
        self.check_poison(Op::Write)?;
        check_range(&src.geometry(), src.volume_id(), Op::Read, offset, len)?;
        check_range(&self.geometry, &self.volume_id, Op::Write, offset, len)?;
        let _shared = self.punch_lock.read();
        self.mark_written(offset, len);
        let copy_err = |at: u64, n: u64, e: io::Error| {
            StoreError::from_io(
                &self.volume_id,
                Op::Write,
                format!(
                    "copy from volume {} at offset {at} length {n}",
                    src.volume_id()
                ),
                e,
            )
        };
        let mut done = 0u64;
        while done < len {
            let (mut off_in, mut off_out) = (offset + done, offset + done);
            let want = usize::try_from(len - done).unwrap_or(usize::MAX);
            match rustix::fs::copy_file_range(
                from,
                Some(&mut off_in),
                &self.file,
                Some(&mut off_out),
                want,
            ) {
                Ok(0) => break,
                Ok(n) => done += n as u64,
                Err(rustix::io::Errno::INTR) => {}
                // Files the kernel cannot copy between (other filesystems,
                // no support): the rest goes through the buffer.
                Err(
                    rustix::io::Errno::XDEV
                    | rustix::io::Errno::INVAL
                    | rustix::io::Errno::NOSYS
                    | rustix::io::Errno::OPNOTSUPP,
                ) => break,
                Err(e) => return Err(copy_err(offset + done, len - done, e.into())),
            }
        }
        if done < len {
            let (at, rest) = (offset + done, len - done);
            let data = read_into(src, at, rest, buf)?;
            self.write_in_pieces(data, at)
                .map_err(|e| copy_err(at, rest, e))?;
        }
        Ok(())
    }

    /// Starts the writeback of `len` bytes at `offset` without waiting
    /// (module docs). Best effort: a failure only loses the head start (the
    /// flush that follows writes the range and reports any error), so it is
    /// logged at debug level and otherwise ignored.
    fn start_writeback(&self, offset: u64, len: u64) {
        if let Err(e) = sync_file_range_write(&self.file, offset, len) {
            tracing::debug!(volume = %self.volume_id, offset, len, error = %e, "sync_file_range");
        }
    }

    /// Creates a new volume file at `path` (which must not exist): all tracks
    /// holes, the trailer written and the file and its directory synced.
    pub fn create(
        path: impl AsRef<Path>,
        volume_id: &str,
        geometry: Geometry,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let err = |kind, ctx: String| StoreError::new(kind, volume_id, Op::Create, ctx);
        Trailer::check_volume_id(volume_id).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        // A size no file can have is the caller's mistake (a model too large),
        // not an I/O failure: refused before anything is created.
        let file_len = geometry
            .size_bytes()
            .checked_add(TRAILER_BYTES as u64)
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| {
                err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{}: a volume of {} bytes is larger than any file can be",
                        path_ctx(path),
                        geometry.size_bytes()
                    ),
                )
            })?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(err(ErrorKind::AlreadyExists, path_ctx(path)).with_source(e))
            }
            Err(e) => {
                return Err(StoreError::from_io(
                    volume_id,
                    Op::Create,
                    path_ctx(path),
                    e,
                ))
            }
        };
        let trailer = Trailer {
            volume_id: volume_id.to_string(),
            geometry,
        };
        let init = || -> io::Result<()> {
            file.set_len(file_len)?;
            file.write_all_at(&trailer.encode(), geometry.size_bytes())?;
            file.sync_all()?;
            sync_parent_dir(path)
        };
        if let Err(e) = init() {
            // Best effort: a half-made file must not be mistaken for a volume later;
            // without its trailer `open` would reject it anyway.
            let _ = std::fs::remove_file(path);
            if e.raw_os_error() == Some(crate::error::EFBIG) {
                // The filesystem's largest file is smaller than the volume.
                return Err(err(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{}: the filesystem does not allow a file of {file_len} bytes; choose a \
                         smaller model or a filesystem that allows files this large",
                        path_ctx(path)
                    ),
                )
                .with_source(e));
            }
            return Err(StoreError::from_io(
                volume_id,
                Op::Create,
                path_ctx(path),
                e,
            ));
        }
        let alloc = AllocMap::new(geometry.tracks());
        Ok(SparseFileStore::from_parts(
            file, path, volume_id, geometry, alloc,
        ))
    }

    /// Opens the existing volume file at `path`, checking that its trailer names
    /// `volume_id` and `geometry` and that its size matches. Errors:
    /// [`ErrorKind::NotFound`], [`ErrorKind::WrongFile`] (not a volume file),
    /// [`ErrorKind::BadHeader`], [`ErrorKind::WrongVolume`], [`ErrorKind::WrongGeometry`].
    pub fn open(
        path: impl AsRef<Path>,
        volume_id: &str,
        geometry: Geometry,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let (file, trailer) = open_and_probe(path, volume_id)?;
        let err = |kind, ctx: String| StoreError::new(kind, volume_id, Op::Open, ctx);
        if trailer.volume_id != volume_id {
            return Err(err(
                ErrorKind::WrongVolume,
                format!("{} holds volume {}", path_ctx(path), trailer.volume_id),
            ));
        }
        if trailer.geometry != geometry {
            return Err(err(
                ErrorKind::WrongGeometry,
                format!(
                    "{} holds a {}, expected {}",
                    path_ctx(path),
                    trailer.geometry,
                    geometry
                ),
            ));
        }
        let len = file
            .metadata()
            .map_err(|e| StoreError::from_io(volume_id, Op::Open, path_ctx(path), e))?
            .len();
        let expect = Self::file_len(geometry);
        if len != expect {
            return Err(err(
                ErrorKind::WrongGeometry,
                format!("{} is {len} bytes, expected {expect}", path_ctx(path)),
            ));
        }
        let alloc = AllocMap::new(geometry.tracks());
        if geometry.tracks() > 0 {
            let all = scan_allocated(&file, &geometry, geometry.full_extent())
                .map_err(|e| StoreError::from_io(volume_id, Op::Open, path_ctx(path), e))?;
            for e in all.extents() {
                alloc.set(e.first, e.last);
            }
        }
        Ok(SparseFileStore::from_parts(
            file, path, volume_id, geometry, alloc,
        ))
    }

    /// Writes the trailer of the volume file at `path` again, naming
    /// `volume_id` and `geometry`, when the one there is damaged (bad magic,
    /// checksum or version) and the file has exactly the size that geometry
    /// gives. Returns whether it wrote. A valid trailer is never replaced:
    /// one that names another volume or geometry is an error (a file in the
    /// wrong place is not repaired by relabelling it). The trailer is only
    /// the file's identity; the volume's bytes are not touched.
    pub fn rewrite_trailer(
        path: impl AsRef<Path>,
        volume_id: &str,
        geometry: Geometry,
    ) -> Result<bool, StoreError> {
        let path = path.as_ref();
        match open_and_probe(path, volume_id) {
            Ok((_, t)) if t.volume_id == volume_id && t.geometry == geometry => return Ok(false),
            Ok((_, t)) => {
                return Err(StoreError::new(
                    ErrorKind::WrongVolume,
                    volume_id,
                    Op::Open,
                    format!(
                        "{} has a valid trailer naming volume {} ({}): not rewritten",
                        path_ctx(path),
                        t.volume_id,
                        t.geometry
                    ),
                ))
            }
            Err(e) if matches!(e.kind(), ErrorKind::BadHeader | ErrorKind::WrongFile) => {}
            Err(e) => return Err(e),
        }
        let io = |e| StoreError::from_io(volume_id, Op::Open, path_ctx(path), e);
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let expect = Self::file_len(geometry);
        if len != expect {
            return Err(StoreError::new(
                ErrorKind::WrongGeometry,
                volume_id,
                Op::Open,
                format!(
                    "{} is {len} bytes, expected {expect}: not rewritten",
                    path_ctx(path)
                ),
            ));
        }
        let trailer = Trailer {
            volume_id: volume_id.to_string(),
            geometry,
        };
        file.write_all_at(&trailer.encode(), geometry.size_bytes())
            .map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(true)
    }

    /// The length of the file of a volume of `geometry`: its tracks, then
    /// the trailer (module invariants).
    pub fn file_len(geometry: Geometry) -> u64 {
        geometry.size_bytes() + TRAILER_BYTES as u64
    }

    /// Reads the identity (volume id and geometry) of the volume file at `path`
    /// without opening it as a store.
    pub fn probe(path: impl AsRef<Path>) -> Result<Trailer, StoreError> {
        open_and_probe(path.as_ref(), "?").map(|(_, t)| t)
    }

    fn from_parts(
        file: File,
        path: &Path,
        volume_id: &str,
        geometry: Geometry,
        alloc: AllocMap,
    ) -> Self {
        SparseFileStore {
            piece: write_piece(&file),
            file,
            path: path.to_path_buf(),
            volume_id: volume_id.to_string(),
            geometry,
            poisoned: AtomicBool::new(false),
            alloc,
            punch_lock: RwLock::new(()),
            #[cfg(feature = "test-utils")]
            fail_next_flush: AtomicBool::new(false),
        }
    }

    /// The volume file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once a flush has failed (see the module invariants).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Test hook: the next `flush` fails with EIO as if `fdatasync` had (and so
    /// poisons the store), exercising the real poison path.
    #[cfg(feature = "test-utils")]
    pub fn fail_next_flush(&self) {
        self.fail_next_flush.store(true, Ordering::Release);
    }

    fn check_poison(&self, op: Op) -> Result<(), StoreError> {
        if self.is_poisoned() {
            return Err(StoreError::new(
                ErrorKind::Poisoned,
                &self.volume_id,
                op,
                path_ctx(&self.path),
            ));
        }
        Ok(())
    }

    fn io_err(&self, op: Op, offset: u64, len: u64, e: io::Error) -> StoreError {
        StoreError::from_io(
            &self.volume_id,
            op,
            format!("offset {offset} length {len}"),
            e,
        )
    }

    /// After a flush: the file is still the volume's, as long as it was
    /// created. Someone who deletes, replaces or truncates a volume file
    /// under the daemon would otherwise get every later write acknowledged
    /// and lost at the next IPL, or zeros read back as data; the flush then
    /// fails and the store is poisoned, so the client hears of it.
    fn check_file_still_ours(&self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata()?;
        if m.nlink() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the file was deleted or replaced while in use: what was written to it \
                 is not in the data directory",
            ));
        }
        let expected = Self::file_len(self.geometry);
        if m.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the file is {} bytes, expected {expected}: it was truncated or extended \
                     while in use",
                    m.len()
                ),
            ));
        }
        Ok(())
    }

    /// Writes `data` at `offset` piece by piece (module docs).
    fn write_in_pieces(&self, data: &[u8], offset: u64) -> io::Result<()> {
        for (at, piece) in pieces(self.piece, offset, data) {
            self.file.write_all_at(piece, at)?;
        }
        Ok(())
    }

    fn write_zero_bytes(&self, op: Op, offset: u64, len: u64) -> Result<(), StoreError> {
        let zeros = vec![0u8; self.geometry.track_size_bytes() as usize];
        for p in split_range(self.geometry.track_size_bytes(), offset, len) {
            let at = p.volume_offset(self.geometry.track_size_bytes());
            self.write_in_pieces(&zeros[..p.len as usize], at)
                .map_err(|e| self.io_err(op, at, p.len, e))?;
        }
        Ok(())
    }

    /// Marks the tracks of `offset..offset + len` as holding data (before
    /// the bytes are written: the map never under-reports).
    fn mark_written(&self, offset: u64, len: u64) {
        if len > 0 {
            let ts = self.geometry.track_size_bytes();
            self.alloc.set(offset / ts, (offset + len - 1) / ts);
        }
    }

    /// Punches the whole tracks at `offset..offset + len` (track aligned) and
    /// clears their bits; without hole punching writes zeros (bits stay set).
    /// The caller holds `punch_lock` exclusively.
    fn punch(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, flags, offset, len) {
            Ok(()) => {
                let ts = self.geometry.track_size_bytes();
                self.alloc.clear(offset / ts, (offset + len) / ts - 1);
                Ok(())
            }
            Err(rustix::io::Errno::OPNOTSUPP) => self.write_zero_bytes(Op::Discard, offset, len),
            Err(e) => Err(self.io_err(Op::Discard, offset, len, e.into())),
        }
    }
}

/// The tracks of `extent` that hold data in `file`, from `SEEK_DATA` /
/// `SEEK_HOLE` (called once per open; the store answers from memory after).
fn scan_allocated(file: &File, geometry: &Geometry, extent: Extent) -> io::Result<ExtentSet> {
    let ts = geometry.track_size_bytes();
    let end = (extent.last + 1) * ts;
    let mut pos = extent.first * ts;
    let mut set = ExtentSet::new();
    // Each pass moves `pos` forward past one data run, so the loop ends.
    while pos < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))?;
        let stop = hole.min(end);
        if stop <= data {
            break;
        }
        set.insert(Extent {
            first: data / ts,
            last: (stop - 1) / ts,
        });
        pos = stop;
    }
    Ok(set)
}

fn open_and_probe(path: &Path, volume_id: &str) -> Result<(File, Trailer), StoreError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(
                StoreError::new(ErrorKind::NotFound, volume_id, Op::Open, path_ctx(path))
                    .with_source(e),
            )
        }
        Err(e) => return Err(StoreError::from_io(volume_id, Op::Open, path_ctx(path), e)),
    };
    let io = |e| StoreError::from_io(volume_id, Op::Open, path_ctx(path), e);
    let len = file.metadata().map_err(io)?.len();
    if len < TRAILER_BYTES as u64 {
        return Err(StoreError::new(
            ErrorKind::WrongFile,
            volume_id,
            Op::Open,
            format!(
                "{} is {len} bytes, too short for a volume file",
                path_ctx(path)
            ),
        ));
    }
    let mut block = [0u8; TRAILER_BYTES];
    file.read_exact_at(&mut block, len - TRAILER_BYTES as u64)
        .map_err(io)?;
    let trailer = Trailer::decode(&block).map_err(|(kind, what)| {
        StoreError::new(
            kind,
            volume_id,
            Op::Open,
            format!("{}: {what}", path_ctx(path)),
        )
    })?;
    Ok((file, trailer))
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

impl TrackStore for SparseFileStore {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let len = buf.len() as u64;
        check_range(&self.geometry, &self.volume_id, Op::Read, offset, len)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.io_err(Op::Read, offset, len, e))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let len = data.len() as u64;
        self.check_poison(Op::Write)?;
        check_range(&self.geometry, &self.volume_id, Op::Write, offset, len)?;
        let _shared = self.punch_lock.read();
        self.mark_written(offset, len);
        self.write_in_pieces(data, offset)
            .map_err(|e| self.io_err(Op::Write, offset, len, e))
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.check_poison(Op::Discard)?;
        check_range(&self.geometry, &self.volume_id, Op::Discard, offset, len)?;
        let _exclusive = self.punch_lock.write();
        let ts = self.geometry.track_size_bytes();
        // Runs of whole tracks are punched in one call; partial tracks are zeroed.
        let mut run: Option<(u64, u64)> = None;
        for p in split_range(ts, offset, len) {
            let at = p.volume_offset(ts);
            if p.is_whole_track(ts) {
                run = match run {
                    Some((start, n)) => Some((start, n + ts)),
                    None => Some((at, ts)),
                };
                continue;
            }
            if let Some((start, n)) = run.take() {
                self.punch(start, n)?;
            }
            // Zero a partial piece only if its track holds data: zeroing a hole
            // would allocate it (the contract keeps unwritten tracks unallocated).
            if self.alloc.contains(p.track) {
                self.write_zero_bytes(Op::Discard, at, p.len)?;
            }
        }
        if let Some((start, n)) = run {
            self.punch(start, n)?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.check_poison(Op::WriteZeroes)?;
        check_range(
            &self.geometry,
            &self.volume_id,
            Op::WriteZeroes,
            offset,
            len,
        )?;
        let _shared = self.punch_lock.read();
        self.mark_written(offset, len);
        self.write_zero_bytes(Op::WriteZeroes, offset, len)
    }

    fn backing_file(&self) -> Option<&File> {
        Some(&self.file)
    }

    fn copy_from(
        &self,
        src: &dyn TrackStore,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        self.copy_pages(src, offset, len, buf)?;
        self.start_writeback(offset, len);
        Ok(())
    }

    fn allocated(&self, extent: Extent) -> Result<ExtentSet, StoreError> {
        check_extent(&self.geometry, &self.volume_id, Op::Allocated, extent)?;
        Ok(self.alloc.extents(extent))
    }

    fn poisoned(&self) -> bool {
        self.is_poisoned()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.check_poison(Op::Flush)?;
        #[cfg(feature = "test-utils")]
        let injected = self.fail_next_flush.swap(false, Ordering::AcqRel);
        #[cfg(not(feature = "test-utils"))]
        let injected = false;
        let result = if injected {
            Err(io::Error::from_raw_os_error(crate::error::EIO))
        } else {
            self.file
                .sync_data()
                .and_then(|()| self.check_file_still_ours())
        };
        result.map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(volume = %self.volume_id, path = %self.path.display(), error = %e,
                "flush failed; volume store poisoned until reopened");
            StoreError::from_io(&self.volume_id, Op::Flush, path_ctx(&self.path), e)
        })
    }
}

/// `sync_file_range(fd, offset, len, SYNC_FILE_RANGE_WRITE)`: starts the
/// writeback of the dirty pages in the range, waits for none of it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn sync_file_range_write(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: the descriptor is open for the life of `file`, borrowed for
    // the call; the call takes only integers and touches no memory of ours.
    let r = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// No such call here: the flush that follows does all the work.
#[cfg(not(target_os = "linux"))]
fn sync_file_range_write(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_write_and_never_cross_a_piece_boundary() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for offset in [
            0,
            1,
            4096,
            PAGE_CACHE_PIECE - 1,
            PAGE_CACHE_PIECE,
            3 * PAGE_CACHE_PIECE + 77,
        ] {
            for len in [0, 1, 4096, PAGE_CACHE_PIECE as usize, 300_000] {
                let got: Vec<(u64, &[u8])> =
                    pieces(PAGE_CACHE_PIECE, offset, &data[..len]).collect();
                let mut at = offset;
                let mut joined = Vec::new();
                for (o, p) in &got {
                    assert_eq!(*o, at, "pieces are consecutive");
                    assert!(!p.is_empty());
                    assert_eq!(
                        o / PAGE_CACHE_PIECE,
                        (o + p.len() as u64 - 1) / PAGE_CACHE_PIECE,
                        "piece at {o} of {} crosses a boundary",
                        p.len()
                    );
                    joined.extend_from_slice(p);
                    at += p.len() as u64;
                }
                assert_eq!(joined, &data[..len], "offset {offset} len {len}");
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn writes_to_tmpfs_go_whole_and_others_in_pieces() {
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        let fs_of = |dir: &str| {
            mounts
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (f.len() > 2 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string()))
                })
                .max()
                .map(|(_, t)| t)
        };
        if fs_of("/dev/shm/").as_deref() == Some("tmpfs") {
            let f = tempfile::tempfile_in("/dev/shm").expect("tmpfs file");
            assert_eq!(write_piece(&f), u64::MAX);
        }
        let here = env!("CARGO_MANIFEST_DIR");
        if fs_of(&format!("{here}/")).is_some_and(|t| t != "tmpfs") {
            let f = tempfile::tempfile_in(here).expect("file beside the crate");
            assert_eq!(write_piece(&f), PAGE_CACHE_PIECE);
        }
    }

    #[test]
    fn a_large_unaligned_write_reads_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let geometry = Geometry::new("fb:4M".parse().expect("model")).expect("geometry");
        let store =
            SparseFileStore::create(dir.path().join("v.vol"), "V", geometry).expect("create");
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8 + 1).collect();
        store.write_at(12_345, &data).expect("write");
        let mut back = vec![0u8; data.len() + 2];
        store.read_at(12_344, &mut back).expect("read");
        assert_eq!(back[0], 0, "the byte before is untouched");
        assert_eq!(&back[1..=data.len()], &data[..]);
        assert_eq!(back[data.len() + 1], 0, "the byte after is untouched");
    }

    #[test]
    fn writeback_hint_takes_a_range_and_refuses_one_beyond_i64() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .expect("open");
        file.write_all_at(&[7u8; 8192], 4096).expect("write");
        sync_file_range_write(&file, 4096, 8192).expect("a dirty range");
        sync_file_range_write(&file, 1 << 40, 4096).expect("a range past the end");
        #[cfg(target_os = "linux")]
        assert_eq!(
            sync_file_range_write(&file, u64::MAX, 1)
                .expect_err("offset beyond i64")
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let mut back = [0u8; 8192];
        file.read_exact_at(&mut back, 4096).expect("read");
        assert_eq!(back, [7u8; 8192], "the hint changes no data");
    }
}
