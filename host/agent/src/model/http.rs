//! What every model client does over HTTP, whatever its wire format: posting the request
//! body, retrying, refusing redirects, and handing back the answer read within limits.
//!
//! A request is retried with exponential backoff on 429, 529, other 5xx answers and
//! connection failures, honouring `retry-after`. Once an answer has started streaming it is
//! never re-posted: a stream that breaks midway is an error (the wire module decides, as it
//! reads the events).
//!
//! The server is not trusted with the key or with the host's memory and time: redirects
//! are never followed (the key would go along), and every answer is read within limits
//! ([`Limits`]): bytes per event, per answer and per error body, and time without progress.

use std::pin::Pin;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;

use super::bounded::{BodyEnd, Events, Limits, body_error, read_at_most};
use super::{ModelError, ModelEvent};

/// The longest `retry-after` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The longest server-written message kept in an error.
const MESSAGE_CHARS: usize = 500;

/// How a client posts and retries.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The first backoff delay; doubled on each retry.
    pub min_retry_delay: Duration,
    /// How long the server may send nothing; see
    /// [`super::anthropic::DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// The most tokens of one answer, which sets how long an answer may take.
    pub max_tokens: u32,
}

/// One model endpoint: its URL and the headers every request carries (the key among
/// them, marked sensitive so it never shows in a debug print).
pub struct Endpoint {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    settings: HttpSettings,
    pub(super) limits: Limits,
}

/// The bytes of a streamed answer, as they arrive.
pub(super) type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, ModelError>> + Send>>;

/// A successful answer: a whole JSON document (a server that ignores `stream`), or the
/// events of a stream.
pub(super) enum Answer<'a> {
    Json(Value),
    Stream(Events<'a, ByteStream>),
}

/// One failed attempt, before retry policy is applied.
#[derive(Debug)]
enum Attempt {
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    /// A 3xx answer: never followed, never retried.
    Redirect {
        status: u16,
        location: String,
    },
    Connect(reqwest::Error),
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Status { status, .. } => *status == 429 || *status == 529 || *status >= 500,
            Attempt::Redirect { .. } => false,
            Attempt::Connect(_) => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attempt::Status { status, body, .. } => {
                let (_, message) = api_error_parts(body);
                format!("HTTP {status}: {message}")
            }
            Attempt::Redirect { status, location } => format!("HTTP {status} to {location}"),
            Attempt::Connect(e) => format!("{e}"),
        }
    }
}

/// The error type and message of an API error body, or the raw body. Anthropic and OpenAI
/// both answer `{"error": {"type"?, "message"}}`; some compatible servers put a `code`
/// where the type goes, or a bare string as the error.
fn api_error_parts(body: &str) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type").or_else(|| e.get("code")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(MESSAGE_CHARS).collect())
        .unwrap_or_else(|| {
            let body = body.trim();
            if body.is_empty() {
                "(empty answer)".to_string()
            } else {
                body.chars().take(MESSAGE_CHARS).collect()
            }
        });
    (kind, message)
}

/// A header value holding a secret: never shown by `Debug`.
pub fn secret_header(value: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| anyhow::anyhow!("the API key is not a valid HTTP header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl Endpoint {
    /// An endpoint posting to `url` with `headers` on every request.
    pub fn new(
        url: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        settings: HttpSettings,
    ) -> anyhow::Result<Endpoint> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Per read, not in all: no byte for this long fails the request.
            .read_timeout(settings.idle_timeout)
            // A redirect would carry the API key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let limits = Limits::new(settings.max_tokens, settings.idle_timeout);
        Ok(Endpoint {
            http,
            url,
            headers: headers.into_iter().collect(),
            settings,
            limits,
        })
    }

    /// Posts `body` (retrying as the module doc says) and returns the answer, ready to be
    /// read: parsed when the server sent JSON, else its events.
    pub(super) async fn call(
        &self,
        body: &bytes::Bytes,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<Answer<'_>, ModelError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_retry_delay)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.settings.max_retries)
            .with_jitter();
        let mut attempt = 0;
        let response = (|| self.post(body))
            .retry(backoff)
            .when(Attempt::retryable)
            .adjust(|error, delay| {
                // `delay` is None once retries are used up; keep it that way.
                let retry_after = match error {
                    Attempt::Status { retry_after, .. } => *retry_after,
                    Attempt::Redirect { .. } | Attempt::Connect(_) => None,
                };
                delay.map(|d| retry_after.map_or(d, |r| r.min(MAX_RETRY_AFTER)))
            })
            .notify(|error, delay| {
                attempt += 1;
                on_event(ModelEvent::Retrying {
                    attempt,
                    delay,
                    reason: error.describe(),
                });
            })
            .await
            .map_err(|error| match error {
                Attempt::Status { status, body, .. } => {
                    let (kind, message) = api_error_parts(&body);
                    ModelError::Api {
                        status,
                        kind,
                        message,
                    }
                }
                Attempt::Redirect { status, location } => ModelError::Redirect {
                    url: self.url.clone(),
                    status,
                    location,
                },
                Attempt::Connect(source) => ModelError::Connect {
                    url: self.url.clone(),
                    source,
                },
            })?;

        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            // A server that ignores `stream` answers with the whole message at once.
            let deadline = Instant::now() + self.limits.answer_time;
            let (body, end) = read_at_most(response, self.limits.content_bytes, deadline).await;
            match end {
                BodyEnd::Complete => {}
                BodyEnd::Cut => {
                    return Err(ModelError::TooLarge {
                        what: "the answer",
                        limit: self.limits.content_bytes,
                    });
                }
                BodyEnd::Late => return Err(self.limits.late()),
                BodyEnd::Failed(error) => return Err(body_error(error, self.limits.idle)),
            }
            let message: Value = serde_json::from_slice(&body)
                .map_err(|e| ModelError::Stream(format!("the answer is not JSON: {e}")))?;
            return Ok(Answer::Json(message));
        }
        let idle = self.limits.idle;
        let bytes: ByteStream = Box::pin(
            response
                .bytes_stream()
                .map(move |chunk| chunk.map_err(|e| body_error(e, idle))),
        );
        Ok(Answer::Stream(Events::new(bytes, &self.limits)))
    }

    async fn post(&self, body: &bytes::Bytes) -> Result<reqwest::Response, Attempt> {
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(Attempt::Connect)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(MESSAGE_CHARS)
                        .collect()
                })
                .unwrap_or_else(|| "(no location)".to_string());
            return Err(Attempt::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64);
        // Only the start is read, for a while: the message is in it, and the rest may never
        // end. A body that breaks off is shown as far as it came.
        let deadline = Instant::now() + self.limits.idle;
        let (body, _) = read_at_most(response, self.limits.error_bytes, deadline).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        Err(Attempt::Status {
            status: status.as_u16(),
            retry_after,
            body,
        })
    }
}
