//! The `carapace` binary. All behaviour lives in the library.

fn main() -> std::process::ExitCode {
    carapace_server::cli::main()
}
