//! The parts of the background tools beyond a plain task: `background_run`'s readiness
//! and stdin options, and `write_background`, which writes to a task's stdin.

use serde::Deserialize;
use serde_json::{Value, json};

use super::NativeTools;
use crate::task_text;
use crate::tools::ToolOutput;

#[derive(Deserialize)]
pub(super) struct WriteInput {
    task_id: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    eof: bool,
}

impl NativeTools {
    pub(super) async fn write_background(&self, input: WriteInput) -> Result<ToolOutput, String> {
        let written = self
            .background
            .write_input(&input.task_id, input.input.as_bytes(), input.eof)
            .await
            .map_err(|e| e.to_string())?;
        let id =
            crate::background_task::task_key(&input.task_id).map(crate::background_task::task_id);
        let id = id.unwrap_or(input.task_id);
        Ok(ToolOutput::ok(task_text::written(
            &id,
            written.bytes,
            written.closed,
        )))
    }
}

/// `background_run`'s schema: the command schema and its readiness and stdin options.
pub(super) fn background_schema(mut schema: Value) -> Value {
    let properties = &mut schema["properties"];
    properties["ready_pattern"] = json!({
        "type": "string",
        "maxLength": crate::readiness::MAX_PATTERN_LEN,
        "description": "A regex (Rust syntax); when a line of the task's output matches, you are told the task is ready (once) while it keeps running, e.g. \"Listening on|ready in\""
    });
    properties["ready_port"] = json!({
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "description": "A TCP port; when it accepts connections on 127.0.0.1 or ::1 you are told the task is ready (once). The task must be able to listen: the sandbox's network must be on"
    });
    properties["stdin"] = json!({
        "type": "boolean",
        "description": "Keep the task's stdin open as a pipe for write_background (otherwise it is /dev/null)"
    });
    schema
}
