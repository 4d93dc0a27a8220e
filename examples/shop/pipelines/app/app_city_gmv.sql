-- Running totals per city, upserted by city as minutes close.
INSERT INTO shop.app_city_gmv
SELECT city, SUM(orders), CAST(SUM(gmv) AS DECIMAL(20, 2))
FROM shop.dws_city_gmv_1m
GROUP BY city
