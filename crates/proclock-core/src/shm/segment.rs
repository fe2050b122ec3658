//! Shared segments: fixed-layout files in the lock directory, mapped `MAP_SHARED` by every
//! process that uses them.
//!
//! A segment is a 4 KiB header followed by `entry_count` entries of `entry_size` bytes. The
//! header says what the file is (magic, layout version, kind, sizes, its index) and carries a
//! checksum of those fields, so a file that is not exactly what this version of proclock writes
//! is refused with `LockCorruptError` instead of being interpreted.
//!
//! Life cycle, and why:
//! - **Created fully formed.** The creator takes the directory lock, builds the file under a
//!   temporary name (sized, header written) and renames it into place. An opener therefore never
//!   sees a zero-size or half-written segment under the real name, and a creator killed at any
//!   step leaves at most a temporary file that the next creator removes.
//! - **Repaired only when provably unused.** A segment under the real name that is empty or has
//!   an all-zero header can only come from outside (a `touch`, or a power loss on a disk-backed
//!   temp dir): proclock never publishes one, so no process can be using it. It is rebuilt under
//!   the directory lock, after re-checking under the lock that it is still the same bad file.
//!   Anything else that fails validation is reported, never reset: someone may hold a lock in it.
//! - **Never unlinked.** Removing a segment while anyone maps it would split every lock in it in
//!   two (old mappers on the old inode, new openers on a new one). Segments live as long as the
//!   directory; entries in them are reused, not freed.
//! - **Never resized.** Tables grow by adding segments, because a mapping cannot follow a file
//!   that another process truncates or extends (a shrink would turn our accesses into SIGBUS).
//! - **Allocated before it is published** (`lock_dir::allocate`, called by `LockDir::publish`
//!   for every file it creates, lock files of the `file` backend included). `set_len` alone makes a sparse
//!   file: its pages get disk or tmpfs space only when first written, and the first write to a
//!   mapped page on a full file system is not an error a caller can see but a SIGBUS that kills
//!   the whole host process. Allocating every byte up front turns a full file system into an
//!   `ELOCKIO` error ("ENOSPC") when the file is created, and the half-built temporary is
//!   removed, never published.
//!
//! What allocation cannot prevent: a segment truncated while mapped. Anyone who can write the
//! lock directory (the same user; the directory is private to them) can `truncate` a segment
//! under a live mapping, and the next access to a page past the new end raises SIGBUS in every
//! process that maps it. The layout cannot avoid this: a lock word must live in memory shared
//! through the file (the futex and the compare-and-swap work on the mapped page), and only a
//! SIGBUS handler could survive the fault, which a library must not install in its host process.
//! File seals (`F_SEAL_SHRINK`) would forbid the truncation, but only memfd/shmem files created
//! for sealing accept them, and those have no name other processes could open. Do not truncate
//! files in a lock directory.

use std::fs::File;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{corrupt, Error, Result};
use crate::lock_dir::LockDir;

/// Bytes before the first entry. One page, so entries start page-aligned.
pub const HEADER_SIZE: usize = 4096;
const MAGIC: [u8; 8] = *b"PROCLOCK";
/// Bumped whenever any shared layout changes; mixed versions must not share a directory.
pub const LAYOUT_VERSION: u32 = 1;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
  /// 1: lock slots (`shm/slot_table.rs`), 2: process entries (`shm/liveness.rs`).
  pub kind: u32,
  pub entry_size: usize,
  pub entry_count: usize,
}

impl Layout {
  pub fn file_size(&self) -> usize {
    HEADER_SIZE + self.entry_size * self.entry_count
  }
}

