//! The catalog: prices in memory, so intake prices an order without a query; stock of record
//! in the store (consumers deduct it); units available to sell in the hot-stock cache. Writes
//! go through here and keep the three in step.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::services::lease::Lease;
use crate::services::purchase_limits::PurchaseLimits;
use ordermill_core::ports::{CacheError, OrderStore, StockCache, StoreError};
use ordermill_core::{Money, OrderLine, Product, Quantity, Sku, ValidationError};
use thiserror::Error;

/// What a catalog operation can fail with.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The new stock is below what accepted orders already hold.
    #[error("stock {requested} for {sku} is below the {held} units held by accepted orders")]
    StockBelowHeld {
        /// The product.
        sku: Sku,
        /// The stock asked for.
        requested: i64,
        /// Units held by orders now.
        held: i64,
    },
    /// The store could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache could not be adjusted.
    #[error(transparent)]
    Cache(CacheError),
}

/// How [`Catalog::load`] brings the hot-stock cache in line with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconcile {
    /// Overwrite every count (this node is the cache's only user).
    Reset,
    /// Join the api nodes sharing the cache as `node`, live for `ttl` per heartbeat.
    Shared {
        /// This node's id on the cache.
        node: String,
        /// How long the node counts as live after each heartbeat.
        ttl: std::time::Duration,
    },
}

/// A product with what is left to sell.
#[derive(Debug, Clone)]
pub struct StockedProduct {
    /// The catalog entry, with stock of record.
    pub product: Arc<Product>,
    /// Units available to sell now, from the hot-stock cache.
    pub available: i64,
}

/// Products by SKU, kept in memory and written through to the store.
pub struct Catalog {
    products: RwLock<HashMap<Sku, Arc<Product>>>,
    // Catalog writes are rare and must not interleave (each moves the cache by a delta it
    // learned from the store); an async mutex serialises them without blocking the runtime.
    writes: tokio::sync::Mutex<()>,
    store: Arc<dyn OrderStore>,
    cache: Arc<dyn StockCache>,
    /// SKUs looked up in the store on a miss and not found there, for a second: a stream of
    /// orders for a SKU nobody created costs the store one query per second, not one each.
    missing: moka::sync::Cache<Sku, ()>,
    /// This node's say in the cache's counts (held for good by a node alone on them).
    lease: Arc<Lease>,
}

