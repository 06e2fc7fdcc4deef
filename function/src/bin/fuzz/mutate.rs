//! Byte-level mutations (AFL's "havoc" stage, in small): bit flips, random and interesting
//! values at random offsets, chunk deletion and duplication, truncation, splicing.

use super::input::{Input, Kind};
use super::json;
use super::rng::Rng;

/// Values that sit on the edges of length and count checks.
const INTERESTING_32: [u32; 12] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/// Tokens that mean something to the parsers under test, inserted into text sections.
const TEXT_TOKENS: &[&str] = &[
    "\r\n",
    "\n",
    ":",
    ";",
    "=",
    "\"",
    "/",
    "//",
    "..",
    "%",
    "%2e%2e",
    "%2F",
    "%00",
    "%ZZ",
    "\\",
    "\0",
    "?",
    "#",
    "@",
    " ",
    "\t",
    "é",
    "\u{202e}",
    "\u{fffd}",
    "s3://",
    "gs://",
    "az://",
    "file:///",
    "https://",
    "--",
    "boundary=",
    "filename=",
    "name=",
    "Content-Disposition: form-data; ",
    "Content-Type: ",
    "ce-",
    "ce-specversion: 1.0",
    "application/json",
    "application/cloudevents+json",
    "multipart/form-data",
    "audio/wav",
    "text/plain",
    "9999999999999999999999",
    "-1",
    "1e308",
    "NaN",
];

/// Keeps mutated inputs from growing without bound (and the run from slowing down).
pub const MAX_SECTION: usize = 256 * 1024;

/// One mutated child of `parent`; `donor` (another corpus entry) feeds splices.
pub fn mutate(rng: &mut Rng, parent: &Input, kinds: &[Kind], donor: &Input) -> Input {
    let mut child = parent.clone();
    child.resize(kinds.len(), Vec::new());
    // Control sections are tiny: mutate them less often than their share.
    let i = loop {
        let i = rng.below(kinds.len());
        if kinds[i] != Kind::Control || rng.one_in(4) {
            break i;
        }
    };
    let other = donor.get(i).map_or(&[][..], Vec::as_slice);
    match kinds[i] {
        Kind::Control => {
            let section = &mut child[i];
            if section.is_empty() {
                section.push(0);
            }
            let at = rng.below(section.len());
            section[at] = rng.byte();
        }
        Kind::Text => havoc(rng, &mut child[i], other, TEXT_TOKENS),
        Kind::Binary => havoc(rng, &mut child[i], other, &[]),
        Kind::Json => {
            if rng.one_in(4) || !json::mutate(rng, &mut child[i], other) {
                havoc(rng, &mut child[i], other, TEXT_TOKENS);
            }
        }
    }
    child
}

/// One to eight stacked byte mutations.
pub fn havoc(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], tokens: &[&str]) {
    for _ in 0..1 + rng.below(8) {
        one_mutation(rng, data, other, tokens);
    }
    data.truncate(MAX_SECTION);
}

fn one_mutation(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], tokens: &[&str]) {
    if data.is_empty() {
        data.push(rng.byte());
        return;
    }
    let at = rng.below(data.len());
    match rng.below(12) {
        0 => data[at] ^= 1 << rng.below(8),
        1 => data[at] = rng.byte(),
        2 => data[at] = data[at].wrapping_add(rng.below(33) as u8).wrapping_sub(16),
        3 | 4 => {
            let value = *rng.pick(&INTERESTING_32);
            let bytes = match rng.below(3) {
                0 => vec![value as u8],
                1 => (value as u16).to_le_bytes().to_vec(),
                _ if rng.one_in(2) => value.to_le_bytes().to_vec(),
                _ => value.to_be_bytes().to_vec(),
            };
            overwrite(data, at, &bytes);
        }
        5 => {
            let len = rng.small_len(data.len() - at);
            data.drain(at..at + len);
        }
        6 => {
            let len = rng.small_len(data.len() - at);
            let chunk = data[at..at + len].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, chunk);
        }
        7 => {
            let random: Vec<u8> = (0..rng.small_len(64)).map(|_| rng.byte()).collect();
            data.splice(at..at, random);
        }
        8 => data.truncate(at),
        9 if !other.is_empty() => {
            // Splice: our head, the donor's tail.
            let from = rng.below(other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        10 if !tokens.is_empty() => {
            let token = rng.pick(tokens).as_bytes();
            data.splice(at..at, token.iter().copied());
        }
        _ => {
            let len = rng.small_len(data.len() - at);
            let value = if rng.one_in(2) { 0 } else { 0xff };
            data[at..at + len].fill(value);
        }
    }
}

/// Writes `bytes` at `at`, growing `data` when they run past its end.
fn overwrite(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let end = at + bytes.len();
    if end > data.len() {
        data.resize(end, 0);
    }
    data[at..end].copy_from_slice(bytes);
}
