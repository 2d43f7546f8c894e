//! What every section of the configuration shares, below all of them: the error a bad
//! value gets ([`ConfigError`]), its range check ([`in_range`]), a numeric key's name,
//! default and bounds in one value ([`Limit`]), the relative-path rule
//! ([`beside_config`]), and the keys a raw section accepts, read from its serde
//! definition ([`accepted_keys`]).
//!
//! A section's settings live beside the code that uses them (`server/settings.rs` for
//! `[server]` and `[tls]`, `sink/csv/settings.rs` for `[csv]` and `[dedup]`,
//! `sink/postgres/settings.rs` for `[postgres]`, ...); `config` assembles them into
//! `Config`. Every module may import this one; it imports none of them, so no section
//! and no assembler can form a circle through it.
//!
//! # One definition of the keys
//!
//! The raw structs (`#[derive(Deserialize)]`, `deny_unknown_fields`) are the one
//! definition of what the file accepts. [`accepted_keys`] walks them the way the TOML
//! parser does and lists every `section.key` the parser would take; the docs test
//! (`tests/config_keys.rs`) holds that list against the README's reference table (key and
//! default) and the example file, so a key cannot be accepted but undocumented,
//! documented but refused, or documented with a default the code does not use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A bad configuration value: the key as written in the file, and why.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// `v` if it is within `lo..=hi`, else the error that says so (`unit` follows the
/// bounds: " s", " bytes", or "").
pub fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
    unit: &str,
) -> Result<T, ConfigError> {
    // Written so that NaN is out of every range.
    if !(v >= lo && v <= hi) {
        return Err(ConfigError::new(
            key,
            format!("must be between {lo} and {hi}{unit}, got {v}"),
        ));
    }
    Ok(v)
}

/// One numeric key in one place: its name as written in the file, its default and its
/// bounds (`unit` follows the bounds in the error, as in [`in_range`]).
#[derive(Debug, Clone, Copy)]
pub struct Limit<T> {
    pub key: &'static str,
    pub default: T,
    pub lo: T,
    pub hi: T,
    pub unit: &'static str,
}

impl<T: PartialOrd + fmt::Display + Copy> Limit<T> {
    pub const fn new(key: &'static str, default: T, lo: T, hi: T, unit: &'static str) -> Limit<T> {
        Limit {
            key,
            default,
            lo,
            hi,
            unit,
        }
    }

    /// The value given (flag or file), else the default; refused outside the bounds.
    pub fn pick(&self, given: Option<T>) -> Result<T, ConfigError> {
        in_range(self.key, given.unwrap_or(self.default), self.lo, self.hi, self.unit)
    }
}

impl Limit<u64> {
    /// [`Limit::pick`] for a key in seconds.
    pub fn secs(&self, given: Option<u64>) -> Result<Duration, ConfigError> {
        self.pick(given).map(Duration::from_secs)
    }
}

