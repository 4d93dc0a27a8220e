INSERT INTO shop.dwd_orders
SELECT /*+ LOOKUP('table'='u', 'miss'='retry', 'max-attempts'='3') */ o.order_id, u.city, o.amount, o.order_time
FROM shop.ods_orders AS o
LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id
