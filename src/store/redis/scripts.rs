//! Each Lua script with its keys and fixed arguments named once, here: the
//! Rust side fills a struct of named fields (a missing one does not
//! compile), and the script reads locals of the same names, from a prelude
//! generated from the same list (`local owner_epoch_key = KEYS[2]` …, and
//! `TAIL`, the number of fixed arguments, after which the variable ones
//! follow). So the two sides cannot disagree on an order, and a script
//! never indexes `KEYS` or `ARGV` by a number (`the_scripts_use_names_only`).

use std::fmt::Write as _;

use ::redis::{Script, ScriptInvocation};

/// The text Redis runs: the generated prelude, then the file.
fn with_prelude(keys: &[&str], args: &[&str], body: &str) -> String {
    let mut text = String::from("-- Generated from the names in src/store/redis/scripts.rs.\n");
    for (at, key) in keys.iter().enumerate() {
        let _ = writeln!(text, "local {key} = KEYS[{}]", at + 1);
    }
    for (at, arg) in args.iter().enumerate() {
        let _ = writeln!(text, "local {arg} = ARGV[{}]", at + 1);
    }
    let _ = writeln!(text, "local TAIL = {}", args.len());
    text + body
}

macro_rules! lua_script {
    (
        $(#[$meta:meta])*
        $script:ident from $file:literal;
        keys $keys:ident { $($key:ident),* $(,)? }
        args $args:ident { $($arg:ident),* $(,)? }
    ) => {
        $(#[$meta])*
        pub(super) struct $script(Script);

        /// The script's keys, by the names its text reads.
        pub(super) struct $keys<'a> {
            $(pub $key: &'a str,)*
        }

        /// The script's fixed arguments, by the names its text reads; the
        /// variable ones follow, from `ARGV[TAIL + 1]`.
        pub(super) struct $args {
            $(pub $arg: String,)*
        }

        impl $script {
            #[cfg_attr(not(test), allow(dead_code))]
            pub(super) const FILE: &'static str = $file;
            pub(super) const KEY_NAMES: &'static [&'static str] = &[$(stringify!($key)),*];
            pub(super) const ARG_NAMES: &'static [&'static str] = &[$(stringify!($arg)),*];
            pub(super) const BODY: &'static str = include_str!(concat!("../", $file));

            pub(super) fn new() -> Self {
                Self(Script::new(&with_prelude(
                    Self::KEY_NAMES,
                    Self::ARG_NAMES,
                    Self::BODY,
                )))
            }

            pub(super) fn script(&self) -> &Script {
                &self.0
            }

            /// A call with the keys and fixed arguments in the script's
            /// order; the caller appends the variable arguments.
            pub(super) fn invoke(&self, keys: &$keys<'_>, args: &$args) -> ScriptInvocation<'_> {
                let mut invocation = self.0.prepare_invoke();
                $(invocation.key(keys.$key);)*
                $(invocation.arg(&args.$arg);)*
                invocation
            }
        }
    };
}

lua_script! {
    /// One venue-day's batch, all or nothing (`RedisStore::commit_reservations`).
    CommitScript from "commit.lua";
    keys CommitKeys {
        kill_switch_flag, owner_epoch_key, applied_key, reservations, audit_log, outbox,
        pending_by_next_try, pending_by_due, withdrawn, reminded_mark, changes,
    }
    args CommitArgs {
        epoch, sequence, stops_with_kill_switch, reservation_count, audit_count, mail_count,
        marks_reminded, day, changes_kept_ms, commit_by_ms,
    }
}

lua_script! {
    /// A batch whose outcome was unknown made never applied (`RedisStore::abandon_batch`).
    AbandonScript from "abandon.lua";
    keys AbandonKeys {
        owner_epoch_key, applied_key, reservations, audit_log, outbox, pending_by_next_try,
        pending_by_due, withdrawn, reminded_mark, changes,
    }
    args AbandonArgs {
        epoch, sequence, created_count, previous_count, audit_count, mail_count,
        marked_reminded, day, changes_kept_ms,
    }
}

/// Every script with named keys: file, key names, argument names, text.
#[cfg(test)]
type Named = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);
#[cfg(test)]
const NAMED: &[Named] = &[
    (
        CommitScript::FILE,
        CommitScript::KEY_NAMES,
        CommitScript::ARG_NAMES,
        CommitScript::BODY,
    ),
    (
        AbandonScript::FILE,
        AbandonScript::KEY_NAMES,
        AbandonScript::ARG_NAMES,
        AbandonScript::BODY,
    ),
];

/// Scripts that still read `KEYS[n]` and `ARGV[n]` by position, until each
/// gets its names here (the test fails once one no longer does, so this
/// list only shrinks).
#[cfg(test)]
const STILL_POSITIONAL: &[&str] = &[
    "take_ownership.lua",
    "claim_mail.lua",
    "hold_mail.lua",
    "settle_mail.lua",
    "heartbeat.lua",
    "claim_dose.lua",
    "end_dose_claim.lua",
    "remember_refusal.lua",
    "login_attempt.lua",
    "start_cascade.lua",
    "put_residents.lua",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `KEYS[…]` anywhere, or `ARGV[` right before a digit, outside comments.
    fn positional_uses(body: &str) -> Vec<String> {
        body.lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .filter(|code| {
                code.contains("KEYS[")
                    || code
                        .match_indices("ARGV[")
                        .any(|(at, _)| code[at + 5..].starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(str::to_owned)
            .collect()
    }

    fn uses_word(body: &str, word: &str) -> bool {
        body.lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .any(|code| {
                code.match_indices(word).any(|(at, _)| {
                    let before = code[..at].chars().next_back();
                    let after = code[at + word.len()..].chars().next();
                    let part = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                    !part(before) && !part(after)
                })
            })
    }

    #[test]
    fn the_scripts_use_names_only() {
        for (file, keys, args, body) in NAMED {
            assert!(!STILL_POSITIONAL.contains(file), "{file} is named now");
            let positional = positional_uses(body);
            assert!(
                positional.is_empty(),
                "{file} reads by position: {positional:?}"
            );
            for name in keys.iter().chain(args.iter()) {
                assert!(uses_word(body, name), "{file} never reads {name}");
            }
        }
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        for entry in std::fs::read_dir(&folder).expect("src/store is readable") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|e| e != "lua") {
                continue;
            }
            let file = path.file_name().and_then(|n| n.to_str()).expect("a name");
            if NAMED.iter().any(|(named, ..)| *named == file) {
                continue;
            }
            assert!(
                STILL_POSITIONAL.contains(&file),
                "{file} has no names in scripts.rs"
            );
            let body = std::fs::read_to_string(&path).expect("a script");
            assert!(
                !positional_uses(&body).is_empty(),
                "{file} reads nothing by position: name it in scripts.rs and take it off STILL_POSITIONAL"
            );
        }
    }

    #[test]
    fn the_prelude_names_keys_and_arguments_in_order() {
        let text = with_prelude(&["a", "b"], &["x"], "return a\n");
        assert!(text.contains("local a = KEYS[1]\nlocal b = KEYS[2]\nlocal x = ARGV[1]\nlocal TAIL = 1\nreturn a\n"), "{text}");
        assert_eq!(
            positional_uses("local y = ARGV[TAIL + 1] -- ARGV[2]\n"),
            Vec::<String>::new()
        );
        assert_eq!(positional_uses("return ARGV[3]\n").len(), 1);
    }
}
