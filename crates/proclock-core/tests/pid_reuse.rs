//! PID reuse, with real processes: a pid is a name the kernel hands out again, so a lock must
//! never trust a pid alone: a reused pid never keeps a dead holder alive, and a live holder is
//! never stolen from.
//!
//! Shm backend (`shm/liveness.rs`): a holder's process is alive while it holds the kernel lock on
//! its liveness file; before saying "dead", the verdict cross-checks the pid and start identity
//! from the process table (`shm-procs.seg`) or, when the holder's process slot has a new
//! occupant, from the lock's holder record.
//! 1. A dead holder whose entry and record name a live *unrelated* pid with a wrong start time is
//!    taken over (once by a single try, once by a waiting acquisition).
//! 2. The same with *our own* pid.
//!    Both through the process table (the holder's slot is free) and through the holder record
//!    (a new process has taken the slot since).
//! 3. A genuine live holder (a child process) is never stolen from while probed for about a
//!    second, and neither after a temp cleaner deleted its liveness file, nor after a new
//!    process then claimed its process slot through the re-created file (that process, trying
//!    the lock itself, does not take it either).
//!
//! File backend (`file/mod.rs`): the kernel lock alone says whether a holder is alive.
//! 4. A free lock file whose record says "held" by a live pid is taken at once, `owner_died`.
//! 5. A live holder whose record names a dead or unrelated pid is not stolen from.
//!
//! Records are forged the way another process would see them: by writing into the shared files
//! (`pwrite` into the `MAP_SHARED` segments; `LockFile::write_record` for lock files), at offsets
//! computed from the crate's own constants. Holders are this test binary re-executed with
//! `PROCLOCK_TEST_CHILD` set (see `child_process_role`): real processes that really die when
//! killed, with no Node.js build in the way and direct access to the shared layouts.
//!
//! Linux and macOS only: the start identity is what tells a reused pid apart, and other Unixes
//! have none (`process_info.rs`); Windows has no `sleep` to borrow a live pid from.
#![cfg(any(target_os = "linux", target_os = "macos"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proclock_core::shm::holder_record::{RECORD_IDENTITY_AT, RECORD_PID_AT};
use proclock_core::shm::liveness::{live_file_name, PROCS_FILE, PROCS_LAYOUT, PROC_ENTRY_IDENTITY_AT, PROC_ENTRY_PID_AT};
use proclock_core::lock_dir::LockDir;
use proclock_core::file::format::{LockFile, Record};
use proclock_core::lock_word::pslot_of;
use proclock_core::name::LockName;
use proclock_core::process_info::start_identity;
use proclock_core::raw_lock::{Acquired, Stop};
use proclock_core::shm::segment::HEADER_SIZE;
use proclock_core::shm::slot_table::{segment_file, Slot, SlotTable, LOCKS_LAYOUT};
use proclock_core::{FileLock, InspectLock, Mode, RawLock, ShmLock};

const ROLE: &str = "PROCLOCK_TEST_CHILD";
const NEVER: &dyn Fn() -> bool = &|| false;

// ----- child processes -------------------------------------------------------------------

