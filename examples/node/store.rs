//! The node's storage: its Raft log, its vote and its key-value state machine, kept in files
//! under `--data-dir`, so that a node that is killed comes back with its data and catches up.
//!
//! openraft 0.9 has two storage APIs: `RaftStorage` (one trait, run through `Adaptor`) and the
//! split `RaftLogStorage` + `RaftStateMachine`. The split one needs openraft's `storage-v2`
//! feature, which removes `RaftStorage` and `Adaptor` from the whole build, and with them
//! openraft-memstore, which the cluster example and the tests run on; so this is a
//! `RaftStorage`.
//!
//! # Files
//!
//! | file | holds | written |
//! |---|---|---|
//! | `state.json` | the vote; the purge point (the last log id dropped after a snapshot) | replaced whole, durably |
//! | `log` | the log entries, one record each: length (u32 LE), CRC-32 of the body (u32 LE), the entry as JSON | appended, then fsynced before openraft hears it is stored; cut back with `set_len` on a conflict; rewritten without the purged prefix once that is most of it |
//! | `snapshot.json` | the last snapshot: its metadata and the state machine (every key's value, the last applied log id, the membership) | replaced whole, durably |
//! | `committed.json` | the last committed log id | replaced whole, not fsynced |
//!
//! "Replaced whole, durably": written to `NAME.tmp`, fsynced, renamed over `NAME`, and the
//! directory fsynced, so a crash leaves the old contents or the new, never a mix.
//!
//! Applying an entry changes the state machine in memory only. On start it is the last
//! snapshot, and openraft re-applies the log from there up to the saved committed index; the
//! log is only ever purged up to a snapshot that is already on disk.
//!
//! # What it survives, and what not
//!
//! - The process killed at any point (SIGKILL, a panic): everything, since each file is
//!   consistent at every moment and the kernel keeps what was written.
//! - A power loss or kernel crash: the vote, the purge point, every log entry openraft was told
//!   is stored, and every snapshot. The committed index may go back (it is not fsynced: a stale
//!   one only means the node re-applies less on start and learns the rest from the leader), and
//!   an append that was cut short (so never acknowledged) is dropped when it is the end of the log.
//! - Not a damaged disk: a record whose checksum fails with valid data after it stops the node
//!   from starting rather than guess. Not a lost data dir: a node whose data is gone must not
//!   rejoin under its old id (it may vote twice in one term); restart the whole cluster with
//!   empty dirs instead. Not two processes on one dir: nothing locks it (on one machine the
//!   second process fails first, binding the same port; a supervisor that hands the node its
//!   port with `--listen-fd` must itself start one process per node at a time).
//! - Not large data: the log and the state machine are also held in memory, and every snapshot
//!   is written whole. This is a store for a demo, kept small enough to read.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftStorage, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Nodes are numbered.
pub(crate) type NodeId = u64;

/// The one write this store knows: set `key` to `value`, or, with `only_if`, compare-and-set:
/// only if the key's value is `only_if` now (the chaos harness's third operation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Set {
    pub(crate) key: String,
    pub(crate) value: String,
    /// Absent from plain sets' records, so logs written before it read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) only_if: Option<String>,
}

/// What applying a [`Set`] answers: the key's value before it, if it had one (a compare-and-set
/// wrote if and only if this equals its `only_if`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Previous(pub(crate) Option<String>);

openraft::declare_raft_types!(
    /// The node's openraft types: writes are [`Set`]s, and nodes are known by id alone (the
    /// `--peer` table says where each listens).
    pub(crate) TypeConfig:
        D = Set,
        R = Previous,
        Node = (),
);

type StorageResult<T> = Result<T, StorageError<NodeId>>;

const STATE_FILE: &str = "state.json";
const LOG_FILE: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot.json";
const COMMITTED_FILE: &str = "committed.json";
/// The log file starts with this, so that a file of something else is not read as a log.
const LOG_MAGIC: &[u8; 8] = b"rnlog\0\0\x01";
/// A record's length and checksum, before its body.
const RECORD_HEADER_LEN: u64 = 8;

/// A handle to one data dir's storage; clones share it (openraft reads the log and builds
/// snapshots through clones while the node writes through another).
#[derive(Clone)]
pub(crate) struct FileStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    log: Mutex<Log>,
    state_machine: Mutex<StateMachine>,
    /// Held while a snapshot is written, so an older one never replaces a newer one.
    snapshot: Mutex<Option<StoredSnapshot>>,
}

/// What `state.json` holds: what a node must never forget.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DurableState {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Log {
    /// `log`, opened for appending.
    file: File,
    /// The entries after the purge point, each with the offset of its record in the file.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    /// The file's length: where the next record goes.
    end: u64,
    durable: DurableState,
    committed: Option<LogId<NodeId>>,
}

