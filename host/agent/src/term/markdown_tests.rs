use super::*;

const SAMPLE: &str = "# Title\nSome *em* and **bold** with `code` and [docs](https://x.dev).\n- one\n2. two\n> quoted\n---\n```rust\nlet x = 1; // one\n```\nend";

fn render_whole(style: Style, text: &str) -> String {
    let mut stream = MarkdownStream::new(style);
    let mut out = stream.push(text);
    out.push_str(&stream.finish());
    out
}

#[test]
fn markdown_renders_with_exact_colours() {
    let expected = "\x1b[1;35mTitle\x1b[0m\n\
        Some \x1b[3mem\x1b[0m and \x1b[1mbold\x1b[0m with \x1b[36mcode\x1b[0m and \x1b[4;34mdocs\x1b[0m\x1b[2m (https://x.dev)\x1b[0m.\n\
        \x1b[36m•\x1b[0m one\n\
        \x1b[36m2.\x1b[0m two\n\
        \x1b[2m│ \x1b[0m\x1b[3mquoted\x1b[0m\n\
        \x1b[2m────────────────────────────────────────\x1b[0m\n\
        \x1b[2m```rust\x1b[0m\n\
        \x1b[35mlet\x1b[0m x = \x1b[33m1\x1b[0m; \x1b[2m// one\x1b[0m\n\
        \x1b[2m```\x1b[0m\n\
        end";
    assert_eq!(render_whole(Style::COLOR, SAMPLE), expected);
}

#[test]
fn without_colour_the_layout_stays_and_no_escape_is_written() {
    let style = Style {
        rendered: true,
        color: false,
    };
    let shown = render_whole(style, SAMPLE);
    assert!(!shown.contains('\x1b'), "{shown:?}");
    assert!(shown.starts_with("# Title\nSome em and bold with `code` and docs (https://x.dev).\n• one\n2. two\n│ quoted\n"), "{shown}");
}

#[test]
fn streaming_in_pieces_gives_the_whole_result() {
    let whole = render_whole(Style::COLOR, SAMPLE);
    for size in [1, 2, 3, 7, 13] {
        let mut stream = MarkdownStream::new(Style::COLOR);
        let mut out = String::new();
        let chars: Vec<char> = SAMPLE.chars().collect();
        for piece in chars.chunks(size) {
            let piece: String = piece.iter().collect();
            out.push_str(&stream.push(&piece));
        }
        out.push_str(&stream.finish());
        assert_eq!(out, whole, "pieces of {size}");
    }
}

#[test]
fn lines_are_printed_once_complete_and_never_again() {
    let mut stream = MarkdownStream::new(Style::COLOR);
    assert_eq!(stream.push("# He"), "");
    assert_eq!(stream.push("ad\nta"), "\x1b[1;35mHead\x1b[0m\n");
    assert_eq!(stream.push("il"), "");
    assert_eq!(stream.finish(), "tail");
    assert_eq!(stream.finish(), "");
}

#[test]
fn escape_sequences_from_the_model_are_made_visible() {
    let attack = "a\x1b]52;c;ZWNobw==\x07 *b\x1b[2J*\n```\ncode \x1b[31mred\u{9b}\n```\n&#27;[31m &#x9b;\n# \x1b]0;t\x07";
    let shown = render_whole(Style::COLOR, attack);
    // Our own codes are all `ESC [ digits ; m`; no other ESC, no C1 control gets through.
    let ours = regex_free_strip(&shown);
    assert!(
        !ours.contains('\x1b') && !ours.contains('\u{9b}') && !ours.contains('\x07'),
        "{shown:?}"
    );
    assert!(shown.contains("code \\x1b["), "{shown:?}");
    assert!(shown.contains("red\x1b[0m\\u{"), "C1 shown: {shown:?}");
    assert!(shown.contains("\\x1b]52;c;"), "{shown:?}");
    assert!(
        shown.contains("\\x1b[31m"),
        "entity decoded to ESC is shown: {shown:?}"
    );
}

/// `text` without the SGR sequences this module writes.
fn regex_free_strip(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\x1b[") {
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(after.len());
        if after[len..].starts_with('m') {
            out.push_str(&rest[..at]);
            rest = &after[len + 1..];
        } else {
            out.push_str(&rest[..at + 2]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