/// Not a test: the body of the child processes. In the normal run it returns at once.
/// A child does its role, prints `READY <numbers>`, then waits until its stdin closes (or it is
/// killed) and exits without releasing anything.
#[test]
fn child_process_role() {
  let Ok(role) = std::env::var(ROLE) else { return };
  let dir = PathBuf::from(std::env::var("PROCLOCK_TEST_DIR").unwrap());
  let name = std::env::var("PROCLOCK_TEST_NAME").unwrap();
  let pid = std::process::id();
  let ready = match role.as_str() {
    // Hold `name` (shm): READY pslot handle-id token start-identity
    "shm-hold" => {
      let lock = ShmLock::open(&name, Some(&dir)).unwrap();
      let got = lock.try_lock(b"held by a child", true).unwrap().expect("the lock is free");
      let line = format!(
        "{} {} {} {}",
        pslot_of(lock.id()),
        lock.id(),
        got.token,
        start_identity(pid).unwrap()
      );
      std::mem::forget(lock);
      line
    }
    // Only register in the directory (claim a process slot): READY pslot
    "shm-register" => {
      let lock = ShmLock::open(&name, Some(&dir)).unwrap();
      let line = format!("{}", pslot_of(lock.id()));
      std::mem::forget(lock);
      line
    }
    // Open `name` (shm), which claims a process slot, and try to take it once, probing the
    // holder: READY pslot acquired owner-alive (0/1)
    "shm-try" => {
      let lock = ShmLock::open(&name, Some(&dir)).unwrap();
      let got = lock.try_lock(b"", true).unwrap();
      let alive = lock.owner().unwrap().is_some_and(|o| o.alive);
      let line = format!("{} {} {}", pslot_of(lock.id()), u8::from(got.is_some()), u8::from(alive));
      std::mem::forget(lock);
      line
    }
    // Hold `name` (file): READY token
    "file-hold" => {
      let lock = FileLock::open(&name, Some(&dir), Mode::Exclusive).unwrap();
      let got = lock.try_lock(b"held by a child", true).unwrap().expect("the lock is free");
      std::mem::forget(lock);
      format!("{}", got.token)
    }
    other => panic!("unknown role {other}"),
  };
  println!("READY {ready}");
  std::io::stdout().flush().unwrap();
  let _ = std::io::stdin().read_to_end(&mut Vec::new());
  std::process::exit(0);
}

/// A child process; killed (SIGKILL) and reaped when dropped.
struct Kid {
  child: Child,
  lines: mpsc::Receiver<String>,
}

impl Kid {
  fn spawn(role: &str, dir: &Path, name: &str) -> Kid {
    let mut child = Command::new(std::env::current_exe().unwrap())
      .args(["child_process_role", "--exact", "--nocapture", "--test-threads=1", "-q"])
      .env(ROLE, role)
      .env("PROCLOCK_TEST_DIR", dir)
      .env("PROCLOCK_TEST_NAME", name)
      .stdin(Stdio::piped())
      .stdout(Stdio::piped())
      .spawn()
      .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
      for line in out.lines().map_while(Result::ok) {
        let _ = tx.send(line);
      }
    });
    Kid { child, lines }
  }

  /// The numbers of the child's READY line.
  fn ready(&self) -> Vec<u64> {
    loop {
      let line = self.lines.recv_timeout(Duration::from_secs(30)).expect("the child never got ready");
      if let Some(rest) = line.strip_prefix("READY ") {
        return rest.split(' ').map(|n| n.parse().unwrap()).collect();
      }
    }
  }

  fn pid(&self) -> u32 {
    self.child.id()
  }

  /// SIGKILL, then reap: afterwards the pid names no process (until the kernel reuses it).
  fn kill(mut self) {
    self.child.kill().unwrap();
    self.child.wait().unwrap();
  }
}

impl Drop for Kid {
  fn drop(&mut self) {
    let _ = self.child.kill();
    let _ = self.child.wait();
  }
}

/// A live process that has nothing to do with proclock: `sleep 60`.
fn unrelated_process() -> Child {
  Command::new("sleep").arg("60").spawn().unwrap()
}

struct Reaped(Child);
impl Drop for Reaped {
  fn drop(&mut self) {
    let _ = self.0.kill();
    let _ = self.0.wait();
  }
}

// ----- forging records --------------------------------------------------------------------

fn scratch(tag: &str) -> PathBuf {
  let p = std::env::temp_dir().join(format!("proclock-pid-reuse-{tag}-{}", std::process::id()));
  let _ = std::fs::remove_dir_all(&p);
  p
}

fn pwrite_u64(path: &Path, at: usize, value: u64) {
  let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
  // The fields are native-endian atomics in a MAP_SHARED mapping of this file.
  file.write_all_at(&value.to_ne_bytes(), at as u64).unwrap();
}

/// Make the process-table entry of `pslot` name (`pid`, `identity`).
fn forge_proc_entry(dir: &Path, pslot: u64, pid: u32, identity: u64) {
  let entry = HEADER_SIZE + pslot as usize * PROCS_LAYOUT.entry_size;
  let file = dir.join(PROCS_FILE);
  pwrite_u64(&file, entry + PROC_ENTRY_PID_AT, u64::from(pid));
  pwrite_u64(&file, entry + PROC_ENTRY_IDENTITY_AT, identity);
}

