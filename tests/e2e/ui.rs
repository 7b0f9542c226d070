//! The web UI in a real browser: headless Chromium, driven over the DevTools protocol,
//! against a three-node quickstart of real processes. Log in, see the nodes, open a file's
//! layout, remove a stopped node after its preview, and watch the repair that follows
//! reach 100 %. A screenshot of each page goes to `target/ui-screenshots/`.
//!
//! Needs `chromium` (`.ci/run` installs it); `WORMFS_SKIP_BROWSER=1` skips the test on a
//! machine without one, saying so.

use super::cluster::{cli_ok, free_block, start_quickstart, Quickstart};
use super::fixture::{bytes, wait_for};
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A headless Chromium and its DevTools connection to one page.
struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Chromium trusting the one certificate whose public key has SHA-256 `spki` (base64),
    /// as a user who checked the node's fingerprint would.
    fn start(spki: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let port = free_block(&[0]);
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-allow-origins=*",
                &format!("--ignore-certificate-errors-spki-list={spki}"),
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium runs (apt-get install chromium; .ci/run installs it)");
        let debugger = format!("127.0.0.1:{port}");
        let url = wait_for("chromium's DevTools", Duration::from_secs(60), || {
            let pages = devtools_pages(&debugger)?;
            pages
                .as_array()?
                .iter()
                .find(|p| p["type"] == "page")
                .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_owned))
        });
        let (ws, _) = tungstenite::connect(url).expect("the DevTools websocket");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
        fs::create_dir_all(&shots).unwrap();
        Browser {
            child,
            ws,
            next: 0,
            shots,
            _profile: profile,
        }
    }

    /// One DevTools call: its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().expect("a DevTools message");
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    fn goto(&mut self, url: &str) {
        let _ = self.eval("document.body && (document.body.dataset.ready = '')");
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// Waits until the page says it drew `page`.
    fn wait_ready(&mut self, page: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.eval("document.body ? document.body.dataset.ready || '' : ''");
            if now == page {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never drew `{page}` (it shows `{now}`): {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const b = document.querySelector({s}); if (!b) return false; b.click(); return true; }})()",
            s = serde_json::to_string(selector).unwrap()
        );
        assert_eq!(
            self.eval(&js),
            true,
            "no `{selector}` on the page: {}",
            self.text()
        );
    }

    fn screenshot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's
/// `--ignore-certificate-errors-spki-list` names.
fn spki_sha256(pem: &[u8]) -> String {
    use base64::Engine;
    let cert = openssl::x509::X509::from_pem(pem).unwrap();
    let spki = cert.public_key().unwrap().public_key_to_der().unwrap();
    base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(&spki))
}

