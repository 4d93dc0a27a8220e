-- Small dimensions kept in the catalog's own SQL store: nothing to install.

CREATE TABLE shop.dim_cities (
  city STRING,
  province STRING,
  tier INT,
  PRIMARY KEY (city) NOT ENFORCED
) COMMENT 'Cities the shop delivers to' WITH (
  'connector' = 'embedded',
  'owner' = 'trade-team'
);

CREATE TABLE shop.dim_products (
  product_id BIGINT,
  title STRING,
  category STRING,
  PRIMARY KEY (product_id) NOT ENFORCED
) COMMENT 'The catalogue of products' WITH (
  'connector' = 'embedded',
  'owner' = 'trade-team'
);
