//! The REST API, `/api/v1`: JSON over the node's gRPC service, for holders of an admin
//! token (`Authorization: Bearer wfs_...`; `wormfs token create NAME`).
//!
//! Each endpoint calls the same [`WormFs`] method a gRPC client would, as an admin caller,
//! so the checks, the forwarding to the master and the answers are the gRPC API's: the
//! JSON shapes are its messages (`proto/wormfs.proto`). Errors are one shape,
//! [`ApiError`]: a stable `code` and a `message`, with the matching HTTP status. The
//! OpenAPI 3 document is built from the handlers themselves (utoipa) and served at
//! `/api/v1/openapi.json`, so it lists exactly the routes the server has.

use super::AdminState;
use crate::node::Caller;
use crate::rpc::proto::{self, worm_fs_server::WormFs};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// What went wrong.
    pub error: ErrorBody,
    #[serde(skip)]
    status: StatusCode,
}

/// The body of an [`ApiError`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `invalid`, `exists`,
    /// `refused` (the cluster's state does not allow it now), `unavailable`, `failed`.
    pub code: &'static str,
    /// What happened and what to do, for a person.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            error: ErrorBody {
                code,
                message: message.into(),
            },
            status,
        }
    }

    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(&self)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        r
    }
}

/// A gRPC status as an API error: by its errno when it carries one, else by its code.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        let errno = s
            .metadata()
            .get(crate::rpc::ERRNO_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok());
        use crate::errno as e;
        let (status, code) = match (errno, s.code()) {
            (Some(e::ENOENT), _) | (_, tonic::Code::NotFound) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            (Some(e::EPERM | e::EACCES), _) | (_, tonic::Code::PermissionDenied) => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            (Some(e::EEXIST | e::ENOTEMPTY), _) | (_, tonic::Code::AlreadyExists) => {
                (StatusCode::CONFLICT, "exists")
            }
            (Some(e::EINVAL | e::ENAMETOOLONG | e::ENOTDIR | e::EISDIR), _)
            | (_, tonic::Code::InvalidArgument) => (StatusCode::BAD_REQUEST, "invalid"),
            (_, tonic::Code::FailedPrecondition) => (StatusCode::CONFLICT, "refused"),
            (_, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            (Some(e::ENOSPC), _) => (StatusCode::INSUFFICIENT_STORAGE, "failed"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
        };
        ApiError::new(status, code, s.message())
    }
}

/// The caller of an API request: the admin whose token it presented.
#[derive(Debug)]
pub struct Admin(Caller);

impl FromRequestParts<AdminState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Admin, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "send an admin token as `Authorization: Bearer TOKEN` (make one with `wormfs token create NAME`)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`")
            })?;
        let hash = crate::rpc::token::token_hash(token);
        let fs = state.fs.clone();
        let name = tokio::task::spawn_blocking(move || fs.meta().token_named_by_hash(&hash))
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "failed", e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "failed", e.to_string()))?;
        match name {
            Some(name) => Ok(Admin(Caller {
                user: format!("token:{name}"),
                uid: 0,
                gid: 0,
                groups: Vec::new(),
                admin: true,
            })),
            None => {
                tracing::info!("admin API: a request with an unknown or revoked token refused");
                Err(ApiError::unauthorized(
                    "this token is unknown or revoked (`wormfs token list` shows the tokens)",
                ))
            }
        }
    }
}

/// `body` as a gRPC request from `caller`.
fn call<T>(caller: &Admin, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.extensions_mut().insert(caller.0.clone());
    r
}

/// A query naming a path in the file system.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PathQuery {
    /// An absolute path in WormFS, e.g. `/media/film.mkv`.
    pub path: String,
}

/// A query for the files at risk.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
pub struct RiskQuery {
    /// List files whose margin is at most this (0: one more loss and data is gone).
    pub max_margin: i64,
    /// At most this many files (0: 1000).
    pub limit: u32,
}

/// The policies a cluster knows.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoliciesReply {
    /// The policy of directories without one of their own.
    pub default_policy: String,
    /// Every named policy.
    pub policies: Vec<proto::PolicyInfo>,
}

