//! The JSON config file and the command line, as both daemons read them.
//!
//! A daemon's settings are one struct that is both its clap argument set and
//! the serde shape of its config file, so every flag can be set in the file
//! under the same kebab-case name. The file is read first ([`from_file`])
//! and flags override it ([`Merge`]); the daemon then validates the result
//! into the settings it runs with, and every problem is a [`ConfigError`]
//! naming the field.
//!
//! A field of the file that is no flag is refused before anything else is
//! read from the file, with the closest valid name when one is close
//! ("unknown field `alow-anonymous`, did you mean `allow-anonymous`?").
//! The valid names are taken from the clap flags themselves, so they cannot
//! drift from `--help`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// A configuration problem, naming the field. The binary exits with code 2.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The flag or config-file field at fault (`listen`, `users`, …).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// Where in a file the problem is, when it was found in one.
    pub location: Option<Location>,
}

/// A position in a JSON file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            location: None,
        }
    }
}

/// `field: message`, or `field: FILE:LINE:COLUMN: message` for a problem
/// found at a place in a file: the position is said once.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        if let Some(at) = &self.location {
            write!(f, "{}:{}:{}: ", at.path.display(), at.line, at.column)?;
        }
        f.write_str(&self.message)
    }
}

/// A `serde_json` error found in `path`, as a [`ConfigError`] of `field`:
/// serde's message, and the position as a [`Location`] (taken out of the
/// message, where `serde_json` also puts it, so it is printed once).
pub fn json_error(field: &str, path: &Path, e: &serde_json::Error) -> ConfigError {
    let text = e.to_string();
    if e.line() == 0 {
        return ConfigError::new(field, format!("{}: {text}", path.display()));
    }
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    ConfigError {
        field: field.to_owned(),
        message: text.strip_suffix(&suffix).unwrap_or(&text).to_owned(),
        location: Some(Location {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
        }),
    }
}

/// The flag that names the config file: the file cannot set it.
const CONFIG_FLAG: &str = "config";

/// Reads `path` as the JSON config file of the options `O`; problems are
/// errors of the field `config`.
pub fn from_file<O: DeserializeOwned + clap::Args>(path: &Path) -> Result<O, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(CONFIG_FLAG, format!("cannot read {}: {e}", path.display()))
    })?;
    from_json(path, &text)
}

/// Parses `text`, read from `path`, as the config file of the options `O`.
pub fn from_json<O: DeserializeOwned + clap::Args>(
    path: &Path,
    text: &str,
) -> Result<O, ConfigError> {
    let names = file_names::<O>();
    let mut unknown = false;
    let check = KnownFields {
        names: &names,
        unknown: &mut unknown,
    };
    if let Err(e) = check.deserialize(&mut serde_json::Deserializer::from_str(text))
        && unknown
    {
        return Err(json_error(CONFIG_FLAG, path, &e));
    }
    // Anything else wrong (syntax, types, values) is the typed parse's to
    // report.
    serde_json::from_str(text).map_err(|e| json_error(CONFIG_FLAG, path, &e))
}

/// The names a config file of the options `O` may use: the long flags,
/// except `--config`.
pub fn file_names<O: clap::Args>() -> Vec<String> {
    O::augment_args(clap::Command::new(CONFIG_FLAG))
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|name| *name != CONFIG_FLAG)
        .map(str::to_owned)
        .collect()
}

/// The message for a field `name` that is none of `names`.
fn unknown_field(name: &str, names: &[String]) -> String {
    match closest(name, names) {
        Some(close) => format!("unknown field `{name}`, did you mean `{close}`?"),
        None => format!(
            "unknown field `{name}` (the fields are the flags of --help, without the dashes)"
        ),
    }
}

/// The name in `names` closest to `name`, if it is close: at most one edit
/// (insertion, deletion, substitution or swap of neighbours) per three
/// characters, and at least one allowed. Ties go to the name listed first.
pub fn closest<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    let allowed = (name.chars().count() / 3).max(1);
    names
        .iter()
        .map(|n| (strsim::osa_distance(name, n), n))
        .filter(|&(d, _)| d <= allowed)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n.as_str())
}

