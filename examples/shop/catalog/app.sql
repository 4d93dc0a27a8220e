-- Serving tables: small, keyed, always current.

CREATE TABLE shop.app_city_gmv (
  city STRING,
  orders BIGINT,
  gmv DECIMAL(20, 2),
  PRIMARY KEY (city) NOT ENFORCED
) COMMENT 'GMV per city so far, for the dashboard' WITH (
  'connector' = 'delta',
  'owner' = 'trade-team'
);
