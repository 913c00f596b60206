//! Result sinks: where item records end up outside the queue.
//!
//! Every backend keeps a results log written in the same atomic step that completes a job
//! (see [`crate::queue::JobQueue::finish_many`]), so the log holds each completed job's items
//! once — as long as the backend keeps what it acknowledged. A sink copies the log out.
//! [`JsonlSink`] appends records to a JSON Lines file and keeps its state in a small SQLite
//! database next to it (`<file>.checkpoint`): the log cursor, the file length that goes with
//! it, and the key of every job incarnation whose records the file holds.
//!
//! - A crash at any point, or a write that fails half-way (a full disk): the file is cut
//!   back to the checkpointed length and the copy resumes from the cursor, so no record is
//!   written twice or skipped.
//! - A log rolled back under the cursor (a SQLite queue restored from a backup, a Redis
//!   failover to a replica that lagged): the checkpoint keeps the key of the entry at the
//!   cursor; when the log no longer holds that entry there (rolled back, or trimmed), the
//!   copy reads the log from the start, and the keys skip what the file already holds —
//!   entries written after a rollback are not lost behind a cursor that is now ahead of
//!   the log.
//! - Two exporters on one file: the second is refused (an exclusive lock on the file).
//! - A backend that loses an acknowledged finish (Redis without `appendfsync always`, a
//!   failover to a replica that had not received it): the job runs again and its records
//!   reach the log a second time, under the same job id and generation; the key is already
//!   in the checkpoint, so the file still holds them once. Keys are kept for
//!   [`DEDUP_WINDOW_MS`] after their export.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::queue::cursor as results_log;
use crate::queue::{JobQueue, QueueError, ResultsEntry};

/// What can go wrong writing results.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The file or its checkpoint could not be read or written.
    #[error("results file {path}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// Reading the results log failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Result alias of this module.
pub type SinkResult<T> = Result<T, SinkError>;

/// How long the key of an exported job incarnation is kept to recognise its records if they
/// come again (a backend rolled back and the job ran again): 30 days.
pub const DEDUP_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

const STATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor TEXT,
    bytes INTEGER NOT NULL,
    records INTEGER NOT NULL,
    last_key BLOB
);
CREATE TABLE IF NOT EXISTS exported (key BLOB PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS exported_at ON exported (at);
";

#[derive(Debug, Default, Clone, Deserialize)]
struct Checkpoint {
    cursor: Option<String>,
    bytes: u64,
    records: u64,
    /// The key of the log entry at `cursor` (to see that the log still holds it there).
    #[serde(default)]
    last_key: Option<Vec<u8>>,
}

/// Appends a queue's results log to a JSON Lines file, resumably and without duplicates.
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    state: Connection,
    checkpoint: Checkpoint,
    /// Log entries skipped because the file already holds their job incarnation.
    duplicates: u64,
    /// Whether the log was found without the entry at the cursor (said once).
    rescanned: bool,
}

/// Log entries read per queue call.
const PAGE: usize = 500;

