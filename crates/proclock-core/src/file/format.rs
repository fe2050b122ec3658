//! The `file` backend's lock file: what is in it, how it comes to exist, how it is read.
//!
//! One file per name, `file-<128-bit hash>.lock` in the lock directory (`name.rs`). The kernel
//! lock is on a byte far past the data (`file/os.rs`); the data is the readable name and
//! the holder record, so that `owner()`, `inspect()` and `list()` can say who holds the lock
//! without taking it.
//!
//! Layout, little-endian, 4096 bytes:
//!
//! ```text
//!   0   magic      16 bytes  "proclock-file-v1"
//!  16   name_len   u32
//!  20   name       255 bytes, zero-padded
//! 276   (zero)     12 bytes
//! 288   checksum   u64       first 8 bytes of SHA-256 over bytes 0..288
//! 512   record     the holder record (below), 320 bytes
//! ```
//!
//! The header is written once, before the file gets its name, and never changes. The record:
//!
//! ```text
//! 512  state     u32   0 free (released cleanly), 1 held
//! 516  pid       u32
//! 520  since_ms  u64
//! 528  token     u64   the fencing token of the latest exclusive hold
//! 536  uuid      16 bytes
//! 552  desc_len  u32, then 4 zero bytes
//! 560  desc      256 bytes
//! 816  checksum  u64   first 8 bytes of SHA-256 over bytes 512..816
//! ```
//!
//! Why it is built this way:
//! - **The file appears fully formed.** It is written under a temporary name and renamed into
//!   place under the directory lock (`LockDir::publish`), so no process ever opens a
//!   half-written lock file, and two creators cannot both publish (the second sees the file).
//! - **It is never deleted or replaced.** Someone may hold a lock on it at any moment; deleting
//!   it would let the next opener create a second file and a second, independent lock.
//! - **Only an exclusive holder writes the record**, under the kernel lock, with one `pwrite` of
//!   the whole record inside the file's first page. Linux checks for a fatal signal only
//!   between page-sized chunks of a write, so a holder killed mid-write leaves the old record
//!   or the new one, never a mix. Readers that do not hold the lock can still see a write in
//!   progress: the checksum tells them, and they read again.
//! - **`state` is how the next holder learns that its predecessor died.** A clean release
//!   writes `free` before unlocking; a holder that dies leaves `held` behind, the kernel frees
//!   the lock, and whoever gets it next reads `held`: that is `ownerDied`.
//! - **`token` only ever grows**: each exclusive holder reads it under the lock and writes the
//!   next value before its acquisition returns. A holder that died before writing never used
//!   its token, so reusing that value is safe. A new file's record starts at wall-clock
//!   milliseconds << 20 (`clock::token_start`, where the reasoning and its limits are), so
//!   that tokens keep growing when the file or its directory is deleted and re-created.
//! - **Garbage is reported, never repaired.** A file with a bad header or record checksum was
//!   not written by proclock (or was damaged on disk); resetting it could hand out a token that
//!   was already used. Such a file gives `LockCorruptError` naming the path.

use std::fs::File;
use std::io;

use sha2::{Digest, Sha256};

use crate::error::{corrupt, Error, Result};
use crate::description::MAX_DESCRIPTION_BYTES;
use crate::lock_dir::LockDir;
use crate::name::{LockName, MAX_NAME_BYTES};

pub const FILE_SIZE: u64 = 4096;
const MAGIC: &[u8; 16] = b"proclock-file-v1";
const HEADER_LEN: usize = 288;
const RECORD_AT: u64 = 512;
const RECORD_LEN: usize = 320;
const RECORD_BODY: usize = RECORD_LEN - 8;

/// The holder record of a lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
  pub held: bool,
  pub pid: u32,
  pub since_ms: u64,
  pub token: u64,
  pub uuid: [u8; 16],
  pub description: Vec<u8>,
}

fn checksum(bytes: &[u8]) -> [u8; 8] {
  let d = Sha256::digest(bytes);
  let mut out = [0u8; 8];
  out.copy_from_slice(&d[..8]);
  out
}

