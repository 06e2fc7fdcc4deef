//! One realistic payload per shape, every error variant, and odd JSON everywhere.

mod aws;
mod fixtures;
mod gcs_azure;
mod requests;
mod robustness;
