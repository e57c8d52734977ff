//! The real binary authenticating through ssh-agent (no key file anywhere), and reaching
//! sshd on a non-default port through a `[host]:port` known_hosts entry.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Lab, enabled, pgrepl_with};

/// An ssh-agent of this test's own, ended by its pid on drop.
struct Agent {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(lab: &Lab) -> Agent {
    let socket = lab.dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let agent = Agent { child, socket };
    assert!(
        lab.wait_for(Duration::from_secs(5), || agent.socket.exists()),
        "ssh-agent did not start"
    );
    agent
}

#[test]
fn agent_keys_and_non_default_ports() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("agent", 1, "bookworm", "debian");
    let agent = agent(&lab);
    // No key file: the inventory names none, and HOME holds no ~/.ssh keys.
    let home = lab.dir.join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let inv = std::fs::read_to_string(lab.inventory())
        .unwrap()
        .replace("  identity_file: id_ed25519\n", "");
    let keyless = lab.dir.join("keyless.yaml");
    std::fs::write(&keyless, &inv).unwrap();
    let sock = agent.socket.to_str().unwrap();
    let env = [("SSH_AUTH_SOCK", sock), ("HOME", home.to_str().unwrap())];

    let empty = pgrepl_with(&keyless, &["verify"], &env);
    assert_eq!(empty.code, 2, "{empty:?}");
    assert!(
        empty.stdout.contains("ssh-agent (no keys loaded)"),
        "the failure lists what was tried: {empty:?}"
    );

    let added = Command::new("ssh-add")
        .arg(lab.dir.join("id_ed25519"))
        .env("SSH_AUTH_SOCK", sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let run = pgrepl_with(&keyless, &["verify"], &env);
    assert_eq!(run.code, 0, "the agent's key logs in: {run:?}");

    // sshd on port 2222 too; known_hosts lists it as [address]:2222.
    assert!(lab.exec(0, "/usr/sbin/sshd -p 2222").status.success());
    // sshd daemonizes before it listens: wait for the port, not for the command.
    assert!(
        lab.wait_for(std::time::Duration::from_secs(10), || {
            lab.exec(0, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222'")
                .status
                .success()
        }),
        "sshd listens on 2222"
    );
    let address = &lab.nodes[0].address;
    let known = std::fs::read_to_string(lab.dir.join("known_hosts")).unwrap();
    let line = known
        .lines()
        .find(|l| l.starts_with(&format!("{address} ")))
        .unwrap();
    let bracketed = lab.dir.join("known_hosts_2222");
    std::fs::write(
        &bracketed,
        format!(
            "{}\n",
            line.replacen(address.as_str(), &format!("[{address}]:2222"), 1)
        ),
    )
    .unwrap();
    let on_2222 = lab.dir.join("port-2222.yaml");
    std::fs::write(
        &on_2222,
        inv.replace("  port: 22\n", "  port: 2222\n")
            .replace("known_hosts: known_hosts", "known_hosts: known_hosts_2222"),
    )
    .unwrap();
    let run = pgrepl_with(&on_2222, &["verify"], &env);
    assert_eq!(
        run.code, 0,
        "a [host]:port entry is matched on port 2222: {run:?}"
    );
    // The same key listed for port 22 only does not vouch for port 2222.
    std::fs::write(&on_2222, inv.replace("  port: 22\n", "  port: 2222\n")).unwrap();
    let run = pgrepl_with(&on_2222, &["verify"], &env);
    assert!(
        run.code == 2 && run.stdout.contains("unknown host key"),
        "{run:?}"
    );
}