/// The page list of Chromium's DevTools HTTP endpoint (which keeps its connections open:
/// the body is read by its length).
fn devtools_pages(addr: &str) -> Option<Value> {
    use std::io::{BufRead, BufReader, Read};
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /json/list HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

#[test]
fn the_web_ui_logs_in_shows_the_cluster_and_removes_a_stopped_node_after_its_preview() {
    if std::env::var_os("WORMFS_SKIP_BROWSER").is_some() {
        eprintln!("WORMFS_SKIP_BROWSER is set: the web UI is not tried in a browser");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Quickstart {
        mut child,
        guard,
        dir,
        home,
        base,
        ..
    } = start_quickstart(tmp.path(), &[]);
    let cli = |args: &[&str]| cli_ok(&home, args);
    let token = cli(&["token", "create", "ui"]).trim().to_owned();
    fs::create_dir(dir.join("mnt/media")).unwrap();
    let data = bytes(3 << 20, 8);
    let mut f = fs::File::create(dir.join("mnt/media/film.bin")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let ui = format!("https://127.0.0.1:{}", base + 61); // node2's listener
    let cert = fs::read(dir.join("node2/meta/admin-cert.pem")).unwrap();

    let mut b = Browser::start(&spki_sha256(&cert));
    // log in with the form
    b.goto(&format!("{ui}/"));
    b.wait_ready("login");
    b.screenshot("login");
    b.eval(&format!(
        "document.querySelector('#token').value = {}; document.querySelector('#login-form').requestSubmit(); true",
        serde_json::to_string(&token).unwrap()
    ));
    b.wait_ready("overview");
    let text = b.text();
    assert!(text.contains("node1") && text.contains("3 / 3"), "{text}");
    b.screenshot("overview");

    // the nodes
    b.goto(&format!("{ui}/#/nodes"));
    b.wait_ready("nodes");
    assert_eq!(
        b.eval("document.querySelectorAll('tr[data-node]').length"),
        3
    );
    b.screenshot("nodes");

    // drain node1's disk: it shows as draining with an Undrain button; then undrain it
    let drain = "button[data-disk='node1-disk0'][data-action='drain']";
    let undrain = "button[data-disk='node1-disk0'][data-action='undrain']";
    b.eval("document.body.dataset.ready = ''");
    b.click(drain);
    b.wait_ready("nodes");
    let row = "document.querySelector(\"tr[data-node='node1']\").innerText";
    let text = b.eval(row);
    assert!(text.as_str().unwrap().contains("draining"), "{text}");
    assert_eq!(
        b.eval(&format!("!!document.querySelector({drain:?})")),
        false
    );
    b.screenshot("disk-draining");
    b.eval("document.body.dataset.ready = ''");
    b.click(undrain);
    b.wait_ready("nodes");
    let text = b.eval(row);
    assert!(!text.as_str().unwrap().contains("draining"), "{text}");
    assert_eq!(
        b.eval(&format!("!!document.querySelector({undrain:?})")),
        false
    );

    // a file's layout: three chunks per stripe, on three nodes, all ok
    b.goto(&format!("{ui}/#/files?path=/media/"));
    b.wait_ready("files");
    b.eval("document.body.dataset.ready = ''");
    b.click("a[href*='film.bin']");
    b.wait_ready("files");
    let text = b.text();
    assert!(text.contains("policy general (2+1)"), "{text}");
    for n in ["node1", "node2", "node3"] {
        assert!(text.contains(&format!("{n} / {n}-disk")), "{n}: {text}");
    }
    b.screenshot("file-layout");

    // stop node3, preview its removal, then remove it
    let pid = wait_for("node3's process", Duration::from_secs(10), || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("{}/node3/node.toml", dir.display())])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
    });
    // SAFETY: kill(2) on a process this test's quickstart started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    b.goto(&format!("{ui}/#/nodes"));
    b.wait_ready("nodes");
    b.click("button[data-remove='node3']");
    b.wait_ready("nodes:preview");
    let preview = b.eval("document.querySelector('#preview').innerText");
    let preview = preview.as_str().unwrap();
    assert!(
        preview.contains("Removing node3") && preview.contains("become unreadable"),
        "{preview}"
    );
    b.screenshot("node-removal-preview");
    b.click("button[data-confirm='node3']");
    b.wait_ready("nodes:removed");
    b.screenshot("node-removed");
    wait_for(
        "node3 gone from the cluster",
        Duration::from_secs(30),
        || {
            b.eval("document.body.dataset.ready = ''; route(); true");
            b.wait_ready("nodes");
            (b.eval("document.querySelectorAll('tr[data-node]').length") == 2).then_some(())
        },
    );

    // the repair that follows rebuilds node3's chunks: watch it reach 100 %
    b.goto(&format!("{ui}/#/workers"));
    b.wait_ready("workers");
    wait_for("the repair to finish", Duration::from_secs(120), || {
        let done = b.eval(
            "(() => { const r = document.querySelector(\"tr[data-worker-row='repair']\"); \
             return r ? r.innerText : ''; })()",
        );
        let row = done.as_str().unwrap_or("").to_owned();
        let read = fs::read(dir.join("mnt/media/film.bin")).ok();
        (row.contains("100 %") && read.as_deref() == Some(&data[..])).then_some(())?;
        // and the file's chunks are all readable again, on the two nodes left
        let info = cli(&["file", "info", "/media/film.bin", "--json"]);
        let v: Value = serde_json::from_str(&info).ok()?;
        v["stripes"]
            .as_array()?
            .iter()
            .all(|s| {
                s["chunks"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .all(|c| c["state"] == "ok" && c["node"] != "node3")
                })
            })
            .then_some(())
    });
    b.screenshot("workers");

    // pause the scrub: it shows as paused with a Resume button (and no Pause); resume it
    let scrub_row = "document.querySelector(\"tr[data-worker-row='scrub']\").innerText";
    for (click, shown, gone) in [("pause", "resume", "pause"), ("resume", "pause", "resume")] {
        b.click(&format!(
            "button[data-worker='scrub'][data-action='{click}']"
        ));
        let sel = |a: &str| {
            format!("!!document.querySelector(\"button[data-worker='scrub'][data-action='{a}']\")")
        };
        // the buttons and the row's state come from one refresh, but the page may be
        // between two when it is looked at: wait for both
        wait_for(
            "the scrub's buttons and state to follow",
            Duration::from_secs(10),
            || {
                let row = b.eval(scrub_row);
                let ok = b.eval(&sel(shown)) == true
                    && b.eval(&sel(gone)) == false
                    && row.as_str().unwrap_or("").contains("paused") == (click == "pause");
                ok.then_some(())
            },
        );
    }

    // SAFETY: kill(2) with a pid we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // the quickstart stops, and fails saying node3 did not stop cleanly: it was killed
    let status = child.wait().unwrap();
    std::mem::forget(guard);
    assert!(!status.success());
}
