//! `runner <kernel ELF> [args...]`: see `runner --help` and the library documentation.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    let status = match runner::run(args) {
        Ok(status) => status,
        Err(error) => {
            eprintln!("runner: {error}");
            runner::EXIT_RUNNER_ERROR
        }
    };
    std::process::exit(status);
}
