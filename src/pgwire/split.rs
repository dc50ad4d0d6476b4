//! Split a query string into statements at top-level semicolons, keeping each
//! statement's exact text (quotes, comments and dollar quoting respected), and
//! count its `$n` parameters.

/// The statements of `sql`, each with its original text; empty ones (only
/// whitespace and comments) are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |out: &mut Vec<String>, s: &str| {
        if !is_blank(s) {
            out.push(s.trim().to_string());
        }
    };
    while i < b.len() {
        match b[i] {
            b';' => {
                push(&mut out, &sql[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i = skip_token(sql, i),
        }
    }
    push(&mut out, &sql[start..]);
    out
}

/// Only whitespace, semicolons and comments?
pub fn is_blank(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() || b[i] == b';' {
            i += 1;
        } else if b[i..].starts_with(b"--") || b[i..].starts_with(b"/*") {
            i = skip_token(sql, i);
        } else {
            return false;
        }
    }
    true
}

/// The highest `$n` outside quotes and comments.
pub fn max_placeholder(sql: &str) -> usize {
    let b = sql.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$'
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
            && (i == 0 || !is_ident_byte(b[i - 1]))
        {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if let Ok(k) = sql[i + 1..j].parse::<usize>() {
                n = n.max(k);
            }
            i = j;
        } else {
            i = skip_token(sql, i);
        }
    }
    n
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// From `i`, skip one quoted string, comment or dollar-quoted body, or one byte.
fn skip_token(sql: &str, i: usize) -> usize {
    let b = sql.as_bytes();
    match b[i] {
        b'\'' => {
            // E'…' strings take backslash escapes.
            let escapes =
                i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !is_ident_byte(b[i - 2]));
            let mut j = i + 1;
            while j < b.len() {
                if escapes && b[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if b[j] == b'\'' {
                    if b.get(j + 1) == Some(&b'\'') {
                        j += 2;
                        continue;
                    }
                    return j + 1;
                }
                j += 1;
            }
            b.len()
        }
        b'"' => {
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'"' {
                    if b.get(j + 1) == Some(&b'"') {
                        j += 2;
                        continue;
                    }
                    return j + 1;
                }
                j += 1;
            }
            b.len()
        }
        b'-' if b.get(i + 1) == Some(&b'-') => match sql[i..].find('\n') {
            Some(k) => i + k + 1,
            None => b.len(),
        },
        b'/' if b.get(i + 1) == Some(&b'*') => {
            let mut depth = 1;
            let mut j = i + 2;
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            j
        }
        b'$' if i == 0 || !is_ident_byte(b[i - 1]) => {
            // $tag$ … $tag$ (tag may be empty); `$1` is a parameter, not a quote.
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let tag = &sql[i..j];
            if j < b.len() && b[j] == b'$' && !tag[1..].starts_with(|c: char| c.is_ascii_digit()) {
                let delim = &sql[i..=j];
                match sql[j + 1..].find(delim) {
                    Some(k) => j + 1 + k + delim.len(),
                    None => b.len(),
                }
            } else {
                i + 1
            }
        }
        _ => {
            // advance by one UTF-8 character
            let mut j = i + 1;
            while j < b.len() && (b[j] & 0xC0) == 0x80 {
                j += 1;
            }
            j
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons() {
        assert_eq!(
            split_statements("SELECT 1; SELECT 2"),
            vec!["SELECT 1", "SELECT 2"]
        );
        assert_eq!(
            split_statements("SELECT 'a;b'; SELECT \"x;\""),
            vec!["SELECT 'a;b'", "SELECT \"x;\""]
        );
        assert_eq!(
            split_statements("SELECT 'it''s;'; -- c;\n SELECT 2"),
            vec!["SELECT 'it''s;'", "-- c;\n SELECT 2"]
        );
        assert_eq!(
            split_statements("SELECT $$a;b$$; SELECT $t$;$t$"),
            vec!["SELECT $$a;b$$", "SELECT $t$;$t$"]
        );
        assert_eq!(
            split_statements("SELECT E'\\';'; /* ; /* ; */ */ SELECT 3"),
            vec!["SELECT E'\\';'", "/* ; /* ; */ */ SELECT 3"]
        );
        assert!(split_statements(" ; -- only a comment\n;").is_empty());
        assert_eq!(
            split_statements("SELECT 'é;'; SELECT 2;"),
            vec!["SELECT 'é;'", "SELECT 2"]
        );
    }

    #[test]
    fn counts_parameters() {
        assert_eq!(max_placeholder("SELECT $1, $12 FROM t WHERE a = '$99'"), 12);
        assert_eq!(max_placeholder("SELECT $$ $5 $$, $2"), 2);
        assert_eq!(max_placeholder("SELECT 1"), 0);
    }
}
