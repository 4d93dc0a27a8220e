-- PV and UV per page and minute. /home is hot: batches pre-aggregate it before it reaches state.
INSERT INTO shop.dws_page_pv_uv_1m
SELECT window_start, window_end, page, COUNT(*), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE shop.dwd_page_views, DESCRIPTOR(view_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page
