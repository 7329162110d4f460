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
            #[cfg(test)]
            pub(super) const NAMED: Named = ($file, Self::KEY_NAMES, Self::ARG_NAMES, Self::BODY);
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

            /// The script, for a call made durable (`RedisStore::durably`),
            /// which loads it again after a `NOSCRIPT`.
            #[allow(dead_code, reason = "only the scripts called durably use it")]
            pub(super) fn script(&self) -> &Script {
                &self.0
            }

            /// A call with the keys and fixed arguments in the script's
            /// order; the caller appends the variable arguments.
            pub(super) fn invoke(&self, keys: &$keys<'_>, args: &$args) -> ScriptInvocation<'_> {
                let mut invocation = self.0.prepare_invoke();
                $(invocation.key(keys.$key);)*
                let $args { $($arg),* } = args;
                $(invocation.arg($arg);)*
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

lua_script! {
    /// A venue-day taken over: a new owner epoch, and its reservations.
    TakeOwnershipScript from "take_ownership.lua";
    keys TakeOwnershipKeys { owner_epoch_key, applied_key, reservations }
    args TakeOwnershipArgs {}
}

lua_script! {
    /// A process's lease in the member list, and the live members.
    HeartbeatScript from "heartbeat.lua";
    keys HeartbeatKeys { members }
    args HeartbeatArgs { member, lease_ms }
}

lua_script! {
    /// Up to a number of due mails of one partition, claimed for one worker.
    ClaimMailScript from "claim_mail.lua";
    keys ClaimMailKeys { pending_by_next_try, outbox, claims }
    args ClaimMailArgs { now_ms, most, lease_ms, token }
}

lua_script! {
    /// A worker's claim on one mail renewed right before it is sent.
    HoldMailScript from "hold_mail.lua";
    keys HoldMailKeys { pending_by_next_try, pending_by_due, claims }
    args HoldMailArgs { id, token, lease_ends_ms }
}

lua_script! {
    /// What became of a claimed mail.
    SettleMailScript from "settle_mail.lua";
    keys SettleMailKeys { outbox, pending_by_next_try, pending_by_due, claims }
    args SettleMailArgs { id, json, next_try_ms, token, delivered }
}

lua_script! {
    /// One import call's residents and their change entry.
    PutResidentsScript from "put_residents.lua";
    keys PutResidentsKeys { residents, changes }
    args PutResidentsArgs { changes_kept_ms }
}

lua_script! {
    /// A cancellation cascade started on a resident's shared dose record.
    StartCascadeScript from "start_cascade.lua";
    keys StartCascadeKeys { doses }
    args StartCascadeArgs { lease_ms }
}

lua_script! {
    /// A shared dose claim ended, or a booked dose forgotten.
    EndDoseClaimScript from "end_dose_claim.lua";
    keys EndDoseClaimKeys { doses }
    args EndDoseClaimArgs { dose, expected, new_value }
}

lua_script! {
    /// A resident's claim on one dose, shared by every process.
    ClaimDoseScript from "claim_dose.lua";
    keys ClaimDoseKeys { doses, kept_refusal }
    args ClaimDoseArgs { dose, claim_id, lease_ms, day, replacing, keyed, prior_dose }
}

lua_script! {
    /// A keyed booking's final refusal kept for every process.
    RememberRefusalScript from "remember_refusal.lua";
    keys RememberRefusalKeys { kept_refusal, doses }
    args RememberRefusalArgs { refusal, kept_for_s, dose_asked, answer_recorded }
}

lua_script! {
    /// One login attempt, for the lockout every process shares.
    LoginAttemptScript from "login_attempt.lua";
    keys LoginAttemptKeys { failures, lock }
    args LoginAttemptArgs { matched, failures_that_lock, window_ms, lock_ms, suffix }
}

impl<'a> CommitKeys<'a> {
    /// The keys of an abandonment of the batch these commit: the same,
    /// without the kill-switch flag (an abandonment is never refused by it).
    pub(super) fn for_abandon(&self) -> AbandonKeys<'a> {
        AbandonKeys {
            owner_epoch_key: self.owner_epoch_key,
            applied_key: self.applied_key,
            reservations: self.reservations,
            audit_log: self.audit_log,
            outbox: self.outbox,
            pending_by_next_try: self.pending_by_next_try,
            pending_by_due: self.pending_by_due,
            withdrawn: self.withdrawn,
            reminded_mark: self.reminded_mark,
            changes: self.changes,
        }
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
    CommitScript::NAMED,
    AbandonScript::NAMED,
    TakeOwnershipScript::NAMED,
    HeartbeatScript::NAMED,
    ClaimMailScript::NAMED,
    HoldMailScript::NAMED,
    SettleMailScript::NAMED,
    PutResidentsScript::NAMED,
    StartCascadeScript::NAMED,
    EndDoseClaimScript::NAMED,
    ClaimDoseScript::NAMED,
    RememberRefusalScript::NAMED,
    LoginAttemptScript::NAMED,
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
            assert!(
                NAMED.iter().any(|(named, ..)| *named == file),
                "{file} has no names in src/store/redis/scripts.rs"
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
