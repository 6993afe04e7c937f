//! The README's sessions ("A session to paste", "Who may do what", "Scaled out"), run as a
//! reader pastes them: every shell block of a section, in order, in one bash session, against
//! `ordermill serve` started the way each of the section's `cargo run` lines starts it (the
//! scaled-out section starts its own nodes, on the real engines). Every answer the README
//! shows (`# {...}`, `# 201 {...}`, `(409)`) is checked against what the node answered
//! (`readme::expect` says how loosely), and every command must exit 0. A README that drifts
//! from the product fails here, not in front of a new user.
//!
//! What changes between readers is changed, nothing else: the README's ports are free ones,
//! its engine URLs the test's (with a schema, queues and keys of its own), `<order_id>` and
//! `01a2...` the ids the session was given, `ordermill` this build; and the embedded nodes and
//! the shell run on a clock set to the day the README's dates were written for (its report
//! asks for November and December 2026). Needs bash, curl, openssl and libfaketime
//! (.ci/services.sh installs it).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod readme;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime};

use readme::Step;
use support::Node;
use support::scaled::{Deployment, Services};

/// The instant the README's session was written at: its dates hold at this clock.
const README_WRITTEN_AT_UNIX: i64 = 1_796_558_400; // 2026-12-06T12:00:00Z
/// How long a read may take to show what the README says it shows "a moment later".
const SETTLE: Duration = Duration::from_secs(20);
/// curl's exit status when it could not connect.
const CURL_COULD_NOT_CONNECT: i32 = 7;
/// A command that has not finished by then hangs.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_readme_session_answers_what_the_readme_shows() {
    Session::embedded("A session to paste", 40, 15).run();
}

#[test]
fn the_readme_customer_session_answers_what_the_readme_shows() {
    Session::embedded("Who may do what", 8, 5).run();
}

