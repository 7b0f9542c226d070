//! The data path: reading, locating and writing stripes.

use super::{attr_reply, status, PieceStream, WormFsService};
use crate::rpc::convert::{ino, invalid, required};
use crate::rpc::proto;
use crate::rpc::session::caller_of;
use crate::rpc::{MAX_LOCATE, READ_PIECE_SIZE};
use tonic::{Request, Response, Status, Streaming};

impl WormFsService {
    pub(super) async fn serve_read_stripe(
        &self,
        r: Request<proto::ReadStripeRequest>,
    ) -> Result<Response<PieceStream>, Status> {
        let who = caller_of(&r)?;
        let r = r.into_inner();
        let file = ino("ino", r.ino)?;
        self.fs
            .check_data(&who, file, false)
            .map_err(|e| status("read stripe", e))?;
        let data = if r.len > 0 {
            self.fs.read_range(file, r.index, r.offset, r.len).await
        } else {
            self.fs.read_stripe(file, r.index).await
        }
        .map_err(|e| status("read stripe", e))?
        .unwrap_or_default();
        let len = data.len();
        self.count_client_bytes(true, len);
        let data = prost::bytes::Bytes::from(data);
        let mut pieces: Vec<Result<proto::StripePiece, Status>> = (0..len)
            .step_by(READ_PIECE_SIZE)
            .map(|at| {
                Ok(proto::StripePiece {
                    ino: file.0,
                    index: r.index,
                    stripe_len: len as u64,
                    offset: at as u64,
                    data: data.slice(at..(at + READ_PIECE_SIZE).min(len)),
                })
            })
            .collect();
        if pieces.is_empty() {
            pieces.push(Ok(proto::StripePiece {
                ino: file.0,
                index: r.index,
                stripe_len: 0,
                offset: 0,
                data: prost::bytes::Bytes::new(),
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(pieces))))
    }

    pub(super) async fn serve_locate_stripes(
        &self,
        r: Request<proto::LocateStripesRequest>,
    ) -> Result<Response<proto::StripeLocations>, Status> {
        let who = caller_of(&r)?;
        let r = r.into_inner();
        let file = ino("ino", r.ino)?;
        self.fs
            .check_data(&who, file, false)
            .map_err(|e| status("locate stripes", e))?;
        if !(1..=MAX_LOCATE).contains(&r.count) {
            return Err(invalid(
                "count",
                format!("{} stripes asked for; ask for 1 to {MAX_LOCATE}", r.count),
            ));
        }
        let found = self
            .fs
            .locate_stripes(file, r.first, u64::from(r.count))
            .map_err(|e| status("locate stripes", e))?;
        let boot_id = crate::rpc::local::boot_id().unwrap_or_default().to_owned();
        let stripes = found
            .into_iter()
            .map(|loc| match loc {
                None => proto::StripeLocation {
                    boot_id: boot_id.clone(),
                    ..Default::default()
                },
                Some(loc) => proto::StripeLocation {
                    found: true,
                    generation: loc.generation,
                    len: loc.len,
                    crc: loc.crc,
                    shard_len: loc.shard_len,
                    data: loc
                        .data
                        .into_iter()
                        .map(|c| {
                            // A path that is not UTF-8 cannot be sent as it is: that chunk is
                            // then read through the node, like one on another node's disk.
                            c.and_then(|(disk, path)| {
                                Some(proto::DataChunkPlace {
                                    disk: disk.0,
                                    path: path.into_os_string().into_string().ok()?,
                                })
                            })
                            .unwrap_or_default()
                        })
                        .collect(),
                    boot_id: boot_id.clone(),
                },
            })
            .collect();
        Ok(Response::new(proto::StripeLocations { stripes }))
    }

    pub(super) async fn serve_write_stripes(
        &self,
        r: Request<Streaming<proto::StripePiece>>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        let who = caller_of(&r)?;
        let mut stream = r.into_inner();
        let mut checked = None;
        let mut current: Option<(u64, u64, u64, Vec<u8>)> = None; // (ino, index, len, bytes)
        let mut last = None;
        while let Some(piece) = stream.message().await? {
            let file = ino("ino", piece.ino)?;
            let (f, index, len, buf) = current
                .get_or_insert_with(|| (piece.ino, piece.index, piece.stripe_len, Vec::new()));
            if (*f, *index, *len) != (piece.ino, piece.index, piece.stripe_len) {
                return Err(invalid(
                    "index",
                    "a stripe's pieces must all name the same file, stripe and length",
                ));
            }
            if piece.offset != buf.len() as u64 {
                return Err(invalid(
                    "offset",
                    format!("expected {}, got {}", buf.len(), piece.offset),
                ));
            }
            if *len == 0
                || *len > crate::policy::MAX_STRIPE_SIZE
                || buf.len() as u64 + piece.data.len() as u64 > *len
            {
                return Err(invalid(
                    "stripe_len",
                    format!("{} bytes is not a stripe length that fits its pieces", *len),
                ));
            }
            if buf.is_empty() {
                // the whole stripe at once: growing it piece by piece copied it again
                buf.reserve_exact(*len as usize);
            }
            if checked != Some(file) {
                self.fs
                    .check_data(&who, file, true)
                    .map_err(|e| status("write stripe", e))?;
                checked = Some(file);
            }
            buf.extend_from_slice(&piece.data);
            if buf.len() as u64 == *len {
                let (_, index, _, data) = current.take().expect("just filled");
                let n = data.len();
                let attr = self
                    .fs
                    .write_stripe(file, index, data)
                    .await
                    .map_err(|e| status("write stripe", e))?;
                self.count_client_bytes(false, n);
                last = Some(attr);
            }
        }
        if current.is_some() {
            return Err(invalid(
                "stripe_len",
                "the stream ended in the middle of a stripe",
            ));
        }
        let mut attr = required("pieces", last)?;
        if attr.perm & 0o6000 != 0 && who.uid != 0 {
            self.fs
                .clear_privileges_after_write(&who, attr.ino)
                .await
                .map_err(|e| status("write stripe", e))?;
            attr = self
                .fs
                .getattr(attr.ino)
                .map_err(|e| status("write stripe", e))?;
        }
        Ok(attr_reply(&attr))
    }
}