fn header(name: &str) -> [u8; HEADER_LEN + 8] {
  let mut h = [0u8; HEADER_LEN + 8];
  h[..16].copy_from_slice(MAGIC);
  h[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
  h[20..20 + name.len()].copy_from_slice(name.as_bytes());
  let sum = checksum(&h[..HEADER_LEN]);
  h[HEADER_LEN..].copy_from_slice(&sum);
  h
}

/// The readable name stored in a header, if the header is one proclock wrote.
pub fn parse_header(h: &[u8]) -> Option<String> {
  if h.len() < HEADER_LEN + 8 || &h[..16] != MAGIC || checksum(&h[..HEADER_LEN]) != h[HEADER_LEN..HEADER_LEN + 8] {
    return None;
  }
  let len = u32::from_le_bytes(h[16..20].try_into().ok()?) as usize;
  if len == 0 || len > MAX_NAME_BYTES {
    return None;
  }
  String::from_utf8(h[20..20 + len].to_vec()).ok()
}

impl Record {
  pub fn encode(&self) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0..4].copy_from_slice(&u32::from(self.held).to_le_bytes());
    r[4..8].copy_from_slice(&self.pid.to_le_bytes());
    r[8..16].copy_from_slice(&self.since_ms.to_le_bytes());
    r[16..24].copy_from_slice(&self.token.to_le_bytes());
    r[24..40].copy_from_slice(&self.uuid);
    let len = self.description.len().min(MAX_DESCRIPTION_BYTES);
    r[40..44].copy_from_slice(&(len as u32).to_le_bytes());
    r[48..48 + len].copy_from_slice(&self.description[..len]);
    let sum = checksum(&r[..RECORD_BODY]);
    r[RECORD_BODY..].copy_from_slice(&sum);
    r
  }

  /// Decode a record; `None` if it is not one proclock wrote whole.
  pub fn decode(r: &[u8]) -> Option<Record> {
    if r.len() < RECORD_LEN || checksum(&r[..RECORD_BODY]) != r[RECORD_BODY..RECORD_LEN] {
      return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or_default());
    let held = match u32_at(0) {
      0 => false,
      1 => true,
      _ => return None,
    };
    let len = u32_at(40) as usize;
    if len > MAX_DESCRIPTION_BYTES {
      return None;
    }
    Some(Record {
      held,
      pid: u32_at(4),
      since_ms: u64_at(8),
      token: u64_at(16),
      uuid: r[24..40].try_into().unwrap_or_default(),
      description: r[48..48 + len].to_vec(),
    })
  }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
  std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
  std::os::unix::fs::FileExt::write_all_at(file, buf, at)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
  use std::os::windows::fs::FileExt;
  while !buf.is_empty() {
    match file.seek_read(buf, at)? {
      0 => return Err(io::ErrorKind::UnexpectedEof.into()),
      n => {
        buf = &mut buf[n..];
        at += n as u64;
      }
    }
  }
  Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut at: u64) -> io::Result<()> {
  use std::os::windows::fs::FileExt;
  while !buf.is_empty() {
    match file.seek_write(buf, at)? {
      0 => return Err(io::ErrorKind::WriteZero.into()),
      n => {
        buf = &buf[n..];
        at += n as u64;
      }
    }
  }
  Ok(())
}

/// One lock file, opened and checked.
pub struct LockFile {
  pub file: File,
  pub path: std::path::PathBuf,
}

impl LockFile {
  /// Open the lock file of `name` in `dir`, creating it (fully formed) if it does not exist.
  pub fn open(dir: &LockDir, name: &LockName) -> Result<LockFile> {
    let file_name = name.file_name();
    let path = dir.path().join(&file_name);
    LockFile::checked(name, LockFile::create(dir, name, &file_name, &path)?, path)
  }

  /// Open the lock file of `name` if it exists; creates nothing.
  pub fn open_existing(dir: &LockDir, name: &LockName) -> Result<Option<LockFile>> {
    let file_name = name.file_name();
    let path = dir.path().join(&file_name);
    match dir.open_existing(&file_name)? {
      Some(file) => LockFile::checked(name, file, path).map(Some),
      None => Ok(None),
    }
  }

  /// Open a lock file found in the directory (by `list`), whatever its name: `None` if it
  /// vanished or is not a proclock lock file.
  pub fn open_found(dir: &LockDir, file_name: &str) -> Result<Option<(String, LockFile)>> {
    let Some(file) = dir.open_existing(file_name)? else {
      return Ok(None);
    };
    let lf = LockFile {
      file,
      path: dir.path().join(file_name),
    };
    Ok(
      lf.stored_name()?
        .filter(|n| LockName::new(n).is_ok_and(|n| n.file_name() == file_name))
        .map(|n| (n, lf)),
    )
  }

