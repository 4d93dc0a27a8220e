-- GMV per city and minute, final once the watermark passes the minute.
INSERT INTO shop.dws_city_gmv_1m
SELECT window_start, window_end, user_city, COUNT(*), COUNT(DISTINCT user_id), SUM(amount)
FROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, user_city
