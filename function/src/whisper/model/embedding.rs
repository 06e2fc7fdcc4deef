//! The decoder's token embeddings, which are also its output projection (tied weights): the
//! largest tensor of the model (51,864 × 384 for tiny.en), read whole on every decoding step.
//!
//! On burn's CPU backend the checkpoint's `[vocab, d]` rows stay in host memory as stored (f16
//! for CTranslate2 checkpoints) and the logits are a [`HostMatrix`] product: half the bytes of
//! f32 to stream per step, and nothing to widen or transpose at load. Other backends get the
//! `[d, vocab]` f32 matrix burn's product wants.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use std::sync::Arc;

use super::cpu_ops;
use super::host_matrix::HostMatrix;
use super::layers::upload;
use crate::error::Result;
use crate::whisper::weights::TensorSource;

const NAME: &str = "decoder/embeddings/weight";

#[derive(Debug, Clone)]
pub enum TokenEmbedding<B: Backend> {
    /// `[d, vocab]`: the output projection as the matrix product wants it; a token's embedding
    /// is one of its columns.
    Device(Tensor<B, 2>),
    /// The checkpoint's `[vocab, d]` rows, for the CPU kernel.
    Host(Arc<HostMatrix>),
}

impl<B: Backend> TokenEmbedding<B> {
    pub fn load(source: &dyn TensorSource, vocab: usize, d: usize, device: &B::Device) -> Result<Self> {
        if !cpu_ops::is_cpu::<B>() {
            return Ok(TokenEmbedding::Device(upload(source.tensor(NAME, &[vocab, d])?.transposed(), device)));
        }
        Ok(TokenEmbedding::Host(Arc::new(HostMatrix::load(source, NAME, vocab, d)?)))
    }

    /// Embeddings of `tokens` `[batch, n]`: `[batch, n, d]`.
    pub fn embed(&self, tokens: &[u32], batch: usize, device: &B::Device) -> Tensor<B, 3> {
        let n = tokens.len() / batch.max(1);
        match self {
            TokenEmbedding::Device(projection) => {
                let d = projection.dims()[0];
                let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
                let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [tokens.len()]), device);
                projection.clone().select(1, ids).transpose().reshape([batch, n, d])
            }
            TokenEmbedding::Host(table) => {
                let d = table.cols();
                let mut out = vec![0.0f32; tokens.len() * d];
                for (row, &token) in out.chunks_exact_mut(d).zip(tokens) {
                    table.widen(token as usize, 1, row);
                }
                Tensor::from_data(TensorData::new(out, [batch, n, d]), device)
            }
        }
    }

    /// Logits of hidden states `[rows, d]`, one `Vec` per row.
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Vec<Vec<f32>> {
        match self {
            TokenEmbedding::Device(projection) => {
                let vocab = projection.dims()[1];
                let flat: Vec<f32> = hidden.matmul(projection.clone()).into_data().convert::<f32>().into_vec().expect("float logits");
                flat.chunks(vocab).map(<[f32]>::to_vec).collect()
            }
            TokenEmbedding::Host(table) => {
                let values: Vec<f32> = hidden.into_data().convert::<f32>().into_vec().expect("float hidden states");
                table.product(&values, None).chunks(table.rows()).map(<[f32]>::to_vec).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_rows_are_the_table_rows() {
        let d = 8;
        let table = HostMatrix::F16 { rows: (0..4 * d).map(|i| half::f16::from_f32(i as f32)).collect::<Vec<_>>().into(), cols: d };
        let embedding = TokenEmbedding::<burn::backend::Flex>::Host(Arc::new(table));
        let out = embedding.embed(&[3, 0, 2, 2], 2, &Default::default());
        assert_eq!(out.dims(), [2, 2, d]);
        let got: Vec<f32> = out.into_data().into_vec().unwrap();
        let want: Vec<f32> = [3, 0, 2, 2].iter().flat_map(|&t| (0..d).map(move |i| (t * d + i) as f32)).collect();
        assert_eq!(got, want);
    }
}
