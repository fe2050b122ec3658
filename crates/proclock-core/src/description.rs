//! A lock's description: the free text a holder records beside its hold (shown by `owner()`,
//! `inspect` and `proclock list`), and the one limit on its length that every backend stores and
//! every reader enforces.

use crate::error::{Error, ErrorKind, Result};

/// Longest description, in UTF-8 bytes. The shm holder record reserves exactly this many bytes,
/// and the file backend's record holds no more.
pub const MAX_DESCRIPTION_BYTES: usize = 256;

/// Check a description's length (UTF-8 bytes).
pub fn check_description(description: &str) -> Result<()> {
  if description.len() > MAX_DESCRIPTION_BYTES {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      format!(
        "description is {} UTF-8 bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
        description.len()
      ),
    ));
  }
  Ok(())
}

/// A stored description as text. Invalid UTF-8 (a torn or hostile record) is shown lossily
/// rather than refused, but each invalid byte becomes a 3-byte U+FFFD, so the text is cut back
/// to `MAX_DESCRIPTION_BYTES` at a character boundary: a description read from anywhere keeps
/// the documented bound (found by the fuzzing in `tests/garbage_holder_records.rs`).
pub fn description_text(bytes: &[u8]) -> String {
  let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_DESCRIPTION_BYTES)]).into_owned();
  let mut end = text.len().min(MAX_DESCRIPTION_BYTES);
  while !text.is_char_boundary(end) {
    end -= 1;
  }
  text.truncate(end);
  text
}

