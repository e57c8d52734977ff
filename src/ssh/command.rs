//! Typed remote commands: a program, its arguments, who runs it, and what goes on stdin.
//!
//! Every argument is quoted here and nowhere else (`shlex`). Secrets travel on stdin only,
//! never in argv, so they never show up in `ps` or in `-v` output; [`Command::display`] is the
//! one text that may be logged.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Who a command runs as on the remote host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Become {
    /// The SSH login user.
    Login,
    /// root, through `sudo -n` (or directly when the login user is root).
    Root,
    /// The `postgres` operating-system user, through `sudo -n -u postgres`.
    Postgres,
}

/// What is written to the command's stdin before EOF.
#[derive(Clone)]
pub enum Stdin {
    Plain(Vec<u8>),
    /// Never logged; shown as `<secret>` in verbose output.
    Secret(SecretString),
}

/// A remote command, built once and rendered to one shell line by [`Command::render`].
#[derive(Clone)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Who runs it.
    pub run_as: Become,
    /// Bytes for stdin, if any.
    pub stdin: Option<Stdin>,
    /// Give up (and fail) after this long; `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// Give up when the command prints nothing for this long (a stalled copy).
    pub idle_timeout: Option<Duration>,
}

/// The default per-command timeout: generous for anything but a base backup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Command {
    /// A command running `program` as the login user, with the default timeout.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            run_as: Become::Login,
            stdin: None,
            timeout: Some(DEFAULT_TIMEOUT),
            idle_timeout: None,
        }
    }

    /// `sh -c SCRIPT sh ARGS...`: a small script whose inputs arrive as `$1`, `$2`, ...
    pub fn script(script: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new("sh").arg("-c").arg(script).arg("sh");
        for a in args {
            cmd = cmd.arg(*a);
        }
        cmd
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the program (never for secrets: it shows in `ps`).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The program and its arguments, to pass on to another command (env is not included).
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    pub fn as_root(mut self) -> Self {
        self.run_as = Become::Root;
        self
    }

    pub fn as_postgres(mut self) -> Self {
        self.run_as = Become::Postgres;
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(Stdin::Plain(bytes.into()));
        self
    }

    pub fn secret_stdin(mut self, secret: SecretString) -> Self {
        self.stdin = Some(Stdin::Secret(secret));
        self
    }

    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// The stdin bytes to send, secret or not.
    pub(crate) fn stdin_bytes(&self) -> Option<Vec<u8>> {
        match &self.stdin {
            Some(Stdin::Plain(b)) => Some(b.clone()),
            Some(Stdin::Secret(s)) => Some(s.expose_secret().as_bytes().to_vec()),
            None => None,
        }
    }

    /// The shell line sent to the server. `login_is_root` drops sudo where it is not needed.
    pub fn render(&self, login_is_root: bool) -> String {
        let mut words: Vec<String> = Vec::new();
        match (self.run_as, login_is_root) {
            (Become::Login, _) | (Become::Root, true) => {}
            (Become::Root, false) => words.extend(["sudo", "-n", "--"].map(String::from)),
            (Become::Postgres, true) => {
                words.extend(["runuser", "-u", "postgres", "--"].map(String::from))
            }
            (Become::Postgres, false) => {
                words.extend(["sudo", "-n", "-u", "postgres", "--"].map(String::from))
            }
        }
        if !self.env.is_empty() {
            words.push("env".into());
            words.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        words.push(self.program.clone());
        words.extend(self.args.iter().cloned());
        // `cd /` keeps the postgres user from complaining that it cannot enter the login's home.
        format!("cd / && {}", join(&words))
    }

    /// What may be shown to people: the rendered line plus a note on what stdin carries.
    pub fn display(&self, login_is_root: bool) -> String {
        let line = self.render(login_is_root);
        match &self.stdin {
            Some(Stdin::Secret(_)) => format!("{line} <<< <secret>"),
            Some(Stdin::Plain(b)) if b.len() <= 200 => {
                format!("{line} <<< {:?}", String::from_utf8_lossy(b))
            }
            Some(Stdin::Plain(b)) => format!("{line} <<< ({} bytes)", b.len()),
            None => line,
        }
    }
}

/// Quotes each word for a POSIX shell and joins them with spaces.
pub fn join(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Quotes one word for a POSIX shell. A NUL byte cannot be passed at all, so it is dropped.
pub fn quote(word: &str) -> String {
    match shlex::try_quote(word) {
        Ok(q) => q.into_owned(),
        Err(_) => shlex::try_quote(&word.replace('\0', ""))
            .map(|q| q.into_owned())
            .unwrap_or_default(),
    }
}

/// The output of a finished command.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: u32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// The last few lines of a command's stderr, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_once() {
        let cmd = Command::new("psql")
            .arg("-c")
            .arg("select 'x'; drop")
            .as_postgres();
        assert_eq!(
            cmd.render(false),
            r#"cd / && sudo -n -u postgres -- psql -c "select 'x'; drop""#
        );
        assert_eq!(
            cmd.render(true),
            r#"cd / && runuser -u postgres -- psql -c "select 'x'; drop""#
        );
    }

    #[test]
    fn root_commands_skip_sudo_when_logged_in_as_root() {
        let cmd = Command::new("mv").args(["/a b", "/c"]).as_root();
        assert_eq!(cmd.render(false), "cd / && sudo -n -- mv '/a b' /c");
        assert_eq!(cmd.render(true), "cd / && mv '/a b' /c");
    }

    #[test]
    fn secrets_never_appear_in_the_command_line_or_display() {
        let cmd = Command::new("cat").secret_stdin(SecretString::from("hunter2"));
        assert!(!cmd.render(false).contains("hunter2"));
        assert!(!cmd.display(false).contains("hunter2"));
        assert!(cmd.display(false).ends_with("<secret>"));
        assert_eq!(cmd.stdin_bytes().unwrap(), b"hunter2");
    }

    #[test]
    fn scripts_take_arguments_positionally() {
        let cmd = Command::script("mv \"$1\" \"$2\"", &["/x y", "/z"]);
        assert_eq!(
            cmd.render(true),
            r#"cd / && sh -c 'mv "$1" "$2"' sh '/x y' /z"#
        );
    }

    #[test]
    fn tail_keeps_the_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
    }
}
