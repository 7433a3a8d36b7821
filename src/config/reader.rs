//! Typed getters over a parsed `toml::Table` that record problems and carry on,
//! so that one run reports every mistake in the file. Used by `raw.rs` only.
//! A `Section` remembers the keys it was asked for; `finish` reports the rest
//! as unknown keys with a "did you mean".

use super::units;
use ipnet::IpNet;
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use toml::{Table, Value};

/// Problems found so far, each already prefixed with its dotted path.
#[derive(Debug, Default)]
pub(super) struct Errors(RefCell<Vec<String>>);

impl Errors {
    /// Records `at: msg` (just `msg` at the root).
    pub(super) fn add(&self, at: &KeyPath, msg: impl fmt::Display) {
        let line = if at.0.is_empty() {
            msg.to_string()
        } else {
            format!("{at}: {msg}")
        };
        self.0.borrow_mut().push(line);
    }

    /// Records `at: msg` unless `ok`.
    pub(super) fn require(&self, ok: bool, at: &KeyPath, msg: impl fmt::Display) {
        if !ok {
            self.add(at, msg);
        }
    }

    pub(super) fn into_vec(self) -> Vec<String> {
        self.0.into_inner()
    }
}

/// A dotted path into the file, with zero-based indices: `origin[1].servers[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(String);

impl KeyPath {
    pub(super) fn field(&self, name: &str) -> KeyPath {
        if self.0.is_empty() {
            KeyPath(name.to_string())
        } else {
            KeyPath(format!("{}.{name}", self.0))
        }
    }

    pub(super) fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value together with where it came from, for cross-field messages.
#[derive(Debug, Clone)]
pub(super) struct Item<T> {
    pub(super) at: KeyPath,
    pub(super) value: T,
}

/// Paths for default values, so defaults and file values look alike downstream.
pub(super) fn items<T>(at: &KeyPath, values: Vec<T>) -> Vec<Item<T>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Item {
            at: at.index(i),
            value,
        })
        .collect()
}

/// The message for a required key that is absent.
pub(super) const MISSING: &str = "required key is missing";

/// How a value looks in a message: strings quoted, containers named.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// Reads one value; `None` (after recording why) when it does not fit.
pub(super) type Parse<'a, T> = &'a dyn Fn(&Value, &KeyPath, &Errors) -> Option<T>;

// === value parsers ===

pub(super) fn string(v: &Value, at: &KeyPath, errs: &Errors) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => expected(errs, at, "a string", other),
    }
}

pub(super) fn boolean(v: &Value, at: &KeyPath, errs: &Errors) -> Option<bool> {
    match v {
        Value::Boolean(b) => Some(*b),
        other => expected(errs, at, "true or false", other),
    }
}

pub(super) fn uint(v: &Value, at: &KeyPath, errs: &Errors) -> Option<u64> {
    match v {
        Value::Integer(i) if *i >= 0 => u64::try_from(*i).ok(),
        other => expected(errs, at, "a non-negative integer", other),
    }
}

