//! An uploaded version's modules on disk: a directory of its own (0700, inside the 0700
//! deploy directory) with one file per module (0600), removed on drop unless kept.

use std::path::{Path, PathBuf};

use edge_config::ModuleSet;

/// A version's directory of modules.
#[derive(Debug)]
pub struct CodeDir(Option<PathBuf>);

/// Writing a version's modules failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WriteError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl CodeDir {
    /// Writes `modules` into the new directory `dir` (inside `deploy_dir`, created if need be).
    pub fn write(deploy_dir: &Path, dir: PathBuf, modules: &ModuleSet) -> Result<Self, WriteError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let private_dir = |path: &Path, recursive: bool| {
            std::fs::DirBuilder::new()
                .recursive(recursive)
                .mode(0o700)
                .create(path)
                .map_err(|source| WriteError {
                    path: path.to_owned(),
                    source,
                })
        };
        private_dir(deploy_dir, true)?;
        private_dir(&dir, false)?;
        let written = Self(Some(dir.clone()));
        for module in &modules.modules {
            // Checked by `ModuleSet::check`: relative, no `..`, so inside `dir`.
            let file = dir.join(&module.path);
            if let Some(parent) = file.parent().filter(|p| *p != dir) {
                private_dir(parent, true)?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .and_then(|mut f| f.write_all(&module.content))
                .map_err(|source| WriteError { path: file, source })?;
        }
        Ok(written)
    }

    /// The version went live: its files stay (until [`remove`] is called for it).
    pub fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for CodeDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            remove(&dir);
        }
    }
}

/// Removes a version's directory, logging (not failing) when it cannot.
pub fn remove(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        tracing::debug!("cannot remove {}: {error}", dir.display());
    }
}
