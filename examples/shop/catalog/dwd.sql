-- Clean detail in the lake: history and stream in one Delta table.

CREATE TABLE shop.dwd_orders (
  order_id BIGINT,
  user_id BIGINT,
  user_city STRING,
  amount DECIMAL(10, 2),
  order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND,
  PRIMARY KEY (order_id) NOT ENFORCED
) COMMENT 'Orders joined with their user, one row per order' WITH (
  'connector' = 'delta',
  'owner' = 'trade-team'
);
