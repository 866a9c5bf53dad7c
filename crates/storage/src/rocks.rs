use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    ErrorKind, IteratorMode, Options, WriteOptions, DB,
};

use parking_lot::Mutex;

use crate::{Durability, Error, Expect, Op, Result, Scan, Snapshot, Store, WriteBatch};

/// RocksDB in a local folder: one column family per namespace, compression
/// off (the data is ciphertext), bloom filters for point reads, WAL on.
pub struct RocksStore {
    db: DB,
    /// Held by every write: a conditional write's read and write are one
    /// step for every other writer.
    writes: Mutex<()>,
    path: PathBuf,
    namespaces: Vec<String>,
}

impl RocksStore {
    /// Opens (creating if missing) the database in `path` with the given
    /// namespaces. Errors name the path: a folder held by another process is
    /// [`Error::Locked`], a damaged database [`Error::Corrupt`].
    pub fn open(path: impl AsRef<Path>, namespaces: &[&str]) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_paranoid_checks(true);
        let cache = Cache::new_lru_cache(64 << 20);
        let cf_opts = || {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::None);
            o.set_bottommost_compression_type(DBCompressionType::None);
            o.set_write_buffer_size(64 << 20);
            // A bloom filter over each memtable's whole keys: a point read
            // of a key the memtable does not hold skips the skip list's
            // search (most reads, once the data read is older than the
            // last 64 MiB written).
            o.set_memtable_prefix_bloom_ratio(0.02);
            o.set_memtable_whole_key_filtering(true);
            o.set_target_file_size_base(64 << 20);
            // Values of 100 B to 1 MiB: large blob values go to their own
            // files rather than being rewritten by every compaction.
            o.set_enable_blob_files(true);
            o.set_min_blob_size(64 << 10);
            let mut bb = BlockBasedOptions::default();
            bb.set_block_size(16 << 10);
            bb.set_bloom_filter(10.0, false);
            bb.set_block_cache(&cache);
            bb.set_cache_index_and_filter_blocks(true);
            o.set_block_based_table_factory(&bb);
            o
        };
        let mut cfs: Vec<ColumnFamilyDescriptor> = namespaces
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_opts()))
            .collect();
        cfs.push(ColumnFamilyDescriptor::new("default", cf_opts()));
        // Column families created by a newer version stay openable.
        if let Ok(existing) = DB::list_cf(&db_opts, &path) {
            for name in existing {
                if !cfs.iter().any(|c| c.name() == name) {
                    cfs.push(ColumnFamilyDescriptor::new(name, cf_opts()));
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs).map_err(|e| open_error(&path, e))?;
        Ok(Self {
            db,
            writes: Mutex::new(()),
            path,
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        })
    }

    /// The folder of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `batch` (the caller holds `writes`).
    fn apply(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put { ns, key, value } => wb.put_cf(self.cf(ns)?, key, value),
                Op::Delete { ns, key } => wb.delete_cf(self.cf(ns)?, key),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Sync);
        self.db.write_opt(wb, &wo).map_err(engine)
    }

    fn cf(&self, ns: &str) -> Result<&ColumnFamily> {
        cf_of(&self.db, ns, &self.namespaces)
    }
}

fn cf_of<'a>(db: &'a DB, ns: &str, known: &[String]) -> Result<&'a ColumnFamily> {
    if !known.iter().any(|k| k == ns) {
        return Err(Error::UnknownNamespace {
            name: ns.to_owned(),
            known: known.to_vec(),
        });
    }
    db.cf_handle(ns).ok_or_else(|| Error::UnknownNamespace {
        name: ns.to_owned(),
        known: known.to_vec(),
    })
}

fn open_error(path: &Path, e: rocksdb::Error) -> Error {
    let reason = e.to_string();
    let path = path.to_path_buf();
    if reason.contains("LOCK") || reason.to_lowercase().contains("lock hold") {
        Error::Locked { path }
    } else if e.kind() == ErrorKind::Corruption {
        Error::Corrupt { path, reason }
    } else {
        Error::Open { path, reason }
    }
}

fn engine(e: rocksdb::Error) -> Error {
    if e.kind() == ErrorKind::Corruption {
        Error::Corrupt {
            path: PathBuf::new(),
            reason: e.to_string(),
        }
    } else {
        Error::Engine(e.to_string())
    }
}

fn prefix_scan<'a, I>(iter: I, prefix: &[u8]) -> Scan<'a>
where
    I: Iterator<Item = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>> + 'a,
{
    let prefix = prefix.to_vec();
    Box::new(
        iter.map(|r| r.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(engine))
            .take_while(move |r| match r {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            }),
    )
}

impl Store for RocksStore {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(ns)?, key).map_err(engine)
    }

    fn read_with(&self, ns: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let pinned = self.db.get_pinned_cf(self.cf(ns)?, key).map_err(engine)?;
        Ok(pinned.map(|v| f(&v)).is_some())
    }

    fn multi_get(&self, ns: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        // RocksDB's batched MultiGet: the keys sorted and looked up
        // together (memtable, filters, block cache), each value copied once
        // from a pinned slice.
        let cf = self.cf(ns)?;
        self.db
            .batched_multi_get_cf(cf, keys.iter(), false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())).map_err(engine))
            .collect()
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let _w = self.writes.lock();
        self.apply(batch, durability)
    }

    fn write_if(
        &self,
        expect: Expect<'_>,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<bool> {
        let _w = self.writes.lock();
        let now = self
            .db
            .get_pinned_cf(self.cf(expect.ns)?, expect.key)
            .map_err(engine)?;
        if now.as_deref() != expect.value {
            return Ok(false);
        }
        self.apply(batch, durability).map(|()| true)
    }

    fn scan_prefix<'a>(&'a self, ns: &str, prefix: &[u8]) -> Result<Scan<'a>> {
        let it = self
            .db
            .iterator_cf(self.cf(ns)?, IteratorMode::From(prefix, Direction::Forward));
        Ok(prefix_scan(it, prefix))
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(RocksSnapshot {
            snap: self.db.snapshot(),
            store: self,
        }))
    }

    fn namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }
}

struct RocksSnapshot<'a> {
    snap: rocksdb::Snapshot<'a>,
    store: &'a RocksStore,
}

impl Snapshot for RocksSnapshot<'_> {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snap.get_cf(self.store.cf(ns)?, key).map_err(engine)
    }

    fn scan_prefix<'b>(&'b self, ns: &str, prefix: &[u8]) -> Result<Scan<'b>> {
        let it = self.snap.iterator_cf(
            self.store.cf(ns)?,
            IteratorMode::From(prefix, Direction::Forward),
        );
        Ok(prefix_scan(it, prefix))
    }
}
