//! Cutting large old tool results to their head and tail: the cheap first step when a
//! request grows past the threshold, and the fallback when a summary cannot be had.
//!
//! A result is "old" when it is not in the last few user messages; the model has read it
//! and acted on it. What is cut is replaced by one line saying how much was cut and where
//! the full text still is: the log of the background task it names, the file `read_file`
//! read, or that the full output is not kept.

use serde_json::Value;

use crate::model::{ContentBlock, Message, Role};

/// Bytes of the start of a cut text that are kept.
pub const HEAD_BYTES: usize = 1_500;
/// Bytes of the end of a cut text that are kept.
pub const TAIL_BYTES: usize = 1_000;
/// Words in the line that replaces what was cut; a text holding them was cut already.
const CUT_MARK: &str = "cut here to fit the context window";

/// How many results were cut, and how many bytes went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    pub results: usize,
    pub bytes: usize,
}

/// Cuts every tool result (and `<background-results>` text) longer than `max_bytes` to
/// its head and tail, sparing the last `spare` user messages.
pub fn cut_old_results(history: &mut [Message], spare: usize, max_bytes: usize) -> Cut {
    let users: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].role == Role::User)
        .collect();
    let old = &users[..users.len().saturating_sub(spare)];
    let mut cut = Cut::default();
    for &index in old {
        let (before, rest) = history.split_at_mut(index);
        let calls = before.last();
        for block in &mut rest[0].content {
            let (text, pointer) = match block {
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    ..
                } => {
                    let pointer = pointer(calls, tool_use_id, content);
                    (content, pointer)
                }
                ContentBlock::Text { text } if text.starts_with("<background-results>") => {
                    let pointer = pointer(None, "", text);
                    (text, pointer)
                }
                _ => continue,
            };
            if text.len() <= max_bytes || text.contains(CUT_MARK) {
                continue;
            }
            let before = text.len();
            *text = head_and_tail(text, &pointer);
            cut.results += 1;
            cut.bytes += before.saturating_sub(text.len());
        }
    }
    cut
}

/// `text` cut to its head and tail with a line between saying what was cut and `pointer`
/// (where the full text is). Cuts fall on character boundaries, at a line end where one
/// is near.
pub fn head_and_tail(text: &str, pointer: &str) -> String {
    if text.len() <= HEAD_BYTES + TAIL_BYTES {
        return text.to_string();
    }
    let mut head = floor_boundary(text, HEAD_BYTES);
    if let Some(newline) = text[..head].rfind('\n')
        && newline > head / 2
    {
        head = newline + 1;
    }
    let mut tail = ceil_boundary(text, text.len() - TAIL_BYTES);
    if let Some(newline) = text[tail..].find('\n')
        && newline < TAIL_BYTES / 2
    {
        tail += newline + 1;
    }
    let cut = tail - head;
    format!(
        "{}\n[... {cut} bytes {CUT_MARK}; {pointer} ...]\n{}",
        &text[..head],
        &text[tail..]
    )
}

/// Where the full text of a result is: a task log it names, the file `read_file` read,
/// or nowhere.
fn pointer(calls: Option<&Message>, tool_use_id: &str, text: &str) -> String {
    let logs: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("log: "))
        .map(|rest| rest.split(" (").next().unwrap_or(rest))
        .collect();
    if !logs.is_empty() {
        return format!(
            "the full output is in the task log {} (page through it with check_background)",
            logs.join(", ")
        );
    }
    let call = calls
        .into_iter()
        .flat_map(|m| &m.content)
        .find_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } if id == tool_use_id => {
                Some((name.as_str(), input.to_value()))
            }
            _ => None,
        });
    if let Some(("read_file", input)) = call
        && let Some(path) = input.get("path").and_then(Value::as_str)
    {
        return format!("the full text is in the file {path} (read_file it again if needed)");
    }
    "the full output is not kept".to_string()
}

fn floor_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::ToolInput;

    fn exchange(id: &str, name: &str, input: Value, output: String) -> [Message; 2] {
        [
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: id.into(),
                    name: name.into(),
                    input: ToolInput::from_value(input),
                }],
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: id.into(),
                    content: output,
                    is_error: false,
                }],
            },
        ]
    }

    fn result_text(message: &Message) -> &str {
        match &message.content[0] {
            ContentBlock::ToolResult { content, .. } => content,
            other => panic!("not a result: {other:?}"),
        }
    }

    #[test]
    fn old_large_results_keep_head_and_tail_and_say_where_the_rest_is() {
        let big = |c: char| {
            (0..400)
                .map(|i| format!("{c}{i:04} line of output\n"))
                .collect::<String>()
        };
        let mut history = vec![Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: "go".into() }],
        }];
        history.extend(exchange(
            "r",
            "read_file",
            json!({"path": "src/big.rs"}),
            big('a'),
        ));
        let task = format!(
            "[bg:bg-1] completed\nlog: /state/tasks/bg-1.log (9000 bytes)\n{}",
            big('b')
        );
        history.extend(exchange(
            "c",
            "check_background",
            json!({"task_id": "bg-1"}),
            task,
        ));
        history.extend(exchange("b", "bash", json!({"command": "x"}), big('c')));
        history.extend(exchange("n", "bash", json!({"command": "y"}), big('d')));
        let newest = history.last().unwrap().clone();

        let cut = cut_old_results(&mut history, 1, 4_000);
        assert_eq!(cut.results, 3);
        let read = result_text(&history[2]);
        assert!(read.starts_with("a0000 line"), "{read}");
        assert!(read.ends_with("a0399 line of output\n"), "{read}");
        assert!(
            read.contains("the full text is in the file src/big.rs"),
            "{read}"
        );
        assert!(read.len() < HEAD_BYTES + TAIL_BYTES + 200);
        assert!(result_text(&history[4]).contains("task log /state/tasks/bg-1.log"));
        assert!(result_text(&history[6]).contains("the full output is not kept"));
        assert_eq!(
            history.last().unwrap(),
            &newest,
            "the spared message is untouched"
        );
        // Cutting again changes nothing.
        let again = history.clone();
        assert_eq!(cut_old_results(&mut history, 1, 4_000), Cut::default());
        assert_eq!(history, again);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(3_000);
        let cut = head_and_tail(&text, "nowhere");
        assert!(cut.contains("bytes cut here") && cut.len() < text.len());
    }
}
