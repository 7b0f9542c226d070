//! `wormfs node add` and `wormfs node remove`: membership changes, carried out by the
//! master whichever node is asked.

use anyhow::Context;
use serde_json::json;
use wormfs::rpc::proto;

/// `wormfs node add ADDR [--peer-id ID]`.
pub async fn add(
    node: &str,
    addr: &str,
    peer_id: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    let reply = client
        .raw()
        .add_node(proto::AddNodeRequest {
            addr: addr.to_owned(),
            peer_id: peer_id.unwrap_or_default().to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("add the node at {addr}"))?
        .into_inner();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"node": reply.node, "peer_id": reply.peer_id, "addr": addr})
            )?
        );
    } else {
        println!(
            "added {} (peer ID {}) at {addr} as a voting member",
            reply.node, reply.peer_id
        );
    }
    Ok(())
}

/// `wormfs node remove ID`.
pub async fn remove(node: &str, id: &str, as_json: bool) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    client
        .raw()
        .remove_node(proto::RemoveNodeRequest { id: id.to_owned() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("remove node {id}"))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"removed": id}))?);
    } else {
        println!(
            "removed {id} from the cluster; its chunks are not rebuilt yet (files with chunks \
             there read with fewer redundant chunks)"
        );
    }
    Ok(())
}