/// A pass over the top-level fields of a config file that stops with an
/// error at the first unknown one, so the position serde reports is that
/// field's.
struct KnownFields<'a> {
    names: &'a [String],
    unknown: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for KnownFields<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KnownFields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if !self.names.contains(&key) {
                *self.unknown = true;
                return Err(de::Error::custom(unknown_field(&key, self.names)));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// The command line over the config file: `flags.or(file)` keeps what the
/// command line gave and takes the rest from the file. A flag counts as
/// given when it is set, true, or a non-empty list.
pub trait Merge {
    /// `self` (from the command line), completed from `file`.
    #[must_use]
    fn or(self, file: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn or(self, file: Self) -> Self {
        Option::or(self, file)
    }
}

impl Merge for bool {
    fn or(self, file: Self) -> Self {
        self || file
    }
}

impl<T> Merge for Vec<T> {
    fn or(self, file: Self) -> Self {
        if self.is_empty() { file } else { self }
    }
}

/// Implements [`Merge`] for a struct field by field:
/// `merge_fields!(Options { listen, users, ... })` names every field (the
/// compiler insists), each of a type that is [`Merge`] itself. The struct
/// also gets the same `or` as an inherent method, so callers need not
/// import the trait.
#[macro_export]
macro_rules! merge_fields {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::config::Merge for $ty {
            fn or(self, file: Self) -> Self {
                Self {
                    $($field: $crate::config::Merge::or(self.$field, file.$field),)+
                }
            }
        }

        impl $ty {
            /// Fills every setting not given on the command line (`self`)
            /// from the config file (`file`).
            // As public as the type is, whatever that is.
            #[allow(unreachable_pub)]
            #[must_use]
            pub fn or(self, file: Self) -> Self {
                $crate::config::Merge::or(self, file)
            }
        }
    };
}

/// Two flags that go together (`--tls-cert` and `--tls-key`, `--user` and
/// `--password-file`), as `(name, value)`: both or neither. The error names
/// the one missing.
pub fn both_or_neither<A, B>(
    first: (&str, Option<A>),
    second: (&str, Option<B>),
) -> Result<Option<(A, B)>, ConfigError> {
    let missing = |given: &str, absent: &str| {
        ConfigError::new(absent, format!("missing: --{given} needs --{absent}"))
    };
    match (first, second) {
        ((_, None), (_, None)) => Ok(None),
        ((_, Some(a)), (_, Some(b))) => Ok(Some((a, b))),
        ((given, Some(_)), (absent, None)) | ((absent, None), (given, Some(_))) => {
            Err(missing(given, absent))
        }
    }
}

/// Longest duration given in seconds: a week.
pub const MAX_SECONDS: u64 = 7 * 86_400;

/// A duration flag in whole seconds, 1 to [`MAX_SECONDS`]; `default` when
/// not given.
pub fn seconds(
    field: &str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::new(field, "must be at least 1 second")),
        Some(s) if s > MAX_SECONDS => Err(ConfigError::new(
            field,
            format!("must be at most {MAX_SECONDS} seconds"),
        )),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

/// A count flag (a cap on connections, sessions, …), at least 1; `default`
/// when not given.
pub fn count(field: &str, value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::new(field, "must be at least 1")),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small daemon's options.
    #[derive(Debug, Default, clap::Args, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Options {
        #[arg(long)]
        #[serde(skip)]
        config: Option<PathBuf>,
        #[arg(long)]
        #[serde(default)]
        listen: Vec<String>,
        #[arg(long)]
        #[serde(default)]
        allow_anonymous: bool,
        #[arg(long)]
        idle_timeout: Option<u64>,
    }

    merge_fields!(Options {
        config,
        listen,
        allow_anonymous,
        idle_timeout
    });

    fn parse(text: &str) -> Result<Options, ConfigError> {
        from_json(Path::new("/etc/sixpath/d.json"), text)
    }

    #[test]
    fn file_names_are_the_long_flags_without_config() {
        assert_eq!(
            file_names::<Options>(),
            ["listen", "allow-anonymous", "idle-timeout"]
        );
    }

    #[test]
    fn suggests_the_closest_name_and_says_the_position_once() {
        let e =
            parse("{\"listen\": [\"127.0.0.1:1\"],\n \"alow-anonymous\": true}").expect_err("typo");
        assert_eq!(e.field, "config");
        assert_eq!(
            e.message,
            "unknown field `alow-anonymous`, did you mean `allow-anonymous`?"
        );
        let at = e.location.as_ref().expect("location");
        assert_eq!((at.line, at.column), (2, 17));
        assert_eq!(
            e.to_string(),
            "config: /etc/sixpath/d.json:2:17: \
             unknown field `alow-anonymous`, did you mean `allow-anonymous`?"
        );
        assert_eq!(e.to_string().matches(":2:17").count(), 1, "{e}");
    }

    #[test]
    fn a_far_name_gets_no_suggestion_and_config_is_no_file_field() {
        let e = parse(r#"{"colour": "blue"}"#).expect_err("unknown");
        assert!(e.message.starts_with("unknown field `colour` ("), "{e}");
        let e = parse(r#"{"config": "/etc/other.json"}"#).expect_err("config");
        assert!(e.message.starts_with("unknown field `config`"), "{e}");
    }

    #[test]
    fn other_errors_come_from_the_typed_parse_with_their_position() {
        let e = parse("{\"idle-timeout\": \"soon\"}").expect_err("type");
        assert!(
            e.message.starts_with("invalid type: string \"soon\""),
            "{e}"
        );
        assert!(!e.message.contains("line"), "{e}");
        assert_eq!(e.location.expect("location").line, 1);
        let e = parse("{\"listen\": [],}").expect_err("syntax");
        assert_eq!(e.message, "trailing comma");
        let e = parse("[1]").expect_err("not an object");
        assert_eq!(e.field, "config");
    }

    #[test]
    fn a_valid_file_parses() {
        let o = parse(r#"{"listen": ["127.0.0.1:1"], "idle-timeout": 5}"#).expect("valid");
        assert_eq!(o.listen, ["127.0.0.1:1"]);
        assert_eq!(o.idle_timeout, Some(5));
    }

    #[test]
    fn an_unreadable_file_names_config_and_the_path() {
        let e = from_file::<Options>(Path::new("/nonexistent/sixpath.json")).expect_err("gone");
        assert_eq!(e.field, "config");
        assert!(
            e.message
                .starts_with("cannot read /nonexistent/sixpath.json: ")
        );
        assert!(e.location.is_none());
    }

    #[test]
    fn flags_override_the_file_field_by_field() {
        let file = Options {
            listen: vec!["127.0.0.1:1".into()],
            allow_anonymous: true,
            idle_timeout: Some(5),
            ..Options::default()
        };
        let flags = Options {
            config: Some("/etc/sixpath/d.json".into()),
            idle_timeout: Some(9),
            ..Options::default()
        };
        let o = flags.or(file);
        assert_eq!(o.config, Some(PathBuf::from("/etc/sixpath/d.json")));
        assert_eq!(o.listen, ["127.0.0.1:1"]);
        assert!(o.allow_anonymous);
        assert_eq!(o.idle_timeout, Some(9));
    }

    #[test]
    fn closest_allows_one_edit_per_three_characters() {
        let names: Vec<String> = ["path", "path-policy", "no-early-reply", "max-connections"]
            .map(String::from)
            .into();
        assert_eq!(closest("pth", &names), Some("path"));
        assert_eq!(closest("no-early-replies", &names), Some("no-early-reply"));
        assert_eq!(closest("max_connections", &names), Some("max-connections"));
        assert_eq!(closest("xyz", &names), None);
        assert_eq!(closest("policy", &names), None);
    }

    #[test]
    fn paired_flags_need_both_or_neither_naming_the_missing_one() {
        let pair = |a: Option<u8>, b: Option<u8>| both_or_neither(("tls-cert", a), ("tls-key", b));
        assert_eq!(pair(None, None).expect("neither"), None);
        assert_eq!(pair(Some(1), Some(2)).expect("both"), Some((1, 2)));
        let e = pair(Some(1), None).expect_err("no key");
        assert_eq!(
            e.to_string(),
            "tls-key: missing: --tls-cert needs --tls-key"
        );
        let e = pair(None, Some(2)).expect_err("no cert");
        assert_eq!(
            e.to_string(),
            "tls-cert: missing: --tls-key needs --tls-cert"
        );
    }

    #[test]
    fn seconds_and_counts_name_the_field() {
        let d = Duration::from_secs(10);
        assert_eq!(seconds("idle-timeout", None, d).expect("default"), d);
        assert_eq!(
            seconds("idle-timeout", Some(MAX_SECONDS), d).expect("a week"),
            Duration::from_secs(MAX_SECONDS)
        );
        let e = seconds("idle-timeout", Some(0), d).expect_err("zero");
        assert_eq!(e.to_string(), "idle-timeout: must be at least 1 second");
        let e = seconds("idle-timeout", Some(MAX_SECONDS + 1), d).expect_err("long");
        assert_eq!(e.message, "must be at most 604800 seconds");
        assert_eq!(count("max-connections", None, 7).expect("default"), 7);
        assert_eq!(
            count("max-connections", Some(0), 7)
                .expect_err("zero")
                .field,
            "max-connections"
        );
    }
}
