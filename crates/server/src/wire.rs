//! Request bodies of the protocol, read as JSON with `null` meaning absent
//! and unknown fields ignored; a body that does not fit is a 422 (a 413
//! above the body limit), never a panic.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::Server;

/// A JSON request body of type `T`.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Arc<Server>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<Server>) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!(
                        "request body larger than the server's limit of {} bytes \
                         (vecseal serve --max-body-mib)",
                        state.max_body_bytes
                    ),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::unprocessable(format!("invalid request body: {e}")))
    }
}

/// `index_name` and `index_key`, common to index-scoped bodies.
#[derive(Deserialize)]
pub(crate) struct Target {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CreateIndex {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) kms_name: Option<String>,
    pub(crate) dimension: Option<i64>,
    pub(crate) embedding_model: Option<String>,
    pub(crate) metric: Option<String>,
    pub(crate) storage_precision: Option<String>,
    pub(crate) metadata_schema: Option<BTreeMap<String, Value>>,
    pub(crate) text_fields: Option<Vec<String>>,
    pub(crate) bm25_k1: Option<f64>,
    pub(crate) bm25_b: Option<f64>,
    /// The earlier protocol's form (the JavaScript/TypeScript SDK 0.14
    /// sends it): the dimension, the metric and an index type.
    pub(crate) index_config: Option<LegacyIndexConfig>,
}

/// `index_config` of a create request in the earlier protocol.
#[derive(Deserialize)]
pub(crate) struct LegacyIndexConfig {
    pub(crate) dimension: Option<i64>,
    pub(crate) metric: Option<String>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Train {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) n_lists: Option<u64>,
    pub(crate) batch_size: Option<u64>,
    pub(crate) max_iters: Option<u32>,
    pub(crate) tolerance: Option<f64>,
    pub(crate) max_memory: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct UpsertItem {
    pub(crate) id: String,
    pub(crate) vector: Option<Vec<f32>>,
    pub(crate) contents: Option<String>,
    pub(crate) metadata: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct Upsert {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) items: Vec<UpsertItem>,
}

#[derive(Deserialize)]
pub(crate) struct BinaryBatch {
    pub(crate) ids: Vec<String>,
    pub(crate) vectors_b64: String,
    pub(crate) dimension: i64,
    pub(crate) metadata: Option<Vec<Option<Value>>>,
    pub(crate) contents: Option<Vec<Option<String>>>,
}

#[derive(Deserialize)]
pub(crate) struct UpsertBinary {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) batch: BinaryBatch,
}

/// The knobs shared by both query routes.
#[derive(Deserialize)]
pub(crate) struct Knobs {
    pub(crate) top_k: Option<i64>,
    pub(crate) n_probes: Option<i64>,
    /// Candidates per result at a compressed storage precision.
    pub(crate) rerank_mult: Option<i64>,
    /// Accepted and ignored.
    #[allow(dead_code)]
    pub(crate) greedy: Option<bool>,
    pub(crate) filters: Option<Value>,
    pub(crate) include: Option<Vec<String>>,
    pub(crate) text: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Query {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) query_vectors: Option<Value>,
    pub(crate) query_contents: Option<String>,
    #[serde(flatten)]
    pub(crate) knobs: Knobs,
}

#[derive(Deserialize)]
pub(crate) struct QueryBatch {
    pub(crate) vectors_b64: String,
    pub(crate) dimension: i64,
}

#[derive(Deserialize)]
pub(crate) struct QueryBinary {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) batch: QueryBatch,
    #[serde(flatten)]
    pub(crate) knobs: Knobs,
}

#[derive(Deserialize)]
pub(crate) struct GetItems {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) ids: Vec<String>,
    pub(crate) include: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(crate) struct DeleteItems {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) ids: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct QueryMetadata {
    pub(crate) index_name: String,
    pub(crate) index_key: Option<String>,
    pub(crate) filters: Option<Value>,
    pub(crate) top_k: Option<i64>,
    pub(crate) order_by: Option<Value>,
    pub(crate) ascending: Option<bool>,
    pub(crate) text: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CreateUser {
    pub(crate) permissions: Vec<String>,
    pub(crate) index_key: Option<String>,
}

/// Decodes `vectors_b64`: standard base64 of little-endian f32 rows of
/// `dimension` values each.
pub(crate) fn decode_rows(b64: &str, dimension: i64) -> Result<Vec<Vec<f32>>, ApiError> {
    let dim = usize::try_from(dimension)
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "batch.dimension must be a positive integer; got {dimension}"
            ))
        })?;
    let bytes = STANDARD.decode(b64.as_bytes()).map_err(|e| {
        ApiError::bad_request(format!(
            "batch.vectors_b64 is not standard base64 (RFC 4648, padded): {e}"
        ))
    })?;
    let row = dim
        .checked_mul(4)
        .ok_or_else(|| ApiError::bad_request("batch.dimension is too large"))?;
    if bytes.len() % row != 0 {
        return Err(ApiError::bad_request(format!(
            "batch.vectors_b64 holds {} bytes, not a multiple of 4 × dimension = {row}",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(row)
        .map(|r| {
            r.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect())
}

/// The query vectors of a JSON query: one flat array, or an array of arrays.
pub(crate) fn query_rows(v: Value) -> Result<Vec<Vec<f32>>, ApiError> {
    let bad = || {
        ApiError::unprocessable(
            "query_vectors must be an array of numbers or an array of arrays of numbers",
        )
    };
    let Value::Array(items) = v else {
        return Err(bad());
    };
    let number = |x: &Value| x.as_f64().map(|f| f as f32).ok_or_else(bad);
    match items.first() {
        None => Err(ApiError::bad_request("query_vectors is empty")),
        Some(Value::Array(_)) => items
            .iter()
            .map(|row| match row {
                Value::Array(r) => r.iter().map(number).collect(),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Ok(vec![items.iter().map(number).collect::<Result<_, _>>()?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rows_decode_little_endian_row_major() {
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let b64 = STANDARD.encode(&bytes);
        assert_eq!(
            decode_rows(&b64, 2).unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert_eq!(decode_rows(&b64, 3).unwrap_err().status, 400);
        assert_eq!(decode_rows(&b64, 0).unwrap_err().status, 400);
        assert_eq!(decode_rows("***", 2).unwrap_err().status, 400);
        assert_eq!(decode_rows(&b64, i64::MAX).unwrap_err().status, 400);
    }

    #[test]
    fn json_query_vectors_are_one_or_many() {
        let one = query_rows(serde_json::json!([1, 2.5])).unwrap();
        assert_eq!(one, vec![vec![1.0, 2.5]]);
        let two = query_rows(serde_json::json!([[1], [2]])).unwrap();
        assert_eq!(two, vec![vec![1.0], vec![2.0]]);
        assert_eq!(query_rows(serde_json::json!([])).unwrap_err().status, 400);
        assert_eq!(
            query_rows(serde_json::json!([[1], 2])).unwrap_err().status,
            422
        );
        assert_eq!(query_rows(serde_json::json!("x")).unwrap_err().status, 422);
    }
}
