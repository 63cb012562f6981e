-- The orders read model: one row per order (stream order-<id>), kept
-- equal to the state the order decider (tools/orders.c) folds from the
-- same events: its status, its customer and currency, and its total in
-- integer cents, the sum of qty * price over its lines.
--
-- order_items holds the lines, because ItemRemoved removes a whole line
-- and the total drops by that line's qty * price: the price is the
-- line's (the event does not carry it), and the quantity is the line's
-- too, which the event's qty repeats.
--
-- placed_at is OrderPlaced's own time (data.placed_at, as written; a v1
-- event arrives upcast to v2, currency EUR); updated_at is the last
-- event's store timestamp, UTC to the microsecond (:time).
--
-- Both tables are WITHOUT ROWID: every handler finds its row by the text
-- key, which is then one B-tree search instead of two.
-- projection: orders

-- setup
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,             -- the stream, order-<id>
    customer TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,            -- placed, paid, shipped, cancelled
    item_count INTEGER NOT NULL,     -- the sum of the lines' quantities
    total INTEGER NOT NULL,          -- cents
    placed_at TEXT,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL,        -- the stream's last version applied
    placed_position INTEGER NOT NULL -- for "recent" and "by_customer"
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer, placed_position);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status, id);
CREATE INDEX IF NOT EXISTS orders_placed ON orders (placed_position);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    price INTEGER NOT NULL,          -- cents per unit; one price per line
    PRIMARY KEY (order_id, sku)
) WITHOUT ROWID;

-- on: OrderPlaced
INSERT INTO orders (id, customer, currency, status, item_count, total, placed_at,
                    updated_at, version, placed_position)
VALUES (:stream, @customer_id, @currency, 'placed', 0, 0, @placed_at, :time, :version,
        :position);

-- on: ItemAdded
INSERT INTO order_items (order_id, sku, qty, price)
VALUES (:stream, @sku, @qty, @price)
ON CONFLICT (order_id, sku) DO UPDATE SET qty = qty + excluded.qty, price = excluded.price;
UPDATE orders
   SET item_count = item_count + @qty,
       total = total + @qty * @price,
       version = :version,
       updated_at = :time
 WHERE id = :stream;

-- on: ItemRemoved
UPDATE orders
   SET item_count = item_count - coalesce((SELECT qty FROM order_items
                                            WHERE order_id = :stream
                                              AND sku = @sku), 0),
       total = total - coalesce((SELECT qty * price FROM order_items
                                  WHERE order_id = :stream
                                    AND sku = @sku), 0),
       version = :version,
       updated_at = :time
 WHERE id = :stream;
DELETE FROM order_items WHERE order_id = :stream AND sku = @sku;

-- on: OrderPaid
UPDATE orders
   SET status = 'paid', version = :version,
       updated_at = :time
 WHERE id = :stream;

-- on: OrderShipped
UPDATE orders
   SET status = 'shipped', version = :version,
       updated_at = :time
 WHERE id = :stream;

-- on: OrderCancelled
UPDATE orders
   SET status = 'cancelled', version = :version,
       updated_at = :time
 WHERE id = :stream;

-- query: by_id
SELECT id, customer, currency, status, item_count, total, placed_at, updated_at, version
  FROM orders WHERE id = :id;

-- A customer's orders in the order they were placed.
-- query: by_customer
SELECT id, customer, currency, status, item_count, total, placed_at, updated_at, version
  FROM orders WHERE customer = :customer ORDER BY placed_position;

-- query: by_status
SELECT id, customer, currency, status, item_count, total, placed_at, updated_at, version
  FROM orders WHERE status = :status ORDER BY id;

-- The :limit orders placed last, the newest first.
-- query: recent
SELECT id, customer, currency, status, item_count, total, placed_at, updated_at, version
  FROM orders ORDER BY placed_position DESC LIMIT :limit;
