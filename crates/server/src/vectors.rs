//! Vector routes: upsert (JSON and binary), query (JSON and binary), get,
//! delete, list_ids, query_metadata, num_vectors.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use vecseal::{
    auto_n_lists, Fields, Filter, Hit, Index, Item, MetadataQuery, QueryOptions, TrainingState,
};

use crate::batch::Turn;
use crate::error::ApiError;
use crate::wire::{
    decode_rows, query_rows, Body, DeleteItems, GetItems, Knobs, Query, QueryBinary, QueryMetadata,
    Target, Upsert, UpsertBinary,
};
use crate::{blocking, read_index, reading, AnyCaller, Server, MAX_TOP_K};

/// Upserts `items` and answers as the protocol does, queueing an automatic
/// training when the index has grown past the threshold.
fn upsert_items(s: &Server, index: Index, items: Vec<Item>) -> Result<Json<Value>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::bad_request("Failed to upsert: no items given"));
    }
    let n = index
        .upsert(items)
        .map_err(|e| ApiError::engine("Failed to upsert", e))?;
    let mut body = json!({ "status": "success", "message": format!("Upserted {n} vectors") });
    if auto_train(s, index) {
        body["training_triggered"] = json!(true);
        body["training_message"] = json!("automatic training queued");
    }
    Ok(Json(body))
}

/// Queues a training when an untrained index holds more than the threshold,
/// or a trained one has grown so that the automatic number of lists is at
/// least twice the one it has (its size quadrupled since).
fn auto_train(s: &Server, index: Index) -> bool {
    let threshold = s.auto_train_threshold;
    if threshold == 0 || s.trainer.is_busy(index.name()) {
        return false;
    }
    let Ok(info) = index.info() else {
        return false;
    };
    let due = match info.state {
        TrainingState::Untrained => info.count > threshold,
        TrainingState::Trained => auto_n_lists(info.count) >= 2 * info.n_lists,
        _ => false,
    };
    due && s.trainer.auto(index)
}

pub(crate) async fn upsert(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<Upsert>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let mut items = Vec::with_capacity(req.items.len());
    for it in req.items {
        let Some(vector) = it.vector else {
            return Err(ApiError::bad_request(format!(
                "Failed to upsert: item {:?} has no vector; vecseal does not embed contents. \
                 Provide vector explicitly",
                it.id
            )));
        };
        let mut item = Item::new(it.id, vector);
        item.contents = it.contents.map(String::into_bytes);
        item.metadata = it.metadata.filter(|m| !m.is_null());
        items.push(item);
    }
    blocking(move || {
        let index = s
            .index(&req.index_name, cred)
            .map_err(|e| ApiError::engine("Failed to upsert", e))?;
        upsert_items(&s, index, items)
    })
    .await
}

pub(crate) async fn upsert_binary(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<UpsertBinary>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let batch = req.batch;
    let rows = decode_rows(&batch.vectors_b64, batch.dimension)?;
    if rows.len() != batch.ids.len() {
        return Err(ApiError::bad_request(format!(
            "Failed to upsert (binary): {} ids but {} vectors in batch.vectors_b64",
            batch.ids.len(),
            rows.len()
        )));
    }
    for (what, len) in [
        ("metadata", batch.metadata.as_ref().map(Vec::len)),
        ("contents", batch.contents.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|l| *l != batch.ids.len()) {
            return Err(ApiError::bad_request(format!(
                "Failed to upsert (binary): batch.{what} has {len} entries for {} ids",
                batch.ids.len()
            )));
        }
    }
    let mut metadata = batch.metadata.unwrap_or_default().into_iter();
    let mut contents = batch.contents.unwrap_or_default().into_iter();
    let items: Vec<Item> = batch
        .ids
        .into_iter()
        .zip(rows)
        .map(|(id, v)| {
            let mut item = Item::new(id, v);
            item.metadata = metadata
                .next()
                .flatten()
                .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()));
            item.contents = contents
                .next()
                .flatten()
                .filter(|c| !c.is_empty())
                .map(String::into_bytes);
            item
        })
        .collect();
    blocking(move || {
        let index = s
            .index(&req.index_name, cred)
            .map_err(|e| ApiError::engine("Failed to upsert (binary)", e))?;
        upsert_items(&s, index, items)
    })
    .await
}

