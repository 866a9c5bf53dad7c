//! Index routes: health, list, create, describe, delete, train, training
//! status, users, embedding models.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vecseal::{FieldSchema, IndexConfig, Metric, Precision, TrainOptions, TrainingState, UserId};

use crate::auth::owner_credentials;
use crate::error::ApiError;
use crate::wire::{Body, CreateIndex, CreateUser, Target, Train};
use crate::{blocking, read_index, reading, AdminCaller, AnyCaller, RootCaller, Server};

pub(crate) async fn health() -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "api_version": "v1",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

pub(crate) async fn embedding_models(_: AnyCaller) -> Json<Value> {
    // vecseal embeds nothing: clients send vectors.
    Json(json!({ "models": [] }))
}

pub(crate) async fn list(
    State(s): State<Arc<Server>>,
    _: AdminCaller,
) -> Result<Json<Value>, ApiError> {
    let names = reading(s.reads(), move || {
        s.client
            .list_indexes()
            .map_err(|e| ApiError::engine("Failed to list indexes", e))
    })
    .await?;
    Ok(Json(json!({ "indexes": names })))
}

/// The protocol's metric names (and vecseal's inner product).
fn metric(name: Option<&str>) -> Result<Metric, ApiError> {
    match name.unwrap_or("euclidean") {
        "euclidean" => Ok(Metric::Euclidean),
        "squared_euclidean" => Ok(Metric::SquaredEuclidean),
        "cosine" => Ok(Metric::Cosine),
        "inner_product" => Ok(Metric::InnerProduct),
        other => Err(ApiError::bad_request(format!(
            "Invalid distance metric: {other}; expected euclidean, squared_euclidean, cosine \
             or inner_product"
        ))),
    }
}

pub(crate) fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::Euclidean => "euclidean",
        Metric::SquaredEuclidean => "squared_euclidean",
        Metric::Cosine => "cosine",
        Metric::InnerProduct => "inner_product",
    }
}

/// A `metadata_schema` policy object: `filterable`, `pattern`, `full_text`.
fn field_policy(field: &str, policy: &Value) -> Result<FieldSchema, ApiError> {
    if field.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "metadata_schema: field names must not be blank",
        ));
    }
    let Value::Object(map) = policy else {
        return Err(ApiError::unprocessable(format!(
            "metadata_schema[{field:?}] must be an object {{filterable, pattern, full_text}}"
        )));
    };
    let mut schema = FieldSchema::default();
    for (k, v) in map {
        let flag = match v {
            Value::Null => continue,
            Value::Bool(b) => *b,
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "metadata_schema[{field:?}].{k} must be a boolean"
                )))
            }
        };
        match k.as_str() {
            "filterable" => schema.filterable = flag,
            "pattern" => schema.pattern = flag,
            "full_text" if flag => {
                return Err(ApiError::bad_request(format!(
                    "metadata_schema[{field:?}]: full_text (BM25) fields are not supported by \
                     vecseal; use filterable and pattern"
                )))
            }
            "full_text" => {}
            other => {
                return Err(ApiError::unprocessable(format!(
                    "metadata_schema[{field:?}]: unknown policy key {other:?}; allowed: \
                     filterable, pattern, full_text"
                )))
            }
        }
    }
    Ok(schema)
}

