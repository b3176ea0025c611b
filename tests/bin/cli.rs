//! The `mqkit` command, built inside the tests package so integration tests
//! can run it as a child process (`CARGO_BIN_EXE_mqkit-test-cli`) and kill
//! it midway. Same code as mqkit's own `mqkit` binary: both call
//! `mqkit::cli::main()`.

fn main() -> std::process::ExitCode {
    mqkit::cli::main()
}
