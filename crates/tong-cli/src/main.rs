//! `tong`: an OCI container runtime with runc's command line, so containerd, podman and
//! people who know runc can drive it as they drive runc.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tong::plugins::{self, PluginHost};
use tong::{Console, CreateOptions, Error, PluginKind, Runtime};

mod signals;
mod update;

#[derive(Parser)]
#[command(
    name = "tong",
    version,
    about = "tong: a Linux container runtime (OCI, runc-compatible command line)"
)]
struct Cli {
    /// Directory holding container state.
    #[arg(long, global = true, default_value = tong::runtime::DEFAULT_ROOT)]
    root: PathBuf,
    /// Also write errors and warnings to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of --log: text or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility; tong manages cgroups itself (cgroupfs).
    #[arg(long, global = true, hide = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Container id.
    id: String,
    /// Path to the bundle (the directory holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's pid to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Backend plugin per kind, e.g. `--backend cgroup=v1` (repeatable); beats the
    /// config's `tong.backend.<kind>` annotation and probing.
    #[arg(long = "backend", value_name = "KIND=NAME")]
    backends: Vec<String>,
    /// Unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is true;
    /// without it a foreground `run` relays the terminal through tong's stdio.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Run tong's minimal init as pid 1: it reaps orphans and forwards signals to the
    /// program (also the annotation tong.init=true).
    #[arg(long)]
    init: bool,
    /// Accepted for runc compatibility (tong does not create session keyrings).
    #[arg(long, hide = true)]
    no_new_keyring: bool,
    /// Do not use pivot_root: take the chroot rootfs backend unless one is chosen with
    /// --backend rootfs=NAME or the tong.backend.rootfs annotation (runc's --no-pivot).
    #[arg(long)]
    no_pivot: bool,
    /// Pass N more descriptors (3 up to 3+N, after any LISTEN_FDS ones) to the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Container id.
    id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// A JSON file with an OCI process object; replaces the command and the flags below.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Add an environment variable (KEY=VALUE), repeatable.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group ids (repeatable).
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Allocate a terminal; its master goes to --console-socket, or without one (in the
    /// foreground) tong relays it through its own stdio.
    #[arg(short, long)]
    tty: bool,
    /// Unix socket that receives the terminal's master (SCM_RIGHTS).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Pass N more descriptors (3 up to 3+N-1) to the process.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container that waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's OCI state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes.
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process in the container's cgroup.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it made on the host.
    Delete {
        id: String,
        /// Kill the container first if it still runs.
        #[arg(short, long)]
        force: bool,
    },
    /// Create, start and wait for a container, then delete it; exits with its code.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started, leaving the container running.
        #[arg(short, long)]
        detach: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run a process inside a running container; exits with its code (255 when tong
    /// itself fails, as runc does).
    Exec(ExecArgs),
    /// Freeze every process of a running container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        id: String,
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Print cgroup statistics as JSON events: once with --stats, else every interval
    /// until the container stops.
    Events {
        id: String,
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Seconds between events.
        #[arg(long, default_value = "5s")]
        interval: humantime::Duration,
    },
    /// Change a running container's cgroup limits.
    Update(update::UpdateArgs),
    /// Print the features this runtime implements (OCI runtime-spec features JSON).
    Features,
    /// Write a default config.json into the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// The pool of ready-made network namespaces (docs/pools.md).
    Pool {
        #[command(subcommand)]
        action: PoolAction,
    },
    /// List the backend plugins found, with their probe results.
    Plugins {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
    },
}

#[derive(Subcommand)]
enum PoolAction {
    /// Print the pool's target and how many namespaces are ready, as JSON.
    Status,
    /// Set the target to N (default: keep it) and make or destroy namespaces until N
    /// are ready; `start` and `run` then refill it in the background as containers
    /// take them.
    Fill {
        n: Option<u32>,
        /// Give up at once if another fill is running (the refill after a start).
        #[arg(long, hide = true)]
        background: bool,
    },
    /// Set the target to 0 and destroy every pooled namespace.
    Drain,
}

fn main() -> ExitCode {
    // Before anything opens a descriptor: the caller's descriptors are 3 up to this.
    let first_unopened_fd = first_unopened_fd();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if e.use_stderr() {
                // Engines show only the --log file: a flag tong does not know must
                // reach it too, not just stderr.
                let args: Vec<String> = std::env::args().skip(1).collect();
                // clap's first paragraph, on one line (the usage text follows).
                let msg = e.to_string();
                let first: Vec<&str> = msg
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let first = first.join(" ");
                Logger::from_args(&args).write(first.strip_prefix("error: ").unwrap_or(&first));
            }
            e.exit()
        }
    };
    let log = Logger {
        path: cli.log.clone(),
        format: cli.log_format,
    };
    match execute(&cli, first_unopened_fd) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log.error(&e.to_string());
            // runc exits 255 when exec itself fails, so callers can tell it from the
            // process's own status.
            ExitCode::from(if matches!(cli.command, Command::Exec(_)) {
                255
            } else {
                1
            })
        }
    }
}

