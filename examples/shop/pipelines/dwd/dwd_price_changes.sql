INSERT INTO shop.dwd_price_changes
SELECT product_id, price, change_time
FROM shop.ods_price_changes
WHERE price >= 0