/// Query options from the protocol's knobs.
fn options(k: &Knobs) -> Result<(QueryOptions, bool, bool), ApiError> {
    if k.text.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(
            "text: hybrid (BM25 + vector) queries are not supported by vecseal",
        ));
    }
    let top_k = match k.top_k {
        None => 100,
        Some(t) if (1..=MAX_TOP_K as i64).contains(&t) => t as usize,
        Some(t) => {
            return Err(ApiError::bad_request(format!(
                "top_k must be between 1 and {MAX_TOP_K}; got {t}"
            )))
        }
    };
    let include = k.include.as_deref().unwrap_or_default();
    let distance = include.iter().any(|i| i == "distance");
    let metadata = include.iter().any(|i| i == "metadata");
    let mut opts = QueryOptions::default()
        .with_top_k(top_k)
        .with_distance(distance)
        .with_metadata(metadata);
    opts.n_probes = optional_count("n_probes", k.n_probes, "automatic")?;
    opts.rerank_mult = optional_count("rerank_mult", k.rerank_mult, "the default")?;
    if let Some(filter) = parse_filter(k.filters.as_ref(), "Failed to query")? {
        opts = opts.with_filter(filter);
    }
    Ok((opts, distance, metadata))
}

/// A count knob: null or 0 is `None` (`unset` says what that means), a
/// positive value is itself, a negative one is a 400 naming `name`.
fn optional_count(name: &str, v: Option<i64>, unset: &str) -> Result<Option<usize>, ApiError> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(ApiError::bad_request(format!(
            "{name} must be positive (or 0/null for {unset}); got {n}"
        ))),
    }
}

/// A filter; `null` or `{}` is none.
fn parse_filter(v: Option<&Value>, context: &str) -> Result<Option<Filter>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) if o.is_empty() => Ok(None),
        Some(v) => Filter::parse(v)
            .map(Some)
            .map_err(|e| ApiError::engine(context, e)),
    }
}

fn hit_json(h: Hit, distance: bool, metadata: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(h.id));
    if distance {
        if let Some(d) = h.distance {
            m.insert("distance".into(), json!(d));
        }
    }
    if metadata {
        m.insert(
            "metadata".into(),
            h.metadata.unwrap_or_else(|| Value::Object(Map::new())),
        );
    }
    Value::Object(m)
}

/// Runs a query (as a read, after checking its knobs) and nests the
/// results as the protocol does: a flat list for one query vector, a list
/// per query for two or more.
async fn run_query(
    s: Arc<Server>,
    (cred, who): (vecseal::Credentials, Option<[u8; 32]>),
    name: String,
    rows: Vec<Vec<f32>>,
    knobs: Knobs,
    context: &'static str,
) -> Result<Json<Value>, ApiError> {
    let (opts, distance, metadata) = options(&knobs)?;
    if rows.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{context}: no query vectors"
        )));
    }
    // Unfiltered queries of one shape may share a batch.
    let dim = rows[0].len();
    let group = who
        .filter(|_| opts.filter.is_none() && rows.iter().all(|r| r.len() == dim))
        .map(|who| QueryGroup {
            name: name.clone(),
            who,
            dim,
            opts: format!("{opts:?}"),
        });
    let hits = match group {
        Some(group) => coalesced(s, cred, name, group, rows, opts, context).await?,
        None => read_index(s, name, cred, context, move |i| i.query(&rows, &opts)).await?,
    };
    let mut nested: Vec<Value> = hits
        .into_iter()
        .map(|hs| {
            Value::Array(
                hs.into_iter()
                    .map(|h| hit_json(h, distance, metadata))
                    .collect(),
            )
        })
        .collect();
    let results = if nested.len() == 1 {
        nested.pop().unwrap_or(Value::Array(Vec::new()))
    } else {
        Value::Array(nested)
    };
    Ok(Json(json!({ "results": results })))
}

