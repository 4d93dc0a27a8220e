SET 'table.exec.emit.allow-lateness' = '1 min';
INSERT INTO shop.dws_city_gmv
SELECT window_start, city, SUM(amount) FILTER (WHERE amount > 0), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
WHERE city <> '' GROUP BY window_start, window_end, city
