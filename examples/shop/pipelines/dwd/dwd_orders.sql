-- Paid orders with a known city; the city is normalised.
INSERT INTO shop.dwd_orders
SELECT order_id, user_id, INITCAP(TRIM(city)), amount, order_time
FROM shop.ods_orders
WHERE amount > 0 AND city IS NOT NULL
