//! Deployed code on disk: the isolates load a version's module from a private file.

use std::path::{Path, PathBuf};

use super::DeployError;

/// A deployed version's code on disk: written 0600 into a 0700 directory, removed on drop
/// unless kept.
pub(super) struct CodeFile(Option<PathBuf>);

impl CodeFile {
    pub(super) fn write(dir: &Path, file: PathBuf, code: &str) -> Result<Self, DeployError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let failed = |source: std::io::Error| DeployError::Write {
            path: file.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
        let written = Self(Some(file.clone()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| f.write_all(code.as_bytes()))
            .map_err(failed)?;
        Ok(written)
    }

    /// The version went live: its file stays (until another version replaces it).
    pub(super) fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for CodeFile {
    fn drop(&mut self) {
        if let Some(file) = self.0.take() {
            remove_quietly(&file);
        }
    }
}

/// A new private directory for deployed code when `[admin] deploy_dir` is not set: an
/// unpredictable name (created, never reused, so nobody can plant it beforehand), mode 0700,
/// under `$XDG_RUNTIME_DIR` or else the system's temporary directory.
pub fn private_deploy_dir() -> std::io::Result<PathBuf> {
    use std::hash::BuildHasher;
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut attempt = 0u32;
    loop {
        let token = std::hash::RandomState::new().hash_one((std::process::id(), attempt));
        let dir = base.join(format!("isola-deployments-{token:016x}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Removes `file`, logging (at debug level) when it cannot.
pub(super) fn remove_quietly(file: &Path) {
    if let Err(error) = std::fs::remove_file(file) {
        tracing::debug!("cannot remove {}: {error}", file.display());
    }
}