/// A worker's control, as the body of `POST /api/v1/workers/{name}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerControl {
    /// `start` (scrub: a new pass), `pause`, `resume` or `rate`.
    pub action: String,
    /// With `start`: a deep scrub (read every chunk and check the parity).
    pub deep: bool,
    /// With `rate` or `start`: the I/O budget in bytes per second (0 keeps the node's).
    pub bytes_per_sec: u64,
    /// With `rate` or `start`: the budget in operations per second (0 keeps the node's).
    pub ops_per_sec: u64,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "WormFS admin API",
        description = "Cluster status, policies, file layouts, risk, workers, users and tokens. Every call needs `Authorization: Bearer TOKEN` (`wormfs token create NAME`).",
        version = "1"
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes and their OpenAPI document, built together.
fn parts() -> (Router<AdminState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(cluster))
        .routes(routes!(nodes, add_node))
        .routes(routes!(remove_node))
        .routes(routes!(removal_preview))
        .routes(routes!(policies))
        .routes(routes!(policy_of, set_policy))
        .routes(routes!(file_layout))
        .routes(routes!(list_dir))
        .routes(routes!(at_risk))
        .routes(routes!(what_if))
        .routes(routes!(workers))
        .routes(routes!(control_worker))
        .routes(routes!(disk_command))
        .routes(routes!(users, add_user))
        .routes(routes!(remove_user))
        .routes(routes!(rotate_user))
        .routes(routes!(tokens))
        .split_for_parts()
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().1
}

/// The API's routes, and `/api/v1/openapi.json`.
pub fn router() -> Router<AdminState> {
    let (routes, doc) = parts();
    let doc = std::sync::Arc::new(doc);
    routes.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json((*doc).clone()) }
        }),
    )
}

type Answer<T> = Result<Json<T>, ApiError>;

/// A JSON body, or the reason it is not one: a 400 `invalid` in the API's error shape.
type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// Query parameters, or the reason they are not valid: a 400 `invalid`, as for bodies.
type Params<T> = Result<Query<T>, QueryRejection>;

fn query<T>(q: Params<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// Refuses, with a 404 naming it, a node or disk the cluster does not have.
async fn check_known(
    s: &AdminState,
    a: &Admin,
    nodes: &[String],
    disks: &[String],
) -> Result<(), ApiError> {
    let known = s
        .service
        .get_cluster_status(call(a, proto::Empty {}))
        .await?
        .into_inner();
    let missing = |what: &str, name: &str| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} `{name}` in the cluster"),
        )
    };
    if let Some(n) = nodes
        .iter()
        .find(|n| !known.nodes.iter().any(|k| &k.id == *n))
    {
        return Err(missing("node", n));
    }
    if let Some(d) = disks.iter().find(|d| {
        !known
            .nodes
            .iter()
            .flat_map(|k| &k.disks)
            .any(|k| &k.id == *d)
    }) {
        return Err(missing("disk", d));
    }
    Ok(())
}

/// The cluster: its members and their disks, the master, the term, the last applied
/// metadata entry, the policies, and the files and bytes stored.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "cluster",
    responses((status = 200, body = proto::ClusterStatusReply), (status = 401, body = ApiError)))]
async fn cluster(State(s): State<AdminState>, a: Admin) -> Answer<proto::ClusterStatusReply> {
    let r = s
        .service
        .get_cluster_status(call(&a, proto::Empty {}))
        .await?;
    Ok(Json(r.into_inner()))
}

/// The nodes, with their state, role, last heartbeat and disks.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "cluster",
    responses((status = 200, body = Vec<proto::NodeStatus>), (status = 401, body = ApiError)))]
async fn nodes(State(s): State<AdminState>, a: Admin) -> Answer<Vec<proto::NodeStatus>> {
    let r = s
        .service
        .get_cluster_status(call(&a, proto::Empty {}))
        .await?;
    Ok(Json(r.into_inner().nodes))
}

/// The named policies and the default.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies",
    responses((status = 200, body = PoliciesReply), (status = 401, body = ApiError)))]
async fn policies(State(s): State<AdminState>, a: Admin) -> Answer<PoliciesReply> {
    let r = s
        .service
        .get_cluster_status(call(&a, proto::Empty {}))
        .await?
        .into_inner();
    Ok(Json(PoliciesReply {
        default_policy: r.default_policy,
        policies: r.policies,
    }))
}