/// Make the holder record of shm lock `name` name (`pid`, `identity`); the holder id it
/// describes stays as it was.
fn forge_shm_record(dir: &Path, name: &str, pid: u32, identity: u64) {
  let lock_dir = LockDir::open(dir).unwrap();
  let slot = SlotTable::new().find(&lock_dir, &LockName::new(name).unwrap()).unwrap().unwrap();
  let (segment, index) = slot.location();
  let record = HEADER_SIZE + index * LOCKS_LAYOUT.entry_size + std::mem::offset_of!(Slot, record);
  let file = dir.join(segment_file(segment));
  pwrite_u64(&file, record + RECORD_PID_AT, u64::from(pid));
  pwrite_u64(&file, record + RECORD_IDENTITY_AT, identity);
}

fn forge_file_record(dir: &Path, name: &str, record: &Record) {
  let lock_dir = LockDir::open(dir).unwrap();
  LockFile::open(&lock_dir, &LockName::new(name).unwrap())
    .unwrap()
    .write_record(record)
    .unwrap();
}

/// `pid`'s true start identity, two clock ticks off: the nearest possible miss (same boot,
/// started 20 ms apart on Linux).
fn wrong_identity(pid: u32) -> u64 {
  let real = start_identity(pid).expect("a live process");
  let forged = real.wrapping_add(2);
  assert_ne!(forged, real);
  forged
}

// ----- shm: a reused pid never keeps a dead holder alive ----------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Via {
  /// The holder's process slot is still its own (free now): the process table is read.
  ProcessTable,
  /// A new process has claimed the holder's slot since: the lock's holder record is read.
  HolderRecord,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Impostor {
  Unrelated,
  Ourselves,
}

/// A holder dies holding; its records are then made to name a live process with a wrong start
/// time; the lock must be taken over (`owner_died`, larger token), by a single try and by a
/// waiting acquisition.
fn reused_pid_does_not_keep_a_dead_holder_alive(via: Via, impostor: Impostor) {
  for waiting in [false, true] {
    let dir = scratch(&format!("dead-{via:?}-{impostor:?}-{waiting}"));
    let name = "reused";
    // We register in the directory first, so the holder gets a process slot of its own.
    let me = ShmLock::open(name, Some(&dir)).unwrap();
    let holder = Kid::spawn("shm-hold", &dir, name);
    let [pslot, _id, token, _identity] = holder.ready()[..] else {
      panic!()
    };
    assert_ne!(pslot, u64::from(pslot_of(me.id())));
    holder.kill();

    let _occupant = (via == Via::HolderRecord).then(|| {
      let occupant = Kid::spawn("shm-register", &dir, "elsewhere");
      assert_eq!(occupant.ready(), [pslot], "the new process takes the dead holder's slot");
      occupant
    });
    let (_unrelated, pid) = match impostor {
      Impostor::Unrelated => {
        let sleeper = unrelated_process();
        let pid = sleeper.id();
        (Some(Reaped(sleeper)), pid)
      }
      Impostor::Ourselves => (None, std::process::id()),
    };
    let identity = wrong_identity(pid);
    if via == Via::ProcessTable {
      forge_proc_entry(&dir, pslot, pid, identity);
    }
    forge_shm_record(&dir, name, pid, identity);

    let owner = me.owner().unwrap().expect("the dead holder's word is still in place");
    assert_eq!(owner.pid, pid, "the forged record is what others read");
    assert!(
      !owner.alive,
      "{via:?}/{impostor:?}: a live pid with another start time is not the holder"
    );

    let started = Instant::now();
    let got: Acquired = if waiting {
      me.lock(b"", Some(Instant::now() + Duration::from_secs(5)), NEVER)
        .unwrap()
        .expect("recovered before the deadline")
    } else {
      me.try_lock(b"", true).unwrap().expect("recovered by a single try")
    };
    let took = started.elapsed();
    assert!(got.owner_died, "{via:?}/{impostor:?}: the new holder is told the owner died");
    assert!(got.token > token, "{via:?}/{impostor:?}: the takeover gets a larger token");
    assert!(took < Duration::from_secs(1), "{via:?}/{impostor:?}: recovery took {took:?}");
    me.unlock().unwrap();
    drop(me);
    let _ = std::fs::remove_dir_all(&dir);
  }
}

