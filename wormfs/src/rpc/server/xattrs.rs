//! Extended attributes: get, set, list and remove, each checked against the caller.

use super::{request_id_of, status, status_with_errno, WormFsService};
use crate::meta::XattrMode;
use crate::rpc::convert::{ino, invalid};
use crate::rpc::proto;
use crate::rpc::session::caller_of;
use tonic::{Request, Response, Status};

impl WormFsService {
    pub(super) async fn serve_get_xattr(
        &self,
        r: Request<proto::XattrRequest>,
    ) -> Result<Response<proto::XattrValue>, Status> {
        let who = caller_of(&r)?;
        let r = r.into_inner();
        let file = ino("ino", r.ino)?;
        self.fs
            .check_xattr(&who, file, &r.name, false)
            .map_err(|e| status("getxattr", e))?;
        let value = self
            .fs
            .getxattr(file, &r.name)
            .map_err(|e| status("getxattr", e))?;
        Ok(Response::new(proto::XattrValue { value }))
    }

    pub(super) async fn serve_set_xattr(
        &self,
        r: Request<proto::SetXattrRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        if r.name.is_empty() || r.name.len() > 255 {
            return Err(invalid("name", "an attribute name is 1 to 255 bytes"));
        }
        if r.value.len() > 64 * 1024 {
            return Err(status_with_errno(
                crate::errno::ERANGE,
                "field `value`: at most 64 KiB",
            ));
        }
        let mode = match proto::XattrMode::try_from(r.mode) {
            Ok(proto::XattrMode::Any) => XattrMode::Any,
            Ok(proto::XattrMode::Create) => XattrMode::Create,
            Ok(proto::XattrMode::Replace) => XattrMode::Replace,
            Err(_) => return Err(invalid("mode", format!("unknown mode {}", r.mode))),
        };
        let file = ino("ino", r.ino)?;
        self.fs
            .check_xattr(&who, file, &r.name, true)
            .map_err(|e| status("setxattr", e))?;
        crate::node::once(request_id, self.fs.setxattr(file, &r.name, &r.value, mode))
            .await
            .map_err(|e| status("setxattr", e))?;
        Ok(Response::new(proto::Empty {}))
    }

    pub(super) async fn serve_list_xattr(
        &self,
        r: Request<proto::InoRequest>,
    ) -> Result<Response<proto::XattrNames>, Status> {
        let who = caller_of(&r)?;
        let file = ino("ino", r.into_inner().ino)?;
        self.fs
            .check_listxattr(&who, file)
            .map_err(|e| status("listxattr", e))?;
        let names = self
            .fs
            .listxattr(file)
            .map_err(|e| status("listxattr", e))?;
        Ok(Response::new(proto::XattrNames { names }))
    }

    pub(super) async fn serve_remove_xattr(
        &self,
        r: Request<proto::XattrRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let file = ino("ino", r.ino)?;
        self.fs
            .check_xattr(&who, file, &r.name, true)
            .map_err(|e| status("removexattr", e))?;
        crate::node::once(request_id, self.fs.removexattr(file, &r.name))
            .await
            .map_err(|e| status("removexattr", e))?;
        Ok(Response::new(proto::Empty {}))
    }
}