/// The policy that applies at a path, and where it comes from.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policies", params(PathQuery),
    responses((status = 200, body = proto::PolicyReply), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn policy_of(
    State(s): State<AdminState>,
    a: Admin,
    q: Params<PathQuery>,
) -> Answer<proto::PolicyReply> {
    let q = query(q)?;
    let r = s
        .service
        .get_storage_policy(call(&a, proto::PathRequest { path: q.path }))
        .await?;
    Ok(Json(r.into_inner()))
}

/// A file's stripes and chunks: where each chunk is, its state, and each stripe's margin.
#[utoipa::path(get, path = "/api/v1/files/layout", tag = "files", params(PathQuery),
    responses((status = 200, body = proto::FileLayoutReply), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn file_layout(
    State(s): State<AdminState>,
    a: Admin,
    q: Params<PathQuery>,
) -> Answer<proto::FileLayoutReply> {
    let q = query(q)?;
    let r = s
        .service
        .get_file_layout(call(&a, proto::PathRequest { path: q.path }))
        .await?;
    Ok(Json(r.into_inner()))
}

/// The files at risk now, riskiest first.
#[utoipa::path(get, path = "/api/v1/files/at-risk", tag = "files", params(RiskQuery),
    responses((status = 200, body = proto::RiskReply), (status = 401, body = ApiError)))]
async fn at_risk(
    State(s): State<AdminState>,
    a: Admin,
    q: Params<RiskQuery>,
) -> Answer<proto::RiskReply> {
    let q = query(q)?;
    let req = proto::RiskRequest {
        nodes: Vec::new(),
        disks: Vec::new(),
        max_margin: q.max_margin,
        limit: q.limit,
    };
    Ok(Json(s.service.get_risk(call(&a, req)).await?.into_inner()))
}

/// The files a loss of these nodes and disks would put at risk or make unreadable.
#[utoipa::path(post, path = "/api/v1/files/what-if", tag = "files",
    request_body = proto::RiskRequest,
    responses((status = 200, body = proto::RiskReply), (status = 400, body = ApiError),
        (status = 401, body = ApiError)))]
async fn what_if(
    State(s): State<AdminState>,
    a: Admin,
    b: Body<proto::RiskRequest>,
) -> Answer<proto::RiskReply> {
    let req = body(b)?;
    check_known(&s, &a, &req.nodes, &req.disks).await?;
    Ok(Json(s.service.get_risk(call(&a, req)).await?.into_inner()))
}

/// The background workers (scrub, repair, each node's garbage worker): state, progress,
/// rate and time left.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers",
    responses((status = 200, body = proto::WorkersReply), (status = 401, body = ApiError)))]
async fn workers(State(s): State<AdminState>, a: Admin) -> Answer<proto::WorkersReply> {
    let r = s.service.list_workers(call(&a, proto::Empty {})).await?;
    Ok(Json(r.into_inner()))
}

/// Starts, pauses or resumes a worker, or sets its rate; answers with every worker.
#[utoipa::path(post, path = "/api/v1/workers/{name}", tag = "workers",
    params(("name" = String, Path, description = "`scrub` or `repair`")),
    request_body = WorkerControl,
    responses((status = 200, body = proto::WorkersReply), (status = 400, body = ApiError),
        (status = 401, body = ApiError)))]
async fn control_worker(
    State(s): State<AdminState>,
    a: Admin,
    Path(name): Path<String>,
    b: Body<WorkerControl>,
) -> Answer<proto::WorkersReply> {
    let c = body(b)?;
    let req = proto::WorkerRequest {
        name,
        action: c.action,
        deep: c.deep,
        bytes_per_sec: c.bytes_per_sec,
        ops_per_sec: c.ops_per_sec,
    };
    Ok(Json(
        s.service.control_worker(call(&a, req)).await?.into_inner(),
    ))
}

/// Drains a disk (no new chunks; repair moves its chunks away), stops draining it, or
/// removes a drained one.
#[utoipa::path(post, path = "/api/v1/disks", tag = "cluster",
    request_body = proto::DiskRequest,
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn disk_command(
    State(s): State<AdminState>,
    a: Admin,
    b: Body<proto::DiskRequest>,
) -> Result<StatusCode, ApiError> {
    let req = body(b)?;
    s.service.disk_command(call(&a, req)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The users (never their keys).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = proto::UsersReply), (status = 401, body = ApiError)))]