fn index_config(req: &CreateIndex) -> Result<IndexConfig, ApiError> {
    if req.kms_name.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(ApiError::bad_request(
            "kms_name: KMS-backed indexes are not supported by vecseal; pass index_key",
        ));
    }
    if req
        .embedding_model
        .as_deref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(ApiError::bad_request(
            "embedding_model: vecseal does not embed contents; create the index without a \
             model and send vectors",
        ));
    }
    if req.text_fields.as_ref().is_some_and(|t| !t.is_empty())
        || req.bm25_k1.is_some()
        || req.bm25_b.is_some()
    {
        return Err(ApiError::bad_request(
            "text_fields, bm25_k1, bm25_b: full-text (BM25) search is not supported by vecseal",
        ));
    }
    let precision = match req.storage_precision.as_deref() {
        None => Precision::Float32,
        Some(p @ ("tq12" | "tq6")) => {
            return Err(ApiError::bad_request(format!(
                "storage_precision {p:?} is not supported; supported: float32, float16, tq8, tq4"
            )))
        }
        Some(p @ ("float32" | "float16" | "tq8" | "tq4")) => p
            .parse()
            .map_err(|e| ApiError::engine("Failed to create index", e))?,
        Some(p) => {
            return Err(ApiError::unprocessable(format!(
                "storage_precision {p:?} is not one of float32, float16, tq12, tq8, tq6, tq4"
            )))
        }
    };
    let legacy = req.index_config.as_ref();
    if let Some(kind) = legacy.and_then(|c| c.kind.as_deref()) {
        if !matches!(
            kind.to_ascii_lowercase().as_str(),
            "ivf" | "ivfflat" | "ivf_flat"
        ) {
            return Err(ApiError::bad_request(format!(
                "index_config.type {kind:?} is not supported: vecseal indexes are IVF with \
                 exact vectors (\"ivfflat\"); for compressed vectors use storage_precision \
                 (float16, tq8, tq4)"
            )));
        }
    }
    let legacy_metric = legacy.and_then(|c| c.metric.as_deref());
    let legacy_dimension = legacy.and_then(|c| c.dimension);
    let metric_name = match (req.metric.as_deref(), legacy_metric) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(format!(
                "metric {a:?} and index_config.metric {b:?} differ; give one"
            )))
        }
        (a, b) => a.or(b),
    };
    let dimension = match (req.dimension, legacy_dimension) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(format!(
                "dimension {a} and index_config.dimension {b} differ; give one"
            )))
        }
        (a, b) => a.or(b),
    };
    let mut config = IndexConfig::default()
        .with_metric(metric(metric_name)?)
        .with_storage_precision(precision);
    match dimension {
        None | Some(0) => {}
        Some(d) if d < 0 => {
            return Err(ApiError::bad_request(format!(
                "dimension must be positive (or null to take it from the first upsert); got {d}"
            )))
        }
        Some(d) => {
            let d = usize::try_from(d)
                .map_err(|_| ApiError::bad_request(format!("dimension {d} is too large")))?;
            config = config.with_dimension(d);
        }
    }
    for (field, policy) in req.metadata_schema.iter().flatten() {
        config = config.with_field(field.clone(), field_policy(field, policy)?);
    }
    Ok(config)
}

fn success(message: String) -> Json<Value> {
    Json(json!({ "status": "success", "message": message }))
}

pub(crate) async fn create(
    State(s): State<Arc<Server>>,
    _: AdminCaller,
    Body(req): Body<CreateIndex>,
) -> Result<Json<Value>, ApiError> {
    let config = index_config(&req)?;
    let cred = owner_credentials(&req.index_name, req.index_key.as_deref())?;
    let name = req.index_name;
    blocking(move || {
        let index = s
            .client
            .create_index(&name, cred, config)
            .map_err(|e| ApiError::engine("Failed to create index", e))?;
        s.keep(&index);
        Ok(success(format!("Index '{name}' created successfully")))
    })
    .await
}

pub(crate) async fn describe(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<Target>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let info = read_index(s, req.index_name, cred, "Failed to describe index", |i| {
        i.info()
    })
    .await?;
    let schema: BTreeMap<&String, Value> = info
        .fields
        .iter()
        .map(|(k, f)| {
            (
                k,
                json!({"filterable": f.filterable, "pattern": f.pattern, "full_text": false}),
            )
        })
        .collect();
    Ok(Json(json!({
        "index_name": info.name,
        "is_trained": info.state == TrainingState::Trained,
        "dimension": info.dimension.unwrap_or(0),
        "metric": metric_name(info.metric),
        "n_lists": info.n_lists,
        "metadata_schema": schema,
        "bm25": null,
        // The earlier protocol's fields, which the JavaScript/TypeScript
        // SDK 0.14 reads when it loads an index (the Python SDK ignores
        // fields it does not know).
        "index_type": "ivfflat",
        "index_config": {
            "type": "ivfflat",
            "dimension": info.dimension.unwrap_or(0),
            "metric": metric_name(info.metric),
            "n_lists": info.n_lists,
        },
    })))
}

pub(crate) async fn delete_index(
    State(s): State<Arc<Server>>,
    _: AdminCaller,
    Body(req): Body<Target>,
) -> Result<Json<Value>, ApiError> {
    let cred = owner_credentials(&req.index_name, req.index_key.as_deref())?;
    blocking(move || {
        let name = req.index_name;
        s.client
            .delete_index(&name, &cred)
            .map_err(|e| ApiError::engine("Failed to delete index", e))?;
        s.forget(&name);
        Ok(success(format!("Index '{name}' deleted successfully")))
    })
    .await
}

