//! Light syntax highlighting of code block lines: comments, strings, numbers and keywords.
//!
//! A line at a time, so a streamed code block is coloured as each line arrives. It knows
//! the keywords of the languages a coding agent writes most; an unknown language still
//! gets strings, numbers and comments. (syntect was weighed: it pulls in some thirty
//! crates and a compiled grammar dump, too much build time for a few colours.) The line
//! must already be safe to show (passed through `ui_text`).

use super::{Style, sgr};

/// The comment starts, keywords and whether `'` quotes strings, for one language.
struct Lang {
    comments: &'static [&'static str],
    keywords: &'static [&'static str],
    single_quotes: bool,
}

const RUST: Lang = Lang {
    comments: &["//"],
    keywords: &[
        "as", "async", "await", "break", "const", "continue", "crate", "else", "enum", "false",
        "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
        "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
        "unsafe", "use", "where", "while", "dyn",
    ],
    single_quotes: false,
};
const PYTHON: Lang = Lang {
    comments: &["#"],
    keywords: &[
        "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "False", "finally", "for", "from", "if", "import", "in", "is",
        "lambda", "None", "not", "or", "pass", "raise", "return", "True", "try", "while", "with",
        "yield",
    ],
    single_quotes: true,
};
const JS: Lang = Lang {
    comments: &["//"],
    keywords: &[
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "default",
        "else",
        "export",
        "extends",
        "false",
        "for",
        "from",
        "function",
        "if",
        "import",
        "in",
        "interface",
        "let",
        "new",
        "null",
        "of",
        "return",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "typeof",
        "undefined",
        "var",
        "while",
    ],
    single_quotes: true,
};
const SHELL: Lang = Lang {
    comments: &["#"],
    keywords: &[
        "case", "do", "done", "elif", "else", "esac", "export", "fi", "for", "function", "if",
        "in", "local", "then", "while",
    ],
    single_quotes: true,
};
const C_LIKE: Lang = Lang {
    comments: &["//"],
    keywords: &[
        "break",
        "case",
        "char",
        "class",
        "const",
        "continue",
        "default",
        "else",
        "enum",
        "false",
        "for",
        "func",
        "go",
        "if",
        "import",
        "int",
        "interface",
        "package",
        "private",
        "public",
        "return",
        "static",
        "struct",
        "switch",
        "true",
        "type",
        "var",
        "void",
        "while",
    ],
    single_quotes: true,
};
const DATA: Lang = Lang {
    comments: &["#"],
    keywords: &["true", "false", "null"],
    single_quotes: true,
};
const OTHER: Lang = Lang {
    comments: &[],
    keywords: &[],
    single_quotes: false,
};

fn lang(name: &str) -> &'static Lang {
    match name.to_ascii_lowercase().as_str() {
        "rust" | "rs" => &RUST,
        "python" | "py" => &PYTHON,
        "js" | "javascript" | "ts" | "typescript" | "jsx" | "tsx" => &JS,
        "sh" | "bash" | "shell" | "zsh" | "console" => &SHELL,
        "c" | "cpp" | "c++" | "h" | "go" | "java" | "kotlin" | "cs" | "swift" => &C_LIKE,
        "json" | "toml" | "yaml" | "yml" | "ini" => &DATA,
        _ => &OTHER,
    }
}

/// `line` (one line of a code block in language `info`) coloured.
pub fn line(style: &Style, info: &str, line: &str) -> String {
    if !style.color {
        return line.to_string();
    }
    let lang = lang(info.split_whitespace().next().unwrap_or(""));
    let mut out = String::with_capacity(line.len() + 32);
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if lang.comments.iter().any(|start| rest.starts_with(start)) {
            out.push_str(&style.paint(sgr::DIM, rest));
            break;
        }
        let taken = if c == '\\' {
            // An escape in a string, or one `ui_text` wrote (`\x1b`): shown as it is.
            let end =
                1 + word_end(&rest[1..]).max(rest[1..].chars().next().map_or(0, char::len_utf8));
            out.push_str(&rest[..end]);
            end
        } else if c == '"' || (c == '\'' && lang.single_quotes) || c == '`' {
            let end = string_end(rest, c);
            out.push_str(&style.paint(sgr::GREEN, &rest[..end]));
            end
        } else if c.is_ascii_digit() {
            let end = word_end(rest);
            out.push_str(&style.paint(sgr::YELLOW, &rest[..end]));
            end
        } else if c.is_alphabetic() || c == '_' {
            let end = word_end(rest);
            let word = &rest[..end];
            if lang.keywords.contains(&word) {
                out.push_str(&style.paint(sgr::MAGENTA, word));
            } else {
                out.push_str(word);
            }
            end
        } else {
            out.push(c);
            c.len_utf8()
        };
        rest = &rest[taken..];
    }
    out
}

fn word_end(text: &str) -> usize {
    text.find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len())
}

/// The byte just past the string opened by `quote` at the start of `text` (or the line's
/// end: strings do not span lines here).
fn string_end(text: &str, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return i + c.len_utf8();
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_strings_numbers_and_comments_are_coloured() {
        let shown = line(&Style::COLOR, "rust", r#"let x = "a\"b" + 42; // done"#);
        assert_eq!(
            shown,
            "\x1b[35mlet\x1b[0m x = \x1b[32m\"a\\\"b\"\x1b[0m + \x1b[33m42\x1b[0m; \x1b[2m// done\x1b[0m"
        );
        assert_eq!(line(&Style::PLAIN, "rust", "let x"), "let x");
    }
}