/// A mapped segment. The mapping lives as long as this value; entries are handed out as
/// pointers whose lifetime callers tie to an `Arc<Segment>`.
pub struct Segment {
  map: MmapRaw,
  layout: Layout,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics.
unsafe impl Send for Segment {}
unsafe impl Sync for Segment {}

fn header_bytes(layout: &Layout, index: u32) -> [u8; 40] {
  let mut h = [0u8; 40];
  h[0..8].copy_from_slice(&MAGIC);
  h[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
  h[12..16].copy_from_slice(&layout.kind.to_le_bytes());
  h[16..20].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
  h[20..24].copy_from_slice(&(layout.entry_size as u32).to_le_bytes());
  h[24..28].copy_from_slice(&(layout.entry_count as u32).to_le_bytes());
  h[28..32].copy_from_slice(&index.to_le_bytes());
  let check = checksum(&h[..32]);
  h[32..40].copy_from_slice(&check.to_le_bytes());
  h
}

fn checksum(bytes: &[u8]) -> u64 {
  // FNV-1a: detects accidental damage; the directory's permissions keep out deliberate damage.
  bytes
    .iter()
    .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

enum Check {
  Valid,
  /// Empty, or an all-zero header: never published by proclock, safe to rebuild.
  Blank,
  Invalid(String),
}

fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
  #[cfg(unix)]
  {
    use std::os::unix::fs::FileExt;
    file.read_at(buf, 0)
  }
  #[cfg(windows)]
  {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, 0)
  }
}

fn check(file: &File, layout: &Layout, index: u32) -> Result<Check> {
  let len = file.metadata().map_err(|e| Error::io("reading segment size", e))?.len();
  if len == 0 {
    return Ok(Check::Blank);
  }
  let mut head = [0u8; 40];
  let n = read_prefix(file, &mut head).map_err(|e| Error::io("reading segment header", e))?;
  if n < head.len() {
    return Ok(if head[..n].iter().all(|&b| b == 0) {
      Check::Blank
    } else {
      Check::Invalid(format!("{len} bytes long, shorter than a header"))
    });
  }
  if head.iter().all(|&b| b == 0) {
    return Ok(Check::Blank);
  }
  if head[0..8] != MAGIC {
    return Ok(Check::Invalid("not a proclock segment (bad magic)".into()));
  }
  let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
  if version != LAYOUT_VERSION {
    return Ok(Check::Invalid(format!(
      "written by an incompatible proclock (layout version {version}, this is {LAYOUT_VERSION}); use another lock directory"
    )));
  }
  if head != header_bytes(layout, index) {
    return Ok(Check::Invalid("header fields or checksum do not match".into()));
  }
  if len != layout.file_size() as u64 {
    return Ok(Check::Invalid(format!("{len} bytes long, expected {}", layout.file_size())));
  }
  Ok(Check::Valid)
}

impl Segment {
  /// Open segment `file_name` of `dir`, creating or repairing it as described above.
  pub fn open(dir: &LockDir, file_name: &str, layout: Layout, index: u32) -> Result<Segment> {
    let describe = |why: String| {
      corrupt(format!(
        "shared segment {} is unusable: {why}",
        dir.path().join(file_name).display()
      ))
    };
    // Fast path: it exists and is valid (no directory lock taken).
    if let Some(file) = dir.open_existing(file_name)? {
      match check(&file, &layout, index)? {
        Check::Valid => return Segment::map(file, layout),
        Check::Invalid(why) => return Err(describe(why)),
        Check::Blank => {}
      }
    }
    let _guard = dir.lock()?;
    // Re-check under the lock: another process may have created or repaired it meanwhile.
    if let Some(file) = dir.open_existing(file_name)? {
      match check(&file, &layout, index)? {
        Check::Valid => return Segment::map(file, layout),
        Check::Invalid(why) => return Err(describe(why)),
        Check::Blank => {}
      }
    }
    dir.publish(file_name, layout.file_size() as u64, |file| {
      write_header(file, &header_bytes(&layout, index)).map_err(|e| Error::io("writing segment header", e))
    })?;
    let file = dir
      .open_existing(file_name)?
      .ok_or_else(|| describe("it vanished right after being created".into()))?;
    match check(&file, &layout, index)? {
      Check::Valid => Segment::map(file, layout),
      Check::Invalid(why) => Err(describe(why)),
      Check::Blank => Err(describe("still blank after being created".into())),
    }
  }

  /// Segment `file_name` of `dir` mapped for looking only (`inspect()`, `list()`): nothing is
  /// created or repaired, and the mapping is read-only, so that looking can never write a byte
  /// (a stray store would fault here rather than silently change a table others use). `None`
  /// if the file is missing or blank: proclock never published anything in it, so it holds no
  /// lock. Anything else that fails validation is reported, as by [`Segment::open`].
  pub fn open_to_look(dir: &LockDir, file_name: &str, layout: Layout, index: u32) -> Result<Option<Segment>> {
    let Some(file) = dir.open_existing(file_name)? else {
      return Ok(None);
    };
    match check(&file, &layout, index)? {
      Check::Valid => {
        let map = MmapOptions::new()
          .len(layout.file_size())
          .map_raw_read_only(&file)
          .map_err(|e| Error::io("mapping shared segment", e))?;
        Ok(Some(Segment { map, layout }))
      }
      Check::Blank => Ok(None),
      Check::Invalid(why) => Err(corrupt(format!(
        "shared segment {} is unusable: {why}",
        dir.path().join(file_name).display()
      ))),
    }
  }

