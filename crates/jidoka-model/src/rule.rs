//! Option rules of BOM lines: boolean expressions over a unit's option codes.
//!
//! Grammar: `expr := and ('|' and)*`, `and := unary ('&' unary)*`,
//! `unary := '!' unary | '(' expr ')' | FAMILY '=' VALUE`. An empty rule always holds.
//! Example: `ENGINE=V6 & !TRIM=BASE`, `(SUNROOF=YES | TRIM=LUX) & !ENGINE=EV`.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Always,
    /// The option code `FAMILY=VALUE`, kept joined so evaluation allocates nothing.
    Is(String),
    Not(Box<Rule>),
    And(Vec<Rule>),
    Or(Vec<Rule>),
}

/// Longest accepted rule text, and deepest nesting.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        self.skip();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || b"_-.".contains(&self.s[self.pos]))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected an option name at character {}", self.pos + 1));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn expr(&mut self) -> Result<Rule, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let mut terms = vec![self.and()?];
        while self.eat(b'|') {
            terms.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 { terms.remove(0) } else { Rule::Or(terms) })
    }

    fn and(&mut self) -> Result<Rule, String> {
        let mut terms = vec![self.unary()?];
        while self.eat(b'&') {
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Rule::And(terms) })
    }

    fn unary(&mut self) -> Result<Rule, String> {
        if self.eat(b'!') {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err("nested too deeply".into());
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Rule::Not(Box::new(inner)));
        }
        if self.eat(b'(') {
            let inner = self.expr()?;
            if !self.eat(b')') {
                return Err(format!("expected `)` at character {}", self.pos + 1));
            }
            return Ok(inner);
        }
        let family = self.ident()?;
        if !self.eat(b'=') {
            return Err(format!("expected `=` after `{family}`"));
        }
        let value = self.ident()?;
        Ok(Rule::Is(format!("{family}={value}")))
    }
}

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, String> {
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} characters"));
        }
        if text.trim().is_empty() {
            return Ok(Rule::Always);
        }
        let mut p = Parser { s: text.as_bytes(), pos: 0, depth: 0 };
        let rule = p.expr()?;
        p.skip();
        if p.pos != p.s.len() {
            return Err(format!("unexpected `{}` at character {}", char::from(p.s[p.pos]), p.pos + 1));
        }
        Ok(rule)
    }

    /// Whether the rule holds for a unit with these option codes (`FAMILY=VALUE`).
    pub fn holds(&self, options: &BTreeSet<String>) -> bool {
        match self {
            Rule::Always => true,
            Rule::Is(code) => options.contains(code.as_str()),
            Rule::Not(r) => !r.holds(options),
            Rule::And(rs) => rs.iter().all(|r| r.holds(options)),
            Rule::Or(rs) => rs.iter().any(|r| r.holds(options)),
        }
    }

    /// Every `(family, value)` the rule mentions.
    pub fn terms(&self) -> Vec<(String, String)> {
        match self {
            Rule::Always => Vec::new(),
            Rule::Is(code) => {
                let (f, v) = code.split_once('=').unwrap_or((code.as_str(), ""));
                vec![(f.to_string(), v.to_string())]
            }
            Rule::Not(r) => r.terms(),
            Rule::And(rs) | Rule::Or(rs) => rs.iter().flat_map(Rule::terms).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_evaluate_with_precedence() {
        let r = Rule::parse("ENGINE=V6 & !TRIM=BASE").expect("rule");
        assert!(r.holds(&opts(&["ENGINE=V6", "TRIM=LUX"])));
        assert!(!r.holds(&opts(&["ENGINE=V6", "TRIM=BASE"])));
        let r = Rule::parse("SUNROOF=YES | TRIM=LUX & ENGINE=EV").expect("rule");
        assert!(r.holds(&opts(&["SUNROOF=YES"])), "& binds tighter than |");
        assert!(!r.holds(&opts(&["TRIM=LUX"])));
        let r = Rule::parse("(SUNROOF=YES | TRIM=LUX) & !ENGINE=EV").expect("rule");
        assert!(!r.holds(&opts(&["SUNROOF=YES", "ENGINE=EV"])));
        assert_eq!(Rule::parse("  ").expect("empty"), Rule::Always);
        assert_eq!(r.terms().len(), 3);
    }

    #[test]
    fn bad_rules_say_where() {
        assert!(Rule::parse("ENGINE=").is_err_and(|e| e.contains("option name")));
        assert!(Rule::parse("ENGINE V6").is_err_and(|e| e.contains("`=`")));
        assert!(Rule::parse("(A=B").is_err_and(|e| e.contains("`)`")));
        assert!(Rule::parse("A=B C=D").is_err_and(|e| e.contains("unexpected `C`")));
        assert!(Rule::parse(&"!".repeat(1000)).is_err_and(|e| e.contains("deeply")));
        assert!(Rule::parse(&"(".repeat(1000)).is_err_and(|e| e.contains("deeply")));
    }
}
