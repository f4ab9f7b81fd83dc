//! An admin upload: `NAME\nJSON` (or just JSON, deployed as `fuzz`). Errors name the request;
//! accepted uploads have the name they were deployed as, routes that start with `/`, and
//! module paths that stay inside the upload (no `..`, not absolute), at most 100 of them.
#![no_main]

use std::path::Path;

use edge_config::{Limits, Upload, valid_worker_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (name, json) = match data.iter().position(|b| *b == b'\n') {
        Some(end) => (
            String::from_utf8_lossy(&data[..end]).into_owned(),
            &data[end + 1..],
        ),
        None => ("fuzz".to_owned(), data),
    };
    let origin = Path::new("PUT /workers/fuzz");
    let upload = match Upload::parse(json, origin) {
        Ok(upload) => upload,
        Err(error) => {
            assert_eq!(error.file, origin);
            return;
        }
    };
    let dir = Path::new("/nonexistent/isola-fuzz");
    match upload.into_worker(&name, dir, &Limits::default(), origin) {
        Ok((worker, routes, code)) => {
            assert!(valid_worker_name(&name), "invalid name {name:?} accepted");
            assert_eq!(worker.name, name);
            assert_eq!(worker.file, dir.join(&code.main));
            assert!(code.modules.len() <= edge_config::MAX_MODULES);
            for module in &code.modules {
                assert!(!module.path.starts_with('/'), "{:?}", module.path);
                assert!(
                    !module.path.split('/').any(|s| s == ".." || s.is_empty()),
                    "{:?}",
                    module.path
                );
            }
            for route in routes.iter().flatten() {
                assert_eq!(route.worker, name);
                assert!(
                    route.path_prefix.starts_with('/'),
                    "{:?}",
                    route.path_prefix
                );
                if let Some(host) = &route.host {
                    assert_eq!(host, &host.to_ascii_lowercase());
                }
            }
        }
        Err(error) => assert_eq!(error.file, origin),
    }
});
