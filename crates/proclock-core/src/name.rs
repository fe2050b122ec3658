//! Lock names: validation, and the stable hash that places a name in the shared tables.
//!
//! A name is any UTF-8 string of 1..=255 bytes without NUL. It never becomes a path or an OS
//! object name by itself: it is hashed (SHA-256, a fixed algorithm, so every process and every
//! version agree) and the readable name is stored inside the shared slot for `list()`.

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// Longest name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A validated lock name and its 64-bit table key.
#[derive(Debug, Clone)]
pub struct LockName {
  name: String,
  key: u64,
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
    Ok(LockName {
      name: name.to_owned(),
      key,
    })
  }

  pub fn as_str(&self) -> &str {
    &self.name
  }

  /// The nonzero key under which the name is stored in a slot table.
  pub fn key(&self) -> u64 {
    self.key
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
  }
}
