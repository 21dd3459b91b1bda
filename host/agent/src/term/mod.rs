//! The rendered terminal view: whether to colour, and the pieces drawn in colour.
//!
//! Rendering is for a person at a terminal only. Piped output, `--output json` and tests
//! keep the plain text [`crate::render`] has always printed; `NO_COLOR` keeps the layout
//! (bullets, rules, diffs) but drops every colour; `--color always` (or
//! `AGENT_COLOR=always`) forces both on, e.g. to see them through `less -R` or in tests.
//! Every piece of untrusted text is passed through [`crate::ui_text`] before any escape
//! sequence of ours is put around it, so only the codes written here reach the terminal.

pub mod diff;
pub mod highlight;
pub mod markdown;
pub mod tools;

use std::io::IsTerminal;

/// `--color` / `AGENT_COLOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Render on a terminal (stdout and stderr), uncoloured if `NO_COLOR` is set.
    #[default]
    Auto,
    /// Render and colour even when piped.
    Always,
    /// Never render: plain text.
    Never,
}

/// What the text renderer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Markdown layout, compact tool lines and diffs.
    pub rendered: bool,
    /// ANSI colours and emphasis inside that layout.
    pub color: bool,
}

impl Style {
    /// Plain text, as printed when piped.
    pub const PLAIN: Style = Style {
        rendered: false,
        color: false,
    };
    /// Rendered and coloured.
    pub const COLOR: Style = Style {
        rendered: true,
        color: true,
    };

    /// Decides from the choice, the environment and whether both streams are terminals.
    pub fn resolve(choice: ColorChoice) -> Style {
        let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style::decide(choice, terminal, no_color)
    }

    fn decide(choice: ColorChoice, terminal: bool, no_color: bool) -> Style {
        match choice {
            ColorChoice::Always => Style::COLOR,
            ColorChoice::Never => Style::PLAIN,
            ColorChoice::Auto if terminal => Style {
                rendered: true,
                color: !no_color,
            },
            ColorChoice::Auto => Style::PLAIN,
        }
    }

    /// `text` between the SGR `code` and a reset, or as it is without colour. `text` must
    /// already be safe (passed through `ui_text`).
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// SGR codes used across the view.
pub mod sgr {
    pub const BOLD: &str = "1";
    pub const DIM: &str = "2";
    pub const ITALIC: &str = "3";
    pub const UNDERLINE: &str = "4";
    pub const STRIKE: &str = "9";
    pub const RED: &str = "31";
    pub const GREEN: &str = "32";
    pub const YELLOW: &str = "33";
    pub const BLUE: &str = "34";
    pub const MAGENTA: &str = "35";
    pub const CYAN: &str = "36";
    pub const HEADING: &str = "1;35";
    pub const LINK: &str = "4;34";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_renders_on_a_terminal_only_and_no_color_drops_colour() {
        assert_eq!(Style::decide(ColorChoice::Auto, false, false), Style::PLAIN);
        assert_eq!(Style::decide(ColorChoice::Auto, true, false), Style::COLOR);
        let layout = Style::decide(ColorChoice::Auto, true, true);
        assert!(layout.rendered && !layout.color);
        assert_eq!(
            Style::decide(ColorChoice::Always, false, true),
            Style::COLOR
        );
        assert_eq!(Style::decide(ColorChoice::Never, true, false), Style::PLAIN);
        assert_eq!(Style::COLOR.paint(sgr::RED, "x"), "\x1b[31mx\x1b[0m");
        assert_eq!(Style::PLAIN.paint(sgr::RED, "x"), "x");
    }
}
