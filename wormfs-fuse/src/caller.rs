//! Who a FUSE request comes from, for the node's own permission checks: the kernel gives
//! the caller's uid, gid and pid; its supplementary groups are read from
//! `/proc/PID/status` (FUSE does not pass them). The mount's identity must be a `--host` or
//! an admin identity for the node to act as the caller (a personal identity acts as
//! itself).

use fuser::Request;
use wormfs::rpc::client::ActAs;

/// The caller of `req`. Callers with uid 0 need no groups (they pass every check).
pub(crate) fn of(req: &Request) -> ActAs {
    let (uid, gid) = (req.uid(), req.gid());
    let groups = if uid == 0 {
        Vec::new()
    } else {
        groups_of(req.pid())
    };
    ActAs { uid, gid, groups }
}

/// The supplementary groups of process `pid` (empty when it is gone or unreadable).
fn groups_of(pid: u32) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    parse_groups(&text)
}

fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_are_read_from_the_status_line() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n";
        assert_eq!(super::parse_groups(status), vec![4, 24, 27, 1000]);
        assert_eq!(super::parse_groups("Groups:\t\n"), Vec::<u32>::new());
        let mine = super::groups_of(std::process::id());
        let expected = super::parse_groups(&std::fs::read_to_string("/proc/self/status").unwrap());
        assert_eq!(mine, expected);
    }
}