impl JsonlSink {
    /// Opens `path` for appending, cut back to its checkpoint. A file that exists without a
    /// checkpoint is refused rather than appended to (its records could come twice).
    pub fn open(path: &Path) -> SinkResult<Self> {
        let io = |detail: String| SinkError::Io {
            path: path.to_owned(),
            detail,
        };
        let state_path = checkpoint_path(path);
        // A checkpoint of an earlier version: JSON with the cursor, bytes and records.
        let legacy = match std::fs::read(&state_path) {
            Ok(bytes) if bytes.first() == Some(&b'{') => {
                Some(serde_json::from_slice::<Checkpoint>(&bytes).map_err(|e| {
                    io(format!(
                        "its checkpoint {} is unreadable ({e}); delete both to start over",
                        state_path.display()
                    ))
                })?)
            }
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let existing = std::fs::metadata(path).map_or(0, |m| m.len());
                if existing > 0 {
                    return Err(io(format!(
                        "exists without a checkpoint ({}); choose another file or delete it",
                        state_path.display()
                    )));
                }
                None
            }
            Err(e) => return Err(io(e.to_string())),
        };
        if let Some(checkpoint) = &legacy {
            migrate_legacy(&state_path, checkpoint).map_err(|e| {
                io(format!(
                    "its checkpoint {} could not be converted ({e}); it is unchanged",
                    state_path.display()
                ))
            })?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io(e.to_string()))?;
        }
        // Scraped records and the checkpoint are readable by their owner only (a new file;
        // an existing one keeps the mode its owner gave it).
        private_file(&state_path).map_err(|e| io(e.to_string()))?;
        let state = open_state(&state_path).map_err(|e| {
            io(format!(
                "its checkpoint {} cannot be used ({e}); delete both to start over",
                state_path.display()
            ))
        })?;
        let checkpoint = load(&state).map_err(|e| io(e.to_string()))?;
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| io(e.to_string()))?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io(
                "is being written by another exporter (a worker or export of this machine); \
                 give each its own file"
                    .to_owned(),
            ),
            std::fs::TryLockError::Error(e) => io(format!("cannot be locked: {e}")),
        })?;
        sync_directory(path).map_err(|e| io(e.to_string()))?;
        let length = file.metadata().map_err(|e| io(e.to_string()))?.len();
        if length < checkpoint.bytes {
            return Err(io(format!(
                "is {length} bytes, shorter than the {} its checkpoint records: it lost data \
                 (a crash of the machine?); export again into a new file",
                checkpoint.bytes
            )));
        }
        // Records written after the last checkpoint are written again from the log.
        file.set_len(checkpoint.bytes)
            .map_err(|e| io(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            state,
            checkpoint,
            duplicates: 0,
            rescanned: false,
        })
    }

    /// Records in the file so far.
    pub fn records(&self) -> u64 {
        self.checkpoint.records
    }

    /// Log entries this sink skipped because the file already held their records.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The results log position the file has caught up to.
    pub fn cursor(&self) -> Option<&str> {
        self.checkpoint.cursor.as_deref()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies every log entry after the checkpoint to the file, then moves the checkpoint.
    /// Returns the number of records written.
    pub async fn export(&mut self, queue: &JobQueue) -> SinkResult<u64> {
        let mut cursor = self.checkpoint.cursor.clone();
        if let (Some(at), Some(expected)) = (&cursor, &self.checkpoint.last_key) {
            let found = queue.results_entry(at).await?;
            if found
                .as_ref()
                .map(|(job, generation)| key(job, *generation))
                .as_ref()
                != Some(expected)
            {
                // Trimmed (what is left is all after the cursor: reading from the start costs
                // nothing more) or rolled back (entries now sit under the cursor).
                if let Some(trimmed) = queue.results_trimmed_to().await?
                    && results_log::past(&trimmed, at)
                {
                    tracing::warn!(
                        file = %self.path.display(),
                        cursor = at,
                        trimmed_to = trimmed,
                        "this export fell behind the results log's trim: entries after the \
                         file's last one, up to {trimmed}, were deleted before they were \
                         exported and are missing from the file (export more often, or raise \
                         the queue's results_max_len)"
                    );
                }
                if !self.rescanned {
                    tracing::info!(
                        file = %self.path.display(),
                        cursor = at,
                        "the results log no longer holds the entry this file stopped at (it \
                         was trimmed, or the queue was restored from an older backup or failed \
                         over to a replica that lagged): reading the log from the start; \
                         records the file holds are skipped"
                    );
                    self.rescanned = true;
                }
                cursor = None;
            }
        }
        let mut written = 0;
        let mut warned = false;
        loop {
            let from = cursor.clone();
            let entries = queue.results_after(from.clone(), PAGE).await?;
            // The log may have been trimmed past this export while it read (the reaper's
            // bound runs at any time): entries between `from` and the trim were deleted
            // unread when the page starts after the trim.
            if let Some(at) = &from
                && !warned
                && let Some(trimmed) = queue.results_trimmed_to().await?
                && results_log::past(&trimmed, at)
                && results_log::skipped_by_trim(
                    at,
                    entries.iter().map(|e| e.cursor.as_str()),
                    &trimmed,
                )
            {
                warned = true;
                tracing::warn!(
                    file = %self.path.display(),
                    cursor = at,
                    trimmed_to = trimmed,
                    "the results log was trimmed while this export read it: entries after \
                     {at} up to {trimmed} were deleted before they were exported and are \
                     missing from the file (export more often, or raise the queue's \
                     results_max_len)"
                );
            }
            if entries.is_empty() {
                return Ok(written);
            }
            written += blocking(|| self.append(&entries))?;
            cursor.clone_from(&self.checkpoint.cursor);
            if entries.len() < PAGE {
                return Ok(written);
            }
        }
    }

    /// Writes the records of `entries` whose job incarnation the file does not hold yet,
    /// syncs the file, then records the keys and the new checkpoint in one transaction. A
    /// failure leaves the file at its checkpointed length.
    fn append(&mut self, entries: &[ResultsEntry]) -> SinkResult<u64> {
        let outcome = self.try_append(entries);
        if outcome.is_err() {
            // Whatever was written before the failure goes: the next try writes it again.
            let _ = self.file.set_len(self.checkpoint.bytes);
        }
        outcome
    }

    fn try_append(&mut self, entries: &[ResultsEntry]) -> SinkResult<u64> {
        let now = jiff::Timestamp::now().as_millisecond();
        let path = self.path.clone();
        let io = |e: &dyn std::fmt::Display| SinkError::Io {
            path: path.clone(),
            detail: e.to_string(),
        };
        // Appends go to the end: make the end the checkpointed length (bytes of a try that
        // failed half-way must not stay before the records written now).
        self.file
            .set_len(self.checkpoint.bytes)
            .map_err(|e| io(&e))?;
        let tx = self.state.transaction().map_err(|e| io(&e))?;
        let mut out = BufWriter::new(&self.file);
        let (mut bytes, mut records, mut duplicates) = (0_u64, 0_u64, 0_u64);
        {
            let mut remember = tx
                .prepare_cached("INSERT OR IGNORE INTO exported (key, at) VALUES (?1, ?2)")
                .map_err(|e| io(&e))?;
            for entry in entries {
                let fresh = remember
                    .execute(params![entry_key(entry), now])
                    .map_err(|e| io(&e))?;
                if fresh == 0 {
                    duplicates += 1;
                    continue;
                }
                let parsed: Vec<&RawValue> = serde_json::from_str(&entry.records).map_err(|e| {
                    io(&format!(
                        "job {}: unreadable records in the log: {e}",
                        entry.job_id
                    ))
                })?;
                for record in parsed {
                    let line = record.get().as_bytes();
                    out.write_all(line)
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(|e| io(&e))?;
                    bytes += line.len() as u64 + 1;
                    records += 1;
                }
            }
        }
        out.flush().map_err(|e| io(&e))?;
        drop(out);
        self.file.sync_data().map_err(|e| io(&e))?;
        let checkpoint = Checkpoint {
            cursor: entries.last().map(|e| e.cursor.clone()),
            bytes: self.checkpoint.bytes + bytes,
            records: self.checkpoint.records + records,
            last_key: entries.last().map(entry_key),
        };
        save(&tx, &checkpoint).map_err(|e| io(&e))?;
        tx.execute(
            "DELETE FROM exported WHERE at < ?1",
            params![now - DEDUP_WINDOW_MS],
        )
        .map_err(|e| io(&e))?;
        tx.commit().map_err(|e| io(&e))?;
        self.checkpoint = checkpoint;
        if duplicates > 0 {
            tracing::warn!(
                duplicates,
                file = %self.path.display(),
                "results log entries of jobs the file already holds were skipped (the queue \
                 lost an acknowledged finish and the jobs ran again)"
            );
        }
        self.duplicates += duplicates;
        Ok(records)
    }
}

