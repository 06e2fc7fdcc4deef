//! Bugs the fuzzer found that are not fixed yet, in code this harness does not own. A failure
//! matching one is counted (the report's "known bugs hit") and fuzzing goes on past it, so that
//! it does not hide every other finding of its target; `--strict` makes it a failure again.
//! Remove an entry once its bug is fixed: the target then fails if the bug comes back.

pub struct Known {
    pub target: &'static str,
    /// Part of the panic message (`file:line` for a crash, the property's words otherwise).
    pub pattern: &'static str,
    pub why: &'static str,
}

pub const KNOWN: &[Known] = &[Known {
    target: "multipart",
    pattern: "stall: the multipart stream",
    why: "actix-multipart 0.7.2 waits for more data, unwoken, when a complete body ends inside a \
              field with a lone CR (`...name=l\\r\\n\\r\\n\\r`); the server answers such a form 400 a \
              second after its body arrived (server/openai.rs `parser_stalled`).",
}];

/// The known bug a failure message points at, if any.
pub fn matching(target: &str, message: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.target == target && message.contains(k.pattern))
}
