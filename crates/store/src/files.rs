//! Report files in a directory on this machine: what `serve` uses, in `<data_dir>/reports/`.
//! A file is moved in whole (a rename within one file system), so a reader never sees half of
//! one, and it is read back in [`FILE_CHUNK`] pieces.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ordermill_core::ports::{FILE_CHUNK, ReportFiles, StoreError};
use ordermill_core::report::ReportId;

/// Report files under one directory, named by report id.
pub struct DirReportFiles {
    dir: PathBuf,
}

impl DirReportFiles {
    /// Files under `dir`, created if missing.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| unavailable(&dir, &e))?;
        Ok(DirReportFiles { dir })
    }

    /// Where runs write their files before [`ReportFiles::put`]: the same file system, so the
    /// put is a rename.
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: ReportId) -> PathBuf {
        self.dir.join(format!("{id}.report"))
    }
}

fn unavailable(path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("report file {}: {error}", path.display()))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Unavailable(format!("report file task failed: {e}")))?
}

#[async_trait]
impl ReportFiles for DirReportFiles {
    async fn put(&self, id: ReportId, path: &Path) -> Result<u64, StoreError> {
        let (from, to) = (path.to_path_buf(), self.path(id));
        blocking(move || {
            let size = std::fs::metadata(&from).map_err(|e| unavailable(&from, &e))?.len();
            if std::fs::rename(&from, &to).is_err() {
                // Another file system (a run's file from elsewhere): copy, then drop the source.
                std::fs::copy(&from, &to).map_err(|e| unavailable(&to, &e))?;
                let _ = std::fs::remove_file(&from);
            }
            Ok(size)
        })
        .await
    }

    async fn chunk(&self, id: ReportId, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(id);
        blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(unavailable(&path, &e)),
            };
            let offset = index.saturating_mul(FILE_CHUNK as u64);
            file.seek(SeekFrom::Start(offset)).map_err(|e| unavailable(&path, &e))?;
            let mut chunk = Vec::with_capacity(FILE_CHUNK);
            file.take(FILE_CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(|e| unavailable(&path, &e))?;
            Ok((!chunk.is_empty()).then_some(chunk))
        })
        .await
    }

    async fn remove(&self, id: ReportId) -> Result<(), StoreError> {
        let path = self.path(id);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(&path, &e)),
        })
        .await
    }
}

/// A local file read in [`FILE_CHUNK`] pieces: how the shared-database stores hand a finished
/// report over to their `report_files` rows.
pub(crate) struct Chunks {
    file: tokio::fs::File,
    path: PathBuf,
}

impl Chunks {
    pub(crate) async fn open(path: &Path) -> Result<Chunks, StoreError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| unavailable(path, &e))?;
        Ok(Chunks { file, path: path.to_path_buf() })
    }

    /// The next piece; `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        use tokio::io::AsyncReadExt;
        let mut chunk = Vec::with_capacity(FILE_CHUNK);
        (&mut self.file)
            .take(FILE_CHUNK as u64)
            .read_to_end(&mut chunk)
            .await
            .map_err(|e| unavailable(&self.path, &e))?;
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    /// Removes the local file once its rows are committed (best effort: the work dir is
    /// scratch space).
    pub(crate) async fn remove(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}
