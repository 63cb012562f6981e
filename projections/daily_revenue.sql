-- Revenue per UTC day and currency: the orders paid and the sum of their
-- amounts (cents).  The day is OrderPaid's paid_at (required by
-- schema/events/OrderPaid.v1.json, an RFC 3339 date-time whose offset
-- date() applies), or the event's store timestamp when paid_at is
-- missing or not a time SQLite reads.
-- projection: daily_revenue

-- setup
CREATE TABLE IF NOT EXISTS daily_revenue (
    day TEXT NOT NULL,               -- YYYY-MM-DD, UTC
    currency TEXT NOT NULL,
    orders_paid INTEGER NOT NULL,
    revenue INTEGER NOT NULL,        -- cents
    PRIMARY KEY (day, currency)
) WITHOUT ROWID;

-- on: OrderPaid
INSERT INTO daily_revenue (day, currency, orders_paid, revenue)
VALUES (coalesce(date(@paid_at),
                 date(:timestamp / 1000000, 'unixepoch')),
        @currency, 1, @amount)
ON CONFLICT (day, currency) DO UPDATE SET orders_paid = orders_paid + 1,
    revenue = revenue + excluded.revenue;

-- query: days
SELECT day, currency, orders_paid, revenue FROM daily_revenue ORDER BY day, currency;

-- query: day
SELECT day, currency, orders_paid, revenue FROM daily_revenue WHERE day = :day
 ORDER BY currency;
