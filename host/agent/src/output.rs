//! Bounded capture of a command's output: the first and the last bytes, whatever the size.
//!
//! A command may print gigabytes; the agent keeps at most `head + tail` bytes in memory
//! (test summaries sit at the end, so the tail matters as much as the head) and says how
//! much it left out. Output is bytes, not text: invalid UTF-8 is shown lossily, never an
//! error.

/// Keeps the first `head_cap` and the last `tail_cap` bytes written to it.
#[derive(Debug, Clone)]
pub struct HeadTail {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl HeadTail {
    pub fn new(head_cap: usize, tail_cap: usize) -> HeadTail {
        HeadTail {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_cap,
            tail_cap,
            total: 0,
        }
    }

    /// Keeps up to `limit` bytes in all, split evenly between head and tail.
    pub fn with_limit(limit: usize) -> HeadTail {
        HeadTail::new(limit / 2, limit - limit / 2)
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if self.tail_cap == 0 {
            return;
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// Bytes written in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept output as text, with a marker where bytes were left out.
    pub fn render(&self) -> String {
        self.render_within(usize::MAX)
    }

    /// Like [`HeadTail::render`], but shows at most `limit` bytes of the kept output
    /// (half from the head, half from the tail).
    pub fn render_within(&self, limit: usize) -> String {
        // Head and tail as one run of bytes; when nothing was dropped between them it is
        // the whole output, and the last bytes shown are its last bytes even if they
        // never reached the tail buffer.
        let kept: Vec<u8> = self.head.iter().chain(&self.tail).copied().collect();
        let whole = kept.len() as u64 == self.total;
        let (front, back) = if whole {
            let front = kept.len().min(limit / 2);
            (front, (kept.len() - front).min(limit - limit / 2))
        } else {
            (
                self.head.len().min(limit / 2),
                self.tail.len().min(limit - limit / 2),
            )
        };
        let omitted = self.total - front as u64 - back as u64;
        if omitted == 0 {
            return String::from_utf8_lossy(&kept).into_owned();
        }
        format!(
            "{}\n... [{omitted} bytes of output cut; {} bytes in all] ...\n{}",
            String::from_utf8_lossy(&kept[..front]),
            self.total,
            String::from_utf8_lossy(&kept[kept.len() - back..])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut out = HeadTail::new(4, 4);
        out.push(b"abc");
        out.push(b"def");
        assert_eq!(out.render(), "abcdef");
    }

    #[test]
    fn large_output_keeps_head_and_tail() {
        let mut out = HeadTail::new(3, 3);
        for chunk in [&b"12"[..], b"345", b"6789", b"abcdefg", b"h"] {
            out.push(chunk);
        }
        assert_eq!(out.total(), 17);

        let text = out.render();
        assert!(text.starts_with("123\n"), "{text}");
        assert!(text.ends_with("\nfgh"), "{text}");
        assert!(text.contains("11 bytes of output cut"), "{text}");
        let short = out.render_within(2);
        assert!(
            short.starts_with("1\n") && short.ends_with("\nh"),
            "{short}"
        );
        assert!(short.contains("15 bytes of output cut"), "{short}");
    }

    #[test]
    fn a_short_view_of_output_that_fits_the_head_still_ends_with_its_last_bytes() {
        let mut out = HeadTail::with_limit(100);
        out.push(b"0123456789");
        let short = out.render_within(4);
        assert!(
            short.starts_with("01\n") && short.ends_with("\n89"),
            "{short}"
        );
        assert!(short.contains("6 bytes of output cut"), "{short}");
    }

    #[test]
    fn invalid_utf8_is_shown_lossily() {
        let mut out = HeadTail::with_limit(100);
        out.push(&[b'o', b'k', 0xff, 0xfe, b'!']);
        assert_eq!(out.render(), "ok\u{fffd}\u{fffd}!");
    }
}
