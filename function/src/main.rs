//! The `tingxie` binary: one image, several commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use tingxie::device::{self, AnyTranscriber, DeviceKind};
use tingxie::output::{self, Format};
use tingxie::whisper::{DecodeOptions, Task, ZhScript};
use tingxie_model_cache::cli::{self as cache_cli, CacheCommand};
use tingxie_model_cache::{CacheConfig, LocalModel, ModelCache};

#[derive(Parser)]
#[command(name = "tingxie", version, about = "Speech-to-text with Whisper on burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and CloudEvents (the Knative container command). Configured by environment.
    Serve(Box<tingxie::config::ServeConfig>),
    /// Transcribe audio files (WAV, FLAC, MP3, Ogg Vorbis, Ogg Opus).
    Transcribe(Box<TranscribeArgs>),
    /// The node-local model cache (TINGXIE_CACHE_DIR): prefetch, ls, gc, verify.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Args)]
struct TranscribeArgs {
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Model: a local directory (CTranslate2 or Hugging Face layout), used in place, or a URI
    /// (s3://, gs://, az://, file://, https://) pulled into the node cache TINGXIE_CACHE_DIR.
    #[arg(long, env = "TINGXIE_MODEL", default_value = "models/whisper-tiny-en")]
    model: String,
    /// text, json, verbose_json, srt or vtt.
    #[arg(long, default_value = "text")]
    format: Format,
    /// 1 for greedy decoding; faster-whisper's default is 5.
    #[arg(long, default_value_t = 5)]
    beam_size: usize,
    /// Independent windows per batch (faster-whisper's batched pipeline); 0 = sequential
    /// windows prompted by the text before them, faster-whisper's `transcribe`.
    #[arg(long, default_value_t = 0)]
    batch_size: usize,
    /// Transcribe only the speech Silero VAD finds (faster-whisper's `vad_filter`); batches
    /// always cut at speech.
    #[arg(long)]
    vad_filter: bool,
    /// Silero VAD's parameters as JSON, e.g. '{"min_silence_duration_ms": 500}' (faster-whisper's
    /// `VadOptions` fields; the rest keep their defaults).
    #[arg(long)]
    vad_parameters: Option<tingxie::vad::VadOptions>,
    /// Silero VAD's weights: a folder (`scripts/fetch-vad.sh`) or a URI through the node cache.
    #[arg(long, env = "TINGXIE_VAD_MODEL", default_value = "models/silero-vad")]
    vad_model: String,
    /// Spoken language (ISO 639-1); detected when omitted on multilingual models.
    #[arg(long)]
    language: Option<String>,
    /// transcribe, or translate (into English; multilingual models).
    #[arg(long, default_value = "transcribe")]
    task: Task,
    /// simplified or traditional: steer Mandarin to this script (an initial prompt, used when
    /// --prompt is not given).
    #[arg(long)]
    zh_script: Option<ZhScript>,
    /// Text the model should continue from: names, terms, spelling.
    #[arg(long)]
    prompt: Option<String>,
    /// Sample with this single temperature instead of the fallback schedule 0, 0.2, ..., 1.
    #[arg(long)]
    temperature: Option<f32>,
    /// CPU threads for the compute kernels (default: all cores).
    #[arg(long, env = "TINGXIE_THREADS")]
    threads: Option<usize>,
    /// cpu, cpu-generic, cuda, cuda:N or wgpu.
    #[arg(long, env = "TINGXIE_DEVICE", default_value = "cpu")]
    device: DeviceKind,
    /// Where CUDA/wgpu keep compiled kernels and autotune results (default: `kernels` under
    /// TINGXIE_CACHE_DIR).
    #[arg(long, env = "TINGXIE_KERNEL_CACHE_DIR")]
    kernel_cache_dir: Option<PathBuf>,
    /// Before the files, run the model on every shape requests use (as `serve` does on
    /// CUDA/wgpu), so that the files' timings leave out kernel compilation.
    #[arg(long)]
    warm_up: bool,
    /// Print model-load and per-file timings as JSON lines on stderr.
    #[arg(long)]
    timings: bool,
    /// Write FILE_STEM.EXT here instead of printing (needed for srt/vtt with several files).
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    tingxie::startup::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => tingxie::server::serve(*config),
        Command::Transcribe(args) => transcribe(*args),
        Command::Cache { command } => match runtime().block_on(cache_cli::run(command, CacheConfig::from_env())) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("tingxie: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// The model directory for `--model`: a local path as it is, a URI through the node cache.
/// The returned guard keeps the cached copy from being evicted while it is in use.
fn resolve_model(model: &str, timings: bool) -> Result<(PathBuf, Option<LocalModel>), String> {
    if !model.contains("://") {
        return Ok((PathBuf::from(model), None));
    }
    let cache = ModelCache::new(CacheConfig::from_env()).map_err(|e| e.to_string())?;
    let local = runtime().block_on(cache.ensure(model)).map_err(|e| e.to_string())?;
    if timings {
        eprintln!(
            "{}",
            serde_json::json!({"model": model, "cache": local.outcome.as_str(), "bytes_downloaded": local.bytes_downloaded, "cache_s": local.elapsed.as_secs_f64()})
        );
    }
    Ok((local.path.clone(), Some(local)))
}

fn transcribe(args: TranscribeArgs) -> ExitCode {
    if let Some(threads) = args.threads {
        device::set_cpu_threads(threads);
    }
    let subtitles = matches!(args.format, Format::Srt | Format::Vtt);
    if subtitles && args.files.len() > 1 && args.output_dir.is_none() {
        eprintln!("tingxie: several files in {} need --output-dir", args.format);
        return ExitCode::from(2);
    }
    let options = DecodeOptions {
        beam_size: args.beam_size,
        batch_size: args.batch_size,
        vad_filter: args.vad_filter.then_some(true),
        vad_parameters: args.vad_parameters,
        language: args.language.clone(),
        task: args.task,
        zh_script: args.zh_script,
        initial_prompt: args.prompt.clone(),
        temperatures: args.temperature.map_or(DecodeOptions::default().temperatures, |t| vec![t]),
        ..DecodeOptions::default()
    };
    if let Err(e) = options.validate() {
        eprintln!("tingxie: {e}");
        return ExitCode::from(2);
    }
    let load_start = Instant::now();
    let (model_dir, _in_use) = match resolve_model(&args.model, args.timings) {
        Ok(resolved) => resolved,
        Err(e) => {
            eprintln!("tingxie: cannot fetch model {}: {e}", args.model);
            return ExitCode::FAILURE;
        }
    };
    if args.device.compiles_kernels() {
        let root = args.kernel_cache_dir.clone().unwrap_or_else(tingxie::kernels::default_root);
        let role = tingxie::kernels::configure(&root, args.device);
        if args.timings {
            eprintln!("{}", serde_json::json!({"kernel_cache": format!("{role:?}")}));
        }
    }
    let needs_vad = options.vad_filter == Some(true) || options.batch_size > 0;
    let loaded = AnyTranscriber::load(&model_dir, args.device).and_then(|mut model| {
        if needs_vad {
            let (vad_dir, _vad_in_use) = resolve_model(&args.vad_model, args.timings).map_err(tingxie::Error::Model)?;
            model.add_vad(&vad_dir)?;
        }
        Ok(model)
    });
    let model = match loaded {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tingxie: cannot load model from {}: {e}", model_dir.display());
            return ExitCode::FAILURE;
        }
    };
    if args.timings {
        eprintln!(
            "{}",
            serde_json::json!({"model": args.model, "device": args.device.to_string(), "load_s": load_start.elapsed().as_secs_f64()})
        );
    }
    if args.warm_up {
        let (start, before) = (Instant::now(), args.timings.then(tingxie::kernels::settled_counts).flatten());
        if let Err(e) = device::warm_up(&model, options.beam_size, options.batch_size) {
            eprintln!("tingxie: warm-up failed: {e}");
            return ExitCode::FAILURE;
        }
        if args.timings {
            eprintln!("{}", with_kernel_counts(serde_json::json!({"warm_up_s": start.elapsed().as_secs_f64()}), before));
        }
    }
    let mut failed = false;
    for file in &args.files {
        let start = Instant::now();
        let kernels_before = args.timings.then(tingxie::kernels::settled_counts).flatten();
        let result = tingxie::audio::decode_file(file).and_then(|samples| {
            let decoded = start.elapsed().as_secs_f64();
            let transcript = model.transcribe(&samples, &options)?;
            if args.timings {
                let total = start.elapsed().as_secs_f64();
                let audio_s = samples.len() as f64 / f64::from(tingxie::audio::SAMPLE_RATE);
                let line = serde_json::json!({"file": file, "audio_s": audio_s, "decode_audio_s": decoded, "transcribe_s": total - decoded, "real_time_factor": (total - decoded) / audio_s});
                eprintln!("{}", with_kernel_counts(line, kernels_before));
            }
            Ok(transcript)
        });
        match result {
            Ok(transcript) => {
                let rendered = output::render(&transcript, args.format);
                if let Err(e) = emit(file, &rendered, &args) {
                    eprintln!("tingxie: {}: {e}", file.display());
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("tingxie: {}: {e}", file.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `line` with the kernels compiled and autotune runs since `before` (JIT backends only).
fn with_kernel_counts(mut line: serde_json::Value, before: Option<tingxie::kernels::KernelCounts>) -> serde_json::Value {
    if let (Some(before), Some(after)) = (before, tingxie::kernels::settled_counts()) {
        let during = after - before;
        line["kernels_compiled"] = during.kernels_compiled.into();
        line["autotune_runs"] = during.autotune_runs.into();
    }
    line
}

fn emit(file: &Path, rendered: &str, args: &TranscribeArgs) -> std::io::Result<()> {
    match &args.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            std::fs::write(dir.join(format!("{stem}.{}", args.format.extension())), rendered)
        }
        None => {
            // JSON documents one per line, so several files make JSON Lines.
            let compact = matches!(args.format, Format::Json | Format::VerboseJson);
            print!("{}", if compact { format!("{}\n", rendered.trim_end()) } else { rendered.to_string() });
            Ok(())
        }
    }
}
