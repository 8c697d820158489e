//! The `pier` binary: parse, run, map the outcome to an exit code.

fn main() -> std::process::ExitCode {
    pier::cli::main().into()
}
