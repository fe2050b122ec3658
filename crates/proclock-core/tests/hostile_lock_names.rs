//! Fuzzing lock names (`name.rs`): arbitrary strings, strings decoded from arbitrary bytes,
//! and the hostile shapes a name can take (path separators, `..`, NUL, Windows device names,
//! control characters, lengths around the 255-byte limit in multi-byte characters).
//!
//! Properties:
//! - `LockName::new` never panics; it accepts exactly the names of 1..=255 UTF-8 bytes without
//!   NUL, and refuses every other one with `ErrorKind::InvalidName` (the binding turns that
//!   into `ERR_INVALID_ARG_VALUE`);
//! - whatever the name, `file_name()` is one safe path component, `file-<32 hex>.lock`, the
//!   same for the same name, and the table key is nonzero (0 marks a free slot);
//! - through the lock API, a name reaches nothing outside the lock directory: opening a file
//!   lock and an shm lock under any valid name creates only proclock's files inside the
//!   directory, and `list()` gives the name back exactly; an invalid name is refused by every
//!   entry point with `InvalidName` and creates nothing.
//!
//! Default 1024 cases for the pure property and 64 through the lock API (one directory for
//! all of them), a couple of seconds; `PROPTEST_CASES=N` runs N per property.

// Unix only: the helpers make private files and directories with Unix modes, and the layouts
// read back through Unix positional I/O. The properties are the same elsewhere.
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path};
use std::sync::OnceLock;

use common::{config, Scratch};
use proclock_core::backend::Backend;
use proclock_core::inspect;
use proclock_core::name::{LockName, MAX_NAME_BYTES};
use proclock_core::{ErrorKind, FileLock, Mode, ShmLock};
use proptest::collection::vec;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
  prop_oneof![
    // Any characters at all, control characters and NUL included.
    vec(any::<char>(), 0..80).prop_map(|c| c.into_iter().collect()),
    // Whatever arbitrary bytes decode to.
    vec(any::<u8>(), 0..300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    // Path-like and device-like pieces.
    vec(
      prop_oneof![
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just(".".to_owned()),
        Just("\0".to_owned()),
        Just("CON".to_owned()),
        Just("nul:".to_owned()),
        Just("C:".to_owned()),
        Just("~".to_owned()),
        Just("\n".to_owned()),
        Just("*?<>|\"".to_owned()),
        "[a-z]{1,4}",
      ],
      1..12
    )
    .prop_map(|p| p.concat()),
    // Around the length limit, in 1-, 2-, 3- and 4-byte characters.
    (prop_oneof![Just('x'), Just('é'), Just('€'), Just('😀')], 60usize..=260).prop_map(|(c, n)| {
      let mut s = String::new();
      while s.len() + c.len_utf8() <= n {
        s.push(c);
      }
      s
    }),
  ]
}

fn valid(name: &str) -> bool {
  !name.is_empty() && name.len() <= MAX_NAME_BYTES && !name.contains('\0')
}

fn safe_file_name(f: &str) {
  assert_eq!(f.len(), 42, "{f}");
  assert!(f.starts_with("file-") && f.ends_with(".lock"), "{f}");
  assert!(f[5..37].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{f}");
  let parts: Vec<_> = Path::new(f).components().collect();
  assert!(matches!(parts[..], [Component::Normal(_)]), "{f} is not one plain path component");
}

proptest! {
  #![proptest_config(config(1024))]

  #[test]
  fn names_are_accepted_exactly_when_valid_and_map_to_safe_file_names(name in name()) {
    match LockName::new(&name) {
      Ok(n) => {
        prop_assert!(valid(&name), "accepted {name:?}");
        prop_assert_eq!(n.as_str(), name.as_str());
        prop_assert_eq!(n.key() & 1, 1, "a key is never 0");
        safe_file_name(&n.file_name());
        let again = LockName::new(&name).unwrap();
        prop_assert_eq!((again.key(), again.file_name()), (n.key(), n.file_name()));
      }
      Err(e) => {
        prop_assert!(!valid(&name), "refused {name:?}: {e}");
        prop_assert_eq!(e.kind(), ErrorKind::InvalidName);
      }
    }
  }
}

/// One lock directory for every case of the end-to-end property, inside a parent directory that
/// must stay empty but for it.
fn shared_dir() -> &'static (Scratch, std::path::PathBuf) {
  static DIR: OnceLock<(Scratch, std::path::PathBuf)> = OnceLock::new();
  DIR.get_or_init(|| {
    let parent = Scratch::new("names");
    let dir = parent.join("locks");
    (parent, dir)
  })
}

proptest! {
  #![proptest_config(config(64))]

  #[test]
  fn a_name_reaches_nothing_outside_the_lock_directory(name in name()) {
    let (parent, dir) = shared_dir();
    let dir = dir.as_path();
    let before: BTreeSet<_> = fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    let file = FileLock::open(&name, Some(dir), Mode::Exclusive);
    let shm = ShmLock::open(&name, Some(dir));
    let looked = inspect::inspect(Backend::File, &name, Some(dir));
    if !valid(&name) {
      for (what, kind) in [("FileLock::open", file.err().map(|e| e.kind())), ("ShmLock::open", shm.err().map(|e| e.kind())), ("inspect", looked.err().map(|e| e.kind()))] {
        prop_assert_eq!(kind, Some(ErrorKind::InvalidName), "{} {:?}", what, name);
      }
      let after: BTreeSet<_> = fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
      prop_assert_eq!(after, before, "an invalid name created something");
    } else {
      file.unwrap();
      shm.unwrap();
      looked.unwrap();
      let file_name = LockName::new(&name).unwrap().file_name();
      let after: BTreeSet<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
      prop_assert!(after.contains(&file_name));
      for f in &after {
        let ours = f.starts_with("shm-") || f == "dir.lock" || (f.starts_with("file-") && f.ends_with(".lock"));
        prop_assert!(ours, "unexpected file {:?} in the lock directory", f);
        if f.starts_with("file-") {
          safe_file_name(f);
        }
      }
      let listed = inspect::list(Some(dir)).unwrap();
      for backend in [Backend::File, Backend::Shm] {
        prop_assert_eq!(listed.iter().filter(|s| s.backend == backend && s.name == name).count(), 1, "{:?} {:?}", backend, name);
      }
    }
    // Nothing appeared next to the lock directory.
    let beside: Vec<_> = fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    prop_assert!(beside.len() <= 1, "{beside:?}");
  }
}