/// The key of a job incarnation: the job id and its generation, hashed (16 bytes).
fn key(job_id: &str, generation: u64) -> Vec<u8> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(job_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(&generation.to_le_bytes());
    hasher.digest128().to_le_bytes().to_vec()
}

fn entry_key(entry: &ResultsEntry) -> Vec<u8> {
    key(&entry.job_id, entry.generation)
}

/// Runs blocking file work off the async worker threads when the runtime has several
/// (`block_in_place`), in place on a single-threaded one.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Creates `path` empty with mode 0600 unless it exists (SQLite would create it 0644, and its
/// journal takes the database file's mode).
fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the JSON checkpoint of an earlier version at `state_path` by the database
/// holding `checkpoint`, atomically: the database is written and synced beside it, then
/// renamed over it. A crash before the rename leaves the JSON (converted again next time);
/// after it, the database. (Deleting the JSON first, a crash before the database was
/// written left an empty checkpoint, and the export file was cut back to nothing.)
fn migrate_legacy(state_path: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let mut name = state_path.file_name().unwrap_or_default().to_owned();
    name.push(".converting");
    let converting = state_path.with_file_name(name);
    match std::fs::remove_file(&converting) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
        _ => {}
    }
    private_file(&converting).map_err(|e| e.to_string())?;
    {
        let state = open_state(&converting).map_err(|e| e.to_string())?;
        save(&state, checkpoint).map_err(|e| e.to_string())?;
    }
    File::open(&converting)
        .and_then(|file| file.sync_all())
        .and_then(|()| std::fs::rename(&converting, state_path))
        .and_then(|()| sync_directory(state_path))
        .map_err(|e| e.to_string())
}

