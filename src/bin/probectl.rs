//! `probectl`: the command line for probed. See `probectl --help`.

fn main() -> std::process::ExitCode {
    probed::cli::main()
}