  fn create(dir: &LockDir, name: &LockName, file_name: &str, path: &std::path::Path) -> Result<File> {
    Ok(match dir.open_existing(file_name)? {
      Some(f) => f,
      None => {
        let _creating = dir.lock()?;
        // Re-check under the directory lock: another process may have published it meanwhile.
        if dir.open_existing(file_name)?.is_none() {
          let record = Record {
            token: crate::clock::token_start(),
            ..Record::default()
          }
          .encode();
          dir.publish(file_name, FILE_SIZE, |f| {
            write_at(f, &header(name.as_str()), 0)
              .and_then(|()| write_at(f, &record, RECORD_AT))
              .map_err(|e| Error::io(format!("writing {}", path.display()), e))
          })?;
        }
        dir
          .open_existing(file_name)?
          .ok_or_else(|| Error::io(path.display(), io::ErrorKind::NotFound.into()))?
      }
    })
  }

  /// Check that `file` is the lock file of `name`.
  fn checked(name: &LockName, file: File, path: std::path::PathBuf) -> Result<LockFile> {
    let lf = LockFile { file, path };
    match lf.stored_name()? {
      Some(stored) if stored == name.as_str() => Ok(lf),
      Some(stored) => Err(corrupt(format!(
        "{} belongs to lock {stored:?}, not {:?} (a hash collision or a copied file)",
        lf.path.display(),
        name.as_str()
      ))),
      None => Err(lf.corrupt("its header")),
    }
  }

  /// Open another description of the same file (the kernel lock belongs to a description).
  pub fn reopen(&self, dir: &LockDir) -> Result<File> {
    let file_name = self.path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    dir
      .open_existing(file_name)?
      .ok_or_else(|| Error::io(self.path.display(), io::ErrorKind::NotFound.into()))
  }

  fn corrupt(&self, what: &str) -> Error {
    corrupt(format!(
      "{} is not a proclock lock file, or is damaged ({what} is not what proclock writes); \
       remove it when no process uses it",
      self.path.display()
    ))
  }

  /// The readable name in the header; `None` if the header is not proclock's.
  pub fn stored_name(&self) -> Result<Option<String>> {
    let mut h = [0u8; HEADER_LEN + 8];
    match read_at(&self.file, &mut h, 0) {
      Ok(()) => Ok(parse_header(&h)),
      Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
      Err(e) => Err(Error::io(format!("reading {}", self.path.display()), e)),
    }
  }

  /// Read the holder record. A reader that does not hold the lock may catch a holder's write
  /// half-done; it reads again a few times before calling the record damaged.
  pub fn read_record(&self) -> Result<Record> {
    let mut r = [0u8; RECORD_LEN];
    for attempt in 0..16 {
      match read_at(&self.file, &mut r, RECORD_AT) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(self.corrupt("its length")),
        Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
      }
      if let Some(rec) = Record::decode(&r) {
        return Ok(rec);
      }
      if attempt > 8 {
        std::thread::sleep(std::time::Duration::from_micros(100));
      } else {
        std::thread::yield_now();
      }
    }
    Err(self.corrupt("the holder record"))
  }

  /// Write the holder record (only ever by the exclusive holder).
  pub fn write_record(&self, record: &Record) -> Result<()> {
    write_at(&self.file, &record.encode(), RECORD_AT).map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn header_and_record_round_trip() {
    assert_eq!(parse_header(&header("jobs/α")).as_deref(), Some("jobs/α"));
    let rec = Record {
      held: true,
      pid: 42,
      since_ms: 1_700_000_000_000,
      token: 7,
      uuid: [9; 16],
      description: b"nightly".to_vec(),
    };
    assert_eq!(Record::decode(&rec.encode()), Some(rec));
  }

  #[test]
  fn garbage_is_refused() {
    let mut h = header("jobs");
    h[20] ^= 1;
    assert_eq!(parse_header(&h), None);
    assert_eq!(parse_header(&[0u8; 296]), None);
    let mut r = Record::default().encode();
    r[16] = 1;
    assert_eq!(Record::decode(&r), None);
    assert_eq!(Record::decode(&[0u8; RECORD_LEN]), None);
    assert_eq!(Record::decode(&[0u8; 3]), None);
  }
}
