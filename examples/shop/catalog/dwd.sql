-- Clean detail in the lake: history and stream in one Delta table.

CREATE TABLE shop.dwd_orders (
  order_id BIGINT,
  user_id BIGINT,
  user_city STRING,
  province STRING,
  category STRING,
  amount DECIMAL(10, 2),
  order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND,
  PRIMARY KEY (order_id) NOT ENFORCED
) COMMENT 'Paid orders with their delivery city, its province and the product category, one row per order' WITH (
  'connector' = 'delta',
  'owner' = 'trade-team'
);

CREATE TABLE shop.dwd_page_views (
  user_id BIGINT,
  page STRING,
  view_time TIMESTAMP(3),
  WATERMARK FOR view_time AS view_time - INTERVAL '5' SECOND
) COMMENT 'Page views of known pages, by signed-in users' WITH (
  'connector' = 'delta',
  'owner' = 'growth-team'
);

CREATE TABLE shop.dwd_price_changes (
  product_id BIGINT,
  price DECIMAL(10, 2),
  change_time TIMESTAMP(3),
  WATERMARK FOR change_time AS change_time - INTERVAL '5' SECOND
) COMMENT 'Valid price changes: the versioned price of each product' WITH (
  'connector' = 'delta',
  'owner' = 'trade-team'
);

CREATE TABLE shop.dwd_paid_orders (
  order_id BIGINT,
  user_id BIGINT,
  amount DECIMAL(10, 2),
  method STRING,
  paid_at TIMESTAMP(3),
  PRIMARY KEY (order_id) NOT ENFORCED
) COMMENT 'Paid orders, one row per order, with how and when it was paid' WITH (
  'connector' = 'delta',
  'owner' = 'trade-team'
);
