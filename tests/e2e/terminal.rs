//! What a person sees: a bootstrap under a pseudo-terminal draws a line per host and a bar
//! per base backup, the bars finish and the recap follows; piped output has no escapes.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::{Lab, enabled};

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL/ST`, and
/// two-byte `ESC x`), leaving the text, `\r` and `\n`.
fn strip_ansi(raw: &str) -> String {
    split_ansi(raw, None)
}

/// Like `strip_ansi`, but writes `sep` in place of each CSI sequence (cursor moves and
/// line clears start a new row on the screen).
fn split_ansi(raw: &str, sep: Option<char>) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
                out.extend(sep);
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The rows drawn on a `cols`-wide screen over time, in order: text between escapes,
/// `\r` and `\n`, wrapped at `cols` (indicatif pads its lines to the full width and lets
/// the terminal wrap), trailing blanks trimmed, blank rows dropped.
fn screen_rows(raw: &str, cols: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for piece in split_ansi(raw, Some('\n')).split(['\r', '\n']) {
        let chars: Vec<char> = piece.chars().collect();
        for row in chars.chunks(cols) {
            let row: String = row.iter().collect();
            if !row.trim().is_empty() {
                rows.push(row.trim_end().to_string());
            }
        }
    }
    rows
}

/// The rate a bar shows (`... 51.85 MiB/s ETA 3s`), in bytes per second.
fn shown_rate(row: &str) -> Option<f64> {
    let mut words = row.split_whitespace().rev();
    while let Some(w) = words.next() {
        if let Some(unit) = w.strip_suffix("/s") {
            let scale = match unit {
                "B" => 1.0,
                "KiB" => 1024.0,
                "MiB" => 1024.0 * 1024.0,
                "GiB" => 1024.0 * 1024.0 * 1024.0,
                "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            };
            return Some(words.next()?.parse::<f64>().ok()? * scale);
        }
    }
    None
}

#[test]
fn strip_ansi_and_screen_rows() {
    assert_eq!(
        strip_ansi("\x1b[2K\x1b[1A\ra \x1b[32mok\x1b[0m\x1b]0;title\x07!"),
        "\ra ok!"
    );
    assert_eq!(
        screen_rows("abcdef\x1b[1A\r\x1b[2Kx  \n\x1b[1Byz", 4),
        ["abcd", "ef", "x", "yz"]
    );
    assert_eq!(
        shown_rate("pg1  base backup [=>  ] 1 MiB/2 MiB 1.50 MiB/s ETA 1s"),
        Some(1.5 * 1024.0 * 1024.0)
    );
}

#[test]
fn bootstrap_on_a_terminal_shows_bars_and_recap_and_piped_output_has_no_escapes() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("term", 3, "bookworm", "debian");

    // Enough data on the primary that each base backup takes a few seconds.
    let started = Instant::now();
    let load = lab.exec(
        0,
        "su postgres -c '/usr/lib/postgresql/15/bin/pgbench -i -s 20 -q postgres'",
    );
    assert!(
        load.status.success(),
        "pgbench -i failed:\n{}",
        String::from_utf8_lossy(&load.stderr)
    );
    eprintln!("pgbench -i -s 20: {:.1}s", started.elapsed().as_secs_f64());
    // And a capped copy rate (pg_basebackup --max-rate), so each copy lasts several of
    // pg_basebackup's one-second progress reports however fast the machine is.
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let capped = inventory.replace(
        "  password_file: replication-password\n",
        "  password_file: replication-password\n  backup_max_rate: 40M\n",
    );
    assert_ne!(
        capped, inventory,
        "the lab inventory names its password file"
    );
    std::fs::write(lab.inventory(), capped).unwrap();

    // The real binary under a pty of 120x40 (util-linux `script`), as a person runs it:
    // no NO_COLOR, a real TERM. Paths go through the environment to avoid quoting.
    let started = Instant::now();
    let out = Command::new("script")
        .args([
            "-q",
            "-e",
            "-c",
            r#"stty cols 120 rows 40; exec "$PGREPL_BIN" -i "$PGREPL_INVENTORY" bootstrap"#,
            "/dev/null",
        ])
        .env("PGREPL_BIN", env!("CARGO_BIN_EXE_pgrepl"))
        .env("PGREPL_INVENTORY", lab.inventory())
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run script(1); util-linux is needed for a pty");
    let elapsed = started.elapsed().as_secs_f64();
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = screen_rows(&raw, 120);
    let context = || {
        // Each distinct row once, in the order first drawn: the screen's story, short.
        let mut seen = std::collections::HashSet::new();
        let story: Vec<&str> = lines
            .iter()
            .map(|l| l.as_str())
            .filter(|l| seen.insert(*l))
            .collect();
        format!(
            "exit {:?}, {} raw bytes\n--- distinct rows drawn (ANSI stripped)\n{}\n--- script stderr\n{}",
            out.status.code(),
            raw.len(),
            story.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    eprintln!("bootstrap on a pty: {elapsed:.1}s, {} raw bytes", raw.len());
    assert_eq!(out.status.code(), Some(0), "{}", context());

    // indicatif redraws in place: cursor up and clear line.
    assert!(
        raw.contains("\x1b[1A") || raw.contains("\x1b[2A"),
        "no cursor movement: {}",
        context()
    );
    assert!(raw.contains("\x1b[2K"), "no line clears: {}", context());
    // One line per host with its elapsed time (`[ 12s]`) and current step.
    for host in ["pg0", "pg1", "pg2"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("s] {host} ")) && l.contains('[')),
            "no progress line for {host}: {}",
            context()
        );
    }
    for host in ["pg1", "pg2"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("] {host} ")) && l.ends_with("base backup ...")),
            "{host}'s line never showed the base backup running: {}",
            context()
        );
    }
    // A bar per replica: bytes done and total, rate and ETA; it moves and reaches its end.
    let full = format!("base backup [{}]", "=".repeat(30));
    for host in ["pg1", "pg2"] {
        let bars: Vec<&String> = lines
            .iter()
            .filter(|l| {
                l.trim_start().starts_with(&format!("{host} ")) && l.contains("base backup [")
            })
            .collect();
        assert!(
            !bars.is_empty(),
            "no base backup bar for {host}: {}",
            context()
        );
        assert!(
            bars.iter()
                .all(|l| l.contains("B/") && l.contains("/s ETA ")),
            "{host}'s bar lacks bytes, rate or ETA: {}",
            context()
        );
        assert!(
            bars.iter().any(|l| l.contains("=>")),
            "{host}'s bar was never drawn part-way: {}",
            context()
        );
        assert!(
            bars.iter().any(|l| l.contains(&full)),
            "{host}'s bar never finished: {}",
            context()
        );
        // No copy over SSH between containers runs at 10 GiB/s: a higher rate is a bogus
        // estimate (the bar's first jump measured over no time at all).
        let fastest = bars
            .iter()
            .filter_map(|l| shown_rate(l))
            .fold(0.0_f64, f64::max);
        assert!(
            fastest < 10.0 * 1024.0 * 1024.0 * 1024.0,
            "{host}'s bar showed an impossible rate ({:.0} MiB/s): {}",
            fastest / 1024.0 / 1024.0,
            context()
        );
        eprintln!(
            "{host}: {} bar draws, first: {:?}, last: {:?}",
            bars.len(),
            bars.first().map(|l| l.trim()),
            bars.last().map(|l| l.trim())
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("RECAP pgrepl bootstrap")),
        "no recap: {}",
        context()
    );
    assert!(
        lines.iter().any(|l| l.starts_with("OK in ")),
        "no `OK in` line: {}",
        context()
    );
    let recap_at = lines
        .iter()
        .rposition(|l| l.contains("RECAP pgrepl bootstrap"))
        .unwrap();
    eprintln!(
        "--- screen excerpt (ANSI stripped), last lines\n{}",
        lines[recap_at.saturating_sub(12)..].join("\n")
    );

    // A no-op run with pipes (no pty, NO_COLOR unset): plain lines, not a single escape.
    let started = Instant::now();
    let piped = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-i")
        .arg(lab.inventory())
        .arg("bootstrap")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run pgrepl");
    let stdout = String::from_utf8_lossy(&piped.stdout);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    eprintln!(
        "piped no-op bootstrap: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        piped.status.code(),
        Some(0),
        "--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        !piped.stdout.contains(&0x1b) && !piped.stderr.contains(&0x1b),
        "escape codes in piped output:\n--- stdout\n{stdout:?}\n--- stderr\n{stderr:?}"
    );
    for host in ["pg0", "pg1", "pg2"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("[{host}] preflight: ok"))),
            "no plain preflight line for {host}:\n{stderr}"
        );
    }
    assert!(
        stdout.contains("RECAP pgrepl bootstrap") && stdout.contains("OK in"),
        "no recap on stdout:\n{stdout}"
    );
}
