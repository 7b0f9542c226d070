//! Changing a file's attributes: `chmod`, `chown`, `truncate`, `utimes`.

use super::*;

impl WormFuse {
    /// Sends `request` (a `setattr` of `ino`) as `as_caller` (or as the mount, for a
    /// truncate through an open handle). When it changes the data (a size, a modification
    /// time), the file's buffered writes go first and its cached stripes are dropped.
    pub(super) fn set_attr(
        &self,
        as_caller: Option<&Request>,
        ino: u64,
        request: SetAttr,
        changes_data: bool,
    ) -> Result<Attr> {
        let size = request.size;
        match (changes_data, self.open_file(ino)) {
            (true, Some(file)) => {
                // Buffered writes go first, so they neither survive a truncate nor override
                // an explicit modification time when they are sent later.
                let mut inner = file.lock();
                inner.changed_here = true;
                self.flush_file(ino, &mut inner).and_then(|()| {
                    let a = self.rpc_opt(as_caller, |c, d| d.block_on(c.setattr(request)))?;
                    if let Some(new_size) = size {
                        inner.size = new_size;
                        self.stripes.forget_file(ino);
                    }
                    inner.local_mtime = None;
                    // Stripes cached under a version were all fetched after its `seen`
                    // (what lets a reopen keep them): a new `seen`, a new version.
                    inner.version = next_version();
                    inner.seen = seen(&a);
                    Ok(a)
                })
            }
            (true, None) => {
                let r = self.rpc_opt(as_caller, |c, d| d.block_on(c.setattr(request)));
                lock(&self.closed).remove(&ino);
                self.stripes.forget_file(ino);
                r
            }
            (false, _) => self.rpc_opt(as_caller, |c, d| d.block_on(c.setattr(request))),
        }
    }
}