/// The key-value state machine.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct StateMachine {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, ()>,
    values: BTreeMap<String, String>,
}

/// What `snapshot.json` holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, ()>,
    state: StateMachine,
}

/// The current snapshot, as openraft hands it around: the state machine serialized.
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ()>,
    data: Vec<u8>,
}

impl FileStore {
    /// Opens the storage in `dir`, creating the dir for a new node, and loads what an earlier
    /// run left there.
    pub(crate) fn open(dir: &Path) -> io::Result<FileStore> {
        fs::create_dir_all(dir)?;
        for name in [STATE_FILE, LOG_FILE, SNAPSHOT_FILE, COMMITTED_FILE] {
            // A replacement that a crash interrupted before its rename.
            match fs::remove_file(dir.join(format!("{name}.tmp"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let durable: DurableState = read_json(&dir.join(STATE_FILE))?.unwrap_or_default();
        // Written without fsync: after a power loss it may be empty or gone, which only means
        // re-applying less on start.
        let committed = read_json(&dir.join(COMMITTED_FILE)).unwrap_or(None);
        let snapshot: Option<SnapshotFile> = read_json(&dir.join(SNAPSHOT_FILE))?;
        let log = Log::open(dir, durable, committed)?;

        let (state_machine, snapshot) = match snapshot {
            Some(SnapshotFile { meta, state }) => {
                let data = serde_json::to_vec(&state).map_err(io::Error::other)?;
                (state, Some(StoredSnapshot { meta, data }))
            }
            None => (StateMachine::default(), None),
        };
        Ok(FileStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                log: Mutex::new(log),
                state_machine: Mutex::new(state_machine),
                snapshot: Mutex::new(snapshot),
            }),
        })
    }

    /// What `open` found, in words: "empty (a new node)", or the vote, log, snapshot and
    /// committed index that an earlier run left.
    pub(crate) fn describe(&self) -> String {
        let log = self.log();
        let snapshot = self.snapshot_slot();
        let mut parts = Vec::new();
        if let Some(vote) = log.durable.vote {
            parts.push(format!(
                "vote in term {} for node {}",
                vote.leader_id.term, vote.leader_id.node_id
            ));
        }
        match (log.entries.keys().next(), log.entries.keys().next_back()) {
            (Some(first), Some(last)) => parts.push(format!("log entries {first} to {last}")),
            _ => parts.push("no log entries".to_string()),
        }
        if let Some(index) = snapshot
            .as_ref()
            .and_then(|s| s.meta.last_log_id.map(|id| id.index))
        {
            parts.push(format!("a snapshot up to index {index}"));
        }
        if let Some(committed) = log.committed {
            parts.push(format!("committed up to index {}", committed.index));
        }
        if log.durable.vote.is_none() && log.entries.is_empty() && snapshot.is_none() {
            "empty (a new node)".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// `key`'s value in this node's state machine.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.state_machine().values.get(key).cloned()
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.shared
            .log
            .lock()
            .expect("no panic while the log is locked")
    }

    fn state_machine(&self) -> MutexGuard<'_, StateMachine> {
        self.shared
            .state_machine
            .lock()
            .expect("no panic while the state machine is locked")
    }

    fn snapshot_slot(&self) -> MutexGuard<'_, Option<StoredSnapshot>> {
        self.shared
            .snapshot
            .lock()
            .expect("no panic while the snapshot is locked")
    }

    /// Writes `snapshot.json` and makes it the current snapshot, unless the current one is
    /// already as new (two builds may race); the snapshot's data, as openraft hands it around.
    fn store_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, ()>,
        state: &StateMachine,
    ) -> io::Result<Vec<u8>> {
        let data = serde_json::to_vec(state)?;
        let mut current = self.snapshot_slot();
        if current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > meta.last_log_id)
        {
            return Ok(data);
        }
        let file = SnapshotFile {
            meta: meta.clone(),
            state: state.clone(),
        };
        let bytes = serde_json::to_vec(&file)?;
        on_disk(|| replace_file(&self.shared.dir, SNAPSHOT_FILE, &bytes, Durability::Fsync))?;
        *current = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(data)
    }
}