fn execute(cli: &Cli, first_unopened_fd: i32) -> Result<u8, Error> {
    let runtime = Runtime::new(&cli.root, PluginHost::from_env()).with_log(Arc::new(Logger {
        path: cli.log.clone(),
        format: cli.log_format,
    }));
    match &cli.command {
        Command::Create(args) => {
            runtime.create(
                &args.id,
                &args.bundle,
                &create_options(args, first_unopened_fd)?,
            )?;
        }
        Command::Start { id } => {
            runtime.start(id)?;
            refill_pool(cli);
        }
        Command::State { id } => print_json(&runtime.state(id)?)?,
        Command::Kill { id, signal, all } => runtime.kill(id, signals::parse(signal)?, *all)?,
        Command::Delete { id, force } => runtime.delete(id, *force)?,
        Command::Run { create, detach } => {
            let code = runtime.run(
                &create.id,
                &create.bundle,
                &create_options(create, first_unopened_fd)?,
                *detach,
                true,
            );
            // Foreground, the container has exited by now: the refill is for the next.
            refill_pool(cli);
            let code = code?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Command::List { format, quiet } => list(&runtime, format, *quiet)?,
        Command::Exec(args) => {
            check_preserved(args.preserve_fds, 0, first_unopened_fd)?;
            let process = exec_process(&runtime, args)?;
            let opts = tong::ExecOptions {
                detach: args.detach,
                pid_file: args.pid_file.clone(),
                forward_signals: true,
                console: console(args.console_socket.as_ref()),
                // containerd's shim and conmon reap it and read its exit status: a
                // process that exits before tong does must stay for them.
                reap_detached: false,
                // Each onto its own number: 3+i stays 3+i.
                extra_fds: (3..3 + args.preserve_fds as i32).collect(),
                ..tong::ExecOptions::default()
            };
            let code = runtime.exec(&args.id, &process, &opts)?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Command::Pause { id } => runtime.pause(id)?,
        Command::Resume { id } => runtime.resume(id)?,
        Command::Ps { id, format } => ps(&runtime, id, format)?,
        Command::Events {
            id,
            stats,
            interval,
        } => events(&runtime, id, *stats, (*interval).into())?,
        Command::Update(args) => runtime.update(&args.id, &update::resources(args)?)?,
        Command::Features => print_json(&tong::features::features())?,
        Command::Spec { bundle } => spec(bundle)?,
        Command::Plugins { format } => list_plugins(runtime.plugins(), format)?,
        Command::Pool { action } => print_json(&match action {
            PoolAction::Status => runtime.pool_status()?,
            PoolAction::Fill { n, background } => runtime.pool_fill(*n, !background)?,
            PoolAction::Drain => runtime.pool_drain()?,
        })?,
    }
    Ok(0)
}

/// After the caller's container runs: a detached `tong pool fill` tops the pool up.
fn refill_pool(cli: &Cli) {
    if let Ok(exe) = std::env::current_exe() {
        tong::pool::refill_in_background(&cli.root, &exe);
    }
}

/// The lowest descriptor from 3 up that is not open.
fn first_unopened_fd() -> i32 {
    let mut fd = 3;
    // SAFETY: F_GETFD only queries the descriptor's flags.
    while unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
        fd += 1;
    }
    fd
}

/// Socket activation as runc reads it: LISTEN_FDS descriptors from 3, when LISTEN_PID
/// names this process.
fn listen_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    match count {
        Some(n) if ours => n,
        _ => 0,
    }
}

/// Descriptors 3 up to 3 + listen_fds + preserve_fds - 1 must all be open.
fn check_preserved(
    preserve_fds: u32,
    listen_fds: u32,
    first_unopened_fd: i32,
) -> Result<(), Error> {
    let passed = listen_fds + preserve_fds;
    if passed > 0 && 3 + passed as i32 > first_unopened_fd {
        let with = if listen_fds > 0 {
            format!(" (with LISTEN_FDS={listen_fds})")
        } else {
            String::new()
        };
        return Err(Error::invalid(format!(
            "--preserve-fds {preserve_fds}{with}: descriptor {first_unopened_fd} is not open, so descriptors 3 to {} cannot be passed on",
            2 + passed
        )));
    }
    Ok(())
}

