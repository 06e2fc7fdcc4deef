//! The real checkpoint: loading both formats, the log-mel front-end and the encoder against
//! the faster-whisper / CTranslate2 reference tensors.

mod common;

use burn::tensor::{Tensor, TensorData};
use tingxie::whisper::mel::WINDOW_FRAMES;
use tingxie::whisper::weights::{self, canonical_tensors};

#[test]
fn ct2_checkpoint_has_the_documented_shapes() {
    let source = weights::open(&common::model_dir()).unwrap();
    let c = source.config();
    assert_eq!((c.n_mels, c.n_audio_ctx, c.n_audio_state, c.n_audio_head, c.n_audio_layer), (80, 1500, 384, 6, 4));
    assert_eq!((c.n_vocab, c.n_text_ctx, c.n_text_head, c.n_text_layer), (51864, 448, 6, 4));
    assert!(!c.is_multilingual());
    let embeddings = source.tensor("decoder/embeddings/weight", &[51864, 384]).unwrap();
    assert_eq!(embeddings.data.len(), 51864 * 384);
    let err = source.tensor("decoder/embeddings/weight", &[384, 51864]).unwrap_err();
    assert!(err.to_string().contains("decoder/embeddings/weight"), "{err}");
    let err = source.tensor("decoder/layer_9/ffn/linear_0/weight", &[1536, 384]).unwrap_err();
    assert!(err.to_string().contains("decoder/layer_9/ffn/linear_0/weight"), "{err}");
}

#[test]
fn both_formats_give_identical_tensors() {
    let ct2 = weights::open(&common::model_dir()).unwrap();
    let hf = weights::open(&common::hf_model_dir()).unwrap();
    assert_eq!(ct2.config(), hf.config());
    let names = canonical_tensors(ct2.config());
    assert_eq!(names.len(), 11 + 4 * 12 + 4 * 20);
    for (name, shape) in names {
        let a = ct2.tensor(&name, &shape).unwrap();
        let b = hf.tensor(&name, &shape).unwrap();
        assert_eq!(a, b, "tensor {name} differs between formats");
    }
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("tingxie-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = weights::open(&dir).err().expect("empty dir must fail").to_string();
    assert!(err.contains("model.bin") && err.contains("model.safetensors"), "{err}");
    // A model.bin cut short is reported as truncated, not a panic.
    let full = std::fs::read(common::model_dir().join("model.bin")).unwrap();
    std::fs::write(dir.join("model.bin"), &full[..1_000_000]).unwrap();
    let err = weights::open(&dir).err().expect("truncated file must fail").to_string();
    assert!(err.contains("truncated"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn log_mel_matches_faster_whisper() {
    let samples = tingxie::audio::decode_file(&common::speech("s01.wav")).unwrap();
    let mel = common::transcriber().log_mel(&samples);
    let (shape, reference) = common::read_npy(&common::fixtures().join("speech/reference/s01.mel.npy"));
    assert_eq!(shape, vec![mel.n_mels, mel.frames]);
    let diff = max_abs_diff(&mel.data, &reference);
    assert!(diff < 1e-4, "max |mel - reference| = {diff}");
}

#[test]
fn encoder_matches_ctranslate2() {
    let t = common::transcriber();
    let samples = tingxie::audio::decode_file(&common::speech("s01.wav")).unwrap();
    let mel = t.log_mel(&samples);
    let window = mel.window(0, mel.content_frames().min(WINDOW_FRAMES));
    let input = Tensor::from_data(TensorData::new(window, [1, 80, WINDOW_FRAMES]), &t.model.device);
    let encoded: Vec<f32> = t.model.encode(input).into_data().convert::<f32>().into_vec().unwrap();
    let (shape, reference) = common::read_npy(&common::fixtures().join("speech/reference/s01.encoder.npy"));
    assert_eq!(shape, vec![150, 384]);
    let diff = max_abs_diff(&encoded[..150 * 384], &reference);
    assert!(diff < 1e-3, "max |encoder - reference| = {diff}");
}

/// The tokenizer decodes without building the BPE merges; its text is the `tokenizers` crate's,
/// token by token over the whole text vocabulary and for sequences that split characters.
#[test]
fn decoding_matches_the_tokenizers_crate() {
    use tingxie::whisper::tokenizer::WhisperTokenizer;
    let dir = common::model_dir();
    let ours = WhisperTokenizer::load(&dir, 51864).unwrap();
    let reference = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let eot = ours.specials.eot;
    assert_eq!(eot, 50256);
    for id in 0..eot {
        assert_eq!(ours.decode(&[id]), reference.decode(&[id], false).unwrap(), "token {id}");
    }
    let mut seed = 7u64;
    for len in [2usize, 3, 5, 17, 64] {
        for _ in 0..200 {
            let ids: Vec<u32> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 33) % eot as u64) as u32
                })
                .collect();
            assert_eq!(ours.decode(&ids), reference.decode(&ids, false).unwrap(), "{ids:?}");
        }
    }
    // Specials and timestamps are left out; a prompt still encodes (the full tokenizer, built now).
    let text = ours.encode(" Hello world").unwrap();
    assert_eq!(text, reference.encode(" Hello world", false).unwrap().get_ids());
    let mut with_specials = vec![ours.specials.sot, ours.specials.no_timestamps];
    with_specials.extend(&text);
    with_specials.extend([ours.specials.timestamp_begin + 3, eot]);
    assert_eq!(ours.decode(&with_specials), " Hello world");
    assert_eq!(ours.language_token("en"), reference.token_to_id("<|en|>"));
    assert_eq!(ours.specials.no_speech, reference.token_to_id("<|nocaptions|>").or(reference.token_to_id("<|nospeech|>")).unwrap());
}

