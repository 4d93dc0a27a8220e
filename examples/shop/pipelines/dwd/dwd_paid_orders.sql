-- Paid orders: the gateway's retried callbacks are dropped (deduplication
-- keeping each order's first report), then each payment is joined with its
-- order, whichever of the two streams brings its half first (a regular join).
-- Rows neither side needs after an hour are forgotten.
SET 'table.exec.state.ttl' = '1 h';

INSERT INTO shop.dwd_paid_orders
SELECT p.order_id, o.user_id, o.amount, p.method, p.paid_at
FROM (
  SELECT order_id, method, paid_at
  FROM (
    SELECT order_id, method, paid_at,
           ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY proc_time) AS rn
    FROM shop.ods_payments
  ) AS reported
  WHERE rn = 1
) AS p
JOIN shop.ods_orders AS o ON p.order_id = o.order_id
