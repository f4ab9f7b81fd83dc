//! Where the test data comes from: files of pinned crates (dev-dependencies of this package,
//! found through `cargo metadata`) and pinned npm packages (`npm pack` into a cache directory,
//! checked against their registry integrity). Nothing here is written by this project.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::support::repo;

/// An npm package the IDL areas need, pinned by version and by the registry's integrity hash.
pub struct NpmPackage {
    pub spec: &'static str,
    pub integrity: &'static str,
}

/// testharness.js, idlharness.js and webidl2.js (wpt-runner 7.0.0 ships them in
/// `testharness/`; later majors need a newer node).
pub const WPT_RUNNER: NpmPackage = NpmPackage {
    spec: "wpt-runner@7.0.0",
    integrity: "sha512-hMFl9Dwlc8cztxhm0y2SjLA9LmZdLk5w5ySLpDFNgPh37zjzgjaTvxsyMUSkrVFSW8eVc3qQhyNm3wK83+VqVQ==",
};

/// The Web IDL of every spec, as webref extracts it.
pub const WEBREF_IDL: NpmPackage = NpmPackage {
    spec: "@webref/idl@3.85.0",
    integrity: "sha512-pUflhFMSsZ+uwjxiyFwvzs1q/Y+1a4xps0toQbHgyNXvE9QMC+BpQZxhdX3VAS+OF0349XIezNHUE0V4NWFffw==",
};

/// The directory of crate `name` at `version` (a dev-dependency of this package), from
/// `cargo metadata` on the workspace.
pub fn crate_dir(name: &str, version: &str) -> PathBuf {
    static METADATA: OnceLock<Value> = OnceLock::new();
    let metadata = METADATA.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--manifest-path",
            ])
            .arg(repo().join("Cargo.toml"))
            .output()
            .expect("run cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON")
    });
    let package = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name && p["version"] == version)
        .unwrap_or_else(|| {
            panic!("crate {name} {version} is not in the workspace's dependencies (runtime/cli's dev-dependencies pin it)")
        });
    let manifest = Path::new(package["manifest_path"].as_str().expect("manifest_path"));
    manifest.parent().expect("crate directory").to_path_buf()
}

/// Reads a JSON file of a pinned crate.
pub fn crate_json(name: &str, version: &str, file: &str) -> Value {
    let path = crate_dir(name, version).join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Where downloaded packages are kept between runs: `ISOLA_CONFORMANCE_CACHE`, else
/// `$HOME/.cache/isola/conformance`.
fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ISOLA_CONFORMANCE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    Path::new(&home).join(".cache/isola/conformance")
}

/// The unpacked `package/` directory of `package`: from the cache, else fetched with
/// `npm pack` (its integrity checked) and unpacked. A failed download fails the test, naming
/// what to install or reach.
pub fn npm_package(package: &NpmPackage) -> PathBuf {
    static FETCHING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    let name = package.spec.replace(['/', '@'], "_");
    let dir = cache_dir().join("npm").join(&name);
    let done = dir.join(".integrity");
    if std::fs::read_to_string(&done).is_ok_and(|i| i == package.integrity) {
        return dir.join("package");
    }
    let work = cache_dir()
        .join("npm")
        .join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the npm cache directory");
    if let Err(problem) = npm_pack(package, &work) {
        let _ = std::fs::remove_dir_all(&work);
        panic!("conformance: {problem}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).expect("move the package into the cache");
    dir.join("package")
}

/// `npm pack` of `package` into `work`, its integrity checked, unpacked there and marked
/// complete; the error says what to install or reach.
fn npm_pack(package: &NpmPackage, work: &Path) -> Result<(), String> {
    let output = Command::new("npm")
        .args(["pack", package.spec, "--json", "--pack-destination"])
        .arg(work)
        .current_dir(work)
        .output()
        .map_err(|e| {
            format!(
                "cannot run npm to fetch {} ({e}); install node and npm (apt-get install nodejs npm)",
                package.spec
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`npm pack {}` failed (is the npm registry reachable?): {}",
            package.spec,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let packed: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("npm pack --json printed no JSON: {e}"))?;
    let integrity = packed[0]["integrity"].as_str().unwrap_or_default();
    if integrity != package.integrity {
        return Err(format!(
            "{} has integrity {integrity:?}, not the pinned {:?}",
            package.spec, package.integrity
        ));
    }
    let filename = packed[0]["filename"]
        .as_str()
        .ok_or("npm pack --json named no file")?;
    let tarball = work.join(filename);
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(work)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("unpacking {} failed", tarball.display()));
    }
    let _ = std::fs::remove_file(&tarball);
    std::fs::write(work.join(".integrity"), package.integrity)
        .map_err(|e| format!("cannot mark {} complete: {e}", work.display()))
}

/// Reads a file of a fetched npm package.
pub fn npm_file(package: &NpmPackage, file: &str) -> String {
    let path = npm_package(package).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
