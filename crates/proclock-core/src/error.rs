//! Errors of the core, each with a stable kind that the binding turns into a JS `code`.

use std::fmt;
use std::io;

/// What went wrong, in terms a caller can act on. Every kind maps to one stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
  /// The deadline passed before the lock could be taken.
  Timeout,
  /// `release()` by a handle that does not hold the lock (or was forced out).
  NotHeld,
  /// Acquiring again on a handle that holds, or has an acquisition pending.
  Reentry,
  /// The handle was closed.
  Closed,
  /// The wait was cancelled (abort signal, or environment teardown).
  Cancelled,
  /// A shared segment or lock file does not hold what proclock writes.
  Corrupt,
  /// The lock directory or a file in it is not ours, not private, or a symlink.
  Permission,
  /// A lock name that cannot be used.
  InvalidName,
  /// An argument out of its documented range.
  InvalidArgument,
  /// The lock directory (or the lock's file in it) was deleted or moved while this handle used
  /// it: a hold of this handle may no longer be exclusive, and the handle cannot be used again.
  Lost,
  /// Any other operating-system failure.
  Io,
}

impl ErrorKind {
  /// The stable code carried to JavaScript as `error.code`.
  pub fn code(self) -> &'static str {
    match self {
      ErrorKind::Timeout => "ELOCKTIMEOUT",
      ErrorKind::NotHeld => "ELOCKNOTHELD",
      ErrorKind::Reentry => "ELOCKREENTRY",
      ErrorKind::Closed => "ELOCKCLOSED",
      ErrorKind::Cancelled => "ELOCKCANCELLED",
      ErrorKind::Corrupt => "ELOCKCORRUPT",
      ErrorKind::Permission => "ELOCKPERM",
      ErrorKind::InvalidName => "ERR_INVALID_ARG_VALUE",
      ErrorKind::InvalidArgument => "ERR_INVALID_ARG_VALUE",
      ErrorKind::Lost => "ELOCKLOST",
      ErrorKind::Io => "ELOCKIO",
    }
  }
}

/// An error of the core: a kind plus a message written for the person reading the log.
#[derive(Debug)]
pub struct Error {
  kind: ErrorKind,
  message: String,
  source: Option<io::Error>,
}

impl Error {
  pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
    Error {
      kind,
      message: message.into(),
      source: None,
    }
  }

  /// An OS error while doing `what`; permission-type errnos become `Permission`.
  pub fn io(what: impl fmt::Display, err: io::Error) -> Self {
    let kind = match err.kind() {
      io::ErrorKind::PermissionDenied => ErrorKind::Permission,
      _ => ErrorKind::Io,
    };
    Error {
      kind,
      message: format!("{what}: {err}"),
      source: Some(err),
    }
  }

  pub fn kind(&self) -> ErrorKind {
    self.kind
  }

  pub fn message(&self) -> &str {
    &self.message
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(&self.message)
  }
}

impl std::error::Error for Error {
  fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
    self.source.as_ref().map(|e| e as _)
  }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
  Error::new(ErrorKind::Corrupt, message)
}

#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn permission(message: impl Into<String>) -> Error {
  Error::new(ErrorKind::Permission, message)
}

/// The error of a lost handle: `why` says what was deleted or moved.
#[cfg_attr(loom, allow(dead_code))]
pub fn lost(why: &str) -> Error {
  let why = if why.is_empty() { "the lock directory was deleted or moved while in use" } else { why };
  Error::new(
    ErrorKind::Lost,
    format!(
      "{why}: a hold of this handle may no longer be exclusive (processes that start now use new files under the \
       same names), and the handle cannot be used again; open a new Lock"
    ),
  )
}
