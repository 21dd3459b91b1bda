//! Tool calls and results in the rendered view: one line per call, results folded to
//! head and tail, errors in red, and the diff of a file a call changed.

use super::{Style, diff, sgr};
use crate::tools::ToolOutput;
use crate::ui_text::{clip, one_line, visible};

/// Lines of a result shown before and after the fold.
const HEAD: usize = 4;
const TAIL: usize = 2;

/// `● name summary` (the summary is already one safe line).
pub fn call(style: &Style, name: &str, summary: &str) -> String {
    format!(
        "{} {} {}\n",
        style.paint(sgr::CYAN, "●"),
        style.paint(sgr::BOLD, &one_line(name)),
        style.paint(sgr::DIM, summary)
    )
}

/// The result under its call: head and tail of the text with the number of lines
/// between, red if it is an error, then the diff of a changed file.
pub fn result(style: &Style, output: &ToolOutput) -> String {
    let code = if output.is_error { sgr::RED } else { sgr::DIM };
    let lines: Vec<&str> = output.text.lines().collect();
    let mut shown = String::new();
    let show = |shown: &mut String, prefix: &str, line: &str| {
        let text = format!("{prefix}{}", visible(&clip(line, 160)));
        shown.push_str(&style.paint(code, &text));
        shown.push('\n');
    };
    if lines.len() <= HEAD + TAIL + 1 {
        for (i, line) in lines.iter().enumerate() {
            show(&mut shown, if i == 0 { "  ⎿ " } else { "    " }, line);
        }
    } else {
        for (i, line) in lines[..HEAD].iter().enumerate() {
            show(&mut shown, if i == 0 { "  ⎿ " } else { "    " }, line);
        }
        let hidden = lines.len() - HEAD - TAIL;
        shown.push_str(&style.paint(sgr::YELLOW, &format!("    … {hidden} lines hidden …")));
        shown.push('\n');
        for line in &lines[lines.len() - TAIL..] {
            show(&mut shown, "    ", line);
        }
    }
    if let Some(change) = &output.change {
        shown.push_str(&diff::render(style, change));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_fold_to_head_and_tail_and_errors_are_red() {
        let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            result(&Style::COLOR, &ToolOutput::ok(text)),
            "\x1b[2m  ⎿ line 1\x1b[0m\n\x1b[2m    line 2\x1b[0m\n\x1b[2m    line 3\x1b[0m\n\x1b[2m    line 4\x1b[0m\n\
             \x1b[33m    … 4 lines hidden …\x1b[0m\n\x1b[2m    line 9\x1b[0m\n\x1b[2m    line 10\x1b[0m\n"
        );
        assert_eq!(
            result(&Style::COLOR, &ToolOutput::error("no such file \x1b[2J")),
            "\x1b[31m  ⎿ no such file \\x1b[2J\x1b[0m\n"
        );
        assert_eq!(
            call(&Style::COLOR, "bash", "ls"),
            "\x1b[36m●\x1b[0m \x1b[1mbash\x1b[0m \x1b[2mls\x1b[0m\n"
        );
    }
}