pub(super) fn size(v: &Value, at: &KeyPath, errs: &Errors) -> Option<u64> {
    let parsed = match v {
        Value::String(s) => units::parse_size(s),
        Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    parsed.or_else(|| expected(errs, at, "a size like \"256MiB\"", v))
}

pub(super) fn duration(v: &Value, at: &KeyPath, errs: &Errors) -> Option<Duration> {
    let parsed = match v {
        Value::String(s) => units::parse_duration(s),
        _ => None,
    };
    parsed.or_else(|| expected(errs, at, "a duration like \"5s\"", v))
}

pub(super) fn addr(v: &Value, at: &KeyPath, errs: &Errors) -> Option<SocketAddr> {
    match v {
        Value::String(s) => s.trim().parse().ok().or_else(|| {
            errs.add(at, format!("invalid socket address {s:?}"));
            None
        }),
        other => expected(errs, at, "a socket address like \"127.0.0.1:8080\"", other),
    }
}

pub(super) fn cidr(v: &Value, at: &KeyPath, errs: &Errors) -> Option<IpNet> {
    let parsed = match v {
        Value::String(s) => units::parse_cidr(s),
        _ => None,
    };
    parsed.or_else(|| expected(errs, at, "a CIDR like \"10.0.0.0/8\" or an IP address", v))
}

/// One of a closed set of words; `weighted`-style aliases map to the same value.
pub(super) fn choice<T: Copy>(
    v: &Value,
    at: &KeyPath,
    errs: &Errors,
    options: &[(&'static str, T)],
) -> Option<T> {
    if let Value::String(s) = v {
        if let Some((_, t)) = options.iter().find(|(name, _)| name == s) {
            return Some(*t);
        }
    }
    let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
    let hint = match v {
        Value::String(s) => units::suggestion(s, options.iter().map(|(n, _)| *n)),
        _ => String::new(),
    };
    errs.add(
        at,
        format!(
            "expected one of {}, got {}{hint}",
            names.join(", "),
            describe(v)
        ),
    );
    None
}

fn expected<T>(errs: &Errors, at: &KeyPath, what: &str, got: &Value) -> Option<T> {
    errs.add(at, format!("expected {what}, got {}", describe(got)));
    None
}

// === impl Section ===

/// One TOML table being read. A missing optional table reads as empty, so every
/// getter falls back to its default.
#[derive(Debug)]
pub(super) struct Section<'a> {
    table: Option<&'a Table>,
    at: KeyPath,
    errs: &'a Errors,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    pub(super) fn root(table: &'a Table, errs: &'a Errors) -> Self {
        Self::new(Some(table), KeyPath::default(), errs)
    }

    /// An inline table inside a list (`servers = [{ addr = ... }]`).
    pub(super) fn nested(table: &'a Table, at: KeyPath, errs: &'a Errors) -> Self {
        Self::new(Some(table), at, errs)
    }

    fn new(table: Option<&'a Table>, at: KeyPath, errs: &'a Errors) -> Self {
        Self {
            table,
            at,
            errs,
            known: Vec::new(),
        }
    }

    pub(super) fn at(&self) -> &KeyPath {
        &self.at
    }

    pub(super) fn errs(&self) -> &'a Errors {
        self.errs
    }

    /// The raw value of `key` (marking the key as known).
    pub(super) fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.table.and_then(|t| t.get(key))
    }

    /// Whether the file gives `key` at all: present, and a non-empty array if it is one.
    /// Lets "must list at least one" rules stay quiet when the entries were merely invalid.
    pub(super) fn given(&self, key: &str) -> bool {
        match self.table.and_then(|t| t.get(key)) {
            None => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        }
    }

    /// `key` read with `parse`; `None` when absent or invalid (the latter recorded).
    pub(super) fn get<T>(&mut self, key: &'static str, parse: Parse<'_, T>) -> Option<T> {
        let v = self.value(key)?;
        parse(v, &self.at.field(key), self.errs)
    }

    /// `key` read with `parse`, or `default` when absent or invalid.
    pub(super) fn get_or<T>(&mut self, key: &'static str, parse: Parse<'_, T>, default: T) -> T {
        self.get(key, parse).unwrap_or(default)
    }

    /// An array read element by element; invalid elements are recorded and skipped.
    pub(super) fn list<T>(
        &mut self,
        key: &'static str,
        parse: Parse<'_, T>,
    ) -> Option<Vec<Item<T>>> {
        let at = self.at.field(key);
        match self.value(key)? {
            Value::Array(values) => Some(
                values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        let at = at.index(i);
                        parse(v, &at, self.errs).map(|value| Item { at, value })
                    })
                    .collect(),
            ),
            other => expected(self.errs, &at, "an array", other),
        }
    }

    /// Like [`Section::list`] without the paths, or `default` when absent or not an array.
    pub(super) fn list_or<T>(
        &mut self,
        key: &'static str,
        parse: Parse<'_, T>,
        default: Vec<T>,
    ) -> Vec<T> {
        match self.list(key, parse) {
            Some(items) => items.into_iter().map(|i| i.value).collect(),
            None => default,
        }
    }

    /// A sub-table that reads as empty (all defaults) when absent.
    pub(super) fn section(&mut self, key: &'static str) -> Section<'a> {
        let at = self.at.field(key);
        let table = self.table_value(key, &at);
        Section::new(table, at, self.errs)
    }

    /// A sub-table whose absence means "feature off" (`[tls]`, `[cache.disk]`, `[origin.health]`).
    pub(super) fn optional_section(&mut self, key: &'static str) -> Option<Section<'a>> {
        let at = self.at.field(key);
        self.table_value(key, &at)
            .map(|t| Section::new(Some(t), at, self.errs))
    }

    fn table_value(&mut self, key: &'static str, at: &KeyPath) -> Option<&'a Table> {
        match self.value(key)? {
            Value::Table(t) => Some(t),
            other => expected(self.errs, at, "a table", other),
        }
    }

    /// An array of tables (`[[origin]]`); empty when absent, `None` when not an array.
    pub(super) fn sections(&mut self, key: &'static str) -> Option<Vec<Section<'a>>> {
        let at = self.at.field(key);
        let Some(value) = self.value(key) else {
            return Some(Vec::new());
        };
        let Value::Array(values) = value else {
            let what = format!("[[{at}]] sections");
            return expected(self.errs, &at, &what, value);
        };
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                Value::Table(t) => out.push(Section::new(Some(t), at.index(i), self.errs)),
                other => self.errs.add(
                    &at.index(i),
                    format!("expected a table, got {}", describe(other)),
                ),
            }
        }
        Some(out)
    }

    /// Reports the keys that no getter asked for.
    pub(super) fn finish(self) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if !self.known.contains(&key.as_str()) {
                let hint = units::suggestion(key, self.known.iter().copied());
                self.errs
                    .add(&self.at.field(key), format!("unknown key{hint}"));
            }
        }
    }
}