/// The queries that may share a batch (see the `batch` module): one index
/// name, one key (its keyed digest), one dimension, the same options.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct QueryGroup {
    name: String,
    who: [u8; 32],
    dim: usize,
    /// The query options, unfiltered (`Debug` of [`QueryOptions`]).
    opts: String,
}

/// Runs `rows` in a batch of their `group`: as its leader (admitted by the
/// gate of reads, then running every rider's rows with its own), or riding
/// with one; alone when the group is full, the batch failed, or its leader
/// went away.
async fn coalesced(
    s: Arc<Server>,
    cred: vecseal::Credentials,
    name: String,
    group: QueryGroup,
    rows: Vec<Vec<f32>>,
    opts: QueryOptions,
    context: &'static str,
) -> Result<Vec<Vec<Hit>>, ApiError> {
    let leading = match s.batches.join(group, rows) {
        Turn::Lead(leading) => leading,
        Turn::Ride(outcome) => {
            return match outcome.await {
                Ok(Ok(hits)) => Ok(hits),
                Ok(Err(rows)) => {
                    let s = Arc::clone(&s);
                    read_index(s, name, cred, context, move |i| i.query(&rows, &opts)).await
                }
                Err(_) => Err(ApiError::internal("internal error")),
            };
        }
        Turn::Alone(rows) => {
            let s = Arc::clone(&s);
            return read_index(s, name, cred, context, move |i| i.query(&rows, &opts)).await;
        }
    };
    // As [`reading`]: admitted in arrival order, at most one read per
    // worker thread, run on the engine's pool; the batch is taken once
    // admitted, so riders join until then.
    let admitted = crate::admit(s.reads()).await?;
    let batch = leading.take();
    let server = Arc::clone(&s);
    crate::run_admitted(admitted, move || {
        // A failed or panicking batch sends the riders off to run alone.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            server.read(&name, cred, |i| i.query(&batch.rows, &opts))
        }));
        match ran {
            Ok(Ok(hits)) => batch
                .answer(hits)
                .map_err(|_| ApiError::internal("internal error")),
            Ok(Err(e)) => {
                let _ = batch.fail();
                Err(ApiError::engine(context, e))
            }
            Err(_) => {
                let _ = batch.fail();
                Err(ApiError::internal("internal error"))
            }
        }
    })
    .await
}

pub(crate) async fn query(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<Query>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let who = s
        .group_salt
        .and_then(|salt| caller.fingerprint(&salt, req.index_key.as_deref()));
    let rows = match req.query_vectors {
        Some(v) if !v.is_null() => query_rows(v)?,
        _ if req.query_contents.is_some() => {
            return Err(ApiError::bad_request(
                "Failed to query: query_contents needs an embedding model, which vecseal does \
                 not have; send query_vectors",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "Provide at least one: query_vectors or query_contents.",
            ))
        }
    };
    let (name, knobs) = (req.index_name, req.knobs);
    run_query(s, (cred, who), name, rows, knobs, "Failed to query").await
}

pub(crate) async fn query_binary(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<QueryBinary>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let who = s
        .group_salt
        .and_then(|salt| caller.fingerprint(&salt, req.index_key.as_deref()));
    let rows = decode_rows(&req.batch.vectors_b64, req.batch.dimension)?;
    run_query(
        s,
        (cred, who),
        req.index_name,
        rows,
        req.knobs,
        "Failed to query (binary)",
    )
    .await
}

