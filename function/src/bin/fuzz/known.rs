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

pub const KNOWN: &[Known] = &[
    Known {
        target: "multipart",
        pattern: "actix-multipart-0.7.2/src/multipart.rs:301",
        why: "actix-multipart 0.7.2 slices a body line as `&chunk[..2]` and `&chunk[2..len - 2]` \
              before checking it is that long: with a boundary of 1 to 3 characters (`boundary=x`) \
              a line of 1 to 3 bytes panics the request's worker. Guard the multipart reading in \
              server/openai.rs (refuse boundaries under 4 characters, or catch the panic as a 400).",
    },
    Known {
        target: "multipart",
        pattern: "stall: the multipart stream",
        why: "actix-multipart 0.7.2 waits for more data, unwoken, when a complete body ends inside a \
              field with a lone CR (`...name=l\\r\\n\\r\\n\\r`): the request holds its queue place \
              until the body deadline and gets 408 instead of 400 at once.",
    },
    Known {
        target: "events",
        pattern: "cannot be written as HTTP",
        why: "a structured-mode CloudEvent whose `id` holds a control character is transcribed, then \
              its reply fails to build (the id goes into the `ce-tingxiecause` header) and the server \
              answers 500, so the event is redelivered and transcribed again. Fix in \
              server/events.rs: refuse such ids before the work, or leave them out of the header.",
    },
];

/// The known bug a failure message points at, if any.
pub fn matching(target: &str, message: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.target == target && message.contains(k.pattern))
}
