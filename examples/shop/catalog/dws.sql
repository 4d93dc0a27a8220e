-- Aggregates, per minute of event time.

CREATE TABLE shop.dws_city_gmv_1m (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  city STRING,
  orders BIGINT,
  buyers BIGINT,
  gmv DECIMAL(20, 2)
) COMMENT 'GMV per city and minute' WITH (
  'connector' = 'delta',
  'owner' = 'trade-team'
);

CREATE TABLE shop.dws_page_pv_uv_1m (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  page STRING,
  pv BIGINT,
  uv BIGINT
) COMMENT 'Page views and unique visitors per page and minute' WITH (
  'connector' = 'delta',
  'owner' = 'growth-team'
);
