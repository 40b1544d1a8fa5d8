//! The filter expression language of `[[transform]] filter` and `--filter`: a small
//! hand-written recursive-descent parser. (A leaf, so that the configuration's checks can
//! parse expressions; binding them to a schema and evaluating them is
//! `transform::config`'s.)
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | pred
//! pred    := operand [ CMP operand | ("=~" | "!~") STRING | "is" ["not"] "null"
//!                    | ["not"] "in" "[" literal ("," literal)* "]" ]
//! operand := FIELD | literal | "(" expr ")"
//! literal := STRING | NUMBER | "true" | "false" | "null"
//! CMP     := "==" | "!=" | "<" | "<=" | ">" | ">="
//! ```
//!
//! A FIELD is a name (`level`, `http.status`, which reads the column `http_status` unless a
//! column is named `http.status`) or any column name in backquotes (`` `odd name` ``). Strings
//! take double or single quotes, with `\"`, `\'`, `\\`, `\n` and `\t` escapes. Errors give the
//! byte offset in the expression, which the configuration turns into a line and column.

use std::fmt;

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `null`.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or an exponent.
    Float(f64),
    /// A string.
    Str(String),
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Null => f.write_str("null"),
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Float(x) => write!(f, "{x:?}"),
            Lit::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl CmpOp {
    /// Whether `ord` (left compared with right) satisfies the operator.
    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A parsed expression. Field references keep their offset, for errors found when the
/// expression meets a schema.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A field (column) reference, with its byte offset in the expression.
    Field(String, usize),
    /// A literal.
    Lit(Lit),
    /// `a OP b`.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// `not a`.
    Not(Box<Expr>),
    /// `a =~ "re"` (or `!~` when `negate`).
    Match {
        /// What is matched: a string field.
        subject: Box<Expr>,
        /// The compiled pattern.
        regex: regex::Regex,
        /// `!~`.
        negate: bool,
    },
    /// `a is null` (or `is not null` when `negate`).
    IsNull(Box<Expr>, bool),
    /// `a in [..]` (or `not in` when `negate`).
    In(Box<Expr>, Vec<Lit>, bool),
}

impl fmt::Display for Expr {
    /// Fully parenthesized, for tests and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Field(name, _) => write!(f, "`{name}`"),
            Expr::Lit(l) => write!(f, "{l}"),
            Expr::Cmp(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
            Expr::Not(a) => write!(f, "(not {a})"),
            Expr::Match {
                subject,
                regex,
                negate,
            } => {
                let op = if *negate { "!~" } else { "=~" };
                write!(f, "({subject} {op} {:?})", regex.as_str())
            }
            Expr::IsNull(a, negate) => {
                let not = if *negate { " not" } else { "" };
                write!(f, "({a} is{not} null)")
            }
            Expr::In(a, list, negate) => {
                let not = if *negate { "not " } else { "" };
                let items: Vec<String> = list.iter().map(|l| l.to_string()).collect();
                write!(f, "({a} {not}in [{}])", items.join(", "))
            }
        }
    }
}

/// A parse error: what is wrong, at which byte offset of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The byte offset in the expression.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(&'static str),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Quoted(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "the string {s:?}"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Op(o) => write!(f, "`{o}`"),
            Tok::End => f.write_str("the end of the expression"),
        }
    }
}

const OPS: [&str; 14] = [
    "==", "!=", "<=", ">=", "=~", "!~", "<", ">", "(", ")", "[", "]", ",", "=",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |offset, message: String| Err(ParseError { offset, message });
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start));
        } else if c.is_ascii_digit()
            || (c == b'-' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            let mut float = false;
            while i < b.len() {
                match b[i] {
                    b'0'..=b'9' | b'_' => i += 1,
                    b'.' | b'e' | b'E' => {
                        float = true;
                        i += 1;
                        if matches!(b[i - 1], b'e' | b'E') && matches!(b.get(i), Some(b'+' | b'-'))
                        {
                            i += 1;
                        }
                    }
                    _ => break,
                }
            }
            let text = src[start..i].replace('_', "");
            let tok = if float {
                text.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Tok::Float)
            } else {
                text.parse::<i64>().ok().map(Tok::Int)
            };
            match tok {
                Some(t) => out.push((t, start)),
                None => return err(start, format!("`{}` is not a number", &src[start..i])),
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(ch) = src[i..].chars().next() else {
                    let what = if c == b'`' { "name" } else { "string" };
                    return err(start, format!("this {what} is not closed"));
                };
                i += ch.len_utf8();
                if ch as u32 == c as u32 {
                    break;
                }
                if ch == '\\' {
                    let Some(e) = src[i..].chars().next() else {
                        continue;
                    };
                    i += e.len_utf8();
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        '\\' | '"' | '\'' | '`' => s.push(e),
                        other => {
                            return err(
                                i - other.len_utf8() - 1,
                                format!("`\\{other}` is not an escape (\\\" \\' \\\\ \\n \\t)"),
                            )
                        }
                    }
                } else {
                    s.push(ch);
                }
            }
            out.push((
                if c == b'`' {
                    Tok::Quoted(s)
                } else {
                    Tok::Str(s)
                },
                start,
            ));
        } else if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(*op)) {
            if *op == "=" {
                return err(i, "`=` is not an operator: compare with `==`".into());
            }
            i += op.len();
            out.push((Tok::Op(op), start));
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            let hint = match ch {
                '&' => ": write `and`",
                '|' => ": write `or`",
                '!' => ": write `not`",
                _ => "",
            };
            return err(i, format!("unexpected `{ch}`{hint}"));
        }
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

