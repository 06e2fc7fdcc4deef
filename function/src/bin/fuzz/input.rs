//! An input is a few sections (say: a control byte, headers, a JSON body), each mutated in its
//! own way. Saved inputs are the sections framed as `u32` little-endian length + bytes.

/// How the mutator treats a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A few bytes choosing an entry point, a type or a hint: set to random values.
    Control,
    /// Headers, URIs, form fields: byte mutations plus a dictionary of tokens.
    Text,
    /// JSON: structural mutations when it parses, byte mutations otherwise.
    Json,
    /// A binary format: byte mutations and splices.
    Binary,
}

pub type Input = Vec<Vec<u8>>;

pub fn encode(input: &Input) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.iter().map(|s| s.len() + 4).sum());
    for section in input {
        out.extend_from_slice(&(section.len() as u32).to_le_bytes());
        out.extend_from_slice(section);
    }
    out
}

pub fn decode(mut bytes: &[u8]) -> Option<Input> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        out.push(bytes.get(4..4 + len)?.to_vec());
        bytes = &bytes[4 + len..];
    }
    Some(out)
}

/// Section `i`, or nothing when a saved input has fewer sections.
pub fn section(input: &Input, i: usize) -> &[u8] {
    input.get(i).map_or(&[], Vec::as_slice)
}

/// Byte `i` of the control section (0 when absent).
pub fn control(input: &Input, i: usize) -> usize {
    section(input, 0).get(i).copied().unwrap_or(0) as usize
}