/// How long a SKU the store lacked is answered unknown without asking the store again.
const MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Catalog {
    /// Loads every product from the store and reconciles the hot-stock cache with it.
    ///
    /// [`Reconcile::Reset`] (one node owns the cache): each SKU's count is set to stock of
    /// record minus what accepted orders hold, so a restart neither oversells nor strands
    /// units. [`Reconcile::Shared`] (several api nodes share it): the same when no other node
    /// is live; otherwise only SKUs the cache has no count for are set, since a live count holds
    /// other nodes' reservations that are not in the store yet (see `StockCache::join_shared`).
    ///
    /// # Errors
    /// When the store cannot be read or the cache cannot be set.
    pub async fn load(
        store: Arc<dyn OrderStore>,
        cache: Arc<dyn StockCache>,
        reconcile: Reconcile,
    ) -> Result<Catalog, CatalogError> {
        let products = store.load_products().await?;
        let lease = match &reconcile {
            Reconcile::Reset => {
                cache.rebuild(None, &counts(&products)).await.map_err(CatalogError::Cache)?;
                Lease::unconditional()
            }
            Reconcile::Shared { node, ttl } => {
                let sent_at = std::time::Instant::now();
                let reset = cache
                    .join_shared(node, &counts(&products), *ttl)
                    .await
                    .map_err(CatalogError::Cache)?;
                if reset {
                    tracing::info!(node = %node, "First api node on the shared hot-stock cache: every count was reset from the store.");
                } else {
                    tracing::info!(node = %node, "Other api nodes are live on the shared hot-stock cache: only missing counts were set from the store.");
                }
                Lease::taken(sent_at, *ttl)
            }
        };
        let map: HashMap<Sku, Arc<Product>> =
            products.into_iter().map(|p| (p.sku.clone(), Arc::new(p))).collect();
        tracing::info!(
            products = map.len(),
            "Loaded catalog and reconciled hot stock with the store."
        );
        Ok(Catalog {
            products: RwLock::new(map),
            writes: tokio::sync::Mutex::new(()),
            store,
            cache,
            missing: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(MISSING_FOR)
                .build(),
            lease: Arc::new(lease),
        })
    }

    /// This node's lease on the cache's counts: reservations and commits check it.
    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sku, Arc<Product>>> {
        // Poisoning needs a panic while holding the write lock, which only does an insert.
        self.products.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Prices `(sku, quantity)` items at current catalog prices.
    ///
    /// # Errors
    /// [`PriceError::UnknownSku`] naming the first SKU not in the catalog.
    pub fn price(&self, items: &[(Sku, Quantity)]) -> Result<Vec<OrderLine>, PriceError> {
        let products = self.read();
        items
            .iter()
            .map(|(sku, quantity)| {
                let product =
                    products.get(sku).ok_or_else(|| PriceError::UnknownSku(sku.clone()))?;
                OrderLine::priced(sku.clone(), *quantity, product.price)
                    .map_err(PriceError::Invalid)
            })
            .collect()
    }

    /// [`Catalog::price`], after reading from the store any SKU of `items` this node does not
    /// know: another api node may have created it since the last refresh, and its first
    /// buyers must not be told it does not exist.
    ///
    /// # Errors
    /// As [`Catalog::price`]; [`PriceError::Lookup`] when the store could not be asked.
    pub async fn price_or_learn(
        &self,
        items: &[(Sku, Quantity)],
    ) -> Result<Vec<OrderLine>, PriceError> {
        match self.price(items) {
            Err(PriceError::UnknownSku(sku)) if !self.missing.contains_key(&sku) => {
                let unknown: Vec<Sku> = {
                    let products = self.read();
                    items
                        .iter()
                        .map(|(s, _)| s)
                        .filter(|s| !products.contains_key(*s))
                        .cloned()
                        .collect()
                };
                for sku in unknown {
                    self.learn(&sku).await?;
                }
                self.price(items)
            }
            priced => priced,
        }
    }

    /// Adds `sku` from the store (with a hot-stock count if the cache has none), or remembers
    /// for [`MISSING_FOR`] that the store lacks it.
    async fn learn(&self, sku: &Sku) -> Result<(), PriceError> {
        let Some(product) = self.store.get_product(sku).await.map_err(CatalogError::from)? else {
            self.missing.insert(sku.clone(), ());
            return Ok(());
        };
        // Serialised with local writes and refreshes, as a refresh adds a product.
        let _serialised = self.writes.lock().await;
        if self.read().contains_key(sku) {
            return Ok(());
        }
        self.cache
            .set_available_if_absent(sku, product.available())
            .await
            .map_err(CatalogError::Cache)?;
        self.products
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sku.clone(), Arc::new(product));
        tracing::debug!(sku = %sku, "Learned a product created through another node before the next refresh.");
        Ok(())
    }

    /// One product (stock of record read from the store, as consumers change it) and its
    /// available units.
    ///
    /// # Errors
    /// When the store or the cache cannot be read.
    pub async fn get(&self, sku: &Sku) -> Result<Option<StockedProduct>, CatalogError> {
        // Read through: another api node may have created it since the last refresh.
        match self.store.get_product(sku).await? {
            None => Ok(None),
            Some(product) => {
                let product = Arc::new(product);
                self.products
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(sku.clone())
                    .or_insert_with(|| product.clone());
                Ok(Some(self.stocked(product).await?))
            }
        }
    }

    /// Reloads names and prices from the store, so products created or changed through
    /// another api node are priced here too; returns how many products there are. SKUs the
    /// shared cache has no count for get one from the store (`stock − reserved`).
    ///
    /// # Errors
    /// When the store or the cache cannot be read; the catalog in memory is unchanged.
    pub async fn refresh(&self) -> Result<usize, CatalogError> {
        // Serialised with local writes, so a refresh read before a local write cannot undo it.
        let _serialised = self.writes.lock().await;
        let products = self.store.load_products().await?;
        let mut fresh = HashMap::with_capacity(products.len());
        for product in products {
            if !self.read().contains_key(&product.sku) {
                self.cache
                    .set_available_if_absent(&product.sku, product.available())
                    .await
                    .map_err(CatalogError::Cache)?;
            }
            fresh.insert(product.sku.clone(), Arc::new(product));
        }
        let count = fresh.len();
        *self.products.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(count)
    }

    async fn stocked(&self, product: Arc<Product>) -> Result<StockedProduct, CatalogError> {
        let available =
            self.cache.available(&product.sku).await.map_err(CatalogError::Cache)?.unwrap_or(0);
        Ok(StockedProduct { product, available: available.max(0) })
    }

    /// Whether the hot-stock counts can be sold from: `Err` says why not (being rebuilt after
    /// a loss, or the cache cannot be reached), for readiness checks.
    ///
    /// # Errors
    /// The reason, for people.
    pub async fn stock_ready(&self) -> Result<(), String> {
        match self.cache.is_whole().await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err("the hot-stock counts were lost and are being rebuilt from the store".into())
            }
            Err(error) => Err(format!("the hot-stock cache cannot be reached: {error}")),
        }
    }

    /// Every product, sorted by SKU, with available units.
    ///
    /// # Errors
    /// When the store or the cache cannot be read.
    pub async fn list(&self) -> Result<Vec<StockedProduct>, CatalogError> {
        let mut out = Vec::new();
        for product in self.store.load_products().await? {
            out.push(self.stocked(Arc::new(product)).await?);
        }
        Ok(out)
    }

    /// Creates or replaces a product. Returns it and whether it was created.
    ///
    /// The store writes the new stock and reports the stock it replaced in one step (so a
    /// deduction by a consumer cannot slip in between), refusing a stock below what accepted
    /// orders hold; the cache then moves by exactly that change. If orders still in flight
    /// hold more than the new stock leaves, the cache refuses and the store write is undone.
    ///
    /// # Errors
    /// [`CatalogError::StockBelowHeld`] if `stock` is below what orders hold; store or cache
    /// failures otherwise. Nothing changes on error.
    pub async fn put(
        &self,
        sku: Sku,
        name: ordermill_core::ProductName,
        price: Money,
        stock: ordermill_core::StockLevel,
    ) -> Result<(StockedProduct, bool), CatalogError> {
        let _serialised = self.writes.lock().await;
        let wanted = Product { sku: sku.clone(), name, price, stock, reserved: 0 };
        let (stored, previous) = match self.store.upsert_product(&wanted).await {
            Ok(done) => done,
            Err(StoreError::Conflict(_)) => {
                let held = self.store.get_product(&sku).await?.map_or(0, |p| p.reserved);
                return Err(CatalogError::StockBelowHeld { sku, requested: stock.get(), held });
            }
            Err(other) => return Err(other.into()),
        };
        let delta = stored.stock.get() - previous.as_ref().map_or(0, |p| p.stock.get());
        let counted = match &previous {
            Some(_) => self.cache.adjust(&sku, delta).await,
            // Another api node may have found the new product in the store since the write
            // above (its refresh, or an order for it) and set its count from there, and even
            // sold from it: adding the stock to that count would offer it twice.
            None => self.count_new(&stored).await,
        };
        let available = match counted {
            Ok(available) => available,
            Err(refused) => {
                if let Some(before) = &previous
                    && let Err(undo) = self.store.upsert_product(before).await
                {
                    tracing::error!(sku = %sku, error = %undo, "Could not undo a catalog write the hot-stock cache refused; restart to reconcile.");
                }
                return Err(match refused {
                    CacheError::Insufficient { available, .. } => CatalogError::StockBelowHeld {
                        sku,
                        requested: stock.get(),
                        held: previous.map_or(0, |p| p.stock.get()) - available,
                    },
                    other => CatalogError::Cache(other),
                });
            }
        };
        let stored = Arc::new(stored);
        self.products
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sku.clone(), stored.clone());
        tracing::info!(sku = %sku, price = %stored.price, stock = stored.stock.get(), available, "Product saved.");
        Ok((StockedProduct { product: stored, available }, previous.is_none()))
    }

    /// Sets a new product's count unless another node already did, and reads it.
    async fn count_new(&self, product: &Product) -> Result<i64, CacheError> {
        self.cache.set_available_if_absent(&product.sku, product.available()).await?;
        Ok(self.cache.available(&product.sku).await?.unwrap_or(0))
    }
}

