//! Turning encoder output into tokens: logit rules, search strategies, options.

pub mod options;
pub mod rules;
pub mod search;
