//! `cargo-airlock`: parse, dispatch, turn errors into messages and exit codes; nothing else.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use airlock::error::{self, ExitKind};
use airlock::render::{self, ErasedReport, Format};

use cli::{Cli, Command};

/// The static binary `dist` releases allocates with mimalloc, as ripgrep's does with jemalloc:
/// musl's own `malloc` serialises every thread on one lock and maps and unmaps each buffer
/// of more than about 128 KiB, so with it `vendor` took 1.3× the time of the same code on
/// glibc's (`vendor --platform` of this repository: 7,000 futex calls and 3,300 `munmap`s,
/// against 275 and 21). Builds for glibc keep glibc's.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `cargo airlock build` runs us as `cargo-airlock airlock build`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "airlock") {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    airlock::progress::set_verbosity(cli.global.verbosity());
    let format = Format::from(cli.global.format);
    let kind = match run(&cli) {
        Ok(report) => emit(report.as_ref(), format),
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(hint) = error::hint(&err) {
                eprintln!("hint: {hint}");
            }
            error::exit_kind(&err)
        }
    };
    // An interrupt exits from its own thread once the staged outputs are removed.
    airlock::atomic::wait_if_interrupted();
    ExitCode::from(kind.code() as u8)
}

fn run(cli: &Cli) -> anyhow::Result<Box<dyn ErasedReport>> {
    let g = &cli.global;
    Ok(match &cli.command {
        Command::Build(args) => Box::new(airlock::compile::build(&args.to_options(g)?)?),
        Command::Inspect(args) => Box::new(airlock::elf::inspect(&args.to_options()?)?),
        Command::Doctor(args) => Box::new(airlock::compile::doctor(&args.to_options(g)?)?),
        Command::Vendor(args) => Box::new(airlock::vendoring::vendor(&args.to_options(g))?),
        Command::Verify(args) => Box::new(airlock::verify::verify(&args.to_options(g))?),
        Command::Image(args) => Box::new(airlock::oci::image::image(&args.to_options(g)?)?),
        Command::Push(args) => Box::new(airlock::registry::push(&args.to_options(g)?)?),
        Command::Report(args) => Box::new(airlock::report::report(&args.to_options(g)?)?),
        Command::Dist(args) => Box::new(airlock::release::dist(&args.to_options(g)?)?),
        Command::Init(args) => Box::new(airlock::init::init(&args.to_options(g))?),
        Command::Keygen(args) => Box::new(airlock::signing::keygen(&args.to_options()?)?),
        Command::Sign(args) => Box::new(airlock::signing::sign(&args.to_options(g)?)?),
    })
}

/// Prints the report on stdout; a closed pipe (`| head`) is not an error.
fn emit(report: &dyn ErasedReport, format: Format) -> ExitKind {
    let Some(text) = render::render(report, format) else {
        eprintln!("error: this command has no {format:?} output; use --format human or json");
        return ExitKind::Input;
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        // The report was made; the machine could not take it (a full disk behind `>`).
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            return ExitKind::Environment;
        }
    }
    report.exit()
}
