//! Isola's configuration: the TOML model users write (`isola serve --config edge.toml`), its
//! defaults, validation and loading. Every struct rejects unknown keys; every error names the
//! file, the key and what was expected.
#![forbid(unsafe_code)]

mod cidr;
mod error;
mod load;
mod model;
mod modules;
mod project;
pub mod special_ranges;
mod upload;
mod validate;

pub use cidr::{CidrParseError, IpCidr};
pub use error::{ConfigError, Location};
pub use load::{load, parse};
pub use model::{
    Admin, Cache, Config, DEFAULT_MAX_CONNECTIONS, HttpLimits, Limits, Listener, Node, Outbound,
    Route, SniCert, Tls, Worker,
};
pub use modules::{
    MAX_MODULES, ModuleKind, ModuleSet, SourceModule, UploadModule, check_module_path,
};
pub use project::{PROJECT_FILE, Project, load_project, parse_project, parse_route};
pub use upload::{Upload, UploadRoute, valid_worker_name};
pub use validate::valid_identifier;