/// Parses a filter expression.
///
/// ```
/// use pinflow::expr::parse;
/// let e = parse("a == 1 or b == 2 and not c").unwrap();
/// assert_eq!(e.to_string(), "((`a` == 1) or ((`b` == 2) and (not `c`)))");
/// assert_eq!(parse("a == ").unwrap_err().offset, 5);
/// ```
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
    };
    if p.peek() == &Tok::End {
        return Err(ParseError {
            offset: 0,
            message: "the expression is empty".into(),
        });
    }
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        Tok::Op(")") => p.fail("this `)` closes nothing".into()),
        t => {
            let t = t.clone();
            p.fail(format!("expected `and`, `or` or the end, found {t}"))
        }
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn offset(&self) -> usize {
        self.toks[self.at].1
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn fail<T>(&self, message: String) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.offset(),
            message,
        })
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == k)
    }

    fn eat_keyword(&mut self, k: &str) -> bool {
        let yes = self.keyword(k);
        if yes {
            self.bump();
        }
        yes
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.eat_keyword("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.not()?;
        while self.eat_keyword("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_keyword("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.pred()
    }

    fn pred(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        let cmp = match self.peek() {
            Tok::Op("==") => Some(CmpOp::Eq),
            Tok::Op("!=") => Some(CmpOp::Ne),
            Tok::Op("<") => Some(CmpOp::Lt),
            Tok::Op("<=") => Some(CmpOp::Le),
            Tok::Op(">") => Some(CmpOp::Gt),
            Tok::Op(">=") => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = cmp {
            self.bump();
            let at = self.offset();
            let right = self.operand()?;
            if matches!(right, Expr::Lit(Lit::Null)) || matches!(left, Expr::Lit(Lit::Null)) {
                return Err(ParseError {
                    offset: at,
                    message: format!(
                        "a comparison with null is never true: write `is null` or `is not null` \
                         instead of `{} null`",
                        op.symbol()
                    ),
                });
            }
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        if let Tok::Op(op @ ("=~" | "!~")) = self.peek() {
            let negate = *op == "!~";
            self.bump();
            let at = self.offset();
            let Tok::Str(pattern) = self.peek().clone() else {
                let t = self.peek().clone();
                return self.fail(format!("expected a regular expression string, found {t}"));
            };
            self.bump();
            let regex = regex::Regex::new(&pattern).map_err(|e| ParseError {
                offset: at,
                message: format!("not a regular expression: {}", one_line(&e.to_string())),
            })?;
            return Ok(Expr::Match {
                subject: Box::new(left),
                regex,
                negate,
            });
        }
        if self.eat_keyword("is") {
            let negate = self.eat_keyword("not");
            if !self.eat_keyword("null") {
                let t = self.peek().clone();
                return self.fail(format!("expected `null` after `is`, found {t}"));
            }
            return Ok(Expr::IsNull(Box::new(left), negate));
        }
        let negate = self.keyword("not")
            && matches!(self.toks.get(self.at + 1), Some((Tok::Ident(s), _)) if s == "in");
        if negate {
            self.bump();
        }
        if self.eat_keyword("in") {
            if self.peek() != &Tok::Op("[") {
                let t = self.peek().clone();
                return self.fail(format!("expected `[` after `in`, found {t}"));
            }
            self.bump();
            let mut list = Vec::new();
            loop {
                if self.peek() == &Tok::Op("]") && list.is_empty() {
                    return self.fail("the list is empty".into());
                }
                let at = self.offset();
                match self.operand()? {
                    Expr::Lit(Lit::Null) => {
                        return Err(ParseError {
                            offset: at,
                            message: "null in a list is never matched: use `is null`".into(),
                        })
                    }
                    Expr::Lit(l) => list.push(l),
                    _ => {
                        return Err(ParseError {
                            offset: at,
                            message: "a list holds literals only".into(),
                        })
                    }
                }
                match self.bump() {
                    (Tok::Op(","), _) => continue,
                    (Tok::Op("]"), _) => break,
                    (t, offset) => {
                        return Err(ParseError {
                            offset,
                            message: format!("expected `,` or `]`, found {t}"),
                        })
                    }
                }
            }
            return Ok(Expr::In(Box::new(left), list, negate));
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let (tok, offset) = self.bump();
        Ok(match tok {
            Tok::Op("(") => {
                let e = self.or()?;
                if self.peek() != &Tok::Op(")") {
                    let t = self.peek().clone();
                    return self.fail(format!("expected `)` to close the `(`, found {t}"));
                }
                self.bump();
                e
            }
            Tok::Int(i) => Expr::Lit(Lit::Int(i)),
            Tok::Float(x) => Expr::Lit(Lit::Float(x)),
            Tok::Str(s) => Expr::Lit(Lit::Str(s)),
            Tok::Quoted(name) => Expr::Field(name, offset),
            Tok::Ident(s) => match s.as_str() {
                "true" => Expr::Lit(Lit::Bool(true)),
                "false" => Expr::Lit(Lit::Bool(false)),
                "null" => Expr::Lit(Lit::Null),
                "and" | "or" | "not" | "is" | "in" => {
                    return Err(ParseError {
                        offset,
                        message: format!("expected a field or a value, found `{s}`"),
                    })
                }
                _ => Expr::Field(s, offset),
            },
            t => {
                return Err(ParseError {
                    offset,
                    message: format!("expected a field or a value, found {t}"),
                })
            }
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(src: &str) -> String {
        parse(src).map(|e| e.to_string()).unwrap_or_else(|e| {
            panic!("{src}: {} at {}", e.message, e.offset);
        })
    }

    fn error(src: &str) -> (usize, String) {
        let e = parse(src).expect_err(src);
        (e.offset, e.message)
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        assert_eq!(shown("a or b and c"), "(`a` or (`b` and `c`))");
        assert_eq!(shown("not a and b"), "((not `a`) and `b`)");
        assert_eq!(shown("not not a"), "(not (not `a`))");
        assert_eq!(shown("(a or b) and c"), "((`a` or `b`) and `c`)");
        assert_eq!(
            shown("a == 1 or b != 'x' and c >= 2.5"),
            "((`a` == 1) or ((`b` != \"x\") and (`c` >= 2.5)))"
        );
    }

    #[test]
    fn every_predicate_form_parses() {
        assert_eq!(shown("http.status >= 500"), "(`http.status` >= 500)");
        assert_eq!(shown("`odd name` < -3"), "(`odd name` < -3)");
        assert_eq!(shown("msg =~ \"^ab+\""), "(`msg` =~ \"^ab+\")");
        assert_eq!(shown("msg !~ 'x'"), "(`msg` !~ \"x\")");
        assert_eq!(shown("a is null"), "(`a` is null)");
        assert_eq!(shown("a is not null"), "(`a` is not null)");
        assert_eq!(
            shown("a in [1, 2.5, 'x', true]"),
            "(`a` in [1, 2.5, \"x\", true])"
        );
        assert_eq!(shown("a not in [1]"), "(`a` not in [1])");
        assert_eq!(shown("not a in [1]"), "(not (`a` in [1]))");
        assert_eq!(shown("s == \"a\\\"b\""), "(`s` == \"a\\\"b\")");
        assert_eq!(shown("x == 1e3"), "(`x` == 1000.0)");
    }

    #[test]
    fn errors_name_the_offset_of_the_fault() {
        assert_eq!(error("").0, 0);
        assert_eq!(error("a == ").0, 5);
        assert_eq!(
            error("a = 1"),
            (2, "`=` is not an operator: compare with `==`".into())
        );
        assert_eq!(
            error("(a == 1"),
            (
                7,
                "expected `)` to close the `(`, found the end of the expression".into()
            )
        );
        assert_eq!(error("a == 1)").0, 6);
        assert_eq!(error("a == 'x").0, 5);
        assert_eq!(error("a && b").0, 2);
        assert!(error("a && b").1.contains("`and`"));
        assert_eq!(error("a == null").0, 5);
        assert!(error("a == null").1.contains("is null"));
        assert_eq!(error("m =~ '('").0, 5);
        assert!(error("m =~ '('").1.starts_with("not a regular expression"));
        assert_eq!(error("a is nul").0, 5);
        assert_eq!(error("a in []").0, 6);
        assert_eq!(error("a in [b]").0, 6);
        assert_eq!(error("a b").0, 2);
        assert_eq!(error("and").0, 0);
        assert_eq!(error("a == 99999999999999999999").0, 5);
        // Offsets are bytes: a multi-byte character before the fault counts its bytes.
        assert_eq!(error("s == 'é' and").0, 13);
    }
}
