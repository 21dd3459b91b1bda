//! A plugin built against `agent:tool@0.2.0`, a version this host does not speak. The
//! tests check that the host refuses it with a message naming the version.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
    });
}

struct FutureTool;

impl bindings::exports::agent::tool::tool::Guest for FutureTool {
    fn describe() -> Vec<String> {
        vec!["from_the_future".into()]
    }
}

bindings::export!(FutureTool with_types_in bindings);
