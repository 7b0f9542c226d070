//! Self-healing in clusters of real node processes: a removed node's chunks are rebuilt on
//! the others, and stripes written while a node was down are spread again when it returns,
//! so that the next loss of a node leaves every file readable.

use super::cluster::Cluster;
use super::fixture::{bytes, wait_for};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::time::Duration;

const REPAIR_FAST: &str = "[heal]\nrepair_every = \"1s\"\n";

fn write_synced(c: &Cluster, name: &str, data: &[u8]) {
    let mut f = fs::File::create(c.path(name)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// For each stripe of `rel` as node `via` sees it: (chunk states, distinct nodes, nodes).
fn stripes(c: &Cluster, via: usize, rel: &str) -> Vec<(Vec<String>, BTreeSet<String>)> {
    c.layout(via, rel)["stripes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let chunks = s["chunks"].as_array().unwrap();
            (
                chunks
                    .iter()
                    .map(|x| x["state"].as_str().unwrap().to_owned())
                    .collect(),
                chunks
                    .iter()
                    .map(|x| x["node"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// True when every stripe of `rel` has 3 ok chunks on 3 distinct nodes, none on `gone`.
fn spread(c: &Cluster, via: usize, rel: &str, gone: Option<&str>) -> bool {
    stripes(c, via, rel).iter().all(|(states, nodes)| {
        states.len() == 3
            && states.iter().all(|s| s == "ok")
            && nodes.len() == 3
            && gone.is_none_or(|g| !nodes.contains(g))
    })
}

/// Node indices other than the master and the mount's node 0, in the order given.
fn bystanders(c: &Cluster, master: &str, order: &[usize]) -> Vec<usize> {
    let m = c.index_of(master);
    order
        .iter()
        .copied()
        .filter(|&i| i != m && i != 0)
        .collect()
}

#[test]
fn a_removed_node_is_rebuilt_and_then_a_second_loss_reads_every_file() {
    let mut c = Cluster::start(4, 1, REPAIR_FAST);
    let master = c.wait_master(0, Duration::from_secs(30), None);
    c.wait_all_online(0);
    c.mount(0);
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("f{i}"), bytes(2 << 20, 100 + i)))
        .collect();
    for (name, data) in &files {
        write_synced(&c, name, data);
    }
    let victims = bystanders(&c, &master, &[3, 2, 1]);
    let (v1, v2) = (victims[0], victims[1]);
    let v1_name = format!("node{}", v1 + 1);
    c.kill(v1);
    wait_for("the dead node offline", Duration::from_secs(20), || {
        (c.state_of(0, &v1_name)? == "offline").then_some(())
    });
    // its chunks show as on an offline node, never "ok"
    let (states, nodes) = files
        .iter()
        .flat_map(|(name, _)| stripes(&c, 0, name))
        .find(|(_, n)| n.contains(&v1_name))
        .expect("placement, filling disks evenly, put some chunk on every node of four");
    assert!(
        states.contains(&"node offline".to_owned()),
        "{states:?} {nodes:?}"
    );

    // removal shows its cost and asks for --yes
    let err = c.cli(0, &["node", "remove", &v1_name]).unwrap_err();
    assert!(err.contains("run again with --yes"), "{err}");
    // --wait returns once the removed node's chunks are rebuilt: no polling needed after it
    let out = c
        .cli(0, &["node", "remove", &v1_name, "--yes", "--wait"])
        .unwrap();
    assert!(
        out.contains("rebuilt") && out.contains("repair finished"),
        "{out}"
    );
    for (name, _) in &files {
        assert!(spread(&c, 0, name, Some(&v1_name)), "{name}");
    }
    // a second loss: every file still reads exact, through a fresh mount
    c.kill(v2);
    c.unmount();
    c.mount(0);
    for (name, data) in &files {
        assert!(&fs::read(c.path(name)).unwrap() == data, "{name}");
    }
}

#[test]
fn stripes_written_while_a_node_was_down_are_respread_when_it_returns() {
    let mut c = Cluster::start(3, 2, REPAIR_FAST);
    let master = c.wait_master(0, Duration::from_secs(30), None);
    c.wait_all_online(0);
    let down = bystanders(&c, &master, &[2, 1])[0];
    let down_name = format!("node{}", down + 1);
    c.stop(down);
    wait_for("the stopped node offline", Duration::from_secs(20), || {
        (c.state_of(0, &down_name)? == "offline").then_some(())
    });
    c.mount(0);
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("g{i}"), bytes(2 << 20, 200 + i)))
        .collect();
    for (name, data) in &files {
        write_synced(&c, name, data);
    }
    // with one node of three down, each stripe doubles up on a node: margin 0
    assert!(stripes(&c, 0, "g0").iter().all(|(_, n)| n.len() == 2));
    let risk: serde_json::Value =
        serde_json::from_str(&c.cli(0, &["at-risk", "--json"]).unwrap()).unwrap();
    assert!(risk["at_risk"].as_u64().unwrap() >= 6, "{risk}");

    c.start_node(down);
    c.wait_all_online(0);
    for (name, _) in &files {
        wait_for(
            "the stripes spread over three nodes",
            Duration::from_secs(60),
            || spread(&c, 0, name, None).then_some(()),
        );
    }
    let risk: serde_json::Value =
        serde_json::from_str(&c.cli(0, &["at-risk", "--json"]).unwrap()).unwrap();
    assert_eq!(risk["at_risk"], 0, "{risk}");
    // now any one node can go: every file still reads exact
    let lost = bystanders(&c, &master, &[2, 1])[0];
    c.kill(lost);
    c.unmount();
    c.mount(0);
    for (name, data) in &files {
        assert!(&fs::read(c.path(name)).unwrap() == data, "{name}");
    }
}
