//! A plugin that misbehaves on purpose, for the host's tests and benchmarks. Never shipped.
//!
//! Each tool is one way a third-party plugin can go wrong or attack the host: spin forever,
//! allocate without end, recurse without end, panic, return 100 MB, read files outside its
//! grant, read environment variables it was not given, reach a host it was not granted. The
//! tests check that each ends in a clear error for the model and that the next call works.
//! `noop` and `count_calls` measure and prove the fresh-instance-per-call model.
//! `describe` also offers two invalid tools, which the host must skip by name.
//!
//! `describe()` has no input, and runs with nothing granted, so what it does is chosen by
//! the bytes of the component itself: the tests copy the component and overwrite the mode
//! in [`DESCRIBE_MODE`] (same length, found by its marker) to get a describe() that
//! panics, loops, floods the log, or offers only tools whose schemas are broken.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
    });
}

use std::sync::atomic::{AtomicU64, Ordering};

use bindings::agent::tool::host::{LogLevel, log};
use bindings::agent::tool::types::{CallContext, ToolError, ToolHints, ToolSpec};
use bindings::exports::agent::tool::tool::Guest;
use serde_json::Value;

struct Hostile;

/// What describe() does: the ten bytes after the marker, `.`-padded: `normal`, `panic`,
/// `loop`, `logflood`, `badschema` (one good tool and one whose schema does not compile),
/// `allbad` (only invalid tools). Tests patch the bytes in a copy of the component.
static DESCRIBE_MODE: [u8; 32] = *b"hostile-describe-mode:normal....";

fn describe_mode() -> String {
    // Volatile reads, so the optimizer cannot fold the mode in at compile time.
    let bytes: Vec<u8> = (22..32)
        .map(|i| unsafe { std::ptr::read_volatile(&DESCRIBE_MODE[i]) })
        .collect();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('.')
        .to_string()
}

/// Logs `lines` lines of `kib` KiB each (the same string each time, so the guest itself
/// needs only one copy).
fn log_flood(lines: u64, kib: u64) {
    let line = "L".repeat((kib as usize) << 10);
    for _ in 0..lines {
        log(LogLevel::Info, &line);
    }
}

/// Calls served by this instance; a fresh instance per call always says 1.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn tool(name: &str, description: &str, properties: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        input_schema: format!(r#"{{"type":"object","properties":{{{properties}}}}}"#),
        hints: ToolHints::empty(),
    }
}