/// f16 weights are read in the mapped file (the embedding sits at an odd offset), outlive the
/// reader, and equal their widened values.
#[test]
fn f16_weights_are_read_in_place() {
    use tingxie::whisper::weights::F16Rows;
    let source = weights::open(&common::model_dir()).unwrap();
    let name = "decoder/embeddings/weight";
    let rows = source.tensor_f16(name, &[51864, 384]).unwrap().expect("tiny.en stores f16");
    assert!(matches!(rows, F16Rows::Mapped { .. }), "{rows:?}");
    let widened = source.tensor(name, &[51864, 384]).unwrap().data;
    drop(source);
    assert_eq!(rows.values(), widened.len());
    let halves = rows.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]));
    assert!(halves.zip(&widened).all(|(h, &f)| h.to_f32() == f));
}

/// The CPU kernels and the generic implementation (what every GPU runs, here on the CPU) on
/// the real model and real audio: the encoder output and the decoder's logits, step by step,
/// for one row and for three beams, agree within 2e-3 (f32 sums in different orders over
/// activations of up to ~50 and logits of up to ~30).
#[test]
fn cpu_kernels_and_generic_implementation_agree_layer_by_layer() {
    use tingxie::device::GenericCpu;
    use tingxie::whisper::decoding::search::StepModel;
    use tingxie::whisper::session::WindowSession;
    use tingxie::whisper::Transcriber;

    let kernels = common::transcriber();
    let generic: Transcriber<GenericCpu> = Transcriber::load(&common::model_dir(), &Default::default()).unwrap();
    let samples = tingxie::audio::decode_file(&common::speech("s01.wav")).unwrap();
    let mel = kernels.log_mel(&samples);
    let window = mel.window(0, mel.content_frames().min(WINDOW_FRAMES));
    let a = kernels.model.encode(Tensor::from_data(TensorData::new(window.clone(), [1, 80, WINDOW_FRAMES]), &kernels.model.device));
    let b = generic.model.encode(Tensor::from_data(TensorData::new(window, [1, 80, WINDOW_FRAMES]), &generic.model.device));
    let (a_values, b_values): (Vec<f32>, Vec<f32>) = (a.clone().into_data().into_vec().unwrap(), b.clone().into_data().into_vec().unwrap());
    let diff = max_abs_diff(&a_values, &b_values);
    assert!(diff < 2e-3, "encoder: max |kernels - generic| = {diff}");

    let (mut one, mut two) = (WindowSession::new(&kernels.model, a), WindowSession::new(&generic.model, b));
    let sot = kernels.tokenizer.specials.sot;
    let compare = |what: &str, x: Vec<Vec<f32>>, y: Vec<Vec<f32>>| {
        assert_eq!(x.len(), y.len(), "{what}: rows");
        for (row, (x, y)) in x.iter().zip(&y).enumerate() {
            let diff = max_abs_diff(x, y);
            assert!(diff < 2e-3, "{what}, row {row}: max |kernels - generic| = {diff}");
        }
    };
    // A prompt of previous text (padded to 256 positions by the generic implementation).
    let prompt: Vec<u32> = vec![kernels.tokenizer.specials.sot_prev, 400, 318, 257, 1332, sot];
    compare("prompt", one.feed_prompt(&prompt, Some(prompt.len() - 1)).unwrap(), two.feed_prompt(&prompt, Some(prompt.len() - 1)).unwrap());
    let mut tokens = vec![50363u32];
    for step in 0..6 {
        compare(&format!("step {step}"), one.step(&tokens), two.step(&tokens));
        // Widen to three beams after the first step, then reorder them.
        let rows: &[usize] = if step == 0 { &[0, 0, 0] } else { &[2, 0, 1] };
        one.select_rows(rows);
        two.select_rows(rows);
        tokens = vec![464 + step, 2068, 7586];
    }
}
