//! `wormfs node add` and `wormfs node remove`: membership changes, carried out by the
//! master whichever node is asked.

use crate::output::out;
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
        out!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"node": reply.node, "peer_id": reply.peer_id, "addr": addr})
            )?
        );
    } else {
        out!(
            "added {} (peer ID {}) at {addr} as a voting member",
            reply.node,
            reply.peer_id
        );
    }
    Ok(())
}

/// `wormfs node remove ID [--yes] [--force]`: shows what the removal costs (what would
/// be rebuilt, what would become unreadable); removes only with `--yes`, and refuses when
/// files would become unreadable unless `--force`.
pub async fn remove(
    node: &str,
    id: &str,
    yes: bool,
    force: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    let ids = [id.to_owned()];
    let preview = crate::heal::what_if_report(&client, &ids, &[], 20).await?;
    if !as_json {
        crate::heal::print_what_if(&ids, &[], &preview);
    }
    if preview.files_unreadable > 0 && !force {
        anyhow::bail!(
            "removing {id} would leave {} files unreadable (fewer than k chunks elsewhere); \
             bring the node back, or pass --force to remove it anyway and lose them",
            preview.files_unreadable
        );
    }
    if !yes && !force {
        anyhow::bail!(
            "nothing removed: run again with --yes to remove {id} and rebuild its chunks"
        );
    }
    client
        .raw()
        .remove_node(proto::RemoveNodeRequest { id: id.to_owned() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("remove node {id}"))?;
    if as_json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "removed": id,
                "rebuild_bytes": preview.rebuild_bytes,
                "files_unreadable": preview.files_unreadable,
            }))?
        );
    } else {
        out!(
            "removed {id} from the cluster; its chunks are being rebuilt on the other nodes \
             (`wormfs repair` shows the progress)"
        );
    }
    Ok(())
}