async fn users(State(s): State<AdminState>, a: Admin) -> Answer<proto::UsersReply> {
    Ok(Json(
        s.service
            .list_users(call(&a, proto::Empty {}))
            .await?
            .into_inner(),
    ))
}

/// The admin tokens, by name (never the tokens).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "users",
    responses((status = 200, body = proto::TokensReply), (status = 401, body = ApiError)))]
async fn tokens(State(s): State<AdminState>, a: Admin) -> Answer<proto::TokensReply> {
    Ok(Json(
        s.service
            .list_tokens(call(&a, proto::Empty {}))
            .await?
            .into_inner(),
    ))
}

/// Adds a node to the cluster as a voter, by its node-to-node address (and peer ID, or
/// trusting the first it presents).
#[utoipa::path(post, path = "/api/v1/nodes", tag = "cluster",
    request_body = proto::AddNodeRequest,
    responses((status = 200, body = proto::AddNodeReply), (status = 400, body = ApiError),
        (status = 409, body = ApiError), (status = 401, body = ApiError)))]
async fn add_node(
    State(s): State<AdminState>,
    a: Admin,
    b: Body<proto::AddNodeRequest>,
) -> Answer<proto::AddNodeReply> {
    let req = body(b)?;
    Ok(Json(s.service.add_node(call(&a, req)).await?.into_inner()))
}

/// Whether a removal is confirmed.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
pub struct Confirm {
    /// `true` once the preview (`GET /api/v1/nodes/{id}/removal`) was looked at.
    pub confirm: bool,
}

/// What removing node `id` would cost: the files it would leave at risk or unreadable.
async fn preview(s: &AdminState, a: &Admin, id: &str) -> Result<proto::RiskReply, ApiError> {
    let nodes = vec![id.to_owned()];
    check_known(s, a, &nodes, &[]).await?;
    let req = proto::RiskRequest {
        nodes,
        disks: Vec::new(),
        max_margin: 0,
        limit: 0,
    };
    Ok(s.service.get_risk(call(a, req)).await?.into_inner())
}

/// The preview of a node's removal: the files that would be at risk or unreadable until
/// repair rebuilds its chunks elsewhere.
#[utoipa::path(get, path = "/api/v1/nodes/{id}/removal", tag = "cluster",
    params(("id" = String, Path, description = "the node's name")),
    responses((status = 200, body = proto::RiskReply), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn removal_preview(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<String>,
) -> Answer<proto::RiskReply> {
    Ok(Json(preview(&s, &a, &id).await?))
}

/// Removes a node: its chunks count as lost and repair rebuilds them on the others. Needs
/// `?confirm=true`; without it, the answer is a 400 that says what the removal costs.
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "the node's name"), Confirm),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 401, body = ApiError)))]
async fn remove_node(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<String>,
    q: Params<Confirm>,
) -> Result<StatusCode, ApiError> {
    let q = query(q)?;
    let cost = preview(&s, &a, &id).await?;
    if !q.confirm {
        return Err(ApiError::invalid(format!(
            "removing `{id}` leaves {} files unreadable and {} at risk until repair rebuilds \
             its chunks ({} bytes): see GET /api/v1/nodes/{id}/removal, then DELETE with \
             ?confirm=true",
            cost.files_unreadable, cost.files_at_risk, cost.rebuild_bytes
        )));
    }
    s.service
        .remove_node(call(&a, proto::RemoveNodeRequest { id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the policy of a directory (`policy` empty: clears it, so it inherits).
#[utoipa::path(put, path = "/api/v1/policy", tag = "policies",
    request_body = proto::SetPolicyRequest,
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn set_policy(
    State(s): State<AdminState>,
    a: Admin,
    b: Body<proto::SetPolicyRequest>,
) -> Result<StatusCode, ApiError> {
    let req = body(b)?;
    s.service.set_storage_policy(call(&a, req)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user to add.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewUser {
    /// Its name (letters, digits, `.`, `_`, `-`, `@`).
    pub name: String,
    /// The uid it acts as.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
    /// May manage membership, users, disks, workers and the policy of `/`.
    pub admin: bool,
    /// A trusted host: a mount acting as each local caller's uid.
    pub host: bool,
}

/// A user and its identity file, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityReply {
    /// The user.
    pub user: proto::UserInfo,
    /// The identity file's text (a secret key): save it with mode 0600 and give it to the
    /// user only. It is not kept anywhere.
    pub identity: String,
}

/// `reply` as a user and its identity file, naming the cluster's nodes.
async fn identity_of(
    s: &AdminState,
    a: &Admin,
    reply: proto::PutUserReply,
) -> Result<IdentityReply, ApiError> {
    let user = reply.user.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "the node sent no user",
        )
    })?;
    let key: [u8; 32] = reply.key.as_slice().try_into().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "the node sent a bad key",
        )
    })?;
    let nodes = s
        .service
        .get_cluster_status(call(a, proto::Empty {}))
        .await?
        .into_inner()
        .nodes
        .into_iter()
        .map(|n| n.address)
        .collect();
    let identity = crate::rpc::identity::Identity {
        user: user.name.clone(),
        key,
        nodes,
    }
    .to_text()
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "failed", e.to_string()))?;
    Ok(IdentityReply { user, identity })
}