fn create_options(args: &CreateArgs, first_unopened_fd: i32) -> Result<CreateOptions, Error> {
    let listen_fds = listen_fds();
    check_preserved(args.preserve_fds, listen_fds, first_unopened_fd)?;
    let mut backends = BTreeMap::new();
    for choice in &args.backends {
        let (kind, name) = choice.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "--backend {choice:?}: expected KIND=NAME, e.g. cgroup=v1"
            ))
        })?;
        let kind = PluginKind::parse(kind).ok_or_else(|| {
            Error::invalid(format!(
                "--backend {choice:?}: unknown kind {kind:?} (ns, cgroup, rootfs, net)"
            ))
        })?;
        if name.is_empty() {
            return Err(Error::invalid(format!(
                "--backend {choice:?}: empty plugin name"
            )));
        }
        backends.insert(kind, name.to_string());
    }
    if args.no_pivot
        && !backends.contains_key(&PluginKind::Rootfs)
        && !annotation_chooses_rootfs(&args.bundle)
    {
        backends.insert(PluginKind::Rootfs, "chroot".to_string());
    }
    Ok(CreateOptions {
        backends,
        pid_file: args.pid_file.clone(),
        console: console(args.console_socket.as_ref()),
        init: args.init,
        listen_fds,
        preserve_fds: args.preserve_fds,
        ..CreateOptions::default()
    })
}

/// The engine's console socket when given; else a foreground `run` or `exec` relays the
/// terminal through tong's own stdio, as runc does (create and detached ones refuse).
fn console(socket: Option<&PathBuf>) -> Console {
    socket.map_or(Console::Relay, |path| Console::Socket(path.clone()))
}

/// Whether the bundle's config names a rootfs backend itself. An unreadable config is
/// `false` here: create reports it properly.
fn annotation_chooses_rootfs(bundle: &std::path::Path) -> bool {
    let key = format!(
        "{}{}",
        tong::runtime::BACKEND_ANNOTATION,
        PluginKind::Rootfs
    );
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| tong::config::parse(&b).ok())
        .and_then(|spec| spec.annotations().clone())
        .is_some_and(|a| a.contains_key(&key))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn list(runtime: &Runtime, format: &str, quiet: bool) -> Result<(), Error> {
    let states = runtime.list()?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        "json" => print_json(&states),
        "table" => {
            // One write for the table, not one per container (stdout is line-buffered).
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                let _ = writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    s.id,
                    s.pid,
                    s.status.to_string(),
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
            Ok(())
        }
        other => Err(Error::invalid(format!(
            "unknown --format {other:?}: use table or json"
        ))),
    }
}

/// The process to exec: `--process FILE`, or the container's own process from its
/// config.json with the command, environment, cwd and user given on the command line.
fn exec_process(runtime: &Runtime, args: &ExecArgs) -> Result<oci_spec::runtime::Process, Error> {
    if let Some(path) = &args.process {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::invalid(format!("--process {}: {e}", path.display())))?;
        let mut process: oci_spec::runtime::Process =
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::invalid(format!("invalid process JSON in {}: {e}", path.display()))
            })?;
        if args.tty {
            process.set_terminal(Some(true));
        }
        return Ok(process);
    }
    if args.command.is_empty() {
        return Err(Error::invalid("exec: give a command or --process FILE"));
    }
    let bundle = runtime.state(&args.id)?.bundle;
    let mut process = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| tong::config::parse(&b).ok())
        .and_then(|spec| spec.process().clone())
        .unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut u = process.user().clone();
    if let Some(user) = &args.user {
        let parse = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| Error::invalid(format!("--user {user:?}: expected UID[:GID]")))
        };
        // As runc: the gid stays the config's unless given.
        let (uid, gid) = match user.split_once(':') {
            Some((uid, gid)) => (parse(uid)?, parse(gid)?),
            None => (parse(user)?, u.gid()),
        };
        u.set_uid(uid);
        u.set_gid(gid);
    }
    if !args.additional_gids.is_empty() {
        u.set_additional_gids(Some(args.additional_gids.clone()));
    }
    process.set_user(u);
    Ok(process)
}

fn ps(runtime: &Runtime, id: &str, format: &str) -> Result<(), Error> {
    let pids = runtime.ps(id)?;
    match format {
        "json" => print_json(&pids),
        "table" => {
            println!("{:<8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd: Vec<String> = cmd
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                println!("{pid:<8} {}", cmd.join(" "));
            }
            Ok(())
        }
        other => Err(Error::invalid(format!(
            "unknown --format {other:?}: use table or json"
        ))),
    }
}

