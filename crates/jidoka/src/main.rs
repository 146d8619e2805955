//! The `jidoka` binary: parses the command line and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use jidoka_lab::{bench, eval, mqtt, op, resequence, shortage, simulate, torque, triage};
use jidoka_service::auth::{self, Role};
use jidoka_service::config::Config;
use jidoka_service::{audit, commands, server};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "jidoka",
    version,
    about = "AI quality and execution agent for automotive assembly plants",
    long_about = "Jidoka sits beside the plant's MES: it stores shop-floor and MES events durably, runs its \
                  agents over them, turns findings into actions under human approval, and writes results back.\n\n\
                  Start with `jidoka demo` (a simulated line on localhost), then write a plant configuration \
                  (see examples/plant.toml), check it with `jidoka config check`, and run `jidoka serve`."
)]
struct Cli {
    /// Log filter, e.g. `info`, `jidoka=debug`.
    #[arg(long, global = true, env = "JIDOKA_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Jidoka for a plant: sources, agents, governance, sinks and the HTTP API.
    Serve {
        /// Plant configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Store folder; overrides `store.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on; overrides `api.listen` (use port 0 for any free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the demo plant on localhost: a simulated line feeding all agents, with one-time logins.
    Demo {
        /// Store folder for the demo.
        #[arg(long, default_value = "jidoka-demo")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8480")]
        listen: String,
        /// Plant time runs this many times faster than real time.
        #[arg(long, default_value_t = 20.0)]
        speed: f64,
        /// Seed of the simulated line; the same seed gives the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop feeding after this many units (default: run until stopped).
        #[arg(long)]
        units: Option<u64>,
        /// Plant description (TOML); default: the embedded examples/plants/default.toml.
        #[arg(long)]
        plant: Option<PathBuf>,
    },
    /// Simulate the line and write its events and the ground truth of every injected fault.
    Sim(simulate::SimArgs),
    /// Import events from JSON Lines files (one event per line) and run the agents over them.
    /// Bad lines are reported with file, line, field and reason; the rest is imported.
    /// Exits with status 3 when any line was rejected.
    Import {
        /// JSON Lines files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-run the agents over the stored event log and compare with the stored findings.
    /// Exits with status 1 when any finding is not reproduced exactly.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Plant configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// People who log in with a password.
    #[command(subcommand)]
    User(UserCommand),
    /// Offline analysis of exported data.
    #[command(subcommand)]
    Analyze(AnalyzeCommand),
    /// Evaluations: accuracy measured on simulator ground truth or real data.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Benchmarks: figures printed as a table, or one JSON object with --json.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Open Protocol tools for integrators.
    #[command(subcommand)]
    Op(OpCommand),
    /// Build-order sequencing under ratio rules (at most p units with an option in any q).
    #[command(subcommand)]
    Resequence(ResequenceCommand),
}

#[derive(Debug, Subcommand)]
enum ResequenceCommand {
    /// Sequence one instance within a time limit: a CSPLib prob001 file (writes one class id per
    /// line in build order) or a ROADEF 2005 day (writes day D's `Ident`s in build order);
    /// prints the objective values beside the file's or the plant's order.
    Solve(resequence::SolveArgs),
}

#[derive(Debug, Subcommand)]
enum OpCommand {
    /// Decode captured telegrams (one per line) to JSON, naming what is wrong with a bad one;
    /// exits with status 3 when any telegram is bad.
    Decode(op::DecodeArgs),
}

/// Options of the commands that work on a store offline.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Plant configuration (agents, master data, sinks, store); defaults apply without one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Store folder; overrides `store.data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration and print every error with its path (exit 1 on errors).
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a random API token; prints it once with the lines to add to the configuration.
    New {
        #[arg(long)]
        name: String,
        /// operator, supervisor, quality_engineer, integrator, admin or agent.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Read a password from standard input (one line) and print the `[[api.users]]` lines
    /// with its argon2 hash; the password itself is never printed or stored.
    Hash {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of every audit record; exits with status 1 and names the first
    /// broken record when any was changed, removed or reordered.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// `SEQ:HASH` of a head printed by an earlier run and kept elsewhere: it must still
        /// be in the chain (detects records cut from the end).
        #[arg(long, value_parser = parse_head)]
        expect_head: Option<(u64, String)>,
    },
    /// Write audit records as JSON Lines (record, previous hash, hash) for auditors.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// First record (1 = the start).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last record (default: the newest).
        #[arg(long)]
        to: Option<u64>,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyzeCommand {
    /// Review exported tightening curves: per tightening the verdict, anomaly score, failure
    /// modes, confidence and reason. The golden batch is learned from the data itself, so files
    /// without a controller verdict work too. Exits with status 3 when some records are unreadable.
    Torque(torque::AnalyzeArgs),
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// The torque audit, the torque-window baseline and the controller's own verdict against
    /// injected tightening faults and tool drift (--sim); the anomaly score on the real data
    /// sets (--data ../shared/data): AUROC and recall at 5 % false positives.
    Torque(torque::EvalArgs),
    /// The sequence agent against injected sequence errors: per reason code the injected,
    /// flagged, missed and false-alarm counts, and the alerts on a clean run.
    Sequence(eval::SimEvalArgs),
    /// The text triage model: trained on one labelled file, scored on another (top-1 and
    /// top-3 accuracy, macro-F1) beside the majority-class baseline.
    Triage(triage::EvalTriageArgs),
    /// The defect-pattern agent against the simulator's planted root causes (NCRs from onset
    /// until ranked first, precision of claims, claims on a clean plant) and the triage of
    /// uncoded NCRs against their true codes.
    Clusters(eval::SimEvalArgs),
    /// The supervisor's workload on the simulated plant: decisions per plant hour, per injected
    /// problem, problems with no decision and decisions about none, each waiting action alone
    /// beside cases.
    Workload(eval::SimEvalArgs),
    /// The sequencing search on whole CSPLib sets (per instance the best found over seeds, the
    /// runs that reach the best-known value, time to best, beside the file's order and a plain
    /// improving-swap search given the same time) and on ROADEF 2005 Renault days (beside the
    /// plant's own order and a peer's orders scored by the same checker).
    Resequence(resequence::EvalArgs),
    /// The shortage forecast against the simulator's stock-outs over several seeds: precision,
    /// recall, lead and false alarms per shift of the warnings within 2 h and 8 h (threshold
    /// chosen by leave-one-seed-out), PR-AUC, beside an overdue-delivery rule and a
    /// stock-coverage rule computed on the same runs.
    Shortage(shortage::EvalShortageArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Durable appends to the embedded store: events/s and append latency percentiles.
    Ingest(bench::IngestArgs),
    /// Simulator speed on one thread: units/s, tightenings/s, and the factor over real time.
    Sim(simulate::BenchSimArgs),
    /// Sequence checks: pure validation events/s with a 2,000-line BOM and 50 ECOs, and the
    /// latency from an event accepted over HTTP to its Andon action stored, at 2,000 events/s.
    Sequence(bench::SequenceArgs),
    /// The shortage forecast: one round (every part's demand over the queue, run-out and draws)
    /// on a synthetic plant of 2,000 part numbers and 1,300 queued units, p50 and p99, beside the
    /// same rounds with every unit exploded through the BOM afresh.
    Shortage(shortage::BenchShortageArgs),
    /// Ingest over HTTP into the full service (all agents, governance, audit trail): events/s
    /// and request latency percentiles, closed loop on keep-alive connections.
    Api(bench::ApiArgs),
    /// Approved actions delivered per second to an OData MES through the outbox.
    Outbox(bench::OutboxArgs),
    /// The torque audit agent on one thread: curves/s for 1,000-sample curves, the latency of
    /// one curve at a time (p50 / p99) and resident memory over the run.
    Torque(torque::BenchArgs),
    /// Dashboard pages: server time per page (p50 / p99) with 100,000 findings stored.
    Dashboard(bench::DashboardArgs),
    /// Triage: training time, NCRs/s and latency of the text model, and events/s and NCRs/s
    /// through the quality and Andon agents over a simulated run.
    Triage(triage::BenchTriageArgs),
    /// Open Protocol: results and traces per second from the emulated controller through the
    /// link into the durable store (each stored before its acknowledgement), and the codec alone.
    Openprotocol(op::BenchArgs),
    /// MQTT: messages/s from a local Mosquitto through the source into the durable store (each
    /// acknowledged after its commit), beside mosquitto_sub writing the same queue to a file.
    Mqtt(mqtt::BenchArgs),
}

fn parse_head(s: &str) -> Result<(u64, String), String> {
    let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH")?;
    let seq = seq.parse().map_err(|_| format!("`{seq}` is not a record number"))?;
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the hash must be 64 hex digits".into());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!("unknown role `{s}`; one of: {}", Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
    })
}

fn load_config(path: Option<&PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => Config::default(),
    };
    if let Some(dir) = data_dir {
        config.store.data_dir = dir;
    }
    Ok(config)
}

fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data_dir, listen } => {
            let mut config = load_config(Some(&config), data_dir)?;
            if let Some(l) = listen {
                config.api.listen = l;
            }
            server::serve(config, Vec::new(), None).await?;
        }
        Command::Demo { data_dir, listen, speed, seed, units, plant } => {
            server::demo(server::DemoOptions { data_dir, listen, speed, seed, units, plant }).await?;
        }
        Command::Sim(args) => {
            tokio::task::spawn_blocking(move || simulate::sim(args)).await??;
        }
        Command::Import { files, store: StoreArgs { config, data_dir, json } } => {
            let config = load_config(config.as_ref(), data_dir)?;
            let rejected = tokio::task::spawn_blocking(move || commands::import(config, &files, json)).await??;
            if rejected > 0 {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Replay { store: StoreArgs { config, data_dir, json } } => {
            let config = load_config(config.as_ref(), data_dir)?;
            let ok = tokio::task::spawn_blocking(move || commands::replay(config, json)).await??;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::User(UserCommand::Hash { name, role }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                anyhow::bail!("the password must have at least 12 characters");
            }
            let hash = auth::hash_password(password)?;
            println!("[[api.users]]\nname = {name:?}\nrole = {:?}\npassword_hash = {hash:?}", role.as_str());
        }
        Command::Audit(AuditCommand::Verify { store: StoreArgs { config, data_dir, json }, expect_head }) => {
            let config = load_config(config.as_ref(), data_dir)?;
            let ok = tokio::task::spawn_blocking(move || audit::audit_verify(config, json, expect_head)).await??;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Audit(AuditCommand::Export { store: StoreArgs { config, data_dir, .. }, from, to, out }) => {
            let config = load_config(config.as_ref(), data_dir)?;
            let written = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
                match out {
                    Some(path) => {
                        let mut file = std::io::BufWriter::new(
                            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
                        );
                        let n = audit::audit_export(config, from, to, &mut file)?;
                        std::io::Write::flush(&mut file)?;
                        Ok(n)
                    }
                    None => audit::audit_export(config, from, to, &mut std::io::stdout().lock()),
                }
            })
            .await??;
            eprintln!("{written} audit records exported");
        }
        Command::Config(ConfigCommand::Check { file }) => match Config::load(&file) {
            Ok(config) => println!("{}: configuration is valid\n{}", file.display(), config.summary()),
            Err(errors) => {
                eprint!("{}: {errors}", file.display());
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Token(TokenCommand::New { name, role }) => commands::token_new(&name, role)?,
        Command::Analyze(AnalyzeCommand::Torque(args)) => {
            let code = tokio::task::spawn_blocking(move || torque::analyze(args)).await?.context("analyze torque")?;
            if code != 0 {
                return Ok(ExitCode::from(code as u8));
            }
        }
        Command::Eval(EvalCommand::Torque(args)) => {
            tokio::task::spawn_blocking(move || torque::eval(args)).await?.context("eval torque")?
        }
        Command::Eval(EvalCommand::Sequence(args)) => {
            tokio::task::spawn_blocking(move || eval::sequence(args)).await?.context("eval sequence")?
        }
        Command::Eval(EvalCommand::Triage(args)) => triage::eval_triage(args).context("eval triage")?,
        Command::Eval(EvalCommand::Shortage(args)) => shortage::eval_shortage(args).context("eval shortage")?,
        Command::Eval(EvalCommand::Clusters(args)) => triage::eval_clusters(args).context("eval clusters")?,
        Command::Eval(EvalCommand::Workload(args)) => {
            tokio::task::spawn_blocking(move || eval::workload(args)).await?.context("eval workload")?
        }
        Command::Bench(BenchCommand::Ingest(args)) => bench::ingest(args).await.context("bench ingest")?,
        Command::Bench(BenchCommand::Sequence(args)) => bench::sequence(args).await.context("bench sequence")?,
        Command::Bench(BenchCommand::Shortage(args)) => shortage::bench_shortage(args).context("bench shortage")?,
        Command::Bench(BenchCommand::Api(args)) => bench::api(args).await.context("bench api")?,
        Command::Bench(BenchCommand::Dashboard(args)) => bench::dashboard(args).await.context("bench dashboard")?,
        Command::Bench(BenchCommand::Outbox(args)) => {
            tokio::task::spawn_blocking(move || bench::outbox(args)).await?.context("bench outbox")?
        }
        Command::Bench(BenchCommand::Triage(args)) => {
            tokio::task::spawn_blocking(move || triage::bench_triage(args)).await?.context("bench triage")?
        }
        Command::Bench(BenchCommand::Torque(args)) => {
            tokio::task::spawn_blocking(move || torque::bench(args)).await?.context("bench torque")?
        }
        Command::Bench(BenchCommand::Openprotocol(args)) => {
            tokio::task::spawn_blocking(move || op::bench(args)).await?.context("bench openprotocol")?
        }
        Command::Bench(BenchCommand::Mqtt(args)) => {
            tokio::task::spawn_blocking(move || mqtt::bench(args)).await?.context("bench mqtt")?
        }
        Command::Resequence(ResequenceCommand::Solve(args)) => {
            tokio::task::spawn_blocking(move || resequence::solve(args)).await?.context("resequence solve")?
        }
        Command::Eval(EvalCommand::Resequence(args)) => {
            tokio::task::spawn_blocking(move || resequence::eval(args)).await?.context("eval resequence")?
        }
        Command::Op(OpCommand::Decode(args)) => {
            let code = tokio::task::spawn_blocking(move || op::decode(args)).await?.context("op decode")?;
            if code != 0 {
                return Ok(ExitCode::from(code));
            }
        }
        Command::Bench(BenchCommand::Sim(args)) => {
            tokio::task::spawn_blocking(move || simulate::bench(args)).await?.context("bench sim")?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