#[test]
fn the_readme_scaled_out_session_answers_what_the_readme_shows() {
    let Some(services) = Services::from_env() else { return };
    // Declared before the session: its processes die (the session's drop) before their
    // schema, queues and keys go (the deployment's).
    let deployment = Deployment::new(services.clone());
    let mut session = Session::embedded("Scaled out", 8, 1);
    // Its MySQL part starts a second deployment on the same ports: a reader stops the first.
    session.until = Some("### On MySQL");
    session.env = deployment.env();
    // The nodes' logs share the shell's output with the answers: only what went wrong.
    session.env.push(("RUST_LOG".to_owned(), "error".to_owned()));
    session.swaps = vec![
        ("postgres://postgres@127.0.0.1:5432/test".to_owned(), services.postgres),
        ("amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(), services.amqp),
        ("redis://127.0.0.1:6379".to_owned(), services.redis),
    ];
    for port in ["8081", "8082", "9101"] {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        session.swaps.push((format!("localhost:{port}"), free.to_string()));
        session.swaps.push((format!("127.0.0.1:{port}"), free.to_string()));
    }
    session.run();
}

/// A README section to run, and what differs for this run.
struct Session {
    title: &'static str,
    /// Where the section stops for this run (a subheading), if before its end.
    until: Option<&'static str>,
    /// It must hold at least this many commands and checked answers, or a README reworded
    /// so that this reads nothing would pass.
    min_steps: usize,
    min_answers: usize,
    /// The shell's environment, besides the clock.
    env: Vec<(String, String)>,
    /// Text of the README's commands → what this run uses instead (ports, URLs).
    swaps: Vec<(String, String)>,
}

impl Session {
    fn embedded(title: &'static str, min_steps: usize, min_answers: usize) -> Session {
        Session { title, until: None, min_steps, min_answers, env: Vec::new(), swaps: Vec::new() }
    }

    fn run(mut self) {
        let text = std::fs::read_to_string(readme_path()).unwrap();
        let (first_line, mut section) = readme::section(&text, self.title);
        if let Some(until) = self.until {
            section = &section[..section.find(until).expect("the subheading is in the section")];
        }
        let steps = readme::steps(first_line, section);
        let checked = steps.iter().flat_map(|s| &s.expect).filter(|e| e.checks_anything()).count();
        assert!(
            steps.len() >= self.min_steps && checked >= self.min_answers,
            "{}: {} steps, {checked} answers",
            self.title,
            steps.len()
        );

        let dir = tempfile::tempdir().unwrap();
        let clock = faked_clock();
        let mut shell = Shell::start(dir.path(), clock.iter().chain(&self.env));
        let mut node: Option<Node> = None;
        let mut ids = Ids::default();
        for step in &steps {
            if step.command.contains("cargo run") {
                if let Some(running) = node.take() {
                    running.stop();
                }
                let started = start_node(step, dir.path(), &clock);
                self.swaps.retain(|(readme, _)| !readme.ends_with(":8080"));
                for readme in ["localhost:8080", "127.0.0.1:8080"] {
                    self.swaps.push((readme.to_owned(), started.addr.to_string()));
                }
                node = Some(started);
                continue;
            }
            let command = ids.fill_in(&step.command, &self.swaps, step.line);
            run_step(&mut shell, step, &command, &mut ids);
        }
        if let Some(node) = node {
            node.stop();
        }
    }
}

/// Runs one step until its answers match (a read, again and again for up to [`SETTLE`]: the
/// README shows some answers "a moment later"), panicking with the difference otherwise.
fn run_step(shell: &mut Shell, step: &Step, command: &str, ids: &mut Ids) {
    let wants_status = step.expect.iter().any(|e| e.status.is_some());
    let deadline = Instant::now() + SETTLE;
    loop {
        let ran = shell.run(command, wants_status);
        ids.learn(&ran.output);
        // curl could not connect: nothing was sent, so trying again is safe (a node started
        // with `&` just before may not listen yet).
        if ran.exit == CURL_COULD_NOT_CONNECT
            && command.starts_with("curl ")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert_eq!(
            ran.exit, 0,
            "README line {}: `{command}` exited {}:\n{}",
            step.line, ran.exit, ran.output
        );
        let mismatch = step
            .expect
            .iter()
            .filter(|e| e.checks_anything())
            .find_map(|e| e.check(ran.status, &ran.output).err().map(|why| (e, why)));
        let Some((expectation, why)) = mismatch else { return };
        if !is_a_read(command) || Instant::now() > deadline {
            panic!(
                "README line {}: `{command}`\n  the README shows: {}\n  the node answered: {} {}\n  {why}",
                step.line,
                expectation.text,
                ran.status.map_or(String::new(), |s| s.to_string()),
                ran.output
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A command that changes nothing, so running it again is safe.
fn is_a_read(command: &str) -> bool {
    command.starts_with("curl ")
        && !command.contains(" -d ")
        && !command.contains(" -X ")
        && !command.contains("$(")
}

/// `ENV=... cargo run --release -- serve ... --data-dir DIR`: this build, the same
/// environment and data dir (under the session's directory), on a port of its own. The
/// admin token the README's next paragraphs ask the reader to start with is set too.
fn start_node(step: &Step, cwd: &Path, clock: &[(String, String)]) -> Node {
    let words: Vec<&str> = step.command.split_whitespace().collect();
    let cargo = words.iter().position(|w| *w == "cargo").unwrap();
    let mut env: Vec<(&str, &str)> =
        words[..cargo].iter().map(|w| w.split_once('=').unwrap()).collect();
    env.push(("ORDERMILL_ADMIN_TOKEN", "secret"));
    env.extend(clock.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let data_dir = words.windows(2).find(|w| w[0] == "--data-dir").map(|w| w[1]).unwrap();
    Node::start(&cwd.join(data_dir), &env)
}

/// The ids a session learns from its answers, for the commands that name them.
#[derive(Default)]
struct Ids {
    order: Option<String>,
    report: Option<String>,
}

impl Ids {
    fn learn(&mut self, output: &str) {
        let last = |key: &str| {
            let marker = format!("\"{key}\":\"");
            let at = output.rfind(&marker)? + marker.len();
            output[at..].split('"').next().map(str::to_owned)
        };
        self.order = last("order_id").or(self.order.take());
        self.report = last("report_id").or(self.report.take());
    }

    fn fill_in(&self, command: &str, swaps: &[(String, String)], line: usize) -> String {
        let mut command = command.to_owned();
        for (readme, ours) in swaps {
            command = command.replace(readme, ours);
        }
        if command.contains("<order_id>") {
            let id = self.order.as_deref().unwrap_or_else(|| panic!("line {line}: no order yet"));
            command = command.replace("<order_id>", id);
        }
        while let Some(dots) = command.find("...") {
            let start = command[..dots].rfind('/').map_or(dots, |slash| slash + 1);
            let id = self.report.as_deref().unwrap_or_else(|| panic!("line {line}: no report"));
            command.replace_range(start..dots + 3, id);
        }
        let bin = env!("CARGO_BIN_EXE_ordermill");
        let mut words: Vec<String> = command.split(' ').map(str::to_owned).collect();
        if let Some(word) = words.iter_mut().find(|w| *w == "ordermill") {
            *word = bin.to_owned();
            // Its --url defaults to the README's port.
            if let Some((_, node)) = swaps.iter().find(|(readme, _)| readme == "127.0.0.1:8080")
                && command.contains("ordermill report")
            {
                words.push(format!("--url http://{node}"));
            }
        }
        words.join(" ")
    }
}

/// A bash process the steps run in, one after another, so variables carry over as they do
/// in a reader's terminal.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

struct Ran {
    output: String,
    exit: i32,
    status: Option<u16>,
}

const DONE: &str = "<<<readme-step-done ";
const HTTP: &str = "<<<readme-http ";

impl Shell {
    fn start<'a>(cwd: &Path, env: impl Iterator<Item = &'a (String, String)>) -> Shell {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(cwd)
            // Its own process group, so the nodes a session starts with `&` go with it.
            .process_group(0)
            .envs(env.map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut shell = Shell { child, stdin, lines };
        shell.write("exec 2>&1");
        shell
    }

    fn write(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Runs `command`; with `status`, curl reports each answer's HTTP status too.
    fn run(&mut self, command: &str, status: bool) -> Ran {
        if status {
            self.write(&format!("curl() {{ command curl -w '\\n{HTTP}%{{http_code}}' \"$@\"; }}"));
        }
        self.write(&format!("{command}\nprintf '\\n{DONE}%s\\n' \"$?\""));
        if status {
            self.write("unset -f curl");
        }
        let deadline = Instant::now() + COMMAND_LIMIT;
        let (mut output, mut http) = (Vec::new(), None);
        loop {
            let line =
                match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) => line,
                    Err(RecvTimeoutError::Timeout) => {
                        panic!("`{command}` still runs after {COMMAND_LIMIT:?}")
                    }
                    Err(RecvTimeoutError::Disconnected) => panic!("bash exited during `{command}`"),
                };
            if let Some(exit) = line.strip_prefix(DONE) {
                let exit = exit.trim_end_matches(">>>").parse().unwrap();
                return Ran { output: output.join("\n").trim().to_owned(), exit, status: http };
            }
            match line.strip_prefix(HTTP) {
                Some(code) => http = code.parse().ok(),
                None => output.push(line),
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// libfaketime's settings that put a process's wall clock at [`README_WRITTEN_AT_UNIX`]
/// (timers keep the real pace).
fn faked_clock() -> Vec<(String, String)> {
    let library = support::libfaketime();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let offset = README_WRITTEN_AT_UNIX - i64::try_from(now).unwrap();
    vec![
        ("LD_PRELOAD".to_owned(), library),
        ("FAKETIME".to_owned(), format!("{offset:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
    ]
}

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")
}
