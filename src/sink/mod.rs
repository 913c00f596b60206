//! Result sinks: where item records end up outside the queue.
//!
//! Every backend keeps a results log written in the same atomic step that completes a job
//! (see [`crate::queue::JobQueue::finish_many`]), so the log holds each completed job's items
//! exactly once. A sink copies the log out. [`JsonlSink`] appends records to a JSON Lines file
//! and keeps a checkpoint next to it (the log cursor and the file length that goes with it):
//! after a crash at any point the file is cut back to the checkpointed length and the copy
//! resumes from the cursor, so no record is written twice or skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::queue::{JobQueue, QueueError};

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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Checkpoint {
    cursor: Option<String>,
    bytes: u64,
    records: u64,
}

/// Appends a queue's results log to a JSON Lines file, resumably.
pub struct JsonlSink {
    path: PathBuf,
    checkpoint_path: PathBuf,
    file: File,
    checkpoint: Checkpoint,
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
        let checkpoint_path = checkpoint_path(path);
        let checkpoint = match std::fs::read(&checkpoint_path) {
            Ok(bytes) => serde_json::from_slice::<Checkpoint>(&bytes).map_err(|e| {
                io(format!(
                    "its checkpoint {} is unreadable ({e}); delete both to start over",
                    checkpoint_path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let existing = std::fs::metadata(path).map_or(0, |m| m.len());
                if existing > 0 {
                    return Err(io(format!(
                        "exists without a checkpoint ({}); choose another file or delete it",
                        checkpoint_path.display()
                    )));
                }
                Checkpoint::default()
            }
            Err(e) => return Err(io(e.to_string())),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io(e.to_string()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(e.to_string()))?;
        // Records written after the last checkpoint are written again from the log.
        file.set_len(checkpoint.bytes)
            .map_err(|e| io(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            checkpoint_path,
            file,
            checkpoint,
        })
    }

    /// Records in the file so far.
    pub fn records(&self) -> u64 {
        self.checkpoint.records
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
        let mut written = 0;
        loop {
            let entries = queue
                .results_after(self.checkpoint.cursor.clone(), PAGE)
                .await?;
            let Some(last) = entries.last() else {
                return Ok(written);
            };
            let cursor = last.cursor.clone();
            let mut out = BufWriter::new(&self.file);
            let mut bytes = 0_u64;
            let mut records = 0_u64;
            for entry in &entries {
                let parsed: Vec<&RawValue> =
                    serde_json::from_str(&entry.records).map_err(|e| SinkError::Io {
                        path: self.path.clone(),
                        detail: format!("job {}: unreadable records in the log: {e}", entry.job_id),
                    })?;
                for record in parsed {
                    let line = record.get().as_bytes();
                    out.write_all(line)
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(|e| self.io_error(&e))?;
                    bytes += line.len() as u64 + 1;
                    records += 1;
                }
            }
            out.flush().map_err(|e| self.io_error(&e))?;
            drop(out);
            self.file.sync_data().map_err(|e| self.io_error(&e))?;
            self.checkpoint = Checkpoint {
                cursor: Some(cursor),
                bytes: self.checkpoint.bytes + bytes,
                records: self.checkpoint.records + records,
            };
            self.save_checkpoint()?;
            written += records;
            if entries.len() < PAGE {
                return Ok(written);
            }
        }
    }

    fn save_checkpoint(&self) -> SinkResult<()> {
        let temporary = self.checkpoint_path.with_extension("checkpoint.tmp");
        let text = serde_json::to_vec(&self.checkpoint).unwrap_or_default();
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &self.checkpoint_path))
            .map_err(|e| self.io_error(&e))
    }

    fn io_error(&self, error: &std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.path.clone(),
            detail: error.to_string(),
        }
    }
}

/// `<file>.checkpoint` next to the results file.
pub fn checkpoint_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".checkpoint");
    path.with_file_name(name)
}

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

    #[test]
    fn an_existing_file_without_a_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        std::fs::write(&path, "{}\n").unwrap();
        let error = JsonlSink::open(&path).err().unwrap().to_string();
        assert!(error.contains("without a checkpoint"), "{error}");
    }
}
