//! The benchmark store: an in-memory openraft 0.9 store for the `cluster-bench-*` scenarios
//! whose log holds openraft's `Entry` values as they are, in a `VecDeque` indexed by log index.
//!
//! Why a second store: openraft-memstore keeps every log entry as a JSON string (serialized on
//! append, parsed again on every read, the leader's replication reads included), and serde_json
//! leads every profile of the `cluster-*` scenarios, so the network's difference hardly shows.
//! This store does only what openraft demands of a store: entries are moved in on append and
//! cloned out on read (openraft's reader API returns owned entries), nothing is serialized per
//! entry. Everything else is memstore's, so the two rows differ in the log alone:
//! - the state machine is memstore's own [`MemStoreStateMachine`], applied with memstore's rules
//!   (each client's latest status, the previous one as the answer, a repeated serial answered
//!   from the record);
//! - snapshots (openraft builds one every 5000 entries here, `crate::cluster::config`) are that
//!   state machine in msgpack (`rmp_serde`, named fields) rather than JSON: a few KiB, rare.
//!
//! The store sits behind openraft's `Adaptor`, as memstore does (openraft's `storage-v2` traits
//! are sealed unless that feature is on, and it must stay off: `crate::cluster`). Locks are
//! `std::sync::Mutex`es held for a few map operations and never across an `.await`.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftStorage, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use openraft_memstore::{ClientResponse, MemStoreStateMachine, TypeConfig};

type NodeId = u64;

/// The log: contiguous entries, the front one at `entries[0].log_id.index`.
#[derive(Default)]
struct Log {
    entries: VecDeque<Entry<TypeConfig>>,
    /// The last entry purged (what openraft's `LogState` reports once the log is empty).
    last_purged: Option<LogId<NodeId>>,
}

impl Log {
    /// The index of the front entry, if any.
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    /// The positions in `entries` of the log indexes in `range`.
    fn positions(&self, range: impl RangeBounds<u64>) -> std::ops::Range<usize> {
        let Some(first) = self.first_index() else {
            return 0..0;
        };
        let len = self.entries.len() as u64;
        let position = |index: u64| index.saturating_sub(first).min(len) as usize;
        let start = match range.start_bound() {
            Bound::Included(&i) => position(i),
            Bound::Excluded(&i) => position(i.saturating_add(1)),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => position(i.saturating_add(1)),
            Bound::Excluded(&i) => position(i),
            Bound::Unbounded => len as usize,
        };
        start..end.max(start)
    }
}

/// The last snapshot built or installed: its metadata and the state machine's msgpack.
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ()>,
    data: Vec<u8>,
}

/// An in-memory openraft store whose log keeps entries unserialized (see the module docs): a
/// handle, cloned for openraft's log reader and snapshot builder. Use it as memstore is used:
/// `Adaptor::new(BenchStore::default())`.
#[derive(Clone, Default)]
pub struct BenchStore(Arc<Stored>);

/// What a [`BenchStore`] holds.
#[derive(Default)]
struct Stored {
    log: Mutex<Log>,
    vote: Mutex<Option<Vote<NodeId>>>,
    committed: Mutex<Option<LogId<NodeId>>>,
    state_machine: Mutex<MemStoreStateMachine>,
    snapshot: Mutex<Option<StoredSnapshot>>,
    /// Snapshots built so far (part of each snapshot's id).
    snapshots_built: Mutex<u64>,
}

/// A lock that a panic elsewhere does not poison for good (the data is plain maps).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BenchStore {
    /// A copy of the state machine (for the cluster's replication check).
    pub fn state_machine(&self) -> MemStoreStateMachine {
        lock(&self.0.state_machine).clone()
    }

    /// The log indexes this store holds now: the first and the last, if any.
    pub fn log_bounds(&self) -> Option<(u64, u64)> {
        let log = lock(&self.0.log);
        Some((log.first_index()?, log.entries.back()?.log_id.index))
    }
}