  /// A private all-zero table of `layout`, in no file: what a blank segment would be once
  /// rebuilt, for a look that must not rebuild it.
  pub fn zeroed(layout: Layout) -> Result<Segment> {
    let map = MmapOptions::new()
      .len(layout.file_size())
      .map_anon()
      .map_err(|e| Error::io("mapping an anonymous table", e))?;
    Ok(Segment { map: map.into(), layout })
  }

  fn map(file: File, layout: Layout) -> Result<Segment> {
    let map = MmapOptions::new()
      .len(layout.file_size())
      .map_raw(&file)
      .map_err(|e| Error::io("mapping shared segment", e))?;
    // The descriptor is no longer needed: the mapping keeps the file alive.
    Ok(Segment { map, layout })
  }

  pub fn layout(&self) -> &Layout {
    &self.layout
  }

  /// Pointer to entry `i`. The memory stays valid while this segment is alive.
  pub fn entry(&self, i: usize) -> *mut u8 {
    assert!(i < self.layout.entry_count, "entry index {i} out of range");
    // SAFETY: in bounds of the mapping by the assert and the validated file size.
    unsafe { self.map.as_mut_ptr().add(HEADER_SIZE + i * self.layout.entry_size) }
  }
}

fn write_header(file: &File, header: &[u8]) -> std::io::Result<()> {
  #[cfg(unix)]
  {
    use std::os::unix::fs::FileExt;
    file.write_all_at(header, 0)
  }
  #[cfg(windows)]
  {
    use std::os::windows::fs::FileExt;
    let n = file.seek_write(header, 0)?;
    if n == header.len() {
      Ok(())
    } else {
      Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "short header write"))
    }
  }
}

#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use std::fs;

  const L: Layout = Layout {
    kind: 9,
    entry_size: 64,
    entry_count: 8,
  };

  fn dir(tag: &str) -> (LockDir, std::path::PathBuf) {
    let p = crate::lock_dir::scratch_dir(tag);
    (LockDir::open(&p).unwrap(), p)
  }

  #[test]
  fn create_then_reopen_shares_memory() {
    let (d, p) = dir("share");
    let a = Segment::open(&d, "t.seg", L, 0).unwrap();
    let b = Segment::open(&d, "t.seg", L, 0).unwrap();
    // SAFETY: both pointers are into valid mappings of the same file.
    unsafe {
      *a.entry(3) = 42;
      assert_eq!(*b.entry(3), 42);
    }
    assert_eq!(fs::metadata(p.join("t.seg")).unwrap().len() as usize, L.file_size());
    fs::remove_dir_all(p).unwrap();
  }

  #[test]
  fn blank_files_are_rebuilt_and_garbage_is_refused() {
    let (d, p) = dir("repair");
    let f = d.open_or_create("t.seg").unwrap();
    drop(f); // zero-size, as a creator killed right after open would leave it
    Segment::open(&d, "t.seg", L, 0).unwrap();
    // A leftover temporary from a creator killed mid-way does not get in the way.
    d.open_or_create("u.seg.tmp").unwrap();
    Segment::open(&d, "u.seg", L, 0).unwrap();

    fs::write(p.join("bad.seg"), vec![0xAB; L.file_size()]).unwrap();
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    fs::set_permissions(p.join("bad.seg"), perm).unwrap();
    let err = Segment::open(&d, "bad.seg", L, 0).err().unwrap();
    assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    assert_eq!(fs::read(p.join("bad.seg")).unwrap()[0], 0xAB, "garbage is reported, not reset");
    // A segment of a different layout or index is refused too.
    assert_eq!(
      Segment::open(&d, "t.seg", Layout { entry_count: 9, ..L }, 0).err().unwrap().kind(),
      crate::ErrorKind::Corrupt
    );
    assert_eq!(Segment::open(&d, "t.seg", L, 1).err().unwrap().kind(), crate::ErrorKind::Corrupt);
    fs::remove_dir_all(p).unwrap();
  }
}