pub(crate) async fn get_items(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<GetItems>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let include = req
        .include
        .unwrap_or_else(|| vec!["vector".into(), "contents".into(), "metadata".into()]);
    let has = |f: &str| include.iter().any(|i| i == f);
    let fields = Fields {
        vector: has("vector"),
        contents: has("contents"),
        metadata: has("metadata"),
    };
    reading(s.reads(), move || {
        let got = s
            .read(&req.index_name, cred, |i| i.get(&req.ids, fields))
            .map_err(|e| ApiError::engine("Failed to get", e))?;
        let results: Vec<Value> = got
            .items
            .into_iter()
            .map(|item| {
                let mut m = Map::new();
                m.insert("id".into(), Value::String(item.id));
                if fields.vector {
                    m.insert("vector".into(), json!(item.vector.unwrap_or_default()));
                }
                if fields.contents {
                    let c = item.contents.unwrap_or_default();
                    m.insert(
                        "contents".into(),
                        Value::String(String::from_utf8_lossy(&c).into_owned()),
                    );
                }
                if fields.metadata {
                    m.insert(
                        "metadata".into(),
                        item.metadata.unwrap_or_else(|| Value::Object(Map::new())),
                    );
                }
                Value::Object(m)
            })
            .collect();
        Ok(Json(json!({ "results": results })))
    })
    .await
}

pub(crate) async fn delete_items(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<DeleteItems>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    blocking(move || {
        let index = s
            .index(&req.index_name, cred)
            .map_err(|e| ApiError::engine("Failed to delete", e))?;
        if !req.ids.is_empty() {
            index
                .delete(&req.ids)
                .map_err(|e| ApiError::engine("Failed to delete", e))?;
        }
        Ok(Json(json!({
            "status": "success",
            "message": format!("Deleted {} vectors", req.ids.len()),
        })))
    })
    .await
}

pub(crate) async fn list_ids(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<Target>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let ids = read_index(s, req.index_name, cred, "Failed to list ids", |i| {
        i.list_ids()
    })
    .await?;
    Ok(Json(json!({ "count": ids.len(), "ids": ids })))
}

pub(crate) async fn num_vectors(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<Target>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    let n = read_index(s, req.index_name, cred, "Failed to count vectors", |i| {
        i.count()
    })
    .await?;
    Ok(Json(json!({
        "result": n,
        "status": "success",
        "message": format!("The index holds {n} vectors"),
    })))
}

/// `order_by`: a field name, or `{field: 1 | -1}`.
fn order_by(v: Option<Value>, ascending: bool) -> Result<Option<(String, bool)>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(f)) if !f.is_empty() => Ok(Some((f, ascending))),
        Some(Value::Object(o)) if o.len() == 1 => {
            let (f, dir) = o.into_iter().next().expect("one entry");
            match dir.as_i64() {
                Some(1) => Ok(Some((f, true))),
                Some(-1) => Ok(Some((f, false))),
                _ => Err(ApiError::bad_request(format!(
                    "order_by {{{f:?}: …}}: the direction must be 1 or -1"
                ))),
            }
        }
        Some(_) => Err(ApiError::bad_request(
            "order_by must be a field name or {field: 1 | -1}",
        )),
    }
}

pub(crate) async fn query_metadata(
    State(s): State<Arc<Server>>,
    AnyCaller(caller): AnyCaller,
    Body(req): Body<QueryMetadata>,
) -> Result<Json<Value>, ApiError> {
    let cred = caller.credentials(&req.index_name, req.index_key.as_deref())?;
    if req.text.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(
            "text: BM25 ranking is not supported by vecseal",
        ));
    }
    let context = "Failed to query metadata";
    let filter = match parse_filter(req.filters.as_ref(), context)? {
        Some(f) => f,
        None => Filter::parse(&json!({})).map_err(|e| ApiError::engine(context, e))?,
    };
    let mut q = MetadataQuery::default();
    match req.top_k {
        None | Some(0) => {}
        Some(n) if n > 0 => q = q.with_limit(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "top_k must be positive (or 0/null for every match); got {n}"
            )))
        }
    }
    if let Some((field, asc)) = order_by(req.order_by, req.ascending.unwrap_or(true))? {
        q = q.with_order_by(field, asc);
    }
    reading(s.reads(), move || {
        let found = s
            .read(&req.index_name, cred, |i| i.query_metadata(&filter, &q))
            .map_err(|e| ApiError::engine(context, e))?;
        let results: Vec<Value> = found.ids.iter().map(|id| json!({ "id": id })).collect();
        Ok(Json(json!({
            "results": results,
            "ids": found.ids,
            "count": found.count,
        })))
    })
    .await
}