#[test]
fn shm_dead_holder_whose_process_entry_names_a_live_unrelated_pid_is_taken_over() {
  reused_pid_does_not_keep_a_dead_holder_alive(Via::ProcessTable, Impostor::Unrelated);
}

#[test]
fn shm_dead_holder_whose_process_entry_names_our_own_pid_is_taken_over() {
  reused_pid_does_not_keep_a_dead_holder_alive(Via::ProcessTable, Impostor::Ourselves);
}

#[test]
fn shm_dead_holder_whose_record_names_a_live_unrelated_pid_is_taken_over() {
  reused_pid_does_not_keep_a_dead_holder_alive(Via::HolderRecord, Impostor::Unrelated);
}

#[test]
fn shm_dead_holder_whose_record_names_our_own_pid_is_taken_over() {
  reused_pid_does_not_keep_a_dead_holder_alive(Via::HolderRecord, Impostor::Ourselves);
}

// ----- shm: a live holder is never stolen from ---------------------------------------------

/// Ask about the lock, held by `holder_pid`, again and again for `period`: its owner must read
/// alive every time, single tries must fail, and every 20th round a short wait must time out.
/// Returns how many rounds were made.
fn never_stolen(me: &ShmLock, holder_pid: u32, period: Duration, phase: &str) -> usize {
  let end = Instant::now() + period;
  let mut rounds = 0;
  while Instant::now() < end {
    let owner = me.owner().unwrap().expect("held");
    assert_eq!(owner.pid, holder_pid);
    assert!(owner.alive, "{phase}, round {rounds}: a live holder was called dead");
    assert!(
      me.try_lock(b"", true).unwrap().is_none(),
      "{phase}, round {rounds}: stolen by a single try"
    );
    if rounds % 20 == 0 {
      let waited = me.lock(b"", Some(Instant::now() + Duration::from_millis(20)), NEVER).unwrap();
      assert!(
        matches!(waited, Err(Stop::TimedOut)),
        "{phase}, round {rounds}: stolen by a wait: {waited:?}"
      );
    }
    rounds += 1;
    std::thread::sleep(Duration::from_millis(2));
  }
  rounds
}

/// The holder dies after all: the lock is then taken over (so the rounds before were not
/// passing merely because nothing could ever be taken over).
fn taken_over_once_dead(me: &ShmLock, holder: Kid, token: u64) {
  holder.kill();
  let got = me
    .lock(b"", Some(Instant::now() + Duration::from_secs(5)), NEVER)
    .unwrap()
    .expect("taken over once the holder is dead");
  assert!(got.owner_died && got.token > token);
  me.unlock().unwrap();
}

