-- Paid orders with a known city; the city is normalised, then looked up with
-- the product in the DIM layer (embedded tables; a miss leaves NULLs).
INSERT INTO shop.dwd_orders
SELECT o.order_id, o.user_id, INITCAP(TRIM(o.city)), c.province, p.category, o.amount, o.order_time
FROM shop.ods_orders AS o
LEFT JOIN shop.dim_cities FOR SYSTEM_TIME AS OF o.proc_time AS c ON INITCAP(TRIM(o.city)) = c.city
LEFT JOIN shop.dim_products FOR SYSTEM_TIME AS OF o.proc_time AS p ON o.product_id = p.product_id
WHERE o.amount > 0 AND o.city IS NOT NULL
