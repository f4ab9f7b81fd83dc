//! Builds the startup snapshot (called from the runtime's build script): the Web extensions'
//! JavaScript and Isola's bootstrap, evaluated once, so an isolate starts without parsing them.

use std::collections::HashSet;
use std::path::PathBuf;

use deno_core::ExtensionFileSourceCode;
use deno_core::snapshot::{CreateSnapshotOptions, create_snapshot};

use crate::extensions;

/// What the build script writes out.
pub struct SnapshotArtifacts {
    /// The V8 startup snapshot.
    pub bytes: Box<[u8]>,
    /// Files read while snapshotting (for `cargo:rerun-if-changed`).
    pub files_loaded: Vec<PathBuf>,
    /// Lazily loaded scripts not in the snapshot: (specifier, path), sorted by specifier.
    /// The binary must carry their source (deno_core's residual table).
    pub residual_js: Vec<(String, PathBuf)>,
    /// Lazily loaded ES modules not in the snapshot, likewise.
    pub residual_esm: Vec<(String, PathBuf)>,
}

/// Snapshot creation failed (a JavaScript error in the bootstrap, most likely).
#[derive(Debug, thiserror::Error)]
#[error("creating the startup snapshot failed: {0}")]
pub struct SnapshotError(#[source] deno_core::error::CoreError);

/// Evaluates the bootstrap into a startup snapshot.
pub fn create() -> Result<SnapshotArtifacts, SnapshotError> {
    let output = create_snapshot(
        CreateSnapshotOptions {
            cargo_manifest_dir: env!("CARGO_MANIFEST_DIR"),
            startup_snapshot: None,
            skip_op_registration: false,
            extensions: extensions::for_snapshot(),
            extension_transpiler: None,
            with_runtime_cb: None,
        },
        None,
    )
    .map_err(SnapshotError)?;
    let consumed: HashSet<String> = output.consumed_lazy_specifiers.into_iter().collect();
    let residual = |esm: bool| {
        let mut files: Vec<(String, PathBuf)> = extensions::for_snapshot()
            .iter()
            .flat_map(|ext| {
                let files = if esm {
                    &ext.lazy_loaded_esm_files
                } else {
                    &ext.lazy_loaded_js_files
                };
                files
                    .iter()
                    .filter_map(|file| match file.code {
                        ExtensionFileSourceCode::LoadedFromFsDuringSnapshot(path) => {
                            Some((file.specifier.to_owned(), PathBuf::from(path)))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|(specifier, _)| !consumed.contains(specifier))
            .collect();
        files.sort();
        files
    };
    Ok(SnapshotArtifacts {
        bytes: output.output,
        files_loaded: output.files_loaded_during_snapshot,
        residual_js: residual(false),
        residual_esm: residual(true),
    })
}
