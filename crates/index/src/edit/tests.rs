//! What a write changes in the list directory: the lists it touches, no
//! others.

use std::sync::Arc;

use vecseal_storage::{MemStore, Store};
use vecseal_testkit::{clustered, key};

use crate::keys::Credentials;
use crate::{Database, Index, IndexConfig, Item, TrainOptions, NAMESPACES};

fn trained(n_lists: usize) -> (Index, Vec<Vec<f32>>) {
    let store: Arc<dyn Store> = Arc::new(MemStore::new(NAMESPACES));
    let db = Database::new(store);
    let index = db
        .create_index("t", Credentials::owner(key(1)), IndexConfig::default())
        .unwrap();
    let data = clustered(10_000, 8, n_lists, 5);
    let items = data
        .iter()
        .enumerate()
        .map(|(i, v)| Item::new(format!("i{i}"), v.clone()))
        .collect();
    index.upsert(items).unwrap();
    index
        .train(
            &TrainOptions::default()
                .with_n_lists(n_lists)
                .with_max_iters(3),
        )
        .unwrap();
    (index, data)
}

/// A one-item write replaces the one list it changes and shares every
/// other list with the state before it, also while a reader holds
/// that state.
#[test]
fn a_write_replaces_only_the_list_it_changes() {
    let (index, data) = trained(4);
    let before = Arc::clone(&index.shared.live.read().p.lists);
    index
        .upsert_vectors(&["new".into()], &[data[0].clone()])
        .unwrap();
    let after = Arc::clone(&index.shared.live.read().p.lists);
    assert_eq!(after.len(), 4);
    let changed: Vec<usize> = (0..4)
        .filter(|&l| !Arc::ptr_eq(&before[l], &after[l]))
        .collect();
    assert_eq!(changed.len(), 1, "lists replaced: {changed:?}");
    let count = |lists: &[Arc<Vec<crate::state::BlockRef>>]| -> u32 {
        lists[changed[0]].iter().map(|b| b.count).sum()
    };
    assert_eq!(count(&after), count(&before) + 1);
}

/// With no reader holding them, the lists are edited in place: a
/// write does not copy the directory of every list.
#[test]
fn with_no_reader_the_lists_are_edited_in_place() {
    let (index, data) = trained(4);
    let outer = Arc::as_ptr(&index.shared.live.read().p.lists) as usize;
    index
        .upsert_vectors(&["new".into()], &[data[1].clone()])
        .unwrap();
    index.delete(&["i7".into()]).unwrap();
    assert_eq!(
        Arc::as_ptr(&index.shared.live.read().p.lists) as usize,
        outer
    );
}

/// Every block an 8- or 4-bit index seals (upserts before training,
/// training, upserts after it) keeps the squared norms of its decoded
/// vectors under the Euclidean metrics, which the integer pass reads
/// instead of decoding every vector, and only there.
#[test]
fn compressed_blocks_keep_their_norms_under_the_euclidean_metrics() {
    use crate::codec::{Block, Norms};
    use crate::{Metric, Precision};
    let dim = 8;
    let check = |index: &Index, want: Norms, when: &str| {
        let (_, keys) = index.shared.authorize(&index.cred).unwrap();
        let lists = Arc::clone(&index.shared.live.read().p.lists);
        let mut seen = 0;
        for b in lists.iter().flat_map(|l| l.iter()) {
            let mut block = Block::default();
            index
                .shared
                .read_block(&keys, b.seq, dim, &mut block)
                .unwrap();
            assert_eq!(block.read_norms(), want, "{when}");
            assert_eq!(block.decoded_norms(dim).len(), block.len(), "{when}");
            seen += 1;
        }
        assert!(seen > 0, "{when}: no blocks");
    };
    let data = clustered(10_001, dim, 4, 9);
    for metric in [
        Metric::Euclidean,
        Metric::SquaredEuclidean,
        Metric::Cosine,
        Metric::InnerProduct,
    ] {
        for precision in [Precision::Tq8, Precision::Tq4] {
            let store: Arc<dyn Store> = Arc::new(MemStore::new(NAMESPACES));
            let index = Database::new(store)
                .create_index(
                    "t",
                    Credentials::owner(key(1)),
                    IndexConfig::default()
                        .with_metric(metric)
                        .with_storage_precision(precision),
                )
                .unwrap();
            let want = Norms::for_metric(metric);
            let items = |range: std::ops::Range<usize>| -> Vec<Item> {
                range
                    .map(|i| Item::new(format!("i{i}"), data[i].clone()))
                    .collect()
            };
            index.upsert(items(0..10_000)).unwrap();
            check(&index, want, &format!("{metric:?} {precision}: upserted"));
            index
                .train(&TrainOptions::default().with_n_lists(4).with_max_iters(3))
                .unwrap();
            check(&index, want, &format!("{metric:?} {precision}: trained"));
            index.upsert(items(10_000..10_001)).unwrap();
            check(&index, want, &format!("{metric:?} {precision}: one more"));
        }
    }
}
