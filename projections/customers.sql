-- The customer summary: per customer, the orders placed and paid, the
-- money spent (the sum of the OrderPaid amounts, in cents, whatever their
-- currency) and the order placed last (by position in the log) with its
-- placed_at.  OrderPaid does not name the customer, so order_customer
-- remembers whose each order is.
-- projection: customers

-- setup
CREATE TABLE IF NOT EXISTS customers (
    customer TEXT PRIMARY KEY,
    orders_placed INTEGER NOT NULL,
    orders_paid INTEGER NOT NULL,
    spend INTEGER NOT NULL,          -- cents
    last_order TEXT NOT NULL,
    last_order_at TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS customers_spend ON customers (spend DESC, customer);
CREATE TABLE IF NOT EXISTS order_customer (
    order_id TEXT PRIMARY KEY,
    customer TEXT NOT NULL
) WITHOUT ROWID;

-- on: OrderPlaced
INSERT INTO order_customer (order_id, customer)
VALUES (:stream, @customer_id)
ON CONFLICT (order_id) DO NOTHING;
INSERT INTO customers (customer, orders_placed, orders_paid, spend, last_order, last_order_at)
VALUES (@customer_id, 1, 0, 0, :stream, @placed_at)
ON CONFLICT (customer) DO UPDATE SET orders_placed = orders_placed + 1,
    last_order = excluded.last_order, last_order_at = excluded.last_order_at;

-- on: OrderPaid
UPDATE customers
   SET orders_paid = orders_paid + 1,
       spend = spend + @amount
 WHERE customer = (SELECT customer FROM order_customer WHERE order_id = :stream);

-- The :limit customers who spent most; a tie by customer id.
-- query: top
SELECT customer, orders_placed, orders_paid, spend, last_order, last_order_at
  FROM customers ORDER BY spend DESC, customer LIMIT :limit;

-- query: by_id
SELECT customer, orders_placed, orders_paid, spend, last_order, last_order_at
  FROM customers WHERE customer = :customer;
