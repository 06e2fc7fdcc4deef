use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = tingxie_loadtest::cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match rt.block_on(tingxie_loadtest::cli::main(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("tingxie-loadtest: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
