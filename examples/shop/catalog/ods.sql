-- Raw events, as the shop's services write them to Kafka.

CREATE TABLE shop.ods_orders (
  order_id BIGINT,
  user_id BIGINT,
  product_id BIGINT,
  city STRING,
  amount DECIMAL(10, 2),
  order_time TIMESTAMP(3),
  proc_time AS PROCTIME(),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND,
  PRIMARY KEY (order_id) NOT ENFORCED
) COMMENT 'Orders as placed, one JSON record per order' WITH (
  'connector' = 'kafka',
  'topic' = 'orders',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'owner' = 'trade-team',
  'tags' = 'trade, pii-free'
);

CREATE TABLE shop.ods_page_views (
  user_id BIGINT,
  page STRING,
  view_time TIMESTAMP(3),
  WATERMARK FOR view_time AS view_time - INTERVAL '5' SECOND
) COMMENT 'Page views from the web and app front ends' WITH (
  'connector' = 'kafka',
  'topic' = 'page_views',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'owner' = 'growth-team'
);

CREATE TABLE shop.ods_price_changes (
  product_id BIGINT,
  price DECIMAL(10, 2),
  change_time TIMESTAMP(3),
  WATERMARK FOR change_time AS change_time - INTERVAL '5' SECOND
) COMMENT 'Product price changes, one record per change' WITH (
  'connector' = 'kafka',
  'topic' = 'price_changes',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'owner' = 'trade-team'
);

CREATE TABLE shop.ods_payments (
  order_id BIGINT,
  method STRING,
  paid_at TIMESTAMP(3),
  proc_time AS PROCTIME()
) COMMENT 'Payment gateway callbacks; the gateway retries them, so a payment may be reported twice' WITH (
  'connector' = 'kafka',
  'topic' = 'payments',
  'format' = 'json',
  'scan.startup.mode' = 'earliest-offset',
  'connection' = 'events',
  'owner' = 'trade-team'
);
