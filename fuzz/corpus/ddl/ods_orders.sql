CREATE TABLE shop.ods_orders (
  order_id BIGINT, amount DECIMAL(10, 2), tags ARRAY<STRING>, props MAP<STRING, INT>,
  address ROW<city STRING, zip INT>, order_time TIMESTAMP(3), proc AS PROCTIME(),
  PRIMARY KEY (order_id) NOT ENFORCED,
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) COMMENT 'orders' WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'properties.bootstrap.servers' = '127.0.0.1:9092', 'scan.watermark.max-future-skew' = '1 h');
CREATE TABLE shop.dwd_visits (user_id BIGINT, dt STRING) PARTITIONED BY (dt) WITH ('connector' = 'delta');