impl Guest for Hostile {
    fn describe() -> Vec<ToolSpec> {
        match describe_mode().as_str() {
            "panic" => panic!("describe() of the hostile plugin panicked on purpose"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "logflood" => log_flood(200, 4096),
            "badschema" => {
                return vec![
                    tool("noop", "Return an empty string at once.", ""),
                    tool(
                        "typo",
                        "A schema with a misspelled type.",
                        r#""x":{"type":"strng"}"#,
                    ),
                ];
            }
            "allbad" => {
                return vec![
                    tool("bad name!", "An invalid tool name.", ""),
                    tool(
                        "typo",
                        "A schema with a misspelled type.",
                        r#""x":{"type":"strng"}"#,
                    ),
                    ToolSpec {
                        name: "not_json".into(),
                        description: "A schema that is not JSON.".into(),
                        input_schema: "{".into(),
                        hints: ToolHints::empty(),
                    },
                ];
            }
            _ => {}
        }
        let mut tools = vec![
            tool("noop", "Return an empty string at once.", ""),
            tool(
                "count_calls",
                "Say how many calls this instance has served.",
                "",
            ),
            tool("spin", "Loop forever.", ""),
            tool(
                "sleep",
                "Block in a host call (a WASI sleep) for `ms` milliseconds.",
                r#""ms":{"type":"integer"}"#,
            ),
            tool(
                "allocate",
                "Allocate `mib` MiB, touching every page.",
                r#""mib":{"type":"integer"}"#,
            ),
            tool(
                "recurse",
                "Recurse without end, with big frames (on the shadow stack).",
                "",
            ),
            tool(
                "recurse_small",
                "Recurse very deep with small frames (on the wasm stack).",
                "",
            ),
            tool("panic", "Panic with a message.", ""),
            tool(
                "flood",
                "Return a text of `mib` MiB.",
                r#""mib":{"type":"integer"}"#,
            ),
            tool(
                "read_path",
                "Read a file at any path, with no checks of its own.",
                r#""path":{"type":"string"}"#,
            ),
            tool(
                "list_dir",
                "List a directory at any path, with no checks of its own.",
                r#""path":{"type":"string"}"#,
            ),
            tool(
                "write_path",
                "Write a file at any path, with no checks of its own.",
                r#""path":{"type":"string"},"content":{"type":"string"}"#,
            ),
            tool(
                "env",
                "Read an environment variable.",
                r#""name":{"type":"string"}"#,
            ),
            tool(
                "log_flood",
                "Send `lines` lines of `kib` KiB each to host.log.",
                r#""lines":{"type":"integer"},"kib":{"type":"integer"}"#,
            ),
            tool(
                "fetch",
                "HTTP GET a URL's host and path.",
                r#""scheme":{"type":"string"},"authority":{"type":"string"},"path":{"type":"string"}"#,
            ),
        ];
        // Two tools the host must refuse, by name, while loading the rest.
        tools.push(tool("bad name!", "An invalid tool name.", ""));
        tools.push(ToolSpec {
            name: "string_schema".into(),
            description: "A schema that is not an object schema.".into(),
            input_schema: r#"{"type":"string"}"#.into(),
            hints: ToolHints::empty(),
        });
        tools
    }

    fn call(name: String, input: String, _context: CallContext) -> Result<String, ToolError> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        let number = |key: &str| input[key].as_u64().unwrap_or(0);
        let text = |key: &str| input[key].as_str().unwrap_or_default().to_string();
        match name.as_str() {
            "noop" => Ok(String::new()),
            "count_calls" => Ok((CALLS.fetch_add(1, Ordering::SeqCst) + 1).to_string()),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(number("ms")));
                Ok("slept".into())
            }
            "allocate" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                for _ in 0..number("mib") {
                    blocks.push(vec![1u8; 1 << 20]);
                }
                Ok(format!("allocated {} MiB", blocks.len()))
            }
            "recurse" => Ok(recurse(1).to_string()),
            "recurse_small" => Ok(recurse_small(u64::MAX).to_string()),
            "panic" => panic!("the hostile plugin panicked on purpose"),
            "flood" => Ok("x".repeat((number("mib") as usize) << 20)),
            "read_path" => {
                std::fs::read_to_string(text("path")).map_err(|e| ToolError::Io(e.to_string()))
            }
            "list_dir" => std::fs::read_dir(text("path"))
                .map(|entries| {
                    entries
                        .filter_map(|e| {
                            e.ok().map(|e| e.file_name().to_string_lossy().into_owned())
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .map_err(|e| ToolError::Io(e.to_string())),
            "write_path" => std::fs::write(text("path"), text("content"))
                .map(|()| "written".into())
                .map_err(|e| ToolError::Io(e.to_string())),
            "env" => std::env::var(text("name")).map_err(|e| ToolError::NotFound(e.to_string())),
            "log_flood" => {
                log_flood(number("lines"), number("kib"));
                Ok("logged".into())
            }
            "fetch" => fetch(&text("scheme"), &text("authority"), &text("path")),
            other => Err(ToolError::InvalidInput(format!("unknown tool `{other}`"))),
        }
    }
}

/// Recursion the optimizer cannot turn into a loop; ends only in a stack overflow.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    recurse(depth + 1) + frame[depth as usize % 32]
}

/// Recursion whose frames live in wasm locals only, so it exhausts the engine's wasm stack
/// (rotate is not commutative, so the optimizer cannot turn it into a loop).
#[inline(never)]
fn recurse_small(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    recurse_small(n - 1).rotate_left(3) ^ n
}

/// One GET over wasi:http; the host decides whether it may leave.
fn fetch(scheme: &str, authority: &str, path: &str) -> Result<String, ToolError> {
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let fail = |what: &str| ToolError::Internal(format!("bad {what}"));
    request
        .set_method(&Method::Get)
        .map_err(|()| fail("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| fail("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| fail("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| fail("path"))?;
    let pending = wasip2::http::outgoing_handler::handle(request, None)
        .map_err(|e| ToolError::PermissionDenied(format!("request failed: {e:?}")))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| fail("response"))?
        .map_err(|()| fail("response"))?
        .map_err(|e| ToolError::PermissionDenied(format!("request failed: {e:?}")))?;
    Ok(format!("HTTP {}", response.status()))
}

bindings::export!(Hostile with_types_in bindings);
