//! `fetch_url`: an example third-party plugin that fetches a web page over `wasi:http`.
//!
//! It shows the parts a plugin author needs: describing a tool with a JSON Schema, parsing
//! the input, using an import the agent only opens when the manifest grants it (here the
//! network: `fetch-url.toml` beside `fetch-url.wasm` lists the hosts), and mapping every
//! failure to a typed `tool-error`. A request to a host that is not granted fails with
//! `HTTP request denied`, which this plugin reports as permission-denied.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
    });
}

use bindings::agent::tool::host::{LogLevel, log};
use bindings::agent::tool::types::{CallContext, ToolError, ToolHints, ToolSpec};
use bindings::exports::agent::tool::tool::Guest;
use serde::Deserialize;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// Body bytes returned when the input does not say.
const DEFAULT_MAX_BYTES: usize = 20_000;
/// Body bytes returned at most.
const MAX_BYTES: usize = 200_000;

struct FetchUrl;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    max_bytes: Option<usize>,
}

impl Guest for FetchUrl {
    fn describe() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "fetch_url".into(),
            description: "Fetch a URL with HTTP GET and return the status line and the body as text (cut at max_bytes). Only the hosts the user granted this plugin can be reached.".into(),
            input_schema: r#"{"type":"object","properties":{"url":{"type":"string","description":"An http:// or https:// URL"},"max_bytes":{"type":"integer","minimum":1,"maximum":200000,"description":"Return at most this many bytes of the body (default 20000)"}},"required":["url"],"additionalProperties":false}"#.into(),
            hints: ToolHints::READ_ONLY | ToolHints::IDEMPOTENT,
        }]
    }

    fn call(name: String, input: String, _context: CallContext) -> Result<String, ToolError> {
        if name != "fetch_url" {
            return Err(ToolError::InvalidInput(format!("unknown tool `{name}`")));
        }
        let input: Input = serde_json::from_str(&input)
            .map_err(|e| ToolError::InvalidInput(format!("bad input: {e}")))?;
        let max_bytes = input.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).min(MAX_BYTES);
        log(LogLevel::Debug, &format!("GET {}", input.url));
        let (status, body, cut) = get(&input.url, max_bytes)?;
        let mut text = format!("HTTP {status}\n\n{}", String::from_utf8_lossy(&body));
        if cut {
            text.push_str(&format!("\n... [body cut at {max_bytes} bytes]"));
        }
        Ok(text)
    }
}

/// The parts of an http(s) URL that a `wasi:http` request needs.
struct Target<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_and_query: String,
}

fn parse_url(url: &str) -> Result<Target<'_>, ToolError> {
    let bad = |why: &str| ToolError::InvalidInput(format!("`{url}` is not a usable URL: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("it has no scheme (http:// or https://)"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad("only http and https are supported")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path_and_query) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_string()),
        Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("it needs a host name (and no user:password@)"));
    }
    Ok(Target {
        scheme,
        authority,
        path_and_query,
    })
}

/// GETs `url`; returns the status, up to `max_bytes` of the body, and whether it was cut.
fn get(url: &str, max_bytes: usize) -> Result<(u16, Vec<u8>, bool), ToolError> {
    let target = parse_url(url)?;
    let request = OutgoingRequest::new(Fields::new());
    let internal = |what: &str| ToolError::Internal(format!("building the request: bad {what}"));
    request
        .set_method(&Method::Get)
        .map_err(|()| internal("method"))?;
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| internal("scheme"))?;
    request
        .set_authority(Some(target.authority))
        .map_err(|()| internal("host"))?;
    request
        .set_path_with_query(Some(&target.path_and_query))
        .map_err(|()| internal("path"))?;

    let pending = outgoing_handler::handle(request, None).map_err(|e| request_error(url, e))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| ToolError::Internal("the response was not ready after waiting".into()))?
        .map_err(|()| ToolError::Internal("the response was taken twice".into()))?
        .map_err(|e| request_error(url, e))?;
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| ToolError::Internal("the response body was taken twice".into()))?;
    let stream = body
        .stream()
        .map_err(|()| ToolError::Internal("the body stream was taken twice".into()))?;
    let mut bytes = Vec::new();
    loop {
        if bytes.len() > max_bytes {
            bytes.truncate(max_bytes);
            return Ok((status, bytes, true));
        }
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok((status, bytes, false)),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(ToolError::Io(format!(
                    "reading the body of {url} failed: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
}

fn request_error(url: &str, error: ErrorCode) -> ToolError {
    match error {
        ErrorCode::HttpRequestDenied => ToolError::PermissionDenied(format!(
            "the agent does not allow this plugin to reach {url}: add its host to `network` in fetch-url.toml"
        )),
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            ToolError::NotFound(format!("the host of {url} was not found"))
        }
        ErrorCode::ConnectionRefused => ToolError::Io(format!("{url}: the connection was refused")),
        other => ToolError::Io(format!("fetching {url} failed: {other:?}")),
    }
}

bindings::export!(FetchUrl with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_request_parts() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c=1#frag").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/a/b?c=1");
        let t = parse_url("https://example.com").unwrap();
        assert_eq!(t.path_and_query, "/");
        let t = parse_url("https://example.com?q").unwrap();
        assert_eq!(t.path_and_query, "/?q");
        assert!(parse_url("ftp://example.com/").is_err());
        assert!(parse_url("example.com").is_err());
        assert!(parse_url("http://user:pw@example.com/").is_err());
    }
}