impl RaftLogReader<TypeConfig> for BenchStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let log = lock(&self.0.log);
        Ok(log.entries.range(log.positions(range)).cloned().collect())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for BenchStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, last_applied, membership) = {
            let sm = lock(&self.0.state_machine);
            let data = rmp_serde::to_vec_named(&*sm)
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            (data, sm.last_applied_log, sm.last_membership.clone())
        };
        let serial = {
            let mut built = lock(&self.0.snapshots_built);
            *built += 1;
            *built
        };
        let snapshot_id = match last_applied {
            Some(last) => format!("{}-{}-{serial}", last.leader_id, last.index),
            None => format!("--{serial}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        *lock(&self.0.snapshot) = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStorage<TypeConfig> for BenchStore {
    type LogReader = Self;
    type SnapshotBuilder = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let log = lock(&self.0.log);
        let last = log.entries.back().map(|e| e.log_id).or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: last,
        })
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        *lock(&self.0.vote) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(*lock(&self.0.vote))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        *lock(&self.0.committed) = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(*lock(&self.0.committed))
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, ()>), StorageError<NodeId>> {
        let sm = lock(&self.0.state_machine);
        Ok((sm.last_applied_log, sm.last_membership.clone()))
    }

    async fn delete_conflict_logs_since(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut log = lock(&self.0.log);
        let keep = log.positions(..log_id.index).end;
        log.entries.truncate(keep);
        Ok(())
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut log = lock(&self.0.log);
        let purged = log.positions(..=log_id.index).end;
        log.entries.drain(..purged);
        log.last_purged = Some(log_id);
        Ok(())
    }

    async fn append_to_log<I>(&mut self, entries: I) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let mut log = lock(&self.0.log);
        for entry in entries {
            // openraft appends right after the last entry (it deletes conflicting ones first);
            // an entry at another index is a bug to report, not to paper over.
            let expected = log
                .entries
                .back()
                .map(|e| e.log_id.index + 1)
                .or(log.last_purged.map(|p| p.index + 1));
            if expected.is_some_and(|i| i != entry.log_id.index) {
                let e = std::io::Error::other(format!(
                    "append at index {}, the log ends before {expected:?}",
                    entry.log_id.index
                ));
                return Err(StorageIOError::write_log_entry(entry.log_id, &e).into());
            }
            log.entries.push_back(entry);
        }
        Ok(())
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<ClientResponse>, StorageError<NodeId>> {
        let mut sm = lock(&self.0.state_machine);
        let mut answers = Vec::with_capacity(entries.len());
        // memstore's rules, so both stores' state machines do the same work.
        for entry in entries {
            sm.last_applied_log = Some(entry.log_id);
            match &entry.payload {
                EntryPayload::Blank => answers.push(ClientResponse(None)),
                EntryPayload::Normal(request) => {
                    if let Some((serial, previous)) =
                        sm.client_serial_responses.get(&request.client)
                        && *serial == request.serial
                    {
                        answers.push(ClientResponse(previous.clone()));
                        continue;
                    }
                    let previous = sm
                        .client_status
                        .insert(request.client.clone(), request.status.clone());
                    sm.client_serial_responses
                        .insert(request.client.clone(), (request.serial, previous.clone()));
                    answers.push(ClientResponse(previous));
                }
                EntryPayload::Membership(membership) => {
                    sm.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    answers.push(ClientResponse(None));
                }
            }
        }
        Ok(answers)
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ()>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state: MemStoreStateMachine = rmp_serde::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        *lock(&self.0.state_machine) = state;
        *lock(&self.0.snapshot) = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(lock(&self.0.snapshot).as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};
    use openraft_memstore::ClientRequest;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Normal(ClientRequest {
                client: format!("c{}", index % 3),
                serial: index,
                status: format!("s{index}"),
            }),
        }
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Append, read ranges, truncate a conflict, purge: the log answers by log index, and its
    /// state says the last entry, or the last purged once empty.
    #[test]
    fn the_log_reads_truncates_and_purges_by_index() {
        block_on(async {
            let mut store = BenchStore::default();
            store
                .append_to_log((1..=10).map(|i| entry(i, 1)))
                .await
                .unwrap();
            assert_eq!(
                indexes(&store.try_get_log_entries(3..6).await.unwrap()),
                [3, 4, 5]
            );
            assert_eq!(
                indexes(&store.try_get_log_entries(9..).await.unwrap()),
                [9, 10]
            );
            assert_eq!(
                indexes(&store.try_get_log_entries(..=2).await.unwrap()),
                [1, 2]
            );
            assert!(store.try_get_log_entries(11..20).await.unwrap().is_empty());

            store
                .delete_conflict_logs_since(entry(8, 1).log_id)
                .await
                .unwrap();
            assert_eq!(store.log_bounds(), Some((1, 7)));
            // A gap is refused.
            assert!(store.append_to_log([entry(9, 2)]).await.is_err());
            store.append_to_log([entry(8, 2)]).await.unwrap();
            assert_eq!(
                store.get_log_state().await.unwrap().last_log_id,
                Some(entry(8, 2).log_id)
            );

            store.purge_logs_upto(entry(5, 1).log_id).await.unwrap();
            assert_eq!(store.log_bounds(), Some((6, 8)));
            assert_eq!(
                indexes(&store.try_get_log_entries(1..7).await.unwrap()),
                [6]
            );
            store.purge_logs_upto(entry(8, 2).log_id).await.unwrap();
            let state = store.get_log_state().await.unwrap();
            assert_eq!(store.log_bounds(), None);
            assert_eq!(state.last_purged_log_id, Some(entry(8, 2).log_id));
            assert_eq!(state.last_log_id, Some(entry(8, 2).log_id));
            // After a purge to the end, the next append continues from it.
            store.append_to_log([entry(9, 2)]).await.unwrap();
            assert_eq!(store.log_bounds(), Some((9, 9)));
        });
    }

    /// memstore's state machine rules, and a snapshot that another store installs whole.
    #[test]
    fn applies_like_memstore_and_snapshots_round_trip() {
        block_on(async {
            let mut store = BenchStore::default();
            let request = |serial: u64, status: &str| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), serial),
                payload: EntryPayload::Normal(ClientRequest {
                    client: "a".into(),
                    serial,
                    status: status.into(),
                }),
            };
            let answers = store
                .apply_to_state_machine(&[request(1, "x"), request(2, "y"), request(2, "z")])
                .await
                .unwrap();
            let answers: Vec<_> = answers.into_iter().map(|a| a.0).collect();
            // The previous status; a repeated serial answers from the record, changing nothing.
            assert_eq!(answers, [None, Some("x".into()), Some("x".into())]);
            assert_eq!(store.state_machine().client_status["a"], "y");

            let built = store.build_snapshot().await.unwrap();
            let mut other = BenchStore::default();
            other
                .install_snapshot(&built.meta, built.snapshot)
                .await
                .unwrap();
            let sm = other.state_machine();
            assert_eq!(sm.client_status["a"], "y");
            assert_eq!(sm.client_serial_responses["a"], (2, Some("x".into())));
            assert_eq!(sm.last_applied_log, Some(request(2, "z").log_id));
            let current = other.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.meta, built.meta);
        });
    }
}