fn positive(name: &str, v: Option<u64>) -> Result<Option<usize>, ApiError> {
    v.filter(|n| *n > 0)
        .map(|n| {
            usize::try_from(n)
                .map_err(|_| ApiError::bad_request(format!("{name} {n} is too large")))
        })
        .transpose()
}

pub(crate) async fn train(
    State(s): State<Arc<Server>>,
    _: AdminCaller,
    Body(req): Body<Train>,
) -> Result<Json<Value>, ApiError> {
    let cred = owner_credentials(&req.index_name, req.index_key.as_deref())?;
    let opts = TrainOptions {
        n_lists: positive("n_lists", req.n_lists)?,
        batch_size: positive("batch_size", req.batch_size)?,
        max_memory: positive("max_memory", req.max_memory)?,
        max_iters: req.max_iters,
        tolerance: req.tolerance,
        ..TrainOptions::default()
    };
    let name = req.index_name;
    let server = Arc::clone(&s);
    let index = blocking(move || {
        server
            .index(&name, cred)
            .map_err(|e| ApiError::engine("Failed to train", e))
    })
    .await?;
    let name = index.name().to_owned();
    let done = s.trainer.submit(index, opts);
    done.await
        .map_err(|_| ApiError::internal("the training worker stopped"))??;
    Ok(success(format!("Index '{name}' trained successfully")))
}

pub(crate) async fn training_status(State(s): State<Arc<Server>>, _: AdminCaller) -> Json<Value> {
    let (current, queued) = s.trainer.status();
    let training: Vec<&String> = current.iter().chain(queued.iter()).collect();
    Json(json!({
        "training_indexes": training,
        "retrain_threshold": s.auto_train_threshold,
        "currently_training": current,
        "queued_indexes": queued,
        "worker_running": true,
        "worker_pid": 0,
        "global_training": {},
    }))
}

pub(crate) async fn create_user(
    State(s): State<Arc<Server>>,
    _: RootCaller,
    Path(name): Path<String>,
    Body(req): Body<CreateUser>,
) -> Result<Json<Value>, ApiError> {
    let invalid = || {
        ApiError::bad_request(format!(
            "invalid permissions {:?}; allowed: a non-empty subset of [\"read\", \"write\"]",
            req.permissions
        ))
    };
    if req.permissions.is_empty() || req.permissions.iter().any(|p| p != "read" && p != "write") {
        return Err(invalid());
    }
    let read = req.permissions.iter().any(|p| p == "read");
    let write = req.permissions.iter().any(|p| p == "write");
    let cred = owner_credentials(&name, req.index_key.as_deref())?;
    blocking(move || {
        let (id, key, token) = s
            .auth
            .new_user()?
            .ok_or_else(|| ApiError::forbidden("User management requires the root API key"))?;
        s.index(&name, cred)
            .and_then(|i| i.add_user(id, &key, read, write))
            .map_err(|e| ApiError::engine("Failed to create user", e))?;
        Ok(Json(json!({ "user_id": id.to_string(), "api_key": token })))
    })
    .await
}

fn header_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-index-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(crate) async fn list_users(
    State(s): State<Arc<Server>>,
    _: RootCaller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let cred = owner_credentials(&name, header_key(&headers).as_deref())?;
    blocking(move || {
        let users = s
            .index(&name, cred)
            .and_then(|i| i.list_users())
            .map_err(|e| ApiError::engine("Failed to list users", e))?;
        let users: Vec<Value> = users
            .iter()
            .map(|u| {
                let mut perms = Vec::new();
                if u.has_read || u.has_write {
                    perms.push("read");
                }
                if u.has_write {
                    perms.push("write");
                }
                json!({ "user_id": u.user_id.to_string(), "permissions": perms })
            })
            .collect();
        Ok(Json(json!({ "users": users })))
    })
    .await
}

pub(crate) async fn delete_user(
    State(s): State<Arc<Server>>,
    _: RootCaller,
    Path((name, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = UserId::from_hex(&user).map_err(|_| ApiError::bad_request("user_id must be hex"))?;
    let cred = owner_credentials(&name, header_key(&headers).as_deref())?;
    blocking(move || {
        s.index(&name, cred)
            .and_then(|i| i.remove_user(user))
            .map_err(|e| ApiError::engine("Failed to delete user", e))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
