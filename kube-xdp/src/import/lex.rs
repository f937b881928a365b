//! haproxy.cfg as lines of words: comments, quoting, escapes, `\` line
//! continuations and environment variables, as HAProxy's own parser reads
//! them (`cfgparse.c`, `parse_line()`): words are split on blanks; `'…'`
//! keeps everything literally; `"…"` expands `$VAR` and `${VAR}`; outside
//! quotes `${VAR}` is expanded too (the kubeadm guide's template writes
//! `bind *:${APISERVER_DEST_PORT}` unquoted, meaning the operator's
//! value); `\` escapes the next character; `#` outside quotes starts a
//! comment.

/// One logical line: its first physical line (1-based) and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub words: Vec<String>,
}

impl Line {
    /// The first word (the keyword).
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// Word `i` (empty when absent).
    pub fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }

    /// The words joined again, for messages.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// What the lexer found besides the lines.
#[derive(Debug, Default)]
pub struct Lexed {
    pub lines: Vec<Line>,
    /// Variables referenced but not set, with the line of their first use.
    pub unset: Vec<(String, usize)>,
}

/// Splits `text` into logical lines of words, expanding variables with
/// `env` (a variable `env` does not know is kept as written, `${NAME}`,
/// and reported in [`Lexed::unset`]).
pub fn lex(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Lexed {
    let mut out = Lexed::default();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if pending.is_empty() {
            start = i + 1;
        }
        // A line ending in an odd number of backslashes continues.
        let trailing = raw.len() - raw.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            pending.push_str(&raw[..raw.len() - 1]);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let words = split(&pending, start, env, &mut out.unset);
        if !words.is_empty() {
            out.lines.push(Line {
                number: start,
                words,
            });
        }
        pending.clear();
    }
    if !pending.is_empty() {
        let words = split(&pending, start, env, &mut out.unset);
        if !words.is_empty() {
            out.lines.push(Line {
                number: start,
                words,
            });
        }
    }
    out
}

fn split(
    line: &str,
    number: usize,
    env: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<(String, usize)>,
) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                in_word = true;
                // `\r`, `\n`, `\t` stand for control characters in
                // HAProxy; kept as written, since nothing translated uses them.
                match chars.next() {
                    Some(next @ ('r' | 'n' | 't')) => {
                        word.push('\\');
                        word.push(next);
                    }
                    Some(next) => word.push(next),
                    None => {}
                }
            }
            (_, '$') => {
                in_word = true;
                let braced = chars.peek() == Some(&'{');
                // Bare `$NAME` is a variable only inside double quotes.
                if !braced && quote.is_none() {
                    word.push('$');
                    continue;
                }
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced {
                    if chars.peek() == Some(&'}') {
                        chars.next();
                    } else {
                        word.push_str("${");
                        word.push_str(&name);
                        continue;
                    }
                }
                if name.is_empty() {
                    word.push('$');
                    continue;
                }
                match env(&name) {
                    Some(value) => word.push_str(&value),
                    None => {
                        if !unset.iter().any(|(n, _)| *n == name) {
                            unset.push((name.clone(), number));
                        }
                        word.push_str(&format!("${{{name}}}"));
                    }
                }
            }
            (_, c) => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("6443".into()),
            "HOST1_ADDRESS" => Some("198.18.0.11".into()),
            _ => None,
        }
    }

    fn words(text: &str) -> Vec<Vec<String>> {
        lex(text, &env).lines.into_iter().map(|l| l.words).collect()
    }

    #[test]
    fn comments_quotes_and_escapes_split_as_haproxy_does() {
        assert_eq!(
            words("  bind *:6443   # the API\n# alone\n\nstats auth 'ad min':\"p#w\" x\\ y"),
            vec![
                vec!["bind", "*:6443"],
                vec!["stats", "auth", "ad min:p#w", "x y"]
            ]
        );
    }

    #[test]
    fn continuation_joins_lines_and_keeps_the_first_line_number() {
        let lexed = lex("server cp1 198.18.0.11:6443 \\\n    check fall 3\nx", &env);
        assert_eq!(lexed.lines[0].number, 1);
        assert_eq!(
            lexed.lines[0].text(),
            "server cp1 198.18.0.11:6443 check fall 3"
        );
        assert_eq!(lexed.lines[1].number, 3);
    }

    #[test]
    fn variables_expand_and_unset_ones_are_reported() {
        let lexed = lex(
            "bind *:${PORT}\nserver a \"$HOST1_ADDRESS:${PORT}\" $PORT\nserver b ${NOPE}:1",
            &env,
        );
        assert_eq!(lexed.lines[0].words, vec!["bind", "*:6443"]);
        assert_eq!(
            lexed.lines[1].words,
            vec!["server", "a", "198.18.0.11:6443", "$PORT"]
        );
        assert_eq!(lexed.lines[2].words, vec!["server", "b", "${NOPE}:1"]);
        assert_eq!(lexed.unset, vec![("NOPE".to_owned(), 3)]);
    }
}
