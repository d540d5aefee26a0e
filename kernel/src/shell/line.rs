//! A minimal line editor for a serial terminal.

use alloc::string::String;

/// Longest line accepted; further characters are ignored (and not echoed).
const MAX_LINE: usize = 256;

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const CTRL_U: u8 = 0x15;
const ESCAPE: u8 = 0x1b;

/// What feeding one byte produced.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// Nothing to do (ignored byte).
    None,
    /// Text to echo back to the terminal.
    Echo(&'static str),
    /// A finished line.
    Line(String),
    /// The line was discarded (Ctrl-C).
    Cancel,
    /// Ctrl-D on an empty line: end of input.
    EndOfInput,
}

pub struct LineEditor {
    line: String,
    /// Inside an escape sequence (arrow keys and the like are ignored).
    escape: EscapeState,
    /// The last byte was '\r' (a following '\n' belongs to the same Enter).
    after_cr: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EscapeState {
    None,
    Started,
    Csi,
}

/// Echo strings for printable ASCII, so that `LineEvent::Echo` needs no allocation.
static PRINTABLE: [u8; 95] = {
    let mut table = [0; 95];
    let mut i = 0;
    while i < 95 {
        table[i] = b' ' + i as u8;
        i += 1;
    }
    table
};

fn echo_of(byte: u8) -> &'static str {
    let index = usize::from(byte - b' ');
    core::str::from_utf8(&PRINTABLE[index..=index]).unwrap_or("")
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub fn new() -> Self {
        Self {
            line: String::new(),
            escape: EscapeState::None,
            after_cr: false,
        }
    }

    /// Feeds one byte from the terminal.
    pub fn feed(&mut self, byte: u8) -> LineEvent {
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match self.escape {
            EscapeState::Started => {
                self.escape = if byte == b'[' {
                    EscapeState::Csi
                } else {
                    EscapeState::None
                };
                return LineEvent::None;
            }
            EscapeState::Csi => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = EscapeState::None;
                }
                return LineEvent::None;
            }
            EscapeState::None => {}
        }
        match byte {
            b'\n' if after_cr => LineEvent::None,
            b'\r' | b'\n' => LineEvent::Line(core::mem::take(&mut self.line)),
            BACKSPACE | DELETE => match self.line.pop() {
                Some(_) => LineEvent::Echo("\x08 \x08"),
                None => LineEvent::None,
            },
            CTRL_U => {
                let erased = self.line.len();
                self.line.clear();
                if erased == 0 {
                    LineEvent::None
                } else {
                    // Return to the start of the input and clear to the end of the line.
                    LineEvent::Echo("\r> \x1b[K")
                }
            }
            CTRL_C => {
                self.line.clear();
                LineEvent::Cancel
            }
            CTRL_D if self.line.is_empty() => LineEvent::EndOfInput,
            ESCAPE => {
                self.escape = EscapeState::Started;
                LineEvent::None
            }
            b' '..=b'~' if self.line.len() < MAX_LINE => {
                self.line.push(char::from(byte));
                LineEvent::Echo(echo_of(byte))
            }
            _ => LineEvent::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::prelude::*;

    fn feed_all(editor: &mut LineEditor, bytes: &[u8]) -> alloc::vec::Vec<LineEvent> {
        bytes
            .iter()
            .map(|&b| editor.feed(b))
            .filter(|e| *e != LineEvent::None)
            .collect()
    }

    ktest! {
        fn backspace_edits_the_line() -> TestResult {
            let mut editor = LineEditor::new();
            let events = feed_all(&mut editor, b"mex\x7fm\r");
            check_eq!(events.last(), Some(&LineEvent::Line(String::from("mem"))));
            check!(events.contains(&LineEvent::Echo("\x08 \x08")));
            Ok(())
        }

        fn crlf_is_one_enter_and_escape_sequences_are_ignored() -> TestResult {
            let mut editor = LineEditor::new();
            let events = feed_all(&mut editor, b"up\x1b[Atime\r\n");
            check_eq!(events.iter().filter(|e| matches!(e, LineEvent::Line(_))).count(), 1);
            check_eq!(events.last(), Some(&LineEvent::Line(String::from("uptime"))));
            Ok(())
        }

        fn control_keys_cancel_erase_and_end_input() -> TestResult {
            let mut editor = LineEditor::new();
            check_eq!(feed_all(&mut editor, b"abc\x03"), alloc::vec![LineEvent::Echo("a"), LineEvent::Echo("b"), LineEvent::Echo("c"), LineEvent::Cancel]);
            check_eq!(feed_all(&mut editor, b"x\x15\r"), alloc::vec![LineEvent::Echo("x"), LineEvent::Echo("\r> \x1b[K"), LineEvent::Line(String::new())]);
            check_eq!(editor.feed(CTRL_D), LineEvent::EndOfInput);
            editor.feed(b'a');
            check_eq!(editor.feed(CTRL_D), LineEvent::None, "Ctrl-D ends input only on an empty line");
            Ok(())
        }

        fn overlong_lines_are_cut() -> TestResult {
            let mut editor = LineEditor::new();
            for _ in 0..(MAX_LINE + 10) {
                editor.feed(b'x');
            }
            match editor.feed(b'\r') {
                LineEvent::Line(line) => check_eq!(line.len(), MAX_LINE),
                other => fail!("expected a line, got {other:?}"),
            }
            Ok(())
        }
    }
}