/// What each product has left to sell by the store's reckoning (`stock − reserved`): what the
/// hot-stock counts are set to whenever they are rebuilt.
pub fn counts(products: &[Product]) -> Vec<(Sku, i64)> {
    products.iter().map(|p| (p.sku.clone(), p.available())).collect()
}

/// Refreshes `catalog` and `limits` every `every` until `stop`: on shared engines, a product
/// created or repriced through one api node is sold at its new price by every node within that
/// time, and a purchase limit set through one is shown by every node.
pub async fn keep_fresh(
    catalog: Arc<Catalog>,
    limits: Arc<PurchaseLimits>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(error) = catalog.refresh().await {
            tracing::warn!(error = %error, "Could not refresh the catalog from the store; prices stay as they were.");
        }
        if let Err(error) = limits.refresh().await {
            tracing::warn!(error = %error, "Could not refresh the purchase limits from the store; the store enforces them all the same.");
        }
    }
}

/// Why an order could not be priced.
#[derive(Debug, Error)]
pub enum PriceError {
    /// The SKU is not in the catalog.
    #[error("sku {0} is not in the catalog")]
    UnknownSku(Sku),
    /// A line total would overflow.
    #[error(transparent)]
    Invalid(ValidationError),
    /// A SKU this node did not know could not be looked up in the store.
    #[error("could not look the SKU up: {0}")]
    Lookup(#[from] CatalogError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use ordermill_cache::LocalStockCache;
    use ordermill_core::{ProductName, StockLevel};
    use ordermill_store::sqlite::SqliteStore;

    use super::*;

    /// Two api nodes: this one writes a new product; before it sets the count, the other finds
    /// the product in the store (its refresh), sets the count from there and sells 2. The count
    /// then stays the other's 3; adding the stock to it offered 8 of 5 (two_nodes.rs caught it).
    #[tokio::test]
    async fn a_new_products_count_set_meanwhile_by_another_node_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let cache = Arc::new(LocalStockCache::new());
        let catalog = Catalog::load(store, cache.clone(), Reconcile::Reset).await.unwrap();
        let sku = Sku::parse("crab").unwrap();
        assert!(cache.set_available_if_absent(&sku, 5).await.unwrap());
        assert_eq!(cache.adjust(&sku, -2).await.unwrap(), 3);

        let name = ProductName::parse("Crab").unwrap();
        let price = Money::parse("price", "19.99").unwrap();
        let stock = StockLevel::parse(5).unwrap();
        let (stocked, created) = catalog.put(sku.clone(), name, price, stock).await.unwrap();
        assert!(created);
        assert_eq!(stocked.available, 3);
        assert_eq!(cache.available(&sku).await.unwrap(), Some(3));

        let (name, stock) = (ProductName::parse("Crab").unwrap(), StockLevel::parse(9).unwrap());
        let (stocked, created) = catalog.put(sku.clone(), name, price, stock).await.unwrap();
        assert!(!created);
        assert_eq!(stocked.available, 7, "a change of stock moves the live count by as much");
    }
}
