//! Where deployed code lives on disk: a private directory per node (each version's modules go
//! in a directory of their own inside it, `crate::code::files::CodeDir`).

use std::path::PathBuf;

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
