//! Any text given to the config loader: an error names the file, or the config is consistent.
//! The config sits in a directory with a worker file `w.js`, so configs with workers can pass.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// `edge.toml` in a directory that also holds `w.js`.
fn config_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("isola-fuzz-config-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("w.js"), "export default {}"))
        {
            panic!("cannot prepare {}: {e}", dir.display());
        }
        dir.join("edge.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = config_path();
    match edge_config::parse(text, file) {
        Ok(config) => {
            assert!(
                !config.listeners.is_empty(),
                "a config without listeners was accepted"
            );
            for route in &config.routes {
                assert!(
                    config.workers.contains_key(&route.worker),
                    "route to unknown worker {:?}",
                    route.worker
                );
                assert!(
                    route.path_prefix.starts_with('/'),
                    "{:?}",
                    route.path_prefix
                );
            }
            for (name, worker) in &config.workers {
                assert_eq!(name, &worker.name);
                assert!(worker.file.is_absolute(), "{}", worker.file.display());
            }
        }
        Err(error) => {
            assert_eq!(error.file, file);
            assert!(
                error
                    .to_string()
                    .starts_with(file.to_string_lossy().as_ref())
            );
        }
    }
});