impl Log {
    /// Reads `log` (creating it for a new node), keeping the entries after `durable`'s purge
    /// point and dropping an append that a crash cut short at the end.
    fn open(
        dir: &Path,
        durable: DurableState,
        committed: Option<LogId<NodeId>>,
    ) -> io::Result<Log> {
        let path = dir.join(LOG_FILE);
        if !path.exists() {
            let mut file = File::create(&path)?;
            file.write_all(LOG_MAGIC)?;
            file.sync_all()?;
            sync_dir(dir)?;
        }
        let bytes = fs::read(&path)?;
        if !bytes.starts_with(LOG_MAGIC) {
            return Err(corrupt(&path, 0, "it does not start like a log file"));
        }
        let purged_next = durable.last_purged.map_or(0, |id| id.index + 1);
        let mut entries = BTreeMap::new();
        let mut offset = LOG_MAGIC.len() as u64;
        while let Some(record) = bytes.get(offset as usize..).filter(|r| !r.is_empty()) {
            let Some(body) = record_body(record) else {
                // Checksum or length wrong. Where nothing valid can follow (it is the file's
                // last record, or runs past its end) it is an append a crash cut short, which
                // openraft was never told is stored; anywhere else the disk lost data.
                // (A crash can also leave the end of a file zero-filled.)
                let claimed = record.get(..4).map_or(u64::MAX, |l| {
                    u32::from_le_bytes(l.try_into().unwrap()) as u64
                });
                let at_the_end = RECORD_HEADER_LEN.saturating_add(claimed) >= record.len() as u64;
                if at_the_end || record.iter().all(|&b| b == 0) {
                    break;
                }
                return Err(corrupt(&path, offset, "a record's checksum does not match"));
            };
            let entry: Entry<TypeConfig> = serde_json::from_slice(body)
                .map_err(|e| corrupt(&path, offset, &format!("a record does not decode: {e}")))?;
            let index = entry.log_id.index;
            if index >= purged_next {
                let expected = entries
                    .keys()
                    .next_back()
                    .map_or(purged_next, |last| last + 1);
                if index != expected {
                    return Err(corrupt(
                        &path,
                        offset,
                        &format!("entry {index} where entry {expected} should be"),
                    ));
                }
                entries.insert(index, (entry, offset));
            }
            offset += RECORD_HEADER_LEN + body.len() as u64;
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        if offset < bytes.len() as u64 {
            eprintln!(
                "{}: dropping the last {} bytes, an append cut short by a crash",
                path.display(),
                bytes.len() as u64 - offset
            );
            file.set_len(offset)?;
            file.sync_all()?;
        }
        Ok(Log {
            file,
            entries,
            end: offset,
            durable,
            committed,
        })
    }

    /// The index the next appended entry must have: the log has no holes.
    fn next_index(&self) -> u64 {
        match self.entries.keys().next_back() {
            Some(last) => last + 1,
            None => self.durable.last_purged.map_or(0, |id| id.index + 1),
        }
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id)
            .or(self.durable.last_purged)
    }

