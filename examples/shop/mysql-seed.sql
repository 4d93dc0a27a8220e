-- Sample dimension data for the shop example: mariadb < examples/shop/mysql-seed.sql
CREATE DATABASE IF NOT EXISTS strata_shop;
USE strata_shop;
DROP TABLE IF EXISTS users;
CREATE TABLE users (
  id BIGINT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  city VARCHAR(32),
  level INT,
  signed_up DATETIME(3)
);
INSERT INTO users VALUES
  (1, 'Li Lei', 'Beijing', 3, '2024-01-05 10:00:00.000'),
  (2, 'Han Meimei', 'Shanghai', 2, '2024-02-11 09:30:00.250'),
  (3, 'Wang Fang', 'Hangzhou', 1, NULL);
DROP TABLE IF EXISTS dim_products;
CREATE TABLE dim_products (
  product_id BIGINT PRIMARY KEY,
  title VARCHAR(128) NOT NULL,
  price DECIMAL(10, 2) NOT NULL,
  on_sale TINYINT(1) NOT NULL DEFAULT 0
);
INSERT INTO dim_products VALUES (10, 'Tea set', 128.00, 1), (11, 'Wok', 59.90, 0);
DROP TABLE IF EXISTS dim_cities;
CREATE TABLE dim_cities (city VARCHAR(32) PRIMARY KEY, region VARCHAR(32));
INSERT INTO dim_cities VALUES ('Beijing', 'North'), ('Shanghai', 'East'), ('Hangzhou', 'East');
