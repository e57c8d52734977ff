//! The SSH layer against real sshd in the lab: exec, stdin, big output, exit codes, sudo,
//! host keys, a wrong key, ProxyJump through a bastion node, ~/.ssh/config aliases and
//! encrypted keys.

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

    // Hashed entries (ssh-keygen -H, HashKnownHosts yes) are matched too.
    let hashed = lab.dir.join("hashed_known_hosts");
    std::fs::copy(&known, &hashed).unwrap();
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-H", "-f"])
            .arg(&hashed)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        !std::fs::read_to_string(&hashed)
            .unwrap()
            .contains(&lab.nodes[1].address),
        "entries are hashed"
    );
    open(&target(&lab, 1, "ubuntu", hashed), false)
        .await
        .expect("a hashed known_hosts entry is accepted");

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

/// Connects like the CLI does: options and ssh config loaded once, then endpoint + connect.
async fn open_with_config(
    t: &SshTarget,
    opts: &ConnectOptions,
    config: Option<&ssh2_config::SshConfig>,
) -> Result<ssh::Session, Error> {
    ssh::connect(&ssh::endpoint("node", t, config), opts, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_config_aliases_and_encrypted_keys() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("sshcfg", 2, "bookworm", "debian");
    let known = lab.dir.join("known_hosts");
    let key = lab.dir.join("id_ed25519");
    let (pg0, pg1) = (&lab.nodes[0].address, &lab.nodes[1].address);

    // An ssh config with a bastion alias and a database host behind it.
    let config_path = lab.dir.join("test_ssh_config");
    std::fs::write(
        &config_path,
        format!(
            "Host bastion\n    HostName {pg0}\n    User ubuntu\n    IdentityFile {key}\n\n\
             Host db1\n    HostName {pg1}\n    User ubuntu\n    IdentityFile {key}\n    ProxyJump bastion\n",
            key = key.display()
        ),
    )
    .unwrap();
    let opts = ConnectOptions {
        ssh_config: Some(config_path.clone()),
        ..Default::default()
    };
    let config = ssh::load_ssh_config(&opts).expect("ssh config parses");
    assert!(config.is_some());
    let db1 = SshTarget {
        host: "db1".into(),
        user: None,
        port: None,
        identity_file: None,
        known_hosts: Some(known.clone()),
        proxy_jump: None,
        passphrase_env: None,
    };
    let ep = ssh::endpoint("db1", &db1, config.as_ref());
    assert_eq!(
        (ep.address.as_str(), ep.user.as_str(), ep.port),
        (pg1.as_str(), "ubuntu", 22)
    );
    assert_eq!(ep.identity_files, vec![key.clone()]);
    assert_eq!(ep.proxy_jump.as_deref(), Some("bastion"));
    let s = ssh::connect(&ep, &opts, config.as_ref())
        .await
        .expect("connect to db1 through the bastion alias");
    let conn = s
        .run(&Command::script("echo $SSH_CONNECTION", &[]))
        .await
        .unwrap()
        .stdout;
    // pg1 sees pg0 as the client: the config's ProxyJump alias was followed.
    assert_eq!(
        conn.split_whitespace().next(),
        Some(pg0.as_str()),
        "SSH_CONNECTION={conn}"
    );
    assert_eq!(
        s.run(&Command::new("whoami")).await.unwrap().stdout.trim(),
        "ubuntu"
    );

    // Inventory values win over ssh config.
    let pw = SshTarget {
        user: Some("pwsudo".into()),
        ..db1.clone()
    };
    assert_eq!(ssh::endpoint("db1", &pw, config.as_ref()).user, "pwsudo");
    let s = open_with_config(&pw, &opts, config.as_ref())
        .await
        .expect("connect as pwsudo through the bastion");
    assert_eq!(
        s.run(&Command::new("whoami")).await.unwrap().stdout.trim(),
        "pwsudo"
    );

    // An encrypted key, authorized for ubuntu on pg1.
    let enc = lab.dir.join("enc_key");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "sekrit phrase", "-f"])
            .arg(&enc)
            .status()
            .unwrap()
            .success()
    );
    let public = std::fs::read_to_string(lab.dir.join("enc_key.pub")).unwrap();
    let out = lab.exec(
        1,
        &format!(
            "printf '%s\\n' '{}' >>/home/ubuntu/.ssh/authorized_keys",
            public.trim()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let no_config = ConnectOptions {
        ssh_config: Some(PathBuf::from("/dev/null")),
        ..Default::default()
    };
    // A distinct variable per case, so that no test changes another's environment. The test
    // process has no terminal, so the passphrase prompt is never taken here.
    let encrypted = |var: &str| SshTarget {
        identity_file: Some(enc.clone()),
        passphrase_env: Some(var.into()),
        ..target(&lab, 1, "ubuntu", known.clone())
    };
    let unset = "PGREPL_TEST_KEY_PASSPHRASE_UNSET";
    // SAFETY: removing a variable only this test reads.
    unsafe { std::env::remove_var(unset) };
    let err = open_with_config(&encrypted(unset), &no_config, None)
        .await
        .err()
        .expect("encrypted key without its passphrase");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Auth { .. })
            && msg.contains("enc_key")
            && msg.contains("encrypted")
            && msg.contains(unset),
        "{msg}"
    );

    let right = "PGREPL_TEST_KEY_PASSPHRASE_RIGHT";
    // SAFETY: set before any thread of this test reads it, and read by this test only; other
    // tests running concurrently use no such variable.
    unsafe { std::env::set_var(right, "sekrit phrase") };
    let s = open_with_config(&encrypted(right), &no_config, None)
        .await
        .expect("encrypted key with its passphrase");
    assert_eq!(
        s.run(&Command::new("whoami")).await.unwrap().stdout.trim(),
        "ubuntu"
    );

    let wrong = "PGREPL_TEST_KEY_PASSPHRASE_WRONG";
    // SAFETY: as above.
    unsafe { std::env::set_var(wrong, "not the phrase") };
    let err = open_with_config(&encrypted(wrong), &no_config, None)
        .await
        .err()
        .expect("encrypted key with a wrong passphrase");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Auth { .. })
            && msg.contains("enc_key")
            && msg.contains("wrong passphrase"),
        "{msg}"
    );
}