/// Adds a user; answers its identity file, once.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 200, body = IdentityReply), (status = 400, body = ApiError),
        (status = 409, body = ApiError), (status = 401, body = ApiError)))]
async fn add_user(
    State(s): State<AdminState>,
    a: Admin,
    b: Body<NewUser>,
) -> Answer<IdentityReply> {
    let u = body(b)?;
    let req = proto::PutUserRequest {
        user: Some(proto::UserInfo {
            name: u.name,
            uid: u.uid,
            gid: u.gid,
            groups: u.groups,
            admin: u.admin,
            host: u.host,
            created: 0,
        }),
        rotate: false,
    };
    let reply = s.service.put_user(call(&a, req)).await?.into_inner();
    Ok(Json(identity_of(&s, &a, reply).await?))
}

/// Gives a user a new key; answers its new identity file, once. The old one is refused.
#[utoipa::path(post, path = "/api/v1/users/{name}/rotate", tag = "users",
    params(("name" = String, Path, description = "the user")),
    responses((status = 200, body = IdentityReply), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn rotate_user(
    State(s): State<AdminState>,
    a: Admin,
    Path(name): Path<String>,
) -> Answer<IdentityReply> {
    let req = proto::PutUserRequest {
        user: Some(proto::UserInfo {
            name,
            ..Default::default()
        }),
        rotate: true,
    };
    let reply = s.service.put_user(call(&a, req)).await?.into_inner();
    Ok(Json(identity_of(&s, &a, reply).await?))
}

/// Removes a user: every node refuses its identity from now on.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "the user")),
    responses((status = 204), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 401, body = ApiError)))]
async fn remove_user(
    State(s): State<AdminState>,
    a: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.service
        .remove_user(call(&a, proto::UserRequest { name }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of a directory listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// The directory, e.g. `/media`.
    pub path: String,
    /// List the names after this one ("" or absent: from the first).
    #[serde(default)]
    pub after: String,
    /// At most this many (0 or absent: a node's page).
    #[serde(default)]
    pub limit: u32,
}

/// A directory's entries, by name, a page at a time (`more` set while others follow).
#[utoipa::path(get, path = "/api/v1/files/list", tag = "files", params(ListQuery),
    responses((status = 200, body = proto::ReadDirReply), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 401, body = ApiError)))]
async fn list_dir(
    State(s): State<AdminState>,
    a: Admin,
    q: Params<ListQuery>,
) -> Answer<proto::ReadDirReply> {
    let q = query(q)?;
    let attr =
        s.fs.attr_at(&q.path)
            .map_err(|e| ApiError::from(crate::rpc::status_with_errno(e.errno(), e.to_string())))?;
    if attr.kind != crate::meta::FileKind::Directory {
        return Err(ApiError::invalid(format!(
            "`{}` is not a directory",
            q.path
        )));
    }
    let req = proto::ReadDirRequest {
        ino: attr.ino.0,
        after: q.after,
        limit: q.limit,
        with_attrs: false,
    };
    Ok(Json(s.service.read_dir(call(&a, req)).await?.into_inner()))
}
