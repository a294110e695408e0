//! Middleware rules: a module whose source dir has `rule.txt` runs before the modules its
//! rule names, and may answer or pass.
//!
//! Rule syntax (whitespace and commas separate names; `#` starts a comment line):
//! `*` or an empty file = every module; `users,auth` = only those; `-auth` = every module
//! except `auth` (`-a,-b` excludes several). A middleware never runs before itself.
//! Middlewares run in the order of their names (byte order), so the pipeline is stable and
//! predictable; name them `10-auth`, `20-logger` to choose an order.
//!
//! The exchange (`docs/middleware.md`): a middleware passes by answering with the header
//! `x-modhost-pass: 1` (the rest of that response is ignored, except `x-modhost-set-<name>`
//! headers, which set request headers for later stages); any other response is the answer
//! and no later stage runs. A failing middleware fails the request. Every stage sees
//! `x-modhost-target: <module>`; client-sent `x-modhost-*` headers are dropped. The names and
//! the reserved prefix are `binary::header`'s, shared with the guest SDK.

use std::path::Path;

/// Which targets a middleware applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `*` or empty.
    All,
    /// `a,b`.
    Only(Vec<String>),
    /// `-a,-b`.
    Except(Vec<String>),
}

impl Rule {
    /// Parses a `rule.txt`. Mixing included and excluded names is an error.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let names: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|name| !name.is_empty())
            .collect();
        if names.is_empty() || names == ["*"] {
            return Ok(Rule::All);
        }
        let excluded: Vec<&str> = names
            .iter()
            .filter_map(|name| name.strip_prefix('-'))
            .collect();
        if excluded.len() == names.len() {
            return Ok(Rule::Except(
                excluded.into_iter().map(str::to_owned).collect(),
            ));
        }
        if !excluded.is_empty() || names.contains(&"*") {
            return Err(format!(
                "mixes included and excluded names: {}",
                names.join(",")
            ));
        }
        Ok(Rule::Only(names.into_iter().map(str::to_owned).collect()))
    }

    /// Reads `<module_dir>/rule.txt`: `Ok(None)` when there is none (not a middleware).
    pub fn read(module_dir: &Path) -> Result<Option<Rule>, String> {
        let path = module_dir.join("rule.txt");
        match std::fs::read_to_string(&path) {
            Ok(text) => Rule::parse(&text)
                .map(Some)
                .map_err(|reason| format!("{}: {reason}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("{}: {error}", path.display())),
        }
    }

    /// Whether the middleware called `middleware` runs before `target`.
    pub fn applies(&self, middleware: &str, target: &str) -> bool {
        if middleware == target {
            return false;
        }
        match self {
            Rule::All => true,
            Rule::Only(names) => names.iter().any(|name| name == target),
            Rule::Except(names) => !names.iter().any(|name| name == target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_apply() {
        assert_eq!(Rule::parse("").unwrap(), Rule::All);
        assert_eq!(Rule::parse("*\n").unwrap(), Rule::All);
        let only = Rule::parse("users, auth\n").unwrap();
        assert!(only.applies("logger", "users") && !only.applies("logger", "sender"));
        let except = Rule::parse("# not for auth\n-auth").unwrap();
        assert!(except.applies("logger", "users") && !except.applies("logger", "auth"));
        assert!(
            !Rule::All.applies("logger", "logger"),
            "never before itself"
        );
        assert!(Rule::parse("users,-auth").is_err());
    }
}
