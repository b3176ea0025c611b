//! `mqkit`: inspect and repair the dead-letter queues of mqkit services.
//! Run `mqkit --help`; the logic lives in [`mqkit::cli`].

fn main() -> std::process::ExitCode {
    mqkit::cli::main()
}
