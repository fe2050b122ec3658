//! Lock names: validation, and the stable hash that places a name in the shared tables.
//!
//! A name is any UTF-8 string of 1..=255 bytes without NUL. It never becomes a path or an OS
//! object name by itself: it is hashed (SHA-256, a fixed algorithm, so every process and every
//! version agree) and the readable name is stored inside the shared slot or lock file for
//! `list()`. Whatever the name holds (`../../x`, `a/b`, `CON`, control characters), the only
//! things derived from it are a 64-bit table key and a hex file name.

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// Longest name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A validated lock name and its 64-bit table key.
#[derive(Debug, Clone)]
pub struct LockName {
  name: String,
  key: u64,
  /// The first 128 bits of the digest, for the `file` backend's file names.
  id: u128,
}

impl LockName {
  pub fn new(name: &str) -> Result<Self> {
    if name.is_empty() {
      return Err(Error::new(ErrorKind::InvalidName, "lock name must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
      return Err(Error::new(
        ErrorKind::InvalidName,
        format!("lock name is {} UTF-8 bytes; at most {MAX_NAME_BYTES} are allowed", name.len()),
      ));
    }
    if name.as_bytes().contains(&0) {
      return Err(Error::new(ErrorKind::InvalidName, "lock name must not contain NUL"));
    }
    let digest = Sha256::new()
      .chain_update(b"proclock/name/v1\0")
      .chain_update(name.as_bytes())
      .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Key 0 marks an empty slot, so a real key always has its low bit set.
    let key = u64::from_le_bytes(first) | 1;
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    Ok(LockName {
      name: name.to_owned(),
      key,
      id: u128::from_be_bytes(id),
    })
  }

  pub fn as_str(&self) -> &str {
    &self.name
  }

  /// The nonzero key under which the name is stored in a slot table.
  pub fn key(&self) -> u64 {
    self.key
  }

  /// The `file` backend's file name for this name: 128 bits of the digest in hex, so two names
  /// never share a file in practice, and the name is checked against the one stored inside.
  pub fn file_name(&self) -> String {
    format!("file-{:032x}.lock", self.id)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn rejects_bad_names() {
    assert_eq!(LockName::new("").unwrap_err().kind(), ErrorKind::InvalidName);
    assert_eq!(LockName::new("a\0b").unwrap_err().kind(), ErrorKind::InvalidName);
    assert_eq!(LockName::new(&"x".repeat(256)).unwrap_err().kind(), ErrorKind::InvalidName);
    assert!(LockName::new(&"x".repeat(255)).is_ok());
    // 255 bytes of multi-byte characters is fine, 256 is not.
    assert!(LockName::new(&"é".repeat(127)).is_ok());
    assert!(LockName::new(&"é".repeat(128)).is_err());
  }

  #[test]
  fn keys_are_stable_and_nonzero() {
    let a = LockName::new("jobs").unwrap();
    assert_eq!(a.key(), LockName::new("jobs").unwrap().key());
    assert_ne!(a.key(), LockName::new("jobs2").unwrap().key());
    assert_eq!(a.key() & 1, 1);
    assert_eq!(a.file_name(), LockName::new("jobs").unwrap().file_name());
    assert_ne!(a.file_name(), LockName::new("jobs2").unwrap().file_name());
    for hostile in ["../../x", "a/b", "..", "CON", "nul:", "\\?\\C:\\x"] {
      let f = LockName::new(hostile).unwrap().file_name();
      assert!(f.starts_with("file-") && f.ends_with(".lock") && f.len() == 42, "{f}");
      assert!(f[5..37].bytes().all(|b| b.is_ascii_hexdigit()), "{f}");
    }
  }
}
