-- Dimensions kept in MySQL/TiDB; pipelines look them up by key.

CREATE TABLE shop.dim_users (
  id BIGINT,
  name STRING,
  city STRING,
  level INT,
  PRIMARY KEY (id) NOT ENFORCED
) COMMENT 'Registered users' WITH (
  'connector' = 'mysql',
  'connection' = 'shop_db',
  'table-name' = 'users',
  'owner' = 'user-team'
);