    fn append(&mut self, entries: impl IntoIterator<Item = Entry<TypeConfig>>) -> io::Result<()> {
        let mut records = Vec::new();
        let mut placed = Vec::new();
        for (entry, next) in entries.into_iter().zip(self.next_index()..) {
            if entry.log_id.index != next {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "appending entry {} where {next} is next",
                        entry.log_id.index
                    ),
                ));
            }
            let offset = self.end + records.len() as u64;
            encode_record(&mut records, &entry)?;
            placed.push((entry, offset));
        }
        if records.is_empty() {
            return Ok(());
        }
        let written = on_disk(|| {
            self.file.write_all(&records)?;
            // openraft counts the entries as stored (and may acknowledge them to the leader)
            // once this returns.
            self.file.sync_data()
        });
        if let Err(e) = written {
            // Do not leave a partial record for the next append to follow.
            let _ = self.file.set_len(self.end);
            return Err(e);
        }
        self.end += records.len() as u64;
        for (entry, offset) in placed {
            self.entries.insert(entry.log_id.index, (entry, offset));
        }
        Ok(())
    }

    /// Removes the entries from `index` on (they conflict with the leader's log).
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&(_, offset)) = self.entries.get(&index) else {
            return Ok(());
        };
        on_disk(|| {
            self.file.set_len(offset)?;
            self.file.sync_data()
        })?;
        self.end = offset;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Drops the entries up to `upto` (a snapshot on disk holds their effect). The purge point
    /// is saved first, so a crash before the file shrinks only leaves entries that are skipped
    /// on start.
    fn purge(&mut self, dir: &Path, upto: LogId<NodeId>) -> io::Result<()> {
        if self.durable.last_purged >= Some(upto) {
            return Ok(());
        }
        let mut durable = self.durable.clone();
        durable.last_purged = Some(upto);
        save_durable(dir, &durable)?;
        self.durable = durable;
        self.entries = self.entries.split_off(&(upto.index + 1));
        let live_start = self
            .entries
            .values()
            .next()
            .map_or(self.end, |&(_, offset)| offset);
        // Rewrite the file once the purged prefix is most of it, so it stays within about
        // twice what the log holds.
        if live_start - LOG_MAGIC.len() as u64 > self.end - live_start {
            on_disk(|| self.compact(dir, live_start))?;
        }
        Ok(())
    }

    /// Replaces `log` with a copy of its records from `live_start` on.
    fn compact(&mut self, dir: &Path, live_start: u64) -> io::Result<()> {
        let path = dir.join(LOG_FILE);
        let tmp = dir.join(format!("{LOG_FILE}.tmp"));
        let mut copy = File::create(&tmp)?;
        copy.write_all(LOG_MAGIC)?;
        let mut old = File::open(&path)?;
        old.seek(SeekFrom::Start(live_start))?;
        io::copy(&mut old.take(self.end - live_start), &mut copy)?;
        copy.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        let shift = live_start - LOG_MAGIC.len() as u64;
        for (_, offset) in self.entries.values_mut() {
            *offset -= shift;
        }
        self.end -= shift;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for FileStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let log = self.log();
        Ok(log
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for FileStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let state = self.state_machine().clone();
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: format!("{}-{unique}", state.last_applied.map_or(0, |id| id.index)),
        };
        let data = self
            .store_snapshot(&meta, &state)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStorage<TypeConfig> for FileStore {
    type LogReader = Self;
    type SnapshotBuilder = Self;

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut log = self.log();
        let mut durable = log.durable.clone();
        durable.vote = Some(*vote);
        save_durable(&self.shared.dir, &durable).map_err(|e| StorageIOError::write_vote(&e))?;
        log.durable = durable;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.log().durable.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let mut log = self.log();
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        // Not fsynced: openraft does not need it to survive, and it changes with every commit.
        on_disk(|| replace_file(&self.shared.dir, COMMITTED_FILE, &bytes, Durability::Rename))
            .map_err(|e| StorageIOError::write(&e))?;
        log.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.log().committed)
    }

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let log = self.log();
        Ok(LogState {
            last_purged_log_id: log.durable.last_purged,
            last_log_id: log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        self.log()
            .append(entries)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn delete_conflict_logs_since(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.log()
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.log()
            .purge(&self.shared.dir, log_id)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn last_applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, ()>)> {
        let state = self.state_machine();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> StorageResult<Vec<Previous>> {
        let mut state = self.state_machine();
        let mut answers = Vec::with_capacity(entries.len());
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            answers.push(Previous(match &entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(Set {
                    key,
                    value,
                    only_if,
                }) => match only_if {
                    Some(expected) if state.values.get(key) != Some(expected) => {
                        state.values.get(key).cloned()
                    }
                    _ => state.values.insert(key.clone(), value.clone()),
                },
                EntryPayload::Membership(membership) => {
                    state.membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    None
                }
            }));
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ()>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let mut state: StateMachine = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // The metadata is what openraft goes by.
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        // On disk before the state machine changes: the log may be purged up to it next.
        self.store_snapshot(meta, &state)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *self.state_machine() = state;
        // Said on the node's output: how a user sees that this node lagged past what the
        // leader's log still holds and was brought up to date by a snapshot.
        println!(
            "snapshot: installed the leader's, up to log index {}",
            meta.last_log_id.map_or(0, |id| id.index)
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.snapshot_slot().as_ref().map(|current| Snapshot {
            meta: current.meta.clone(),
            snapshot: Box::new(Cursor::new(current.data.clone())),
        }))
    }
}

/// How far [`replace_file`] goes.
#[derive(Clone, Copy, PartialEq)]
enum Durability {
    /// Atomic (old contents or new) against a killed process only.
    Rename,
    /// Atomic, and on disk when it returns.
    Fsync,
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old contents or the new.
fn replace_file(dir: &Path, name: &str, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    if durability == Durability::Fsync {
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    if durability == Durability::Fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

fn save_durable(dir: &Path, durable: &DurableState) -> io::Result<()> {
    let bytes = serde_json::to_vec(durable).map_err(io::Error::other)?;
    on_disk(|| replace_file(dir, STATE_FILE, &bytes, Durability::Fsync))
}

/// A rename or a new file is on disk only once its directory is synced too.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Runs blocking file IO (an fsync takes milliseconds on a disk) without holding up the other
/// tasks of the runtime's worker, such as the transport's driver.
fn on_disk<R>(io: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(io)
}

/// `path`'s JSON, or `None` if there is no such file.
fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(path, 0, &e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn encode_record(out: &mut Vec<u8>, entry: &Entry<TypeConfig>) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN as usize]);
    serde_json::to_writer(&mut *out, entry)?;
    let body = &out[start + RECORD_HEADER_LEN as usize..];
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let checksum = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// The body of the record at the start of `bytes`, if it is whole and its checksum matches (no
/// entry encodes to nothing, so an empty body is not one).
fn record_body(bytes: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if len == 0 {
        return None;
    }
    let checksum = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(8..8usize.checked_add(len)?)?;
    (crc32fast::hash(body) == checksum).then_some(body)
}

fn corrupt(path: &Path, offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} at byte {offset}: {what}", path.display()),
    )
}