fn events(
    runtime: &Runtime,
    id: &str,
    once: bool,
    interval: std::time::Duration,
) -> Result<(), Error> {
    loop {
        let data = runtime.stats(id)?;
        println!("{}", tong::events::stats_event(id, &data));
        if once || runtime.state(id)?.status == tong::Status::Stopped {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

fn spec(bundle: &std::path::Path) -> Result<(), Error> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::invalid(format!(
            "{} already exists; remove it first",
            path.display()
        )));
    }
    // As `runc spec`: an interactive `sh` on a terminal, which a foreground `run`
    // relays (a detached one needs --console-socket); every device denied but the ones
    // the runtime always allows.
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_hostname(Some("tong".to_owned()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
    }
    let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(resources) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.resources_mut().as_mut())
    {
        resources.set_devices(Some(vec![deny_all]));
    }
    let text = serde_json::to_string_pretty(&spec).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&path, text)
        .map_err(|e| Error::os(format!("cannot write {}", path.display()), e))
}

#[derive(serde::Serialize)]
struct PluginRow {
    kind: String,
    name: String,
    version: String,
    abi: String,
    priority: u32,
    usable: bool,
    probe: String,
    path: PathBuf,
    description: String,
}

fn list_plugins(host: &PluginHost, format: &str) -> Result<(), Error> {
    let mut rows = Vec::new();
    for c in host.candidates() {
        let row = match plugins::load_candidate(&c) {
            Ok(p) => {
                let probe = p.probe();
                PluginRow {
                    kind: p.kind.to_string(),
                    name: p.name.clone(),
                    version: p.version.clone(),
                    abi: format!("{}.{}", p.abi.0, p.abi.1),
                    priority: p.priority,
                    usable: probe.is_ok(),
                    probe: probe.err().unwrap_or_else(|| "ok".into()),
                    path: p.path.clone(),
                    description: p.description.clone(),
                }
            }
            Err(e) => PluginRow {
                kind: c.kind.to_string(),
                name: c.name.clone(),
                version: String::new(),
                abi: String::new(),
                priority: 0,
                usable: false,
                probe: e.to_string(),
                path: c.path.clone(),
                description: String::new(),
            },
        };
        rows.push(row);
    }
    match format {
        "json" => print_json(&rows),
        "table" => {
            println!(
                "{:<7} {:<8} {:<8} {:<4} {:<4} {:<50} PROBE",
                "KIND", "NAME", "VERSION", "ABI", "PRIO", "PATH"
            );
            for r in &rows {
                println!(
                    "{:<7} {:<8} {:<8} {:<4} {:<4} {:<50} {}",
                    r.kind,
                    r.name,
                    r.version,
                    r.abi,
                    r.priority,
                    r.path.display(),
                    r.probe
                );
            }
            Ok(())
        }
        other => Err(Error::invalid(format!(
            "unknown --format {other:?}: use table or json"
        ))),
    }
}

/// Writes errors to stderr and, with `--log`, to the log file in runc's formats
/// (containerd shows the last `"level":"error"` line of a JSON log to its user).
struct Logger {
    path: Option<PathBuf>,
    format: LogFormat,
}

/// The engine's warnings: stderr, and the --log file when there is one.
impl tong::log::Log for Logger {
    fn log(&self, level: tong::log::Level, msg: &str) {
        if level <= tong::log::Level::Warn {
            tong::log::Stderr.log(level, msg);
            self.write_level(level.as_str(), msg);
        }
    }
}

impl Logger {
    /// The logger the raw arguments ask for (`--log FILE`, `--log=FILE`,
    /// `--log-format json`), for errors found before they could be parsed.
    fn from_args(args: &[String]) -> Logger {
        let mut log = Logger {
            path: None,
            format: LogFormat::Text,
        };
        let mut it = args.iter().take_while(|a| *a != "--");
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| it.next().cloned());
            match flag {
                "--log" => log.path = value().map(PathBuf::from),
                "--log-format" if value().as_deref() == Some("json") => {
                    log.format = LogFormat::Json;
                }
                _ => {}
            }
        }
        log
    }

    fn error(&self, msg: &str) {
        eprintln!("tong: {msg}");
        self.write(msg);
    }

    /// Appends one error line to the --log file, if any.
    fn write(&self, msg: &str) {
        self.write_level("error", msg);
    }

    /// Appends one line of `level` (runc's logrus names) to the --log file, if any.
    fn write_level(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else { return };
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
