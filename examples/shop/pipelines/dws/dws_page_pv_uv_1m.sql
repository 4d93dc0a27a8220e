-- PV and UV per page and minute. /home is hot (40 % of views): each batch is
-- pre-aggregated before it reaches state, and its UV set is split into buckets
-- that merge on every core.
SET 'table.optimizer.distinct-agg.split.enabled' = 'true';
SET 'table.optimizer.distinct-agg.split.bucket-num' = '64';

INSERT INTO shop.dws_page_pv_uv_1m
SELECT window_start, window_end, page, COUNT(*), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE shop.dwd_page_views, DESCRIPTOR(view_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page