/// Declares one section of the configuration file, each key once (see the module docs
/// for why). A block reads:
///
/// ```ignore
/// section! {
///     /// `[http]` as written in the TOML file.
///     raw HttpFile in "http";
///     /// `[http]`: the dashboard ...
///     #[derive(Debug, Clone)]
///     config HttpConfig;
///     // Optional: `serve`'s flags, for keys marked `flag <field of ServeArgs>` below.
///     flags ServeArgs;
///     // Optional: the validated fields built by hand, handed to `assemble`.
///     parts HttpParts {
///         /// `None` when `http.listen = ""`.
///         listen: Option<SocketAddr>,
///     }
///     keys {
///         // A key with logic of its own: only the raw field `listen: Option<String>`
///         // and, if given, its default as a constant (`DEFAULT_HTTP_LISTEN: &str`).
///         listen: String [DEFAULT_HTTP_LISTEN: default "127.0.0.1:8091"],
///         // A number: the raw field, the constant `MAX_EVENT_CLIENTS` (key
///         // "http.max_event_clients", its default and bounds) and, after `=>`, the
///         // validated field it becomes, picked within the bounds.
///         max_event_clients: usize [MAX_EVENT_CLIENTS: default 16, min 1, max 1024]
///             => max_event_clients: usize,
///         // With a unit for the error message, and the picked value converted.
///         ready_upload_stall_secs: u64 [READY_UPLOAD_STALL_SECS: default 600, min 1,
///             max 7 * 86_400, unit " seconds"] => ready_upload_stall: Duration = Duration::from_secs,
///     }
/// }
/// ```
///
/// It writes, keeping the order of the keys:
/// - the raw struct (`Debug`, `Default`, `Deserialize`, `deny_unknown_fields`), every
///   key an `Option` of its type, so the file may leave out any key;
/// - a [`Limit`] constant per number, named as given, for the default and bounds that
///   code, tests and the docs test read;
/// - the validated struct: the `parts` fields, then a field per number with `=>` (a
///   number without `=>` is picked by hand, with its constant, where logic needs it);
/// - `assemble(f, [flags,] [parts])`: the validated struct, every number picked with
///   [`Limit::pick`] (a flag marked `flag <field>` beats the file) and converted, so the
///   error names the key as written in the file.
///
/// Without `config` (and so without `flags`, `parts` and `=>`), only the raw struct and
/// the constants are written, for a validated struct that is all logic (`[csv]`, `[log]`).
///
/// Every entry ends with a comma. An entry's doc comment goes to the raw field, the
/// constant and the validated field.
macro_rules! section {
    // How it works: the two entry rules at the bottom hand the keys to the `@key` rules,
    // with four lists gathered so far: raw fields, constants, validated fields, and the
    // lines of `assemble` that pick the numbers. Each `@key` rule takes one entry off the
    // front and adds it to the lists; when no entry is left, the last two `@key` rules
    // write the items. `f` and `flags` are named once, by the entry rule, so that the
    // picks and `assemble`'s parameters, written by different steps, are the same
    // variables (a macro's own names are private to each step otherwise).
    //
    // A number that becomes a field of the validated struct: add the field and the line
    // that picks it, then read the entry again without `=> ...` (the rule below).
    (@key ($section:literal $f:ident $flags:ident) $header:tt
        [$($raw:tt)*] [$($consts:tt)*] [$($fields:tt)*] [$($picks:tt)*]
        $(#[$doc:meta])* $key:ident: $T:ty [$NAME:ident: default $default:expr, min $lo:expr, max $hi:expr
            $(, unit $unit:literal)? $(, flag $flag:ident)?] => $field:ident: $V:ty $(= $convert:expr)?,
        $($rest:tt)*
    ) => {
        $crate::settings::section!(@key ($section $f $flags) $header [$($raw)*] [$($consts)*]
            [$($fields)* $(#[$doc])* pub $field: $V,]
            [$($picks)* $field: $(($convert))?($NAME.pick($($flags.$flag.or)?($f.$key))?),]
            $(#[$doc])* $key: $T [$NAME: default $default, min $lo, max $hi $(, unit $unit)?], $($rest)*);
    };
    // A number: its raw field and its constant.
    (@key ($section:literal $f:ident $flags:ident) $header:tt
        [$($raw:tt)*] [$($consts:tt)*] $fields:tt $picks:tt
        $(#[$doc:meta])* $key:ident: $T:ty [$NAME:ident: default $default:expr, min $lo:expr, max $hi:expr
            $(, unit $unit:literal)? $(, flag $flag:ident)?],
        $($rest:tt)*
    ) => {
        $crate::settings::section!(@key ($section $f $flags) $header
            [$($raw)* $(#[$doc])* pub $key: Option<$T>,]
            [$($consts)* $(#[$doc])* pub const $NAME: $crate::settings::Limit<$T> = $crate::settings::Limit::new(
                concat!($section, ".", stringify!($key)), $default, $lo, $hi, concat!("" $(, $unit)?));]
            $fields $picks $($rest)*);
    };
    // A key with logic of its own and a written default: its raw field, and the default
    // as a constant for its `build` (and the docs test) to read.
    (@key $names:tt $header:tt [$($raw:tt)*] [$($consts:tt)*] $fields:tt $picks:tt
        $(#[$doc:meta])* $key:ident: $T:ty [$NAME:ident: default $default:literal], $($rest:tt)*
    ) => {
        $crate::settings::section!(@key $names $header [$($raw)* $(#[$doc])* pub $key: Option<$T>,]
            [$($consts)* $(#[$doc])* pub const $NAME: &str = $default;] $fields $picks $($rest)*);
    };
    // A key with logic of its own: only its raw field.
    (@key $names:tt $header:tt [$($raw:tt)*] $consts:tt $fields:tt $picks:tt
        $(#[$doc:meta])* $key:ident: $T:ty, $($rest:tt)*
    ) => {
        $crate::settings::section!(@key $names $header [$($raw)* $(#[$doc])* pub $key: Option<$T>,]
            $consts $fields $picks $($rest)*);
    };
    // Every key read, in a section without a validated struct of its own: the raw struct
    // and the constants.
    (@key $names:tt { $(#[$raw_meta:meta])* $Raw:ident; } [$($raw:tt)*] [$($consts:tt)*] [] []) => {
        $(#[$raw_meta])*
        #[derive(Debug, Default, ::serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $Raw {
            $($raw)*
        }

        $($consts)*
    };
    // Every key read: write the items.
    (@key ($section:literal $f:ident $flags:ident) {
            $(#[$raw_meta:meta])* $Raw:ident;
            $(#[$config_meta:meta])* $Config:ident;
            [$($Flags:ty)?]
            [$($Parts:ident { $($(#[$part_doc:meta])* $part:ident: $PartT:ty),* })?]
        } $raw:tt $consts:tt [$($fields:tt)*] [$($picks:tt)*]
    ) => {
        $crate::settings::section!(@key ($section $f $flags) { $(#[$raw_meta])* $Raw; } $raw $consts [] []);

        $(#[$config_meta])*
        pub struct $Config {
            $($($(#[$part_doc])* pub $part: $PartT,)*)?
            $($fields)*
        }

        $(
            #[doc = concat!("The fields of [`", stringify!($Config), "`] that the section's `build` makes by hand.")]
            pub(crate) struct $Parts {
                $($(#[$part_doc])* pub(crate) $part: $PartT,)*
            }
        )?

        impl $Config {
            /// The validated section: the `parts` as given, every number picked within its
            /// bounds (the error names the key).
            pub(crate) fn assemble(
                $f: &$Raw
                $(, $flags: &$Flags)?
                $(, parts: $Parts)?
            ) -> Result<$Config, $crate::settings::ConfigError> {
                $(let $Parts { $($part),* } = parts;)?
                Ok($Config {
                    $($($part,)*)?
                    $($picks)*
                })
            }
        }
    };
    (
        $(#[$raw_meta:meta])* raw $Raw:ident in $section:literal;
        $(#[$config_meta:meta])* config $Config:ident;
        $(flags $Flags:ty;)?
        $(parts $Parts:ident { $($(#[$part_doc:meta])* $part:ident: $PartT:ty),* $(,)? })?
        keys { $($keys:tt)* }
    ) => {
        $crate::settings::section!(@key ($section f flags) {
                $(#[$raw_meta])* $Raw;
                $(#[$config_meta])* $Config;
                [$($Flags)?]
                [$($Parts { $($(#[$part_doc])* $part: $PartT),* })?]
            } [] [] [] [] $($keys)*);
    };
    (
        $(#[$raw_meta:meta])* raw $Raw:ident in $section:literal;
        keys { $($keys:tt)* }
    ) => {
        $crate::settings::section!(@key ($section f flags) { $(#[$raw_meta])* $Raw; } [] [] [] [] $($keys)*);
    };
}
pub(crate) use section;

/// The one rule for a relative path written in a config file: it is relative to the
/// file's directory (`config`); without a file, or for an absolute path, it stays as is.
pub fn beside_config(config: Option<&Path>, p: &Path) -> PathBuf {
    match config.and_then(Path::parent) {
        Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// Every key (`section.key`, nested with dots) that the raw struct `T` accepts, in its
/// declaration order: what the TOML parser would take, read from `T`'s own definition.
pub fn accepted_keys<T: for<'de> Deserialize<'de>>() -> Vec<String> {
    let mut keys = Vec::new();
    // The walk hands every field an empty value; the result is not needed.
    let _ = T::deserialize(Walk {
        path: String::new(),
        keys: &mut keys,
    });
    keys
}

/// A deserializer that answers a struct with all its fields (recording the path of each
/// one that is not itself a struct) and any other value with an empty one.
struct Walk<'a> {
    path: String,
    keys: &'a mut Vec<String>,
}

#[derive(Debug)]
struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl de::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

impl Walk<'_> {
    fn leaf(self) {
        self.keys.push(self.path);
    }
}

/// The methods for a value that is not a struct: each records its key and answers with
/// an empty value of its kind (`method(other arguments' types) => visit(value)`).
macro_rules! leaf {
    ($($method:ident($($arg:ty),*) => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, $(_: $arg,)* visitor: V) -> Result<V::Value, WalkError> {
            self.leaf();
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> Deserializer<'de> for Walk<'_> {
    type Error = WalkError;

    leaf! {
        deserialize_any() => visit_unit(),
        deserialize_bool() => visit_bool(false),
        deserialize_i8() => visit_i64(0),
        deserialize_i16() => visit_i64(0),
        deserialize_i32() => visit_i64(0),
        deserialize_i64() => visit_i64(0),
        deserialize_u8() => visit_u64(0),
        deserialize_u16() => visit_u64(0),
        deserialize_u32() => visit_u64(0),
        deserialize_u64() => visit_u64(0),
        deserialize_f32() => visit_f64(0.0),
        deserialize_f64() => visit_f64(0.0),
        deserialize_char() => visit_char(' '),
        deserialize_str() => visit_str(""),
        deserialize_string() => visit_str(""),
        deserialize_bytes() => visit_bytes(&[]),
        deserialize_byte_buf() => visit_bytes(&[]),
        deserialize_option() => visit_none(),
        deserialize_unit() => visit_unit(),
        deserialize_unit_struct(&'static str) => visit_unit(),
        deserialize_seq() => visit_seq(Empty),
        deserialize_tuple(usize) => visit_seq(Empty),
        deserialize_tuple_struct(&'static str, usize) => visit_seq(Empty),
        deserialize_map() => visit_map(Empty),
        // An enum outside an `Option` (none in the config): its visitor refuses a unit,
        // and the error ends the walk.
        deserialize_enum(&'static str, &'static [&'static str]) => visit_unit(),
        deserialize_identifier() => visit_str(""),
        deserialize_ignored_any() => visit_unit(),
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_map(Fields {
            names: fields,
            next: 0,
            path: self.path,
            keys: self.keys,
        })
    }
}

/// A struct's fields, each with a [`Walk`] for its value.
struct Fields<'a> {
    names: &'static [&'static str],
    next: usize,
    path: String,
    keys: &'a mut Vec<String>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, WalkError> {
        match self.names.get(self.next) {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, WalkError> {
        let name = self.names[self.next];
        self.next += 1;
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        seed.deserialize(Walk { path, keys: self.keys })
    }
}

/// An empty sequence or map: the value of a key that is a list or a table of its own.
struct Empty;

impl<'de> MapAccess<'de> for Empty {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, WalkError> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, WalkError> {
        Err(de::Error::custom("an empty map has no values"))
    }
}

impl<'de> SeqAccess<'de> for Empty {
    type Error = WalkError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, _: T) -> Result<Option<T::Value>, WalkError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        #[serde(default)]
        a: Section,
        #[serde(default)]
        b: Other,
    }

    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        one: Option<u64>,
        two: Option<Vec<String>>,
        #[serde(rename = "three_secs")]
        three: Option<f64>,
    }

    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Other {
        flag: Option<bool>,
        path: Option<std::path::PathBuf>,
    }

    /// `serve`'s flags, in small.
    #[derive(Default)]
    pub struct Flags {
        n: Option<u32>,
    }

    section! {
        /// A section as written in the file.
        raw ExampleFile in "example";
        #[derive(Debug, PartialEq)]
        config Example;
        flags Flags;
        parts ExampleParts {
            name: String,
        }
        keys {
            name: String [DEFAULT_NAME: default "x"],
            n: u32 [N: default 3, min 1, max 9, flag n] => n: u32,
            wait_secs: u64 [WAIT_SECS: default 5, min 0, max 60, unit " seconds"]
                => wait: Duration = Duration::from_secs,
            by_hand: u8 [BY_HAND: default 1, min 1, max 2],
        }
    }

    #[test]
    fn a_section_says_each_key_once() {
        assert_eq!(accepted_keys::<ExampleFile>(), ["name", "n", "wait_secs", "by_hand"]);
        assert_eq!((N.key, N.default, N.lo, N.hi, N.unit), ("example.n", 3, 1, 9, ""));
        assert_eq!((WAIT_SECS.key, WAIT_SECS.unit), ("example.wait_secs", " seconds"));
        assert_eq!((DEFAULT_NAME, BY_HAND.key), ("x", "example.by_hand"));
        // Keys without `=>` are the section's `build`'s to read.
        let hand = ExampleFile {
            name: Some("z".into()),
            by_hand: Some(2),
            ..ExampleFile::default()
        };
        assert_eq!(
            (hand.name.as_deref(), BY_HAND.pick(hand.by_hand).unwrap()),
            (Some("z"), 2)
        );
        let parts = || ExampleParts { name: "y".into() };
        let defaults = Example::assemble(&ExampleFile::default(), &Flags::default(), parts()).unwrap();
        let expected = Example {
            name: "y".into(),
            n: 3,
            wait: Duration::from_secs(5),
        };
        assert_eq!(defaults, expected);
        let file = ExampleFile {
            n: Some(5),
            wait_secs: Some(60),
            ..ExampleFile::default()
        };
        let given = Example::assemble(&file, &Flags::default(), parts()).unwrap();
        assert_eq!((given.n, given.wait), (5, Duration::from_secs(60)));
        let flagged = Example::assemble(&file, &Flags { n: Some(7) }, parts()).unwrap();
        assert_eq!(flagged.n, 7, "the flag beats the file");
        let too_long = ExampleFile {
            wait_secs: Some(61),
            ..ExampleFile::default()
        };
        let e = Example::assemble(&too_long, &Flags::default(), parts()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: example.wait_secs: must be between 0 and 60 seconds, got 61"
        );
        let e = Example::assemble(&file, &Flags { n: Some(10) }, parts()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: example.n: must be between 1 and 9, got 10"
        );
    }

    #[test]
    fn keys_are_read_from_the_struct_as_the_parser_sees_it() {
        assert_eq!(
            accepted_keys::<Raw>(),
            ["a.one", "a.two", "a.three_secs", "b.flag", "b.path"]
        );
    }

    #[test]
    fn a_limit_gives_the_default_or_the_value_within_its_bounds() {
        const L: Limit<u64> = Limit::new("s.k_secs", 60, 1, 600, " seconds");
        assert_eq!(L.pick(None).unwrap(), 60);
        assert_eq!(L.secs(Some(600)).unwrap(), Duration::from_secs(600));
        let e = L.pick(Some(601)).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid configuration: s.k_secs: must be between 1 and 600 seconds, got 601"
        );
        const F: Limit<f64> = Limit::new("s.f", 5.0, 1.0, 1000.0, "");
        assert_eq!(F.pick(Some(1.0)).unwrap(), 1.0);
        let e = F.pick(Some(f64::NAN)).unwrap_err().to_string();
        assert_eq!(e, "invalid configuration: s.f: must be between 1 and 1000, got NaN");
    }

    #[test]
    fn range_errors_name_the_key_and_the_bounds() {
        assert_eq!(in_range("s.k", 5, 1, 10, " s").unwrap(), 5);
        let e = in_range("s.k", 11, 1, 10, " s").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: s.k: must be between 1 and 10 s, got 11"
        );
    }
}
