//! PLACEHOLDER until scripts/gen-flag-tables writes the real table.
use super::cobra::{Arity, CommandSpec};
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        path: "",
        children: &["delete", "get"],
        long: &[("context", Arity::Value), ("namespace", Arity::Value)],
        short: &[('n', Arity::Value)],
    },
    CommandSpec {
        path: "delete",
        children: &[],
        long: &[("context", Arity::Value), ("namespace", Arity::Value)],
        short: &[('n', Arity::Value)],
    },
    CommandSpec {
        path: "get",
        children: &[],
        long: &[("context", Arity::Value), ("namespace", Arity::Value)],
        short: &[('n', Arity::Value)],
    },
];
#[allow(dead_code)]
pub const GENERATED_FROM: &str = "placeholder";
