//! The one policy point for outbound `fetch()`: every request a worker makes is checked
//! against the permissions put into its isolate here (deno_fetch consults them for the URL
//! and again for every resolved address, redirects included).

use std::sync::Arc;

use deno_permissions::{
    Permissions, PermissionsContainer, RuntimePermissionDescriptorParser, UnaryPermission,
};

deno_core::extension!(
    isola_outbound,
    options = { permissions: PermissionsContainer },
    state = |state, options| {
        state.put(options.permissions);
    },
);

/// Permissions for a worker: network access only; no file, environment, process or FFI access.
pub fn permissions() -> PermissionsContainer {
    let parser = Arc::new(RuntimePermissionDescriptorParser::new(
        sys_traits::impls::RealSys,
    ));
    let mut perms = Permissions::none_without_prompt();
    perms.net = UnaryPermission::allow_all();
    PermissionsContainer::new(parser, perms)
}