#[test]
fn shm_live_holder_is_not_stolen_from_while_probed_for_a_second() {
  let dir = scratch("live");
  let me = ShmLock::open("busy", Some(&dir)).unwrap();
  let holder = Kid::spawn("shm-hold", &dir, "busy");
  let [_pslot, _id, token, _identity] = holder.ready()[..] else {
    panic!()
  };
  let rounds = never_stolen(&me, holder.pid(), Duration::from_secs(1), "probed");
  assert!(rounds > 50, "only {rounds} rounds");
  taken_over_once_dead(&me, holder, token);
  let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shm_live_holder_is_not_stolen_from_after_its_liveness_file_is_deleted() {
  let dir = scratch("cleaned");
  // We register first (and never probe before the deletion: a prober keeps the descriptor of
  // a liveness file it has opened, which would still see the holder's lock).
  let me = ShmLock::open("busy", Some(&dir)).unwrap();
  let holder = Kid::spawn("shm-hold", &dir, "busy");
  let [pslot, _id, token, _identity] = holder.ready()[..] else {
    panic!()
  };
  // A temp cleaner deletes the holder's liveness file. Probes now open a new, unlocked file
  // of that name: the kernel lock says "nobody", and only the pid + start identity cross-check
  // (from the process table: the holder still occupies its slot) keeps the holder alive.
  let live = dir.join(live_file_name(pslot as u16));
  std::fs::remove_file(&live).unwrap();
  let rounds = never_stolen(&me, holder.pid(), Duration::from_secs(1), "liveness file deleted");
  assert!(rounds > 50, "only {rounds} rounds");
  assert!(live.exists(), "the probes re-created the file");

  // Worse: a new process registers, finds that new file unlocked, and claims the live
  // holder's process slot. The holder is no longer its slot's occupant, and the slot is
  // occupied by someone alive; now the lock's holder record is what proves the holder alive,
  // to that new process (which tries the lock once) as to us.
  let occupant = Kid::spawn("shm-try", &dir, "busy");
  assert_eq!(
    occupant.ready(),
    [pslot, 0, 1],
    "the new process took the holder's slot [pslot], and neither took the lock [0] nor called its holder dead [1]"
  );
  let rounds = never_stolen(&me, holder.pid(), Duration::from_millis(500), "slot taken by a new process");
  assert!(rounds > 25, "only {rounds} rounds");

  taken_over_once_dead(&me, holder, token);
  drop(occupant);
  let _ = std::fs::remove_dir_all(&dir);
}

// ----- file backend -------------------------------------------------------------------------

fn forged_record(pid: u32, token: u64) -> Record {
  Record {
    held: true,
    pid,
    since_ms: 1,
    token,
    uuid: [7; 16],
    description: b"forged".to_vec(),
  }
}

#[test]
fn file_lock_free_in_the_kernel_is_taken_at_once_whatever_pid_its_record_names() {
  let dir = scratch("file-free");
  let name = "recorded";
  let me = FileLock::open(name, Some(&dir), Mode::Exclusive).unwrap();
  let sleeper = Reaped(unrelated_process());
  let mut token = 40;
  for (pid, waiting) in [(sleeper.0.id(), false), (std::process::id(), false), (sleeper.0.id(), true)] {
    // "Held" by a live process, says the record; the kernel lock is free.
    forge_file_record(&dir, name, &forged_record(pid, token));
    let owner = me.owner().unwrap().expect("the record says held");
    assert_eq!(owner.pid, pid);
    assert!(
      !owner.alive,
      "the kernel lock is free, so nobody holds it, whatever pid is recorded"
    );
    let started = Instant::now();
    let got = if waiting {
      me.lock(b"", Some(Instant::now() + Duration::from_secs(5)), NEVER).unwrap().unwrap()
    } else {
      me.try_lock(b"", true).unwrap().expect("taken at once")
    };
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    assert!(got.owner_died, "pid {pid}: the record said held, so the owner died holding");
    assert!(got.token > token);
    token = got.token + 10;
    me.unlock().unwrap();
  }
  let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_live_holder_is_not_stolen_from_whatever_pid_its_record_names() {
  let dir = scratch("file-live");
  let name = "recorded";
  let me = FileLock::open(name, Some(&dir), Mode::Exclusive).unwrap();
  let holder = Kid::spawn("file-hold", &dir, name);
  let [token] = holder.ready()[..] else { panic!() };
  let dead_pid = {
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    gone.id()
  };
  let sleeper = Reaped(unrelated_process());
  for (pid, period) in [(dead_pid, Duration::from_millis(700)), (sleeper.0.id(), Duration::from_millis(300))] {
    forge_file_record(&dir, name, &forged_record(pid, token));
    let end = Instant::now() + period;
    let mut rounds = 0;
    while Instant::now() < end {
      let owner = me.owner().unwrap().expect("held");
      assert_eq!(owner.pid, pid);
      assert!(owner.alive, "pid {pid}: the kernel lock is held, so its holder is alive");
      assert!(me.try_lock(b"", true).unwrap().is_none(), "pid {pid}: stolen by a single try");
      if rounds % 20 == 0 {
        let waited = me.lock(b"", Some(Instant::now() + Duration::from_millis(20)), NEVER).unwrap();
        assert!(matches!(waited, Err(Stop::TimedOut)), "pid {pid}: stolen by a wait");
      }
      rounds += 1;
      std::thread::sleep(Duration::from_millis(2));
    }
    assert!(rounds > 20, "only {rounds} rounds");
  }
  holder.kill();
  let got = me
    .lock(b"", Some(Instant::now() + Duration::from_secs(5)), NEVER)
    .unwrap()
    .expect("free once the holder is dead");
  assert!(got.owner_died && got.token > token);
  me.unlock().unwrap();
  let _ = std::fs::remove_dir_all(&dir);
}
