//! The SSH layer against real sshd in the lab: exec, stdin, big output, exit codes, sudo,
//! host keys, a wrong key, and ProxyJump through a bastion node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgrepl::inventory::SshTarget;
use pgrepl::ssh::{self, Command, ConnectOptions, Error};

use crate::support::{Lab, enabled};

fn target(lab: &Lab, node: usize, user: &str, known_hosts: PathBuf) -> SshTarget {
    SshTarget {
        host: lab.nodes[node].address.clone(),
        user: Some(user.into()),
        port: Some(22),
        identity_file: Some(lab.dir.join("id_ed25519")),
        known_hosts: Some(known_hosts),
        proxy_jump: None,
        passphrase_env: None,
    }
}

async fn open(t: &SshTarget, accept_new: bool) -> Result<ssh::Session, Error> {
    let opts = ConnectOptions {
        accept_new_host_keys: accept_new,
        ssh_config: Some(PathBuf::from("/dev/null")),
        ..Default::default()
    };
    ssh::connect(&ssh::endpoint("node", t, None), &opts, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_layer_against_real_sshd() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("ssh", 2, "bookworm", "debian");
    let known = lab.dir.join("known_hosts");
    let s = open(&target(&lab, 1, "ubuntu", known.clone()), false)
        .await
        .expect("connect");

    let out = s
        .run(&Command::new("cat").stdin("through stdin"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "through stdin");
    let out = s
        .output(&Command::script("echo out; echo err >&2; exit 3", &[]))
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    assert!(matches!(
        s.run(&Command::script("exit 4", &[])).await,
        Err(Error::CommandFailed { status: 4, .. })
    ));
    let big = s
        .run(&Command::script(
            "head -c 50000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero | tr '\\0' y >&2",
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(
        (big.stdout.len(), big.stderr.len()),
        (50_000_000, 1_000_000)
    );
    assert_eq!(
        s.run(&Command::new("whoami").as_postgres())
            .await
            .unwrap()
            .stdout
            .trim(),
        "postgres"
    );
    assert_eq!(
        s.run(&Command::new("whoami").as_root())
            .await
            .unwrap()
            .stdout
            .trim(),
        "root"
    );
    // Many channels at once on one connection.
    let shared = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = shared.clone();
            tokio::spawn(async move {
                s.run(&Command::script("sleep 0.2; echo $1", &[&i.to_string()]))
                    .await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap().stdout.trim(), i.to_string());
    }
    let s = shared;
    let timed = s
        .output(
            &Command::new("sleep")
                .arg("5")
                .timeout(Some(Duration::from_millis(300))),
        )
        .await;
    assert!(matches!(timed, Err(Error::Timeout { .. })), "{timed:?}");

    // sudo that wants a password fails at once, never hangs.
    let pw = open(&target(&lab, 1, "pwsudo", known.clone()), false)
        .await
        .expect("pwsudo connects");
    let started = Instant::now();
    let err = pw.run(&Command::new("true").as_root()).await.unwrap_err();
    assert!(matches!(err, Error::SudoNeedsPassword { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Unknown host key: refused, then recorded with accept-new, then accepted.
    let empty = lab.dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = open(&target(&lab, 1, "ubuntu", empty.clone()), false)
        .await
        .err()
        .expect("unknown key refused");
    assert!(
        matches!(err, Error::HostKeyUnknown { .. })
            && err.to_string().contains("--accept-new-host-keys"),
        "{err}"
    );
    open(&target(&lab, 1, "ubuntu", empty.clone()), true)
        .await
        .expect("accept-new records the key");
    assert!(
        std::fs::read_to_string(&empty)
            .unwrap()
            .contains(&lab.nodes[1].address)
    );
    open(&target(&lab, 1, "ubuntu", empty.clone()), false)
        .await
        .expect("recorded key is accepted");

    // Changed host key: pg1's address listed with pg0's key is always refused, naming the line.
    let lines = std::fs::read_to_string(&known).unwrap();
    let pg0_key = lines
        .lines()
        .find(|l| l.starts_with(&format!("{} ", lab.nodes[0].address)))
        .unwrap();
    let changed = lab.dir.join("changed_known_hosts");
    std::fs::write(
        &changed,
        format!(
            "# comment\n{}\n",
            pg0_key.replacen(&lab.nodes[0].address, &lab.nodes[1].address, 1)
        ),
    )
    .unwrap();
    for accept_new in [false, true] {
        let err = open(&target(&lab, 1, "ubuntu", changed.clone()), accept_new)
            .await
            .err()
            .expect("changed key refused");
        assert!(
            matches!(err, Error::HostKeyChanged { .. })
                && err.to_string().contains("changed_known_hosts"),
            "{err}"
        );
    }

    // A key the host does not know: refused, listing what was tried.
    let other = lab.dir.join("other_key");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let mut wrong = target(&lab, 1, "ubuntu", known.clone());
    wrong.identity_file = Some(other.clone());
    let err = open(&wrong, false).await.err().expect("wrong key refused");
    assert!(
        matches!(err, Error::Auth { .. }) && err.to_string().contains("other_key"),
        "{err}"
    );

    // ProxyJump: pg1 through pg0; pg1 sees pg0's address as the SSH client.
    let mut via = target(&lab, 1, "ubuntu", known.clone());
    via.proxy_jump = Some(format!("ubuntu@{}", lab.nodes[0].address));
    let jumped = open(&via, false)
        .await
        .expect("connect through the bastion");
    let conn = jumped
        .run(&Command::script("echo $SSH_CONNECTION", &[]))
        .await
        .unwrap()
        .stdout;
    assert_eq!(
        conn.split_whitespace().next(),
        Some(lab.nodes[0].address.as_str()),
        "SSH_CONNECTION={conn}"
    );
}
