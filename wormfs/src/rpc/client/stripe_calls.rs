//! The data calls of [`Client`]: whole-stripe reads and writes, range reads, and where
//! stripes lie for local reads.

use super::*;

impl Client {
    /// Reads a whole stripe; empty for a hole.
    pub async fn read_stripe(&self, ino: FileId, index: u64) -> Result<Vec<u8>, ClientError> {
        Ok(self.read_stripe_pieces(ino, index).await?.to_vec())
    }

    /// Reads a whole stripe (empty for a hole) as the pieces it arrived in, without
    /// copying them into one buffer.
    pub async fn read_stripe_pieces(
        &self,
        ino: FileId,
        index: u64,
    ) -> Result<StripePieces, ClientError> {
        self.read_pieces(proto::ReadStripeRequest {
            ino: ino.0,
            index,
            offset: 0,
            len: 0,
        })
        .await
    }

    /// Where stripes `first..first + count` of `ino` lie on the node's disks, for reading
    /// their chunk files on this machine (see [`crate::rpc::local`]): one location per stripe,
    /// up to the file's last. `count` is 1 to [`MAX_LOCATE`](crate::rpc::MAX_LOCATE). A node
    /// too old to answer gives `ENOSYS`.
    pub async fn locate_stripes(
        &self,
        ino: FileId,
        first: u64,
        count: u32,
    ) -> Result<Vec<proto::StripeLocation>, ClientError> {
        let req = proto::LocateStripesRequest {
            ino: ino.0,
            first,
            count,
        };
        Ok(self
            .call("locate_stripes", Retry::Safe, |mut c| async move {
                c.locate_stripes(req).await.map_err(|s| {
                    if s.code() == tonic::Code::Unimplemented {
                        crate::rpc::status_with_errno(
                            errno::ENOSYS,
                            "the node cannot locate stripes",
                        )
                    } else {
                        s
                    }
                })
            })
            .await?
            .into_inner()
            .stripes)
    }

    /// Reads bytes `offset..offset + len` of a stripe (clipped to it); empty for a hole.
    pub async fn read_stripe_range(
        &self,
        ino: FileId,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        Ok(self
            .read_stripe_range_pieces(ino, index, offset, len)
            .await?
            .to_vec())
    }

    /// [`Client::read_stripe_range`] in the pieces the node sent them in, not joined.
    pub async fn read_stripe_range_pieces(
        &self,
        ino: FileId,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<StripePieces, ClientError> {
        if len == 0 {
            return Ok(StripePieces::default());
        }
        self.read_pieces(proto::ReadStripeRequest {
            ino: ino.0,
            index,
            offset,
            len,
        })
        .await
    }

    /// Reads a stripe's pieces; a stream broken half-way is read again from the start on
    /// the next node.
    async fn read_pieces(
        &self,
        req: proto::ReadStripeRequest,
    ) -> Result<StripePieces, ClientError> {
        self.call("read_stripe", Retry::Safe, |mut c| async move {
            let mut stream = c.read_stripe(req).await?.into_inner();
            let mut out = StripePieces::default();
            while let Some(piece) = stream.message().await? {
                if piece.offset != out.len() as u64
                    || out.len() as u64 + piece.data.len() as u64
                        > piece.stripe_len.max(piece.data.len() as u64)
                {
                    return Err(crate::rpc::status_with_errno(
                        errno::EIO,
                        "the node sent an invalid reply: stripe pieces out of order",
                    ));
                }
                out.push(piece.data);
            }
            Ok(out)
        })
        .await
    }

    /// Writes whole stripes `(file, index, bytes)` and returns the file's attributes after
    /// the last one. Each stripe is durable and committed when this returns `Ok`. The bytes
    /// are sent as they are, without a copy (`Bytes::from(vec)` or `Bytes::from_owner`).
    /// When the node stops answering, the stripes are sent again to the next node: a
    /// repeated stripe write stores the same bytes again.
    pub async fn write_stripes(
        &self,
        stripes: Vec<(FileId, u64, prost::bytes::Bytes)>,
    ) -> Result<Attr, ClientError> {
        let mut pieces = Vec::new();
        for (ino, index, data) in stripes {
            let len = data.len();
            for at in (0..len).step_by(PIECE_SIZE) {
                pieces.push(proto::StripePiece {
                    ino: ino.0,
                    index,
                    stripe_len: len as u64,
                    offset: at as u64,
                    data: data.slice(at..(at + PIECE_SIZE).min(len)),
                });
            }
        }
        let r = self
            .call("write_stripes", Retry::Safe, |mut c| {
                // Clones share the bytes.
                let pieces = pieces.clone();
                async move { c.write_stripes(tokio_stream::iter(pieces)).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Sets only the times of an inode (helper for `utimens`).
    pub async fn set_times(
        &self,
        ino: FileId,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<Attr, ClientError> {
        self.setattr(SetAttr {
            ino: ino.0,
            atime: atime.map(|t| t.0),
            mtime: mtime.map(|t| t.0),
            ..Default::default()
        })
        .await
    }
}