fn open_state(path: &Path) -> rusqlite::Result<Connection> {
    let state = Connection::open(path)?;
    state.busy_timeout(std::time::Duration::from_secs(30))?;
    // The checkpoint must survive a crash of the machine: the file was synced before it.
    state.pragma_update(None, "synchronous", "FULL")?;
    state.execute_batch(STATE_SCHEMA)?;
    // A checkpoint of an earlier version lacks the key of the entry at its cursor.
    let has_last_key = state
        .prepare("SELECT 1 FROM pragma_table_info('checkpoint') WHERE name = 'last_key'")?
        .exists([])?;
    if !has_last_key {
        state.execute_batch("ALTER TABLE checkpoint ADD COLUMN last_key BLOB")?;
    }
    Ok(state)
}

fn load(state: &Connection) -> rusqlite::Result<Checkpoint> {
    Ok(state
        .query_row(
            "SELECT cursor, bytes, records, last_key FROM checkpoint WHERE id = 1",
            [],
            |row| {
                Ok(Checkpoint {
                    cursor: row.get(0)?,
                    bytes: row.get(1)?,
                    records: row.get(2)?,
                    last_key: row.get(3)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

fn save(state: &Connection, checkpoint: &Checkpoint) -> rusqlite::Result<()> {
    state
        .execute(
            "INSERT INTO checkpoint (id, cursor, bytes, records, last_key) VALUES (1, ?1, ?2, \
             ?3, ?4) ON CONFLICT (id) DO UPDATE SET cursor = ?1, bytes = ?2, records = ?3, \
             last_key = ?4",
            params![
                checkpoint.cursor,
                checkpoint.bytes,
                checkpoint.records,
                checkpoint.last_key
            ],
        )
        .map(drop)
}

/// Makes a file's directory entry durable (a file created just before a crash of the
/// machine could otherwise vanish while its checkpoint stays).
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let directory = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.to_owned(),
        None => PathBuf::from("."),
    };
    File::open(directory)?.sync_all()
}

/// Records a results file holds, from its checkpoint (0 when it has none).
pub fn records_in(path: &Path) -> u64 {
    let state_path = checkpoint_path(path);
    if !state_path.exists() {
        return 0;
    }
    if let Ok(bytes) = std::fs::read(&state_path)
        && bytes.first() == Some(&b'{')
    {
        return serde_json::from_slice::<Checkpoint>(&bytes).map_or(0, |c| c.records);
    }
    Connection::open_with_flags(&state_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|state| {
            state
                .query_row("SELECT records FROM checkpoint WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .optional()
        })
        .map_or(0, Option::unwrap_or_default)
}

/// `<file>.checkpoint` next to the results file.
pub fn checkpoint_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".checkpoint");
    path.with_file_name(name)
}

/// The order of a results log cursor: a Redis stream id `<ms>-<seq>` or a SQLite row number.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Finished, NewJob, QueueOptions};

    async fn queue_with_results(n: usize) -> JobQueue {
        let queue = JobQueue::open("memory://", QueueOptions::default())
            .await
            .unwrap();
        let jobs = (0..n)
            .map(|i| NewJob {
                id: Some(format!("j{i}")),
                target_url: format!("http://127.0.0.1/{i}"),
                ..NewJob::default()
            })
            .collect();
        queue.submit(jobs).await.unwrap();
        let claimed = queue.claim("w", n, true).await.unwrap();
        let finished = claimed
            .iter()
            .map(|job| Finished {
                id: job.id.clone(),
                token: job.token,
                records: Some(format!(
                    r#"[{{"job_id":"{0}","index":0}},{{"job_id":"{0}","index":1}}]"#,
                    job.id
                )),
                ..Finished::default()
            })
            .collect();
        queue.finish_many(finished).await.unwrap();
        queue
    }

    #[tokio::test]
    async fn a_crash_after_writing_before_the_checkpoint_writes_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let queue = queue_with_results(3).await;
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.export(&queue).await.unwrap(), 6);
        assert_eq!(sink.export(&queue).await.unwrap(), 0);
        drop(sink);
        // A crash between the data and the checkpoint: stray bytes after the checkpoint.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"job_id\":\"j0\",\"ind").unwrap();
        drop(file);
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.export(&queue).await.unwrap(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 6);
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        assert_eq!(sink.records(), 6);
    }

    #[tokio::test]
    async fn records_of_a_job_that_ran_again_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let queue = queue_with_results(2).await;
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.export(&queue).await.unwrap(), 4);
        // The same incarnation's records again (the backend lost the finish, the job ran
        // again), then a new incarnation of the same id (purged and submitted again).
        let again = queue.results_after(None, 10).await.unwrap();
        let mut rerun = again[0].clone();
        rerun.cursor = "later".to_owned();
        let mut recrawl = again[1].clone();
        recrawl.generation += 1000;
        assert_eq!(sink.append(&[rerun, recrawl]).unwrap(), 2);
        assert_eq!(sink.duplicates(), 1);
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 6);
        assert_eq!(records_in(&path), 6);
        // The keys survive a restart.
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.append(&[again[0].clone()]).unwrap(), 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_and_its_checkpoint_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let queue = queue_with_results(1).await;
        let entries = queue.results_after(None, 10).await.unwrap();
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.append(&entries).unwrap(), 2);
        drop(sink);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&checkpoint_path(&path)), 0o600);
        // A file its owner made readable keeps its mode.
        let shared = dir.path().join("shared.jsonl");
        std::fs::write(&shared, b"").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        JsonlSink::open(&shared).unwrap();
        assert_eq!(mode(&shared), 0o644);
    }

    #[tokio::test]
    async fn bytes_left_by_a_failed_write_are_cut_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let queue = queue_with_results(2).await;
        let entries = queue.results_after(None, 10).await.unwrap();
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.append(&entries[..1]).unwrap(), 2);
        // A write that failed half-way (a full disk) left part of a record behind, and the
        // sink stays open: the next append must not write after it.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"job_id\":\"j1\",\"ind")
            .unwrap();
        assert_eq!(sink.append(&entries[1..]).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_failed_append_leaves_the_file_at_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let queue = queue_with_results(2).await;
        let mut entries = queue.results_after(None, 10).await.unwrap();
        let mut sink = JsonlSink::open(&path).unwrap();
        // The second entry's records cannot be read: the first entry's lines were written
        // before the failure and must go again.
        entries[1].records = "[{".to_owned();
        let error = sink.append(&entries).unwrap_err().to_string();
        assert!(error.contains("unreadable records"), "{error}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(sink.records(), 0);
    }

    #[test]
    fn a_second_exporter_on_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let first = JsonlSink::open(&path).unwrap();
        let error = JsonlSink::open(&path).err().unwrap().to_string();
        assert!(error.contains("another exporter"), "{error}");
        drop(first);
        JsonlSink::open(&path).unwrap();
    }

    #[tokio::test]
    async fn a_checkpoint_without_the_entry_key_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let queue = queue_with_results(1).await;
        {
            let state = Connection::open(checkpoint_path(&path)).unwrap();
            state
                .execute_batch(
                    "CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), cursor \
                     TEXT, bytes INTEGER NOT NULL, records INTEGER NOT NULL); INSERT INTO \
                     checkpoint VALUES (1, NULL, 0, 0);",
                )
                .unwrap();
        }
        assert_eq!(records_in(&path), 0);
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.export(&queue).await.unwrap(), 2);
        drop(sink);
        assert_eq!(records_in(&path), 2);
        let mut sink = JsonlSink::open(&path).unwrap();
        assert_eq!(sink.export(&queue).await.unwrap(), 0);
        assert_eq!(
            sink.duplicates(),
            0,
            "the cursor was trusted: nothing read again"
        );
    }

    #[test]
    fn a_legacy_checkpoint_converts_and_a_crash_while_converting_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n").unwrap();
        let legacy = r#"{"cursor":"1-0","bytes":16,"records":2}"#;
        std::fs::write(checkpoint_path(&path), legacy).unwrap();
        // A crash of an earlier conversion left its half-written database beside the JSON.
        let mut converting = checkpoint_path(&path).into_os_string();
        converting.push(".converting");
        std::fs::write(&converting, b"half a database").unwrap();
        let sink = JsonlSink::open(&path).unwrap();
        assert_eq!((sink.records(), sink.cursor()), (2, Some("1-0")));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(!Path::new(&converting).exists());
        drop(sink);
        // Converted once: the database is read from now on.
        let sink = JsonlSink::open(&path).unwrap();
        assert_eq!((sink.records(), sink.cursor()), (2, Some("1-0")));
        assert_eq!(std::fs::read(&path).unwrap().len(), 16);
    }

    #[test]
    fn an_existing_file_without_a_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        std::fs::write(&path, "{}\n").unwrap();
        let error = JsonlSink::open(&path).err().unwrap().to_string();
        assert!(error.contains("without a checkpoint"), "{error}");
    }
}
